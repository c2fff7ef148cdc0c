//! Kubernetes side of the tests: namespaces, creating the operator's objects, reading their
//! conditions, waiting for them, Events, and running `kubectl`.

use std::future::Future;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use account_linker::api::{BulkRegistration, LinkedAccount, MemberAccount};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name no other test of this run uses: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A namespace of one test; deleted by [`TestNamespace::cleanup`].
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    /// Creates a fresh namespace whose name starts with `prefix`.
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = unique(prefix);
        let ns: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
        }))
        .expect("namespace object");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self {
            name,
            client: client.clone(),
        }
    }

    /// Deletes the namespace (the controller manager finishes it in the background).
    pub async fn cleanup(self) {
        let _ = Api::<Namespace>::all(self.client)
            .delete(&self.name, &DeleteParams::default())
            .await;
    }
}

/// An object of kind `K` named `name` with `spec`, as a user would write it.
pub fn object<K>(name: &str, spec: Value) -> K
where
    K: Resource<DynamicType = ()> + DeserializeOwned,
{
    serde_json::from_value(json!({
        "apiVersion": K::api_version(&()), "kind": K::kind(&()),
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("a valid {}: {e}", K::kind(&())))
}

/// Creates the object `name` of kind `K` with `spec`.
pub async fn create<K>(api: &Api<K>, name: &str, spec: Value) -> K
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), &object::<K>(name, spec))
        .await
        .unwrap_or_else(|e| panic!("create {} {name}: {e}", K::kind(&())))
}

/// The operator's kinds: each reports conditions and the generation they describe.
pub trait Conditions {
    fn conditions(&self) -> &[Condition];
    fn observed_generation(&self) -> Option<i64>;
}

macro_rules! conditions {
    ($($kind:ty),*) => {$(
        impl Conditions for $kind {
            fn conditions(&self) -> &[Condition] {
                self.status.as_ref().map_or(&[], |s| &s.conditions)
            }
            fn observed_generation(&self) -> Option<i64> {
                self.status.as_ref()?.observed_generation
            }
        }
    )*};
}

conditions!(LinkedAccount, BulkRegistration, MemberAccount);

/// Status and reason of condition `type_`.
pub fn condition<'a>(obj: &'a impl Conditions, type_: &str) -> Option<(&'a str, &'a str)> {
    obj.conditions()
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
}

/// The message of condition `type_` (empty if there is no such condition).
pub fn message<'a>(obj: &'a impl Conditions, type_: &str) -> &'a str {
    obj.conditions()
        .iter()
        .find(|c| c.type_ == type_)
        .map_or("", |c| c.message.as_str())
}

/// Whether condition `type_` has `status` (and `reason`, when given).
pub fn has(obj: &impl Conditions, type_: &str, status: &str, reason: Option<&str>) -> bool {
    condition(obj, type_).is_some_and(|(s, r)| s == status && reason.is_none_or(|want| want == r))
}

/// Polls `check` every 250 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `check` holds for the object `name`, and returns it.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&K) -> bool,
) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let check = &check;
    eventually(timeout, &format!("{name}: {what}"), || async move {
        let obj = api.get_opt(name).await.ok()??;
        check(&obj).then_some(obj)
    })
    .await
}

/// Waits until condition `type_` of `name` has `status` (and `reason`, when given).
pub async fn wait_condition<K>(
    api: &Api<K>,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
    timeout: Duration,
) -> K
where
    K: Resource + Conditions + Clone + DeserializeOwned + std::fmt::Debug,
{
    let what = format!("{type_}={status} {}", reason.unwrap_or_default());
    wait_for(api, name, &what, timeout, |o| has(o, type_, status, reason)).await
}

/// Waits until `Ready` is True for the object's current generation.
pub async fn wait_ready<K>(api: &Api<K>, name: &str, timeout: Duration) -> K
where
    K: Resource + Conditions + Clone + DeserializeOwned + std::fmt::Debug,
{
    let generation = api.get(name).await.expect("get").meta().generation;
    wait_for(
        api,
        name,
        "Ready=True for the current generation",
        timeout,
        |o| has(o, "Ready", "True", None) && o.observed_generation() >= generation,
    )
    .await
}

/// Waits until the object `name` no longer exists (its finalizers ran), or panics after `timeout`.
pub async fn gone<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    eventually(timeout, &format!("{name} deleted"), || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

/// Reasons of the Events about the object `name` in `ns`, oldest first.
pub async fn event_reasons(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut list: Vec<_> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect();
    list.sort_by_key(|e| e.event_time.clone().map(|t| t.0));
    list.into_iter().filter_map(|e| e.reason).collect()
}

/// Runs a command with `stdin` (empty if none) and returns its output.
pub fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(cmd: Command, stdin: Option<&str>) -> String {
    let what = format!("{cmd:?}");
    let out = run(cmd, stdin);
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
