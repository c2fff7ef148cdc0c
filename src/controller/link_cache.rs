//! One cache of LinkedAccounts per watched namespace, shared by the controllers that read
//! them: the LinkedAccount controller reconciles from it, the BulkRegistration controller reads
//! a registration's children from it (instead of listing them from the API server on every
//! pass) and is triggered by its changes. At fleet scale LinkedAccounts are most of what the
//! operator holds in memory, so the cache keeps one copy, trimmed of what no controller reads
//! ([`trim`]).

use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};

use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use crate::api::LinkedAccount;

/// Events a slow subscriber may fall behind by before the watch waits for it.
const BUFFER: usize = 1024;

/// The annotation `kubectl apply` (client side) leaves: a copy of the whole object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what no controller reads from a cached object: `managedFields` (every field manager's
/// field set; on a child written by two managers, often the larger part of the object) and
/// the last-applied copy of `kubectl apply`.
pub fn trim<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// The shared cache of one namespace (or of all, when the operator watches all).
#[derive(Clone)]
pub struct LinkCache {
    pub store: Store<LinkedAccount>,
    api: Api<LinkedAccount>,
}

/// Every change of a cached object: the stream one controller reconciles from. There is
/// exactly one per cache, and it must be read: the watch waits for a subscriber that falls
/// [`BUFFER`] events behind, so a handle kept and never read would stop it.
pub type Changes = ReflectHandle<LinkedAccount>;

impl LinkCache {
    /// The cache, its one stream of changes, and the watch that fills both; the watch must be
    /// driven for as long as any controller reads the cache (the controllers wait on it).
    pub fn start(
        api: Api<LinkedAccount>,
    ) -> (Self, Changes, impl Future<Output = ()> + Send + 'static) {
        let (store, writer) = reflector::store_shared(BUFFER);
        let subscriber = writer
            .subscribe()
            .expect("a shared store hands out subscribers");
        let watch = watcher(api.clone(), watcher::Config::default().any_semantic())
            .modify(trim)
            .default_backoff()
            .reflect_shared(writer)
            .for_each(|event| async move {
                if let Err(err) = event {
                    tracing::warn!(error = %err, "watching LinkedAccounts");
                }
            });
        (Self { store, api }, subscriber, watch)
    }

    /// The metadata of every change of the LinkedAccounts labelled `label`, deletions
    /// included (the shared cache's subscribers see no deletions): what triggers an owner.
    pub fn touched(
        &self,
        label: &str,
    ) -> impl Stream<Item = PartialObjectMeta<LinkedAccount>> + Send + 'static {
        let client = self.api.clone().into_client();
        let api: Api<PartialObjectMeta<LinkedAccount>> = match self.api.namespace() {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        };
        watcher(api, watcher::Config::default().labels(label))
            .default_backoff()
            .touched_objects()
            .filter_map(|touched| std::future::ready(touched.ok()))
    }
}

/// The caches of every watched namespace, for a controller that serves them all with one
/// context.
#[derive(Default)]
pub struct LinkStores(Mutex<Vec<Store<LinkedAccount>>>);

impl LinkStores {
    pub fn add(&self, store: Store<LinkedAccount>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(store);
    }

    /// The cached LinkedAccounts in `namespace` that satisfy `keep`.
    pub fn select(
        &self,
        namespace: &str,
        keep: impl Fn(&LinkedAccount) -> bool,
    ) -> Vec<Arc<LinkedAccount>> {
        let stores = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        stores
            .iter()
            .flat_map(Store::state)
            .filter(|l| l.namespace().as_deref() == Some(namespace) && keep(l))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    use super::*;

    fn link(ns: &str, name: &str, team: &str) -> LinkedAccount {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "accountlinker.dev/v1alpha1",
            "kind": "LinkedAccount",
            "metadata": {"name": name, "namespace": ns, "labels": {"team": team}},
            "spec": {"accountId": "111111111111"},
        }))
        .unwrap()
    }

    #[test]
    fn a_selection_reads_every_namespaces_cache_and_keeps_one_namespace() {
        let stores = LinkStores::default();
        for objects in [
            vec![link("a", "1", "x"), link("a", "2", "y")],
            vec![link("b", "3", "x")],
        ] {
            let (store, mut writer) = reflector::store::<LinkedAccount>();
            for object in objects {
                writer.apply_watcher_event(&watcher::Event::Apply(object));
            }
            stores.add(store);
        }
        let names = |ns: &str, team: &str| {
            let mut names: Vec<String> = stores
                .select(ns, |l| {
                    l.labels().get("team").map(String::as_str) == Some(team)
                })
                .iter()
                .map(|l| l.name_any())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names("a", "x"), ["1"]);
        assert_eq!(names("b", "x"), ["3"]);
        assert!(names("c", "x").is_empty());
    }

    #[test]
    fn trimming_drops_managed_fields_and_the_last_applied_copy_only() {
        let mut link: LinkedAccount = serde_json::from_value(serde_json::json!({
            "apiVersion": "accountlinker.dev/v1alpha1",
            "kind": "LinkedAccount",
            "metadata": {
                "name": "l",
                "resourceVersion": "7",
                "labels": {"team": "a"},
                "annotations": {LAST_APPLIED: "{…}", "accountlinker.dev/verify-requested-at": "1"},
            },
            "spec": {"accountId": "111111111111"},
        }))
        .unwrap();
        link.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        trim(&mut link);
        assert!(link.metadata.managed_fields.is_none());
        let annotations = link.annotations();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert!(annotations.contains_key("accountlinker.dev/verify-requested-at"));
        assert_eq!(link.labels().get("team").map(String::as_str), Some("a"));
        assert_eq!(link.resource_version().as_deref(), Some("7"));
    }
}
