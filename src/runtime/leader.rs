//! Leader election on a coordination.k8s.io Lease: exactly one replica runs the controllers.
//! A replica that loses the lease exits (and is restarted), so two replicas never both write.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a lease is valid without renewal, in seconds.
pub const LEASE_DURATION_SECONDS: u64 = 15;
/// How long before expiry the holder renews, in seconds.
pub const RENEW_BEFORE_SECONDS: u64 = 5;

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("cannot use Lease {namespace}/{name}: {source}")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: LeaseManagerError,
    },
    #[error("the lease watcher stopped")]
    WatcherGone,
}

/// This replica's participation in the election.
pub struct Election {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
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
    pub async fn start(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
    ) -> Result<Self, LeaderError> {
        let manager = LeaseManagerBuilder::new(client, name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(LEASE_DURATION_SECONDS)
            .with_grace(RENEW_BEFORE_SECONDS)
            .with_field_manager(crate::api::labels::LEADER_ELECTION_MANAGER)
            .build()
            .await
            .map_err(|source| LeaderError::Lease {
                namespace: namespace.into(),
                name: name.into(),
                source,
            })?;
        let (state, task) = manager.watch().await;
        Ok(Self { state, task })
    }

    /// Whether this replica holds the lease now.
    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    /// Resolves once this replica holds the lease.
    pub async fn wait_until_leader(&mut self) -> Result<(), LeaderError> {
        self.state
            .wait_for(|leader| *leader)
            .await
            .map(|_| ())
            .map_err(|_| LeaderError::WatcherGone)
    }

    /// Resolves when this replica no longer holds the lease (or the watcher died).
    pub async fn wait_until_lost(&mut self) {
        let _ = self.state.wait_for(|leader| !*leader).await;
    }

    /// Gives the lease up so a standby takes over at once.
    pub async fn release(self) {
        // Dropping the receiver makes the watcher release the lease and return.
        drop(self.state);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("released the leader lease"),
            Ok(Err(err)) => tracing::warn!(error = %err, "could not release the leader lease"),
            Err(err) => tracing::warn!(error = %err, "lease watcher panicked"),
        }
    }
}
