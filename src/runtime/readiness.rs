//! What `/readyz` answers. A replica is ready when it can do its job: a standby (waiting for
//! the leader lease) serves metrics and is ready; a leader is ready once every controller it
//! started has synced its cache, so a rollout does not move on while one kind is still blind;
//! nobody is ready once shutdown began.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The process-wide readiness: one flag per registered controller, plus standby and shutdown.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<State>);

#[derive(Debug, Default)]
struct State {
    standby: AtomicBool,
    stopping: AtomicBool,
    controllers: Mutex<Vec<(String, ControllerReadiness)>>,
}

/// One controller's part of readiness: set once its cache has synced.
#[derive(Clone, Debug, Default)]
pub struct ControllerReadiness(Arc<AtomicBool>);

impl ControllerReadiness {
    /// The controller's cache has synced.
    pub fn synced(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_synced(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Readiness {
    /// Adds a controller that must sync before the replica is ready. Register every controller
    /// before starting any, so the first one to sync cannot make the replica ready alone.
    pub fn register(&self, name: impl Into<String>) -> ControllerReadiness {
        let handle = ControllerReadiness::default();
        self.0
            .controllers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.into(), handle.clone()));
        handle
    }

    /// Whether this replica is a standby waiting for the lease (ready without controllers).
    pub fn set_standby(&self, standby: bool) {
        self.0.standby.store(standby, Ordering::SeqCst);
    }

    /// Shutdown began: never ready again.
    pub fn shutting_down(&self) {
        self.0.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.waiting_for().is_some_and(|w| w.is_empty())
    }

    /// The controllers whose caches have not synced yet (empty when ready), or `None` when the
    /// replica is not ready for another reason (shutting down, nothing registered yet).
    pub fn waiting_for(&self) -> Option<Vec<String>> {
        if self.0.stopping.load(Ordering::SeqCst) {
            return None;
        }
        if self.0.standby.load(Ordering::SeqCst) {
            return Some(Vec::new());
        }
        let controllers = self.0.controllers.lock().unwrap_or_else(|p| p.into_inner());
        if controllers.is_empty() {
            return None;
        }
        Some(
            controllers
                .iter()
                .filter(|(_, c)| !c.is_synced())
                .map(|(name, _)| name.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_registered_controller_synced() {
        let readiness = Readiness::default();
        assert!(!readiness.is_ready(), "nothing registered yet");
        let links = readiness.register("linkedaccount");
        let bulks = readiness.register("bulkregistration");
        links.synced();
        assert!(!readiness.is_ready());
        assert_eq!(
            readiness.waiting_for(),
            Some(vec!["bulkregistration".into()])
        );
        bulks.synced();
        assert!(readiness.is_ready());
        readiness.shutting_down();
        assert!(!readiness.is_ready());
    }

    #[test]
    fn a_standby_is_ready_until_it_leads_or_stops() {
        let readiness = Readiness::default();
        readiness.set_standby(true);
        assert!(readiness.is_ready());
        readiness.set_standby(false);
        let links = readiness.register("linkedaccount");
        assert!(!readiness.is_ready(), "a new leader waits for its caches");
        links.synced();
        assert!(readiness.is_ready());
        readiness.set_standby(true);
        readiness.shutting_down();
        assert!(!readiness.is_ready());
    }
}
