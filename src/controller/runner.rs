//! How every controller runs: the finalizer dispatch to `apply` / `cleanup` (or `apply` alone
//! for a kind that owns nothing outside the cluster), the error policy
//! (per-object backoff, reset on success; waiting is not failing), reconcile metrics and the
//! one log line per failure, and readiness once the cache has synced. A controller builds its
//! own `kube::runtime::Controller` (what it owns and watches) and implements [`Reconciler`];
//! the rest is here, once.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::runtime::ControllerReadiness;
use crate::telemetry::metrics::{Metrics, ReconcileResult};

/// One controller's reconcile logic; the runner supplies everything around it.
pub trait Reconciler: Send + Sync + 'static {
    /// The kind reconciled (namespaced).
    type Object: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Serialize
        + Send
        + Sync
        + 'static;
    /// What ends a pass early; [`Reconciler::classify`] says how the runner treats it.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The controller's name in metrics and logs (a bounded label value).
    const NAME: &'static str;
    /// The finalizer that keeps an object until [`Reconciler::cleanup`] succeeded; `None` for a
    /// kind whose objects own nothing outside the cluster, where a finalizer would only block
    /// deletion (of the object and of its namespace) while the operator is down.
    const FINALIZER: Option<&'static str>;
    /// Finalizers earlier versions put on this kind that guard nothing any more: removed from
    /// every object the controller sees, deleted or not (kinds without [`Self::FINALIZER`]).
    const RETIRED_FINALIZERS: &'static [&'static str] = &[];

    /// The client the finalizer is added and removed with.
    fn client(&self) -> Client;
    /// Where reconciles and retries are counted.
    fn metrics(&self) -> &Metrics;
    /// Brings the world in line with a live object. Must be idempotent.
    fn apply(
        &self,
        object: &Self::Object,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send;
    /// Undoes what `apply` did before the finalizer goes. Must be idempotent, and must work
    /// when `apply` never ran. Never called for a kind without [`Self::FINALIZER`].
    fn cleanup(
        &self,
        object: &Self::Object,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send {
        let _ = object;
        async { Ok(Action::await_change()) }
    }
    /// How a failure is retried.
    fn classify(error: &Self::Error) -> Failure;
}

/// How the runner treats an error of a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Not a failure: work under way elsewhere (a cleanup in AWS) that a finalizer can only
    /// express as an error. Looked at again after this long, without backoff; counts as a
    /// success.
    Waiting(Duration),
    /// AWS failed or throttled: backoff, and counted in `account_linker_aws_retries_total`.
    Aws,
    /// A write was answered 409 Conflict: the object moved under it (another writer, a stale
    /// read). Nothing is wrong that waiting cures, so looked at again within seconds however
    /// many came before ([`CONFLICT_CAP`]): the backoff of [`Failure::Other`] would leave an
    /// object untouched for minutes after a burst of conflicts ended.
    Conflict,
    /// Anything else (Kubernetes API, unreadable input): backoff.
    Other,
}

/// A reconcile's error as the runner sees it: the controller's own, or the finalizer's
/// bookkeeping failing.
pub type ReconcileError<E> = finalizer::Error<E>;

/// Exponential backoff, 2 s doubling to 5 min, with ±20 % jitter seeded by the clock: a
/// burst of failures (an AWS outage) does not come back in lockstep.
pub fn backoff(attempt: u32, now: Timestamp) -> Duration {
    doubling(
        Duration::from_secs(2),
        Duration::from_secs(300),
        attempt,
        now,
    )
}

/// `first` doubled `attempt` times, at most `cap`, with ±20 % jitter.
fn doubling(first: Duration, cap: Duration, attempt: u32, now: Timestamp) -> Duration {
    let base = first.saturating_mul(1u32 << attempt.min(16));
    jitter(base.min(cap), 0.2, now)
}

/// `d` spread by ±`fraction`, seeded by the clock's sub-second bits (a cheap, well-spread
/// source; jitter needs no CSPRNG).
pub fn jitter(d: Duration, fraction: f64, now: Timestamp) -> Duration {
    let unit = f64::from(now.subsec_nanosecond().unsigned_abs() % 1_000_000) / 1_000_000.0;
    d.mul_f64(1.0 - fraction + 2.0 * fraction * unit)
}

/// The longest wait after a conflict: a conflict storm never backs an object off for longer.
pub const CONFLICT_CAP: Duration = Duration::from_secs(10);

/// The failure class of a reconcile error: the controller's own errors are classified by the
/// controller, the finalizer's own (adding or removing it) are Kubernetes failures.
pub fn classify<R: Reconciler>(error: &ReconcileError<R::Error>) -> Failure {
    match error {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => R::classify(e),
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => kube_failure(e),
        _ => Failure::Other,
    }
}

/// The failure class of a Kubernetes API error: a 409 is a [`Failure::Conflict`].
pub fn kube_failure(error: &kube::Error) -> Failure {
    match error {
        kube::Error::Api(status) if status.code == 409 => Failure::Conflict,
        _ => Failure::Other,
    }
}

/// Consecutive failures per object: the backoff exponent. Reset by a success, so a fixed
/// problem is not followed by long waits, and so deleted objects do not linger here.
#[derive(Debug)]
pub struct Attempts<Key>(Mutex<HashMap<Key, u32>>);

impl<Key> Default for Attempts<Key> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<Key: Eq + Hash> Attempts<Key> {
    /// Counts one more failure; returns how many in a row.
    pub fn failed(&self, key: Key) -> u32 {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key).or_default();
        *n = n.saturating_add(1);
        *n
    }

    /// Forgets the failures of `key`.
    pub fn succeeded(&self, key: &Key) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// The error policy as a decision: when to look again after `failure`, given the failures in a
/// row so far (`attempt` counts this one).
pub fn retry_after(failure: Failure, attempt: u32, now: Timestamp) -> Duration {
    match failure {
        Failure::Waiting(wait) => wait,
        Failure::Aws | Failure::Other => backoff(attempt, now),
        // 0.5 s doubling, capped: the attempts count every failure in a row, conflicts or not.
        Failure::Conflict => doubling(Duration::from_millis(500), CONFLICT_CAP, attempt, now),
    }
}

/// A controller of the objects of `api` whose cache holds them trimmed of what no controller
/// reads ([`crate::controller::link_cache::trim`]): the cache is most of the operator's memory.
pub fn trimmed<K>(api: Api<K>, config: watcher::Config) -> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (objects, store) = trimmed_objects(api, config);
    Controller::for_stream(objects, store)
}

/// Like [`trimmed`], and a change of an object's status alone does not reconcile it: a
/// controller whose passes write status (and requeue themselves while work is under way)
/// would otherwise follow each of its own writes with one more pass, as often as its status
/// changes — at fleet scale, once per child that verified.
pub fn trimmed_ignoring_status<K>(api: Api<K>, config: watcher::Config) -> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (objects, store) = trimmed_objects(api, config);
    let objects = objects.predicate_filter(beyond_status, PredicateConfig::default());
    Controller::for_stream(objects, store)
}

fn trimmed_objects<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    Store<K>,
)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let objects = reflector::reflector(
        writer,
        watcher(api, config).modify(crate::controller::link_cache::trim),
    )
    .applied_objects();
    (objects, store)
}

/// What a reconcile of an object acts on besides its status: its generation (the spec), labels,
/// annotations (requests), finalizers and deletion. Equal for two versions of an object that
/// differ in status only.
pub fn beyond_status<K: Resource>(object: &K) -> Option<u64> {
    use std::hash::Hasher;
    let meta = object.meta();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.labels.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    let deleting = meta.deletion_timestamp.as_ref().map(|t| t.0.to_string());
    deleting.hash(&mut hasher);
    Some(hasher.finish())
}

/// What the kube runtime hands every reconcile: the controller and the runner's memory.
struct Shared<R: Reconciler> {
    reconciler: Arc<R>,
    attempts: Attempts<ObjectRef<R::Object>>,
}

/// Runs `controller` with `reconciler` until `shutdown` resolves. `readiness` is marked once the
/// controller's cache has synced.
pub async fn run<R: Reconciler>(
    controller: Controller<R::Object>,
    reconciler: Arc<R>,
    readiness: ControllerReadiness,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let store = controller.store();
    let synced = tokio::spawn(async move {
        if until_ready(&store).await {
            readiness.synced();
            info!(controller = R::NAME, "cache synced");
        }
    });
    let shared = Arc::new(Shared {
        reconciler,
        attempts: Attempts::default(),
    });
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<R>, error_policy::<R>, shared)
        .for_each(|result| async move {
            if let Err(err) = result {
                debug!(controller = R::NAME, error = %err, "reconcile ended with an error");
            }
        })
        .await;
    synced.abort();
}

/// Waits until `store` has synced; `false` when its writer went away first. A store wakes only
/// the last task that waited on it, and the controller itself waits on its store too, so look
/// again every second instead of relying on the wake-up.
pub async fn until_ready<K>(store: &Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(1), store.wait_until_ready()).await {
            Ok(result) => return result.is_ok(),
            Err(_) => continue,
        }
    }
}

async fn reconcile<R: Reconciler>(
    object: Arc<R::Object>,
    shared: Arc<Shared<R>>,
) -> Result<Action, ReconcileError<R::Error>> {
    let started = Instant::now();
    let key = ObjectRef::from_obj(&*object);
    let api: Api<R::Object> = Api::namespaced(
        shared.reconciler.client(),
        &object.namespace().unwrap_or_default(),
    );
    let reconciler = &shared.reconciler;
    let result = match R::FINALIZER {
        Some(name) => {
            finalizer::finalizer(&api, name, object, |event| async move {
                match event {
                    FinalizerEvent::Apply(object) => reconciler.apply(&object).await,
                    FinalizerEvent::Cleanup(object) => reconciler.cleanup(&object).await,
                }
            })
            .await
        }
        None => without_finalizer(&api, reconciler.as_ref(), &object).await,
    };
    let succeeded = match &result {
        Ok(_) => true,
        Err(err) => matches!(classify::<R>(err), Failure::Waiting(_)),
    };
    if succeeded {
        shared.attempts.succeeded(&key);
    }
    let outcome = if succeeded {
        ReconcileResult::Success
    } else {
        ReconcileResult::Error
    };
    reconciler
        .metrics()
        .reconcile(R::NAME, outcome, started.elapsed());
    result
}

/// A pass of a kind without a finalizer: retired finalizers go first (with the resourceVersion
/// read, so a concurrent change of the list is a conflict, retried, never a lost finalizer of
/// someone else's); a deleting object needs nothing more.
async fn without_finalizer<R: Reconciler>(
    api: &Api<R::Object>,
    reconciler: &R,
    object: &R::Object,
) -> Result<Action, ReconcileError<R::Error>> {
    let finalizers = object.finalizers();
    let kept: Vec<&String> = finalizers
        .iter()
        .filter(|f| !R::RETIRED_FINALIZERS.contains(&f.as_str()))
        .collect();
    if kept.len() != finalizers.len() {
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": object.resource_version(),
                "finalizers": kept,
            }
        });
        api.patch(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(finalizer::Error::RemoveFinalizer)?;
        info!(controller = R::NAME, name = %object.name_any(), namespace = %object.namespace().unwrap_or_default(), "retired finalizer removed");
    }
    if object.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    reconciler
        .apply(object)
        .await
        .map_err(finalizer::Error::ApplyFailed)
}

fn error_policy<R: Reconciler>(
    object: Arc<R::Object>,
    err: &ReconcileError<R::Error>,
    shared: Arc<Shared<R>>,
) -> Action {
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_default();
    let failure = classify::<R>(err);
    if let Failure::Waiting(wait) = failure {
        debug!(controller = R::NAME, name, namespace, reason = %err, "waiting");
        return Action::requeue(wait);
    }
    let attempt = shared.attempts.failed(ObjectRef::from_obj(&*object));
    let delay = retry_after(failure, attempt, Timestamp::now());
    if failure == Failure::Aws {
        shared.reconciler.metrics().aws_retry(R::NAME);
    }
    warn!(controller = R::NAME, name, namespace, error = %err, attempt, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LinkedAccount;

    #[derive(Debug, thiserror::Error)]
    enum FakeError {
        #[error("waiting")]
        Waiting,
        #[error("aws")]
        Aws,
        #[error("kube")]
        Kube,
    }

    struct Fake;

    impl Reconciler for Fake {
        type Object = LinkedAccount;
        type Error = FakeError;
        const NAME: &'static str = "fake";
        const FINALIZER: Option<&'static str> = Some("example.com/fake");

        fn client(&self) -> Client {
            unreachable!("not reconciled")
        }
        fn metrics(&self) -> &Metrics {
            unreachable!("not reconciled")
        }
        async fn apply(&self, _: &LinkedAccount) -> Result<Action, FakeError> {
            unreachable!("not reconciled")
        }
        async fn cleanup(&self, _: &LinkedAccount) -> Result<Action, FakeError> {
            unreachable!("not reconciled")
        }
        fn classify(error: &FakeError) -> Failure {
            match error {
                FakeError::Waiting => Failure::Waiting(Duration::from_secs(7)),
                FakeError::Aws => Failure::Aws,
                FakeError::Kube => Failure::Other,
            }
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn apply_and_cleanup_errors_are_classified_by_the_controller() {
        let table = [
            (finalizer::Error::ApplyFailed(FakeError::Aws), Failure::Aws),
            (
                finalizer::Error::CleanupFailed(FakeError::Waiting),
                Failure::Waiting(Duration::from_secs(7)),
            ),
            (
                finalizer::Error::CleanupFailed(FakeError::Kube),
                Failure::Other,
            ),
            (finalizer::Error::UnnamedObject, Failure::Other),
            (finalizer::Error::InvalidFinalizer, Failure::Other),
        ];
        for (error, want) in table {
            assert_eq!(classify::<Fake>(&error), want, "{error}");
        }
    }

    #[test]
    fn waiting_requeues_without_backoff_and_failures_back_off() {
        let wait = Failure::Waiting(Duration::from_secs(7));
        assert_eq!(retry_after(wait, 9, now()), Duration::from_secs(7));
        let first = retry_after(Failure::Other, 1, now());
        let fifth = retry_after(Failure::Aws, 5, now());
        assert!(first < fifth, "{first:?} {fifth:?}");
    }

    fn api_error(code: u16) -> kube::Error {
        let status = kube::core::Status::failure("the object has been modified", "Conflict");
        kube::Error::Api(Box::new(status.with_code(code)))
    }

    /// Issue 14 (a storm of 409s): the finalizer's removal refused again and again must not
    /// back the object off for minutes; its deletion would hang long after the storm.
    #[test]
    fn a_conflict_is_looked_at_again_within_seconds_however_many_came_before() {
        let refused: ReconcileError<FakeError> = finalizer::Error::RemoveFinalizer(api_error(409));
        for attempt in [1, 5, 9, 40] {
            let wait = retry_after(classify::<Fake>(&refused), attempt, now());
            assert!(
                wait <= Duration::from_secs(12),
                "attempt {attempt}: {wait:?}"
            );
        }
        let other: ReconcileError<FakeError> = finalizer::Error::AddFinalizer(api_error(500));
        assert!(retry_after(classify::<Fake>(&other), 9, now()) > Duration::from_secs(60));
    }

    #[test]
    fn only_a_409_is_a_conflict() {
        let rows = [
            (409, Failure::Conflict),
            (404, Failure::Other),
            (422, Failure::Other),
            (500, Failure::Other),
        ];
        for (code, want) in rows {
            assert_eq!(kube_failure(&api_error(code)), want, "{code}");
        }
    }

    #[test]
    fn attempts_count_per_object_and_reset_on_success() {
        let attempts = Attempts::default();
        assert_eq!(attempts.failed("a"), 1);
        assert_eq!(attempts.failed("a"), 2);
        assert_eq!(attempts.failed("b"), 1);
        attempts.succeeded(&"a");
        assert_eq!(attempts.failed("a"), 1);
        assert_eq!(attempts.failed("b"), 2);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0, now()) <= Duration::from_millis(2400));
        assert!(backoff(3, now()) >= Duration::from_millis(12800));
        assert!(backoff(40, now()) <= Duration::from_secs(360));
    }

    #[tokio::test]
    async fn readiness_is_seen_by_every_waiter_not_only_the_last() {
        let (store, mut writer) = kube::runtime::reflector::store::<LinkedAccount>();
        let first = tokio::spawn({
            let store = store.clone();
            async move { until_ready(&store).await }
        });
        tokio::task::yield_now().await;
        // A later waiter takes the store's one wake-up.
        let later = tokio::spawn({
            let store = store.clone();
            async move { store.wait_until_ready().await.is_ok() }
        });
        tokio::task::yield_now().await;
        writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
        let seen = tokio::time::timeout(Duration::from_secs(5), first).await;
        assert!(seen.expect("the first waiter saw readiness").unwrap());
        assert!(later.await.unwrap());
    }

    #[test]
    fn a_change_of_status_alone_is_not_a_change_worth_a_pass() {
        let base: LinkedAccount = serde_json::from_value(serde_json::json!({
            "apiVersion": "accountlinker.dev/v1alpha1",
            "kind": "LinkedAccount",
            "metadata": {"name": "l", "generation": 1, "resourceVersion": "1"},
            "spec": {"accountId": "111111111111"},
        }))
        .unwrap();
        let changed = |f: &dyn Fn(&mut LinkedAccount)| {
            let mut other = base.clone();
            f(&mut other);
            beyond_status(&other) != beyond_status(&base)
        };
        // (what changed, whether it is worth a pass)
        type Change<'a> = &'a dyn Fn(&mut LinkedAccount);
        let rows: [(&str, Change, bool); 6] = [
            ("status", &|l| l.status = Some(Default::default()), false),
            (
                "resourceVersion",
                &|l| l.metadata.resource_version = Some("2".into()),
                false,
            ),
            ("generation", &|l| l.metadata.generation = Some(2), true),
            (
                "annotation",
                &|l| {
                    l.metadata.annotations = Some([("a".to_string(), "1".to_string())].into());
                },
                true,
            ),
            (
                "finalizer",
                &|l| l.metadata.finalizers = Some(vec!["f".into()]),
                true,
            ),
            (
                "deletion",
                &|l| {
                    l.metadata.deletion_timestamp =
                        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
                },
                true,
            ),
        ];
        for (what, change, worth) in rows {
            assert_eq!(changed(change), worth, "{what}");
        }
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        for nanos in [0, 250_000, 999_999] {
            let t = Timestamp::new(1_800_000_000, nanos).unwrap();
            let d = jitter(Duration::from_secs(100), 0.1, t);
            assert!(
                d >= Duration::from_secs(90) && d <= Duration::from_secs(110),
                "{d:?}"
            );
        }
    }
}
