//! Leader election on a coordination.k8s.io Lease: exactly one replica runs the controllers.
//!
//! Two replicas must never write at once, even when the leader is cut off from the API server
//! while it keeps running (its renewals then hang rather than fail). So the holder does not wait
//! to be told it lost: it counts itself leader only until [`RENEW_DEADLINE`] after the start of
//! its last successful renewal, and the operator stops every controller at that instant. A
//! standby takes the lease over only once the record has stayed unchanged for the lease duration
//! by its own clock, counted from when it first saw that record — which is after the renewal
//! started. The old leader has therefore stopped at least `LEASE_DURATION - RENEW_DEADLINE`
//! before another replica may start (the client-go rule, without trusting clocks across hosts).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a lease is valid without renewal, in seconds.
pub const LEASE_DURATION_SECONDS: u64 = 15;
/// How long after the start of its last successful renewal the holder still counts itself leader.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often the holder renews and a standby retries; also the bound of one attempt.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("the lease watcher stopped")]
    WatcherGone,
}

/// The three durations of the election; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(LEASE_DURATION_SECONDS),
            renew_deadline: RENEW_DEADLINE,
            retry_period: RETRY_PERIOD,
        }
    }
}

/// Where the Lease lives: the API server, or a fake in tests.
pub trait LeaseStore: Send + Sync + 'static {
    fn get(&self) -> impl Future<Output = Result<Option<Lease>, kube::Error>> + Send;
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<(), kube::Error>> + Send;
    /// Merges `patch` into the Lease; it carries the resourceVersion it was based on, so a
    /// concurrent change makes it fail (409) instead of overwriting another replica's claim.
    fn patch(
        &self,
        patch: serde_json::Value,
    ) -> impl Future<Output = Result<(), kube::Error>> + Send;
}

/// The Lease `name` in the API server.
struct KubeLease {
    api: Api<Lease>,
    name: String,
}

impl LeaseStore for KubeLease {
    async fn get(&self) -> Result<Option<Lease>, kube::Error> {
        self.api.get_opt(&self.name).await
    }

    async fn create(&self, lease: &Lease) -> Result<(), kube::Error> {
        let params = PostParams {
            field_manager: Some(crate::api::labels::LEADER_ELECTION_MANAGER.into()),
            ..PostParams::default()
        };
        self.api.create(&params, lease).await.map(|_| ())
    }

    async fn patch(&self, patch: serde_json::Value) -> Result<(), kube::Error> {
        let params = PatchParams {
            field_manager: Some(crate::api::labels::LEADER_ELECTION_MANAGER.into()),
            ..PatchParams::default()
        };
        self.api
            .patch(&self.name, &params, &Patch::Merge(patch))
            .await
            .map(|_| ())
    }
}

/// What one attempt does with the record it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Ours: renew it.
    Renew,
    /// Free, or expired by our clock: claim it.
    Take,
    /// Another replica holds a valid lease.
    Wait,
}

/// The decision of one attempt: `unchanged_for` is how long the record has looked the same to
/// this replica, `duration` the lease duration it states.
fn step(holder: Option<&str>, me: &str, unchanged_for: Duration, duration: Duration) -> Step {
    match holder {
        Some(h) if h == me => Step::Renew,
        None | Some("") => Step::Take,
        Some(_) if unchanged_for >= duration => Step::Take,
        Some(_) => Step::Wait,
    }
}

/// Whether a replica whose leadership runs until `deadline` leads at `now`.
fn leads(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|d| d > now)
}

/// The record as this replica last saw it, and since when.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    holder: Option<String>,
    renewed: Option<MicroTime>,
    since: Instant,
}

/// One replica's side of the election.
struct Elector<S> {
    store: S,
    name: String,
    identity: String,
    timing: Timing,
    seen: Option<Seen>,
}

impl<S: LeaseStore> Elector<S> {
    /// One attempt to renew or acquire: whether this replica holds the lease after it.
    async fn attempt(&mut self, now: Instant) -> Result<bool, kube::Error> {
        let Some(lease) = self.store.get().await? else {
            self.store.create(&self.fresh()).await?;
            tracing::info!(
                identity = self.identity,
                "created and took the leader lease"
            );
            return Ok(true);
        };
        let spec = lease.spec.unwrap_or_default();
        let holder = spec.holder_identity.filter(|h| !h.is_empty());
        let since = match &self.seen {
            Some(seen) if seen.holder == holder && seen.renewed == spec.renew_time => seen.since,
            _ => now,
        };
        self.seen = Some(Seen {
            holder: holder.clone(),
            renewed: spec.renew_time,
            since,
        });
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map_or(self.timing.lease_duration, Duration::from_secs);
        let decided = step(holder.as_deref(), &self.identity, now - since, duration);
        if decided == Step::Wait {
            return Ok(false);
        }
        let stamp = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let mut claim = json!({
            "metadata": {"resourceVersion": lease.metadata.resource_version},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.lease_seconds(),
                "renewTime": stamp,
            },
        });
        if decided == Step::Take {
            claim["spec"]["acquireTime"] = json!(stamp);
            claim["spec"]["leaseTransitions"] = json!(spec.lease_transitions.unwrap_or(0) + 1);
        }
        self.store.patch(claim).await?;
        if decided == Step::Take {
            tracing::info!(
                identity = self.identity,
                previous = holder.as_deref().unwrap_or(""),
                "took the leader lease"
            );
        }
        Ok(true)
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    fn fresh(&self) -> Lease {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        Lease {
            metadata: kube::api::ObjectMeta {
                name: Some(self.name.clone()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.lease_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        }
    }

    /// Frees the lease if this replica holds it, so a standby takes over at its next attempt.
    async fn release(&self) -> Result<bool, kube::Error> {
        let Some(lease) = self.store.get().await? else {
            return Ok(false);
        };
        let spec = lease.spec.unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        self.store
            .patch(json!({
                "metadata": {"resourceVersion": lease.metadata.resource_version},
                "spec": {"holderIdentity": null, "renewTime": MicroTime(k8s_openapi::jiff::Timestamp::now())},
            }))
            .await?;
        Ok(true)
    }

    /// Renews or competes every retry period, publishing until when this replica leads, until
    /// every receiver is gone; then releases the lease.
    async fn run(mut self, state: watch::Sender<Option<Instant>>) {
        loop {
            let started = Instant::now();
            match tokio::time::timeout(self.timing.retry_period, self.attempt(started)).await {
                Ok(Ok(true)) => {
                    state.send_replace(Some(started + self.timing.renew_deadline));
                }
                Ok(Ok(false)) => {
                    state.send_replace(None);
                }
                Ok(Err(err)) => tracing::warn!(error = %err, "leader lease attempt failed"),
                Err(_) => tracing::warn!(
                    timeout_ms = self.timing.retry_period.as_millis(),
                    "leader lease attempt timed out"
                ),
            }
            tokio::select! {
                () = tokio::time::sleep_until(started + self.timing.retry_period) => {}
                () = state.closed() => break,
            }
        }
        match tokio::time::timeout(self.timing.retry_period, self.release()).await {
            Ok(Ok(true)) => tracing::info!("released the leader lease"),
            Ok(Ok(false)) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "could not release the leader lease"),
            Err(_) => tracing::warn!("releasing the leader lease timed out"),
        }
    }
}

/// This replica's participation in the election.
pub struct Election {
    state: watch::Receiver<Option<Instant>>,
    task: JoinHandle<()>,
}

/// POD_NAME, else hostname and PID.
pub fn default_identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "account-linker".into());
        format!("{host}-{}", std::process::id())
    })
}

impl Election {
    /// Joins the election for `namespace/name` as `identity` (creating the Lease if needed).
    pub fn start(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        let store = KubeLease {
            api: Api::namespaced(client, namespace),
            name: name.into(),
        };
        Self::with_store(store, name, identity, Timing::default())
    }

    fn with_store(store: impl LeaseStore, name: &str, identity: &str, timing: Timing) -> Self {
        let elector = Elector {
            store,
            name: name.into(),
            identity: identity.into(),
            timing,
            seen: None,
        };
        let (sender, state) = watch::channel(None);
        let task = tokio::spawn(elector.run(sender));
        Self { state, task }
    }

    /// Whether this replica holds the lease now.
    pub fn is_leader(&self) -> bool {
        leads(*self.state.borrow(), Instant::now())
    }

    /// Resolves once this replica holds the lease.
    pub async fn wait_until_leader(&mut self) -> Result<(), LeaderError> {
        loop {
            if leads(*self.state.borrow_and_update(), Instant::now()) {
                return Ok(());
            }
            self.state
                .changed()
                .await
                .map_err(|_| LeaderError::WatcherGone)?;
        }
    }

    /// Resolves when this replica no longer holds the lease: another holds it, the renew
    /// deadline passed without a successful renewal, or the election stopped.
    pub async fn wait_until_lost(&mut self) {
        loop {
            let deadline = *self.state.borrow_and_update();
            let Some(deadline) = deadline.filter(|d| leads(Some(*d), Instant::now())) else {
                return;
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                changed = self.state.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Gives the lease up so a standby takes over at once.
    pub async fn release(self) {
        // Dropping the receiver makes the elector release the lease and return.
        drop(self.state);
        if let Err(err) = self.task.await {
            tracing::warn!(error = %err, "lease elector panicked");
        }
    }
}

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
