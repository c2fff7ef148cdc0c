//! What the AWS fault and soak tests share: a fleet of healthy objects (standalone
//! LinkedAccounts and one BulkRegistration's children), a watch that records every condition
//! transition as it happens (not polls, which miss a flap between two looks), request counts
//! per service, and samples of the operator's memory and open file descriptors.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use account_linker::api::{BulkRegistration, LinkedAccount};

use super::{Conditions, Context, HUB_ACCOUNT, create, eventually, unique};

/// Whether the full-size scenarios run (`ACCOUNT_LINKER_CHAOS=full`, `make chaos`).
pub fn chaos_full() -> bool {
    std::env::var("ACCOUNT_LINKER_CHAOS").is_ok_and(|v| v == "full")
}

/// Prints one `CHAOS {json}` line of figures, for the report.
pub fn report_chaos(figures: &Value) {
    println!("CHAOS {figures}");
}

/// The verification request annotation (see docs/linkedaccount.md).
const VERIFY_REQUESTED_AT: &str = "accountlinker.dev/verify-requested-at";
/// Attempts per AWS call the operator makes (src/aws/client.rs `MAX_ATTEMPTS`).
pub const SDK_ATTEMPTS: u64 = 2;

/// Healthy objects: `standalone` LinkedAccounts on roles an administrator deployed, and one
/// BulkRegistration deploying the role to `children` accounts of an OU of their own.
pub struct Fleet {
    pub standalone: Vec<String>,
    pub registration: String,
    pub children: usize,
}

impl Fleet {
    /// Creates the fleet (every link verified every `verify_interval`) and waits until every
    /// object is Ready.
    pub async fn create(
        ctx: &Context,
        standalone: usize,
        children: usize,
        verify_interval: &str,
        ready_within: Duration,
    ) -> Self {
        let external_id = "chaos-fleet-external-id";
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "fleet-xid", "labels": {"accountlinker.dev/external-id": "true"}},
            "stringData": {"externalId": external_id},
        }))
        .expect("secret");
        ctx.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .expect("create the ExternalId Secret");
        let own = ctx
            .aws
            .create_accounts(&unique("solo"), standalone, None)
            .await;
        let links = ctx.api::<LinkedAccount>();
        let mut names = Vec::with_capacity(standalone);
        for (n, account) in own.iter().enumerate() {
            ctx.aws.put_role(account, external_id, HUB_ACCOUNT).await;
            let name = format!("solo-{n}");
            create(
                &links,
                &name,
                json!({
                    "accountId": account,
                    "externalId": {"secretRef": {"name": "fleet-xid", "key": "externalId"}},
                    "verifyInterval": verify_interval,
                }),
            )
            .await;
            names.push(name);
        }
        Self::register(ctx, children, verify_interval).await;
        let fleet = Self {
            standalone: names,
            registration: "fleet".into(),
            children,
        };
        fleet.wait_ready(ctx, ready_within).await;
        fleet
    }

    /// Creates `children` accounts in an OU of their own and the BulkRegistration "fleet"
    /// deploying the role to them (every link verified every `verify_interval`); returns the
    /// name of its StackSet, without waiting.
    pub async fn register(ctx: &Context, children: usize, verify_interval: &str) -> String {
        let stack_set = unique("fleet");
        let ou = ctx.aws.create_ou(&unique("fleet"), None).await;
        ctx.aws
            .create_accounts(&unique("child"), children, Some(&ou))
            .await;
        create(
            &ctx.api::<BulkRegistration>(),
            "fleet",
            json!({
                "stackSet": {"permissionModel": "ServiceManaged", "name": stack_set},
                "template": {"builtin": {}},
                "targets": {"organizationalUnitIds": [ou]},
                "regions": ["us-east-1"],
                "linkTemplate": {"verifyInterval": verify_interval},
                "operationPreferences": {
                    "maxConcurrentCount": 100,
                    "failureToleranceCount": 10,
                    "concurrencyMode": "SoftFailureTolerance"
                },
            }),
        )
        .await;
        stack_set
    }

    /// LinkedAccounts the fleet should have: standalone ones and the children.
    pub fn links(&self) -> usize {
        self.standalone.len() + self.children
    }

    /// Waits until every LinkedAccount and the registration are Ready (and the registration
    /// has no operation in flight).
    pub async fn wait_ready(&self, ctx: &Context, timeout: Duration) {
        let want = self.links();
        eventually(timeout, "every object of the fleet Ready", || async {
            let links = ctx
                .api::<LinkedAccount>()
                .list(&ListParams::default())
                .await
                .ok()?;
            let ready = links.iter().filter(|l| is_ready(*l)).count();
            let bulk = ctx
                .api::<BulkRegistration>()
                .get(&self.registration)
                .await
                .ok()?;
            let settled = is_ready(&bulk) && bulk.status.as_ref()?.operation.is_none();
            (links.items.len() == want && ready == want && settled).then_some(())
        })
        .await;
    }

    /// Asks every LinkedAccount to verify now (the annotation `kubectl accountlinker verify`
    /// sets), so a fault meets a verification of every object.
    pub async fn request_verification(&self, ctx: &Context, value: &str) {
        let links = ctx.api::<LinkedAccount>();
        for link in links.list(&ListParams::default()).await.expect("list") {
            links
                .patch(
                    &link.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({"metadata": {"annotations": {VERIFY_REQUESTED_AT: value}}}),
                    ),
                )
                .await
                .expect("request verification");
        }
    }

    /// The LinkedAccounts verified (AWS answered, the role was assumed) at or after `since`,
    /// and all of them Ready.
    pub async fn verified_since(&self, ctx: &Context, since: Timestamp) -> Option<usize> {
        let links = ctx
            .api::<LinkedAccount>()
            .list(&ListParams::default())
            .await
            .ok()?;
        Some(
            links
                .iter()
                .filter(|l| {
                    is_ready(*l)
                        && l.status
                            .as_ref()
                            .and_then(|s| s.last_verified_time.as_ref())
                            .is_some_and(|t| t.0 >= since)
                })
                .count(),
        )
    }
}

/// Ready=True.
pub fn is_ready(obj: &impl Conditions) -> bool {
    super::has(obj, "Ready", "True", None)
}

/// Now, truncated to the second (status timestamps have seconds).
pub fn now_seconds() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).expect("a valid second")
}

/// One change of one condition of one object, as the watch saw it.
#[derive(Clone, Debug)]
pub struct Transition {
    pub at: Instant,
    pub kind: &'static str,
    pub name: String,
    pub type_: String,
    pub from: String,
    pub to: String,
}

/// What the watch last saw of one object: condition type → "status/reason", and its last
/// verification time.
type Last = (BTreeMap<String, String>, Option<String>);

#[derive(Default)]
struct Seen {
    /// Per (kind, name).
    objects: BTreeMap<(String, String), Last>,
    transitions: Vec<Transition>,
    /// When an object's lastVerifiedTime moved.
    verifications: Vec<(Instant, String)>,
}

/// Every condition transition of the namespace's LinkedAccounts and BulkRegistrations, from
/// watch events.
#[derive(Clone, Default)]
pub struct Transitions(Arc<Mutex<Seen>>);

impl Transitions {
    /// Starts watching the test's namespace; the initial list is the baseline (no transition).
    pub async fn watch(ctx: &Context) -> Self {
        let this = Self::default();
        let links = this
            .clone()
            .follow::<LinkedAccount>(ctx.api(), "LinkedAccount");
        let bulks = this
            .clone()
            .follow::<BulkRegistration>(ctx.api(), "BulkRegistration");
        tokio::spawn(links);
        tokio::spawn(bulks);
        // Both initial lists seen: every later change is a transition.
        eventually(Duration::from_secs(30), "the watches listed", || async {
            let seen = this.0.lock().unwrap();
            let kinds: std::collections::BTreeSet<&str> =
                seen.objects.keys().map(|(k, _)| k.as_str()).collect();
            (kinds.len() == 2).then_some(())
        })
        .await;
        this
    }

    async fn follow<K>(self, api: Api<K>, kind: &'static str)
    where
        K: Resource<DynamicType = ()>
            + Conditions
            + Clone
            + DeserializeOwned
            + std::fmt::Debug
            + Send
            + 'static,
        K: HasVerifiedTime,
    {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            let obj = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => o,
                _ => continue,
            };
            let now = Instant::now();
            let conditions: BTreeMap<String, String> = obj
                .conditions()
                .iter()
                .map(|c| (c.type_.clone(), format!("{}/{}", c.status, c.reason)))
                .collect();
            let verified = obj.verified_time();
            let name = obj.name_any();
            let mut seen = self.0.lock().unwrap();
            let key = (kind.to_string(), name.clone());
            if let Some((before, verified_before)) = seen.objects.get(&key).cloned() {
                for (type_, to) in &conditions {
                    let from = before.get(type_).cloned().unwrap_or_default();
                    if from != *to {
                        seen.transitions.push(Transition {
                            at: now,
                            kind,
                            name: name.clone(),
                            type_: type_.clone(),
                            from,
                            to: to.clone(),
                        });
                    }
                }
                if verified != verified_before {
                    seen.verifications.push((now, name.clone()));
                }
            }
            seen.objects.insert(key, (conditions, verified));
        }
    }

    /// Transitions seen since `since`.
    pub fn since(&self, since: Instant) -> Vec<Transition> {
        let seen = self.0.lock().unwrap();
        seen.transitions
            .iter()
            .filter(|t| t.at >= since)
            .cloned()
            .collect()
    }

    /// `Ready` flaps since `since`: Ready leaving True on an object.
    pub fn ready_flaps(&self, since: Instant) -> Vec<Transition> {
        self.since(since)
            .into_iter()
            .filter(|t| t.type_ == "Ready" && t.from.starts_with("True/"))
            .collect()
    }

    /// How many times a lastVerifiedTime moved in `[from, to)`.
    pub fn verifications(&self, from: Instant, to: Instant) -> usize {
        let seen = self.0.lock().unwrap();
        seen.verifications
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .count()
    }
}

/// The verification time of a kind that has one.
pub trait HasVerifiedTime {
    fn verified_time(&self) -> Option<String>;
}

impl HasVerifiedTime for LinkedAccount {
    fn verified_time(&self) -> Option<String> {
        let t = self.status.as_ref()?.last_verified_time.as_ref()?;
        Some(t.0.to_string())
    }
}

impl HasVerifiedTime for BulkRegistration {
    fn verified_time(&self) -> Option<String> {
        None
    }
}

/// AWS requests the emulator answered since its counters were reset, per service.
pub async fn requests_by_service(ctx: &Context) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let counts = ctx.emulator.get("/requests").await["counts"].clone();
    for (key, n) in counts.as_object().into_iter().flatten() {
        let service = key.split(':').next().unwrap_or_default().to_string();
        *out.entry(service).or_insert(0) += n.as_u64().unwrap_or(0);
    }
    out
}

/// Backoff attempts of one object within a window of `window` that begins with a failed
/// attempt: the runner's backoff doubles from 2 s with ±20 % jitter, so attempt k+1 comes at
/// least 1.6 × (2^k+1 − 1) s after the first (src/controller/runner.rs `backoff`).
pub fn backoff_attempts(window: Duration) -> u64 {
    let mut attempts = 1;
    let mut at = 0.0;
    let mut step = 1.6;
    loop {
        at += step;
        if at > window.as_secs_f64() {
            return attempts;
        }
        attempts += 1;
        step *= 2.0;
    }
}

/// The operator's resident memory (kB) and open file descriptors, from /proc.
pub fn process_sample(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}
