//! One cache of LinkedAccounts per watched namespace, shared by the controllers that read
//! them: the LinkedAccount controller reconciles from it, the BulkRegistration controller reads
//! a registration's children from it (instead of listing them from the API server on every
//! pass) and is triggered by its changes. At fleet scale LinkedAccounts are most of what the
//! operator holds in memory, so the cache keeps one copy, trimmed of what no controller reads
//! ([`trim`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};

use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
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

/// Every change of a cached object, as one reader sees it. Each handle must be read: the watch
/// waits for a subscriber that falls [`BUFFER`] events behind, so a handle kept and never read
/// would stop it.
pub type Changes = ReflectHandle<LinkedAccount>;

/// The two readers of a cache's changes.
pub struct Feeds {
    /// What the LinkedAccount controller reconciles from.
    pub reconcile: Changes,
    /// What triggers the owners of LinkedAccounts ([`owner_changes`]).
    pub owners: Changes,
}

/// What an owner reads of a LinkedAccount: the spec, labels, annotations, owners, deletion, the
/// stack instance and the conditions. A verification that changes nothing but
/// `lastVerifiedTime` (every link, every verify interval) leaves it the same, so it does not
/// reconcile the owner; an owner that needs those times (a rotation counting verifications
/// with the new token) looks again by itself.
pub fn owner_view(link: &LinkedAccount) -> u64 {
    let status = link.status.as_ref();
    let conditions: Vec<_> = status
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| (&c.type_, &c.status, &c.reason, &c.message))
        .collect();
    hash(&serde_json::json!([
        link.spec,
        link.metadata.uid,
        link.metadata.labels,
        link.metadata.annotations,
        owner_uids(link),
        link.metadata.deletion_timestamp,
        status.and_then(|s| s.stack_instance.as_ref()),
        conditions,
    ]))
}

/// What the LinkedAccount controller reads of a LinkedAccount that others write: the spec and
/// generation, labels and annotations (a verification request), owners, deletion and
/// finalizers, and the stack instance its registration records. The rest of the status is the
/// controller's own: its status write is not a reason to look again (at 10,000 links that
/// write is one event per verification, and each would otherwise cost a reconcile that finds
/// nothing due). What it waits for next is already scheduled by the reconcile that wrote it.
pub fn reconcile_view(link: &LinkedAccount) -> u64 {
    let meta = &link.metadata;
    hash(&serde_json::json!([
        link.spec,
        meta.uid,
        meta.generation,
        meta.labels,
        meta.annotations,
        owner_uids(link),
        meta.deletion_timestamp,
        meta.finalizers,
        link.status.as_ref().and_then(|s| s.stack_instance.as_ref()),
    ]))
}

fn owner_uids(link: &LinkedAccount) -> Vec<&str> {
    link.metadata
        .owner_references
        .iter()
        .flatten()
        .map(|o| o.uid.as_str())
        .collect()
}

fn hash(view: &serde_json::Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    view.to_string().hash(&mut hasher);
    hasher.finish()
}

/// The changes of `changes` whose `view` differs from the last one seen of the same object
/// (the first sight of an object always passes; so does a recreated one, its uid being part
/// of every view). Views of objects gone from `store` are forgotten as they pile up.
pub fn changes_of(
    changes: Changes,
    store: Store<LinkedAccount>,
    view: fn(&LinkedAccount) -> u64,
) -> impl Stream<Item = Arc<LinkedAccount>> + Send + 'static {
    let mut seen: HashMap<ObjectRef<LinkedAccount>, u64> = HashMap::new();
    changes.filter_map(move |link| {
        let seen_view = view(&link);
        let key = ObjectRef::new(&link.name_any()).within(&link.namespace().unwrap_or_default());
        let changed = seen.insert(key, seen_view) != Some(seen_view);
        if seen.len() > 2 * store.len() + FORGET_AFTER {
            seen.retain(|key, _| store.get(key).is_some());
        }
        std::future::ready(changed.then_some(link))
    })
}

/// Views of deleted objects kept before [`changes_of`] forgets them (beyond twice the cache).
const FORGET_AFTER: usize = 1024;

/// The changes of `changes` that change what an owner reads ([`owner_view`]).
pub fn owner_changes(
    changes: Changes,
    store: Store<LinkedAccount>,
) -> impl Stream<Item = Arc<LinkedAccount>> + Send + 'static {
    changes_of(changes, store, owner_view)
}

impl LinkCache {
    /// The cache, its readers' streams of changes, and the watch that fills them; the watch must be
    /// driven for as long as any controller reads the cache (the controllers wait on it).
    pub fn start(
        api: Api<LinkedAccount>,
    ) -> (Self, Feeds, impl Future<Output = ()> + Send + 'static) {
        let (store, writer) = reflector::store_shared(BUFFER);
        let subscribe = || {
            writer
                .subscribe()
                .expect("a shared store hands out subscribers")
        };
        let feeds = Feeds {
            reconcile: subscribe(),
            owners: subscribe(),
        };
        let watch = watcher(api.clone(), watcher::Config::default().any_semantic())
            .modify(trim)
            .default_backoff()
            .reflect_shared(writer)
            .for_each(|event| async move {
                if let Err(err) = event {
                    tracing::warn!(error = %err, "watching LinkedAccounts");
                }
            });
        (Self { store, api }, feeds, watch)
    }

    /// The LinkedAccounts labelled `label` that are deleted (the shared cache's readers see
    /// no deletions), as metadata: what makes an owner recreate or forget a child.
    pub fn deleted(
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
            .filter_map(|event| {
                std::future::ready(match event {
                    Ok(watcher::Event::Delete(meta)) => Some(meta),
                    _ => None,
                })
            })
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

    /// A verification that only moves `lastVerifiedTime` does not reconcile the owner; what
    /// the owner reads does.
    #[test]
    fn an_owner_sees_changes_of_what_it_reads_only() {
        use crate::api::LinkedAccountStatus;
        use crate::api::linked_account::StackInstanceRef;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let time =
            |s: i64| Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + s).unwrap());
        let condition = |status: &str| Condition {
            type_: "RoleAssumable".into(),
            status: status.into(),
            reason: "Verified".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: time(0),
        };
        let mut base = link("a", "1", "x");
        base.status = Some(LinkedAccountStatus {
            conditions: vec![condition("True")],
            last_verified_time: Some(time(10)),
            ..LinkedAccountStatus::default()
        });
        let differs = |change: &dyn Fn(&mut LinkedAccount)| {
            let mut other = base.clone();
            change(&mut other);
            owner_view(&other) != owner_view(&base)
        };
        type Change<'a> = &'a dyn Fn(&mut LinkedAccount);
        let rows: [(&str, Change, bool); 6] = [
            (
                "verified again",
                &|l| l.status.as_mut().unwrap().last_verified_time = Some(time(70)),
                false,
            ),
            (
                "resourceVersion",
                &|l| l.metadata.resource_version = Some("9".into()),
                false,
            ),
            (
                "a condition",
                &|l| l.status.as_mut().unwrap().conditions = vec![condition("False")],
                true,
            ),
            (
                "the stack instance",
                &|l| {
                    l.status.as_mut().unwrap().stack_instance = Some(StackInstanceRef::default());
                },
                true,
            ),
            (
                "the spec",
                &|l| l.spec.account_id = "222222222222".into(),
                true,
            ),
            (
                "a label",
                &|l| {
                    l.metadata.labels = Some([("team".to_string(), "y".to_string())].into());
                },
                true,
            ),
        ];
        for (what, change, seen) in rows {
            assert_eq!(differs(change), seen, "{what}");
        }
    }

    /// The reconciler's feed passes a first sight, what others change (a verification
    /// request, the stack instance, the spec) and a recreated object; it drops the controller's
    /// own status writes and repeats.
    #[tokio::test]
    async fn the_reconciler_sees_what_others_change_and_not_its_own_status_writes() {
        use crate::api::LinkedAccountStatus;
        use crate::api::linked_account::StackInstanceRef;
        let (store, writer) = reflector::store_shared::<LinkedAccount>(64);
        let feed = writer.subscribe().expect("a shared store");
        let mut base = link("a", "1", "x");
        base.metadata.uid = Some("first".into());
        type Change<'a> = &'a dyn Fn(&mut LinkedAccount);
        let steps: [(&str, Change, bool); 7] = [
            ("created", &|_| {}, true),
            (
                "its own status write",
                &|l| {
                    l.status = Some(LinkedAccountStatus {
                        role_arn: Some("arn".into()),
                        ..LinkedAccountStatus::default()
                    });
                },
                false,
            ),
            (
                "a verification request",
                &|l| {
                    l.metadata.annotations =
                        Some([("accountlinker.dev/verify-requested-at".into(), "1".into())].into());
                },
                true,
            ),
            (
                "the registration records the instance",
                &|l| {
                    l.status.get_or_insert_default().stack_instance =
                        Some(StackInstanceRef::default());
                },
                true,
            ),
            (
                "verified again",
                &|l| l.status.get_or_insert_default().account_name = Some("prod".into()),
                false,
            ),
            (
                "the spec",
                &|l| l.spec.account_id = "222222222222".into(),
                true,
            ),
            (
                "recreated alike",
                &|l| l.metadata.uid = Some("second".into()),
                true,
            ),
        ];
        // One change at a time: the feed hands out the cache's latest object.
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let watch = tokio::spawn(rx.reflect_shared(writer).for_each(|_| async {}));
        let mut passed = Box::pin(changes_of(feed, store, reconcile_view));
        let mut object = base;
        for (version, (what, change, seen)) in steps.iter().enumerate() {
            change(&mut object);
            object.metadata.resource_version = Some(version.to_string());
            tx.unbounded_send(Ok(watcher::Event::Apply(object.clone())))
                .expect("the watch runs");
            let next = tokio::time::timeout(std::time::Duration::from_millis(300), passed.next());
            let got = next.await.ok().flatten().and_then(|l| l.resource_version());
            let expected = seen.then(|| version.to_string());
            assert_eq!(got, expected, "{what}");
        }
        drop(tx);
        watch.await.expect("the watch ends");
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
