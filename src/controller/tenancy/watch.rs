//! The operator's one watch of LinkPolicies and Namespaces (both cluster-scoped, so one watch
//! serves every watched namespace): caches for the gate, and a signal on every change that
//! can change a decision — a policy added, changed or removed, or a namespace's labels.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, reflector};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch as signal;
use tracing::{info, warn};

use super::Gate;
use crate::api::LinkPolicy;
use crate::aws::OrgUnits;
use crate::runtime::ControllerReadiness;

/// Starts watching. Returns the gate and the task that keeps its caches current (run it until
/// shutdown); `readiness` is marked once both caches have synced.
pub fn start(
    client: &Client,
    org: Arc<dyn OrgUnits>,
    readiness: ControllerReadiness,
) -> (Gate, impl Future<Output = ()> + Send + 'static) {
    let (policies, policy_writer) = reflector::store::<LinkPolicy>();
    let (namespaces, namespace_writer) = reflector::store::<Namespace>();
    let (changed, changes) = signal::channel(0u64);
    let policy_events = reflector(
        policy_writer,
        watcher(
            Api::<LinkPolicy>::all(client.clone()),
            watcher::Config::default(),
        )
        .modify(crate::controller::link_cache::trim)
        .default_backoff(),
    );
    let namespace_events = reflector(
        namespace_writer,
        watcher(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
        )
        .modify(|ns: &mut Namespace| {
            // The gate reads a namespace's labels only.
            crate::controller::link_cache::trim(ns);
            ns.spec = None;
            ns.status = None;
        })
        .default_backoff(),
    );
    // The only waiter on the stores' readiness (a store wakes one waiter); the gate's
    // reconciles wait on `synced_rx`.
    let (synced_tx, synced_rx) = signal::channel(false);
    let synced = {
        let (policies, namespaces) = (policies.clone(), namespaces.clone());
        async move {
            if policies.wait_until_ready().await.is_ok()
                && namespaces.wait_until_ready().await.is_ok()
            {
                synced_tx.send_replace(true);
                readiness.synced();
                info!("LinkPolicy and Namespace caches synced");
                // Hold the sender for the life of the task.
                std::future::pending::<()>().await;
            }
        }
    };
    let task = async move {
        futures::join!(
            follow_policies(policy_events, &changed),
            follow_namespaces(namespace_events, &changed),
            synced,
        );
    };
    let gate = Gate::enforced(synced_rx, policies, namespaces, org, changes);
    (gate, task)
}

fn wake(changed: &signal::Sender<u64>) {
    changed.send_modify(|n| *n = n.wrapping_add(1));
}

/// Wakes the controllers on every policy change, and after a re-list (which may hide changes
/// made while the watch was down).
async fn follow_policies(
    events: impl Stream<Item = watcher::Result<Event<LinkPolicy>>>,
    changed: &signal::Sender<u64>,
) {
    let mut listed = false;
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(policy)) => {
                info!(
                    policy = policy.name_any(),
                    "LinkPolicy changed; evaluating objects again"
                );
                wake(changed);
            }
            Ok(Event::Delete(policy)) => {
                info!(
                    policy = policy.name_any(),
                    "LinkPolicy deleted; evaluating objects again"
                );
                wake(changed);
            }
            Ok(Event::InitDone) => {
                if listed {
                    wake(changed);
                }
                listed = true;
            }
            Ok(Event::Init | Event::InitApply(_)) => {}
            Err(err) => warn!(error = %err, "watching LinkPolicies"),
        }
    }
}

/// Wakes the controllers when a namespace's labels change (what `namespaceSelector` reads);
/// other namespace changes cannot change a decision.
async fn follow_namespaces(
    events: impl Stream<Item = watcher::Result<Event<Namespace>>>,
    changed: &signal::Sender<u64>,
) {
    let mut labels: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(ns) | Event::InitApply(ns)) => {
                let name = ns.name_any();
                let now = ns.labels().clone();
                let before = labels.insert(name.clone(), now.clone());
                if before.is_some_and(|b| b != now) {
                    info!(
                        namespace = name,
                        "namespace labels changed; evaluating objects again"
                    );
                    wake(changed);
                }
            }
            Ok(Event::Delete(ns)) => {
                labels.remove(&ns.name_any());
            }
            Ok(Event::Init | Event::InitDone) => {}
            Err(err) => warn!(error = %err, "watching namespaces"),
        }
    }
}
