use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::*;

#[test]
fn each_record_leads_to_one_step() {
    let lease = Duration::from_secs(15);
    let cases = [
        (Some("me"), Duration::ZERO, Step::Renew),
        (Some("me"), Duration::from_secs(60), Step::Renew),
        (None, Duration::ZERO, Step::Take),
        (Some(""), Duration::ZERO, Step::Take),
        (Some("other"), Duration::ZERO, Step::Wait),
        (Some("other"), Duration::from_millis(14_999), Step::Wait),
        (Some("other"), lease, Step::Take),
    ];
    for (holder, unchanged_for, expected) in cases {
        assert_eq!(
            step(holder, "me", unchanged_for, lease),
            expected,
            "{holder:?} unchanged for {unchanged_for:?}"
        );
    }
}

#[test]
fn leadership_ends_at_its_deadline() {
    let now = Instant::now();
    assert!(!leads(None, now));
    assert!(leads(Some(now + Duration::from_millis(1)), now));
    assert!(!leads(Some(now), now));
}

/// One Lease shared by the replicas of a test, with optimistic concurrency like the API server.
#[derive(Default)]
struct Shared {
    lease: Mutex<Option<serde_json::Value>>,
    version: AtomicU64,
}

/// One replica's connection to [`Shared`]; `cut` makes every call hang (a partition).
#[derive(Clone)]
struct FakeLease {
    shared: Arc<Shared>,
    cut: Arc<AtomicBool>,
}

impl FakeLease {
    fn new(shared: &Arc<Shared>) -> Self {
        Self {
            shared: shared.clone(),
            cut: Arc::default(),
        }
    }

    async fn reachable(&self) {
        if self.cut.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }

    fn next_version(&self) -> String {
        (self.shared.version.fetch_add(1, Ordering::SeqCst) + 1).to_string()
    }
}

fn conflict() -> kube::Error {
    kube::Error::Api(
        kube::core::Status::failure("the object has been modified", "Conflict")
            .with_code(409)
            .boxed(),
    )
}

fn merge(into: &mut serde_json::Value, patch: &serde_json::Value) {
    match (into, patch) {
        (serde_json::Value::Object(into), serde_json::Value::Object(patch)) => {
            for (k, v) in patch {
                if v.is_null() {
                    into.remove(k);
                } else {
                    merge(into.entry(k.clone()).or_insert(json!({})), v);
                }
            }
        }
        (into, patch) => *into = patch.clone(),
    }
}

impl LeaseStore for FakeLease {
    async fn get(&self) -> Result<Option<Lease>, kube::Error> {
        self.reachable().await;
        let lease = self.shared.lease.lock().unwrap().clone();
        Ok(lease.map(|l| serde_json::from_value(l).unwrap()))
    }

    async fn create(&self, lease: &Lease) -> Result<(), kube::Error> {
        self.reachable().await;
        let mut stored = self.shared.lease.lock().unwrap();
        if stored.is_some() {
            return Err(conflict());
        }
        let mut value = serde_json::to_value(lease).unwrap();
        value["metadata"]["resourceVersion"] = json!(self.next_version());
        *stored = Some(value);
        Ok(())
    }

    async fn patch(&self, patch: serde_json::Value) -> Result<(), kube::Error> {
        self.reachable().await;
        let mut stored = self.shared.lease.lock().unwrap();
        let current = stored.as_mut().expect("patch of an existing Lease");
        if patch["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
            return Err(conflict());
        }
        merge(current, &patch);
        current["metadata"]["resourceVersion"] = json!(self.next_version());
        Ok(())
    }
}

fn timing() -> Timing {
    Timing {
        lease_duration: Duration::from_millis(900),
        renew_deadline: Duration::from_millis(600),
        retry_period: Duration::from_millis(100),
    }
}

fn replica(shared: &Arc<Shared>, identity: &str) -> (Election, Arc<AtomicBool>) {
    let store = FakeLease::new(shared);
    let cut = store.cut.clone();
    (
        Election::with_store(store, "lease", identity, timing()),
        cut,
    )
}

fn holder(shared: &Shared) -> Option<String> {
    let lease = shared.lease.lock().unwrap().clone()?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_string)
}

/// A replica that started alone and leads.
async fn leading(shared: &Arc<Shared>, identity: &str) -> (Election, Arc<AtomicBool>) {
    let (mut election, cut) = replica(shared, identity);
    within(
        Duration::from_secs(2),
        "the first replica leads",
        election.wait_until_leader(),
    )
    .await
    .unwrap();
    (election, cut)
}

async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} within {limit:?}"))
}

#[tokio::test]
async fn a_partitioned_leader_stops_leading_before_a_standby_can_take_over() {
    let shared = Arc::new(Shared::default());
    let (mut first, first_cut) = leading(&shared, "first").await;
    let (mut second, _) = replica(&shared, "second");
    // The standby sees a live lease and waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(first.is_leader());
    assert!(!second.is_leader());

    // The leader's requests now hang; it keeps running.
    let cut_at = Instant::now();
    first_cut.store(true, Ordering::SeqCst);
    within(
        Duration::from_secs(2),
        "first notices",
        first.wait_until_lost(),
    )
    .await;
    let lost_at = Instant::now();
    assert!(!first.is_leader());
    within(
        Duration::from_secs(3),
        "second leads",
        second.wait_until_leader(),
    )
    .await
    .unwrap();
    let taken_at = Instant::now();
    let t = timing();
    assert!(
        lost_at - cut_at <= t.renew_deadline + t.retry_period,
        "the partitioned leader still led {:?} after the cut",
        lost_at - cut_at
    );
    assert!(
        taken_at - lost_at >= t.lease_duration - t.renew_deadline - t.retry_period,
        "the standby took over {:?} after the old leader stopped",
        taken_at - lost_at
    );
    assert_eq!(holder(&shared).as_deref(), Some("second"));
}

#[tokio::test]
async fn a_leader_that_sees_another_holder_loses_at_once() {
    let shared = Arc::new(Shared::default());
    let (mut first, _) = leading(&shared, "first").await;
    // Someone else's claim lands (e.g. after a clock jump on this replica).
    {
        let mut lease = shared.lease.lock().unwrap();
        let lease = lease.as_mut().unwrap();
        lease["spec"]["holderIdentity"] = json!("intruder");
        lease["metadata"]["resourceVersion"] = json!("999");
    }
    within(
        timing().retry_period * 3,
        "first notices the other holder",
        first.wait_until_lost(),
    )
    .await;
}

#[tokio::test]
async fn a_released_lease_goes_to_the_standby_at_its_next_attempt() {
    let shared = Arc::new(Shared::default());
    let (first, _) = leading(&shared, "first").await;
    let (mut second, _) = replica(&shared, "second");
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.release().await;
    // The release cleared first's claim; the standby may already have taken the Lease.
    assert_ne!(holder(&shared).as_deref(), Some("first"));
    within(
        timing().retry_period * 3,
        "second leads right after the release",
        second.wait_until_leader(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn of_two_replicas_starting_together_one_leads() {
    let shared = Arc::new(Shared::default());
    let (mut a, _) = replica(&shared, "a");
    let (mut b, _) = replica(&shared, "b");
    within(Duration::from_secs(2), "someone leads", async {
        tokio::select! {
            r = a.wait_until_leader() => r,
            r = b.wait_until_leader() => r,
        }
    })
    .await
    .unwrap();
    for _ in 0..10 {
        tokio::time::sleep(timing().retry_period).await;
        assert!(
            !(a.is_leader() && b.is_leader()),
            "both replicas lead at once"
        );
    }
}
