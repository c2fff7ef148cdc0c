//! The LinkedAccount controller: resolve the ExternalId, verify the role when due, and write
//! what was found as conditions.
//!
//! Verification is driven by requeues: a settled object is looked at again after its
//! `verifyInterval` (with jitter); retries back off per object. Reconciles triggered for other
//! reasons (a restart, a watch resync) do not verify early unless something that matters
//! changed — the generation or the ExternalId Secret — or a new
//! `accountlinker.dev/verify-requested-at` value asks for it (handled once, recorded in
//! `status.lastHandledVerifyRequest`). The watch has no generation predicate, so an
//! annotation-only change reaches the reconciler; the controller's own status writes do not
//! ([`link_cache::reconcile_view`]).

pub mod external_id;
pub mod in_sync;
mod name;
mod permit;
pub mod verdict;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::Semaphore;
use tracing::debug;

use self::external_id::Unavailable;
use self::verdict::{Blocked, Clock, Verdict, VerifyOutcome};
use crate::api::annotations::{self, VERIFY_REQUESTED_AT};
use crate::api::conditions::{READY, ROLE_ASSUMABLE, STALLED};
use crate::api::labels;
use crate::api::linked_account::{DEFAULT_ROLE_NAME, reason};
use crate::api::{LinkedAccount, LinkedAccountStatus};
use crate::aws::{AccountDirectory, AwsError, ErrorClass, RoleVerifier, VerifyRequest, sts};
use crate::controller::conditions::{self, Status};
use crate::controller::external_id::SecretCache;
use crate::controller::link_cache::{self, Changes, LinkCache};
use crate::controller::recorder::Recorder;
use crate::controller::runner::{self, Failure, Reconciler};
use crate::controller::status::{self, Transitions};
use crate::controller::tenancy::Gate;
use crate::runtime::ControllerReadiness;
use crate::telemetry::Metrics;

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "linkedaccount";

/// Events on transitions of these conditions.
const TRANSITIONS: Transitions = Transitions {
    types: &[ROLE_ASSUMABLE, READY, STALLED],
    action: "Verify",
    fleet: true,
};

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long AccessDenied / RegionDisabled are retried before Stalled.
    pub access_denied_grace: Duration,
    /// Global STS budget: requests per second (AssumeRole + GetCallerIdentity count as two).
    pub sts_requests_per_second: NonZeroU32,
    /// Global bound on verifications in flight.
    pub sts_concurrency: usize,
    /// Partition of role ARNs built from `roleName`.
    pub partition: String,
    /// `verifyInterval` of LinkedAccounts that do not set one.
    pub default_verify_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            access_denied_grace: Duration::from_secs(120),
            sts_requests_per_second: NonZeroU32::new(10).expect("non-zero"),
            sts_concurrency: 16,
            partition: "aws".into(),
            default_verify_interval: Duration::from_secs(1800),
        }
    }
}

type RateLimiter = governor::DefaultDirectRateLimiter;

/// STS calls one verification takes from the budget: AssumeRole and GetCallerIdentity.
const VERIFY_COST: NonZeroU32 = NonZeroU32::new(2).expect("non-zero");

/// The global STS budget: `rate` calls per second, with a burst of at least [`VERIFY_COST`] —
/// a verification takes its two calls at once, and a burst below that could never admit it
/// (`--sts-requests-per-second 1` is allowed).
pub fn sts_quota(rate: NonZeroU32) -> governor::Quota {
    governor::Quota::per_second(rate).allow_burst(rate.max(VERIFY_COST))
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub verifier: Arc<dyn RoleVerifier>,
    pub directory: Arc<dyn AccountDirectory>,
    pub recorder: Recorder,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub gate: Arc<Gate>,
    /// The ExternalId Secrets of every watched namespace.
    pub secrets: SecretCache,
    limiter: RateLimiter,
    in_flight: Semaphore,
    memory: Mutex<HashMap<ObjectRef<LinkedAccount>, Memory>>,
    names: Mutex<HashMap<String, Option<String>>>,
}

/// What the controller remembers about an object between reconciles (lost on restart, which
/// only costs one early verification).
#[derive(Clone, Debug, Default)]
struct Memory {
    /// Consecutive verdicts that retry (backoff), reset when a verdict settles.
    attempt: u32,
    /// Generation and Secret version of the last verification.
    verified: Option<(Option<i64>, String)>,
}

impl Context {
    pub fn new(
        client: Client,
        verifier: Arc<dyn RoleVerifier>,
        directory: Arc<dyn AccountDirectory>,
        recorder: Recorder,
        settings: Settings,
        metrics: Arc<Metrics>,
        gate: Arc<Gate>,
    ) -> Self {
        Self {
            gate,
            secrets: SecretCache::default(),
            limiter: RateLimiter::direct(sts_quota(settings.sts_requests_per_second)),
            in_flight: Semaphore::new(settings.sts_concurrency.max(1)),
            client,
            verifier,
            directory,
            recorder,
            settings,
            metrics,
            memory: Mutex::default(),
            names: Mutex::default(),
        }
    }

    fn memory(&self, key: &ObjectRef<LinkedAccount>) -> Memory {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    fn remember(&self, key: ObjectRef<LinkedAccount>, memory: Memory) {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, memory);
    }

    fn forget(&self, key: &ObjectRef<LinkedAccount>) {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Drops what is remembered of deleted objects (there is no finalizer to say when one goes).
    fn forget_deleted(&self, store: &kube::runtime::reflector::Store<LinkedAccount>) {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| store.get(key).is_some());
    }
}

/// Errors that end a reconcile early; the object is retried with backoff. (AWS answers are
/// verdicts written to status, never errors.)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    ExternalId(#[from] Unavailable),
    /// Organizations, read to evaluate a LinkPolicy.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// The role ARN a LinkedAccount verifies.
pub fn role_arn(link: &LinkedAccount, partition: &str) -> String {
    match &link.spec.role_arn {
        Some(arn) => arn.clone(),
        None => format!(
            "arn:{partition}:iam::{}:role/{}",
            link.spec.account_id,
            link.spec.role_name.as_deref().unwrap_or(DEFAULT_ROLE_NAME)
        ),
    }
}

/// Parses a Go-style duration (validated at admission; a bad one falls back to 30m).
pub fn parse_interval(text: &str) -> Duration {
    text.parse::<kube::core::Duration>()
        .ok()
        .map(Duration::from)
        .filter(|d| *d >= Duration::from_secs(60))
        .unwrap_or(Duration::from_secs(1800))
}

impl Reconciler for Context {
    type Object = LinkedAccount;
    type Error = Error;
    const NAME: &'static str = CONTROLLER;
    // Nothing lives in AWS for a LinkedAccount (the generated Secret is garbage-collected
    // through its owner reference), so nothing needs to run before it goes.
    const FINALIZER: Option<&'static str> = None;
    const RETIRED_FINALIZERS: &'static [&'static str] = &[labels::LINKED_ACCOUNT_FINALIZER];

    fn client(&self) -> Client {
        self.client.clone()
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn apply(&self, link: &LinkedAccount) -> Result<Action, Error> {
        apply(link, self).await
    }

    fn classify(error: &Error) -> Failure {
        match error {
            Error::Aws(_) => Failure::Aws,
            Error::Kube(e) => runner::kube_failure(e),
            Error::ExternalId(_) => Failure::Other,
        }
    }
}

/// Runs the controller until `shutdown` resolves; marks `readiness` once its cache synced.
/// Objects come from the namespace's shared cache `links` and its `changes` (its watch is
/// driven elsewhere).
pub async fn run(
    ctx: Arc<Context>,
    links: LinkCache,
    changes: Changes,
    secrets: Api<Secret>,
    concurrency: u16,
    readiness: ControllerReadiness,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // The labelled Secrets are cached for reading ExternalIds; a change of a generated one
    // (deleted, say) reconciles the LinkedAccount that owns it.
    let secret_changes = ctx.secrets.watch(secrets);
    // Only what others change reaches the reconciler: its own status writes do not.
    let changes = link_cache::changes_of(changes, links.store.clone(), link_cache::reconcile_view);
    let controller = Controller::for_shared_stream(changes, links.store)
        .owns_stream(secret_changes)
        .reconcile_all_on(ctx.gate.changes())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    let gauges = tokio::spawn(count_ready(controller.store(), ctx.clone()));
    runner::run(controller, ctx, readiness, shutdown).await;
    gauges.abort();
}

/// Every 10 s, refreshes the LinkedAccount readiness gauge from the cache and forgets deleted
/// objects.
async fn count_ready(store: kube::runtime::reflector::Store<LinkedAccount>, ctx: Arc<Context>) {
    let _ = runner::until_ready(&store).await;
    loop {
        let (mut ready, mut not_ready, mut unknown) = (0, 0, 0);
        for link in store.state() {
            let conds = link
                .status
                .as_ref()
                .map(|s| s.conditions.as_slice())
                .unwrap_or_default();
            match conditions::find(conds, READY).map(|c| c.status.as_str()) {
                Some("True") => ready += 1,
                Some("False") => not_ready += 1,
                _ => unknown += 1,
            }
        }
        ctx.metrics.set_linked_accounts(ready, not_ready, unknown);
        ctx.forget_deleted(&store);
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

async fn apply(link: &LinkedAccount, ctx: &Context) -> Result<Action, Error> {
    if let Some(refused) = permit::refuse_unless_permitted(link, ctx).await? {
        return Ok(refused);
    }
    let key = ObjectRef::from_obj(link);
    let ns = link.namespace().unwrap_or_default();
    let links: Api<LinkedAccount> = Api::namespaced(ctx.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let now = Timestamp::now();
    let generation = link.meta().generation;
    let current = link.status.clone().unwrap_or_default();
    let interval = link
        .spec
        .verify_interval
        .as_deref()
        .map_or(ctx.settings.default_verify_interval, parse_interval);
    let role_arn = role_arn(link, &ctx.settings.partition);
    let mut memory = ctx.memory(&key);
    // observedGeneration moves only with a decision for this generation (below): a transient
    // failure after a spec change leaves the object visibly in progress.
    // A verification request is handled by this reconcile whatever it decides (a suspended
    // or undeployed link says why it did not verify): recorded so it is handled once.
    let requested = annotations::pending(
        link.annotations(),
        VERIFY_REQUESTED_AT,
        current.last_handled_verify_request.as_deref(),
    )
    .map(str::to_owned);
    let mut next = LinkedAccountStatus {
        role_arn: Some(role_arn.clone()),
        last_handled_verify_request: requested
            .clone()
            .or(current.last_handled_verify_request.clone()),
        ..current.clone()
    };
    let clock = |refused_since| Clock {
        now,
        refused_since,
        grace: ctx.settings.access_denied_grace,
        verify_interval: interval,
        verify_spread: 1.0,
        attempt: memory.attempt,
    };

    let managed = link.labels().contains_key(labels::BULK_REGISTRATION_LABEL);
    let verified = conditions::is(&current.conditions, ROLE_ASSUMABLE, Status::True);
    let deployment = verdict::deployment(managed, current.stack_instance.as_ref(), verified);
    let verdict = if link.spec.suspend {
        verdict::blocked(&Blocked::Suspended, &clock(None))
    } else if let Some(waiting) =
        verdict::undeployed(&deployment, &clock(None), &current.conditions)
    {
        waiting
    } else {
        match external_id::resolve(&secrets, &ctx.secrets, link).await {
            Err(Unavailable::Blocked { reason, message }) => {
                if link.spec.external_id.is_none() {
                    next.external_id_secret = None;
                }
                verdict::blocked(&Blocked::ExternalId { reason, message }, &clock(None))
            }
            Err(err) => return Err(err.into()),
            Ok(resolved) => {
                next.external_id_secret = Some(resolved.secret_name.clone());
                // A new operation on the stack instance (a template update, a rotated token)
                // makes the link verify again; so does a drift check's new finding (a hand
                // edit may have changed who can assume the role).
                let instance = current.stack_instance.as_ref().map(|i| {
                    format!(
                        "{:?}/{:?}/{:?}",
                        i.last_operation_id, i.detailed_status, i.drift_status
                    )
                });
                let fingerprint = (
                    generation,
                    format!("{}|{}", resolved.version, instance.unwrap_or_default()),
                );
                if requested.is_some() {
                    debug!(name = %link.name_any(), "verification requested by annotation");
                } else if let Some(wait) = not_due(link, &memory, &fingerprint, interval, now) {
                    // Remember the baseline so a later Secret change is noticed.
                    memory.verified = Some(fingerprint);
                    ctx.remember(key, memory);
                    return Ok(Action::requeue(wait));
                }
                if current.conditions.is_empty() {
                    // Say that work started before the (possibly slow) first verification.
                    let mut starting = next.clone();
                    starting.observed_generation = generation;
                    starting.conditions = conditions::merge(
                        &[],
                        &verdict::verifying(),
                        &verdict::OWNED_TYPES,
                        generation,
                        now,
                    );
                    status::patch_status(&links, link, &starting).await?;
                    next.conditions = starting.conditions;
                }
                next.account_name =
                    Some(name::account_name(link, ctx, current.account_name.as_deref()).await);
                let outcome = verify(link, ctx, &role_arn, &resolved.value).await;
                verdict::record(&mut next, &outcome, Timestamp::now());
                memory.verified = Some(fingerprint);
                let refused_since = refused_since(&current, &outcome, generation);
                let mut at = clock(refused_since);
                if let Some(verified) = &next.last_verified_time {
                    at.verify_spread = verdict::spread(&uid(link), verified.0);
                }
                let decided =
                    verdict::with_deployed(verdict::decide(&outcome, &role_arn, &at), &deployment);
                in_sync::with_drift(decided, &deployment, current.stack_instance.as_ref())
            }
        }
    };

    apply_verdict(link, ctx, &links, current, next, &verdict, now).await?;
    if verdict.retrying {
        ctx.metrics.aws_retry(CONTROLLER);
    }
    memory.attempt = if verdict.retrying {
        memory.attempt.saturating_add(1)
    } else {
        0
    };
    ctx.remember(key, memory);
    Ok(Action::requeue(verdict.requeue_after))
}

/// `Some(wait)` when the last verification still holds: same generation and Secret version,
/// a settled verdict, and the interval not yet elapsed.
fn not_due(
    link: &LinkedAccount,
    memory: &Memory,
    fingerprint: &(Option<i64>, String),
    interval: Duration,
    now: Timestamp,
) -> Option<Duration> {
    let status = link.status.as_ref()?;
    if status.observed_generation != link.meta().generation || memory.attempt > 0 {
        return None;
    }
    // Refused until now: verify at once.
    if conditions::find(&status.conditions, READY)
        .is_some_and(|c| c.reason == reason::NOT_PERMITTED)
    {
        return None;
    }
    if memory
        .verified
        .as_ref()
        .is_some_and(|seen| seen != fingerprint)
    {
        return None;
    }
    let settled = conditions::is(&status.conditions, READY, Status::True)
        || conditions::is(&status.conditions, STALLED, Status::True);
    if !settled {
        return None;
    }
    let last = status.last_verified_time.as_ref()?.0;
    verdict::until_due(interval, &uid(link), last, now)
}

/// The object's uid ("" before the API server gave it one: only in unit tests).
fn uid(link: &LinkedAccount) -> String {
    link.meta().uid.clone().unwrap_or_default()
}

/// When the refusal now observed started, if status already reported the same refusal for
/// this generation.
fn refused_since(
    current: &LinkedAccountStatus,
    outcome: &VerifyOutcome,
    generation: Option<i64>,
) -> Option<Timestamp> {
    let VerifyOutcome::Refused { class, .. } = outcome else {
        return None;
    };
    let expected = match class {
        ErrorClass::AccessDenied => reason::ACCESS_DENIED,
        ErrorClass::RegionDisabled => reason::REGION_DISABLED,
        _ => return None,
    };
    let assumable = conditions::find(&current.conditions, ROLE_ASSUMABLE)?;
    (assumable.status == Status::False.as_str()
        && assumable.reason == expected
        && assumable.observed_generation == generation)
        .then_some(assumable.last_transition_time.0)
}

async fn verify(
    link: &LinkedAccount,
    ctx: &Context,
    role_arn: &str,
    external_id: &sts::Secret,
) -> VerifyOutcome {
    let _permit = ctx
        .in_flight
        .acquire()
        .await
        .expect("semaphore is never closed");
    // AssumeRole and GetCallerIdentity each take one token of the global STS budget.
    ctx.limiter
        .until_n_ready(VERIFY_COST)
        .await
        .expect("the quota's burst is at least VERIFY_COST");
    let session_name = sts::session_name(&link.namespace().unwrap_or_default(), &link.name_any());
    let result = ctx
        .verifier
        .verify(VerifyRequest {
            role_arn,
            external_id,
            session_name: &session_name,
            duration_seconds: link.spec.session_duration_seconds,
        })
        .await;
    VerifyOutcome::classify(&link.spec.account_id, result)
}

async fn apply_verdict(
    link: &LinkedAccount,
    ctx: &Context,
    links: &Api<LinkedAccount>,
    current: LinkedAccountStatus,
    next: LinkedAccountStatus,
    verdict: &Verdict,
    now: Timestamp,
) -> Result<(), Error> {
    let generation = link.meta().generation;
    let next = status::next(
        &current,
        next,
        verdict.conditions.as_deref(),
        generation,
        now,
    );
    status::write(links, &ctx.recorder, &TRANSITIONS, link, &current, next).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(spec: serde_json::Value) -> LinkedAccount {
        LinkedAccount::new("l", serde_json::from_value(spec).unwrap())
    }

    #[test]
    fn role_arn_comes_from_role_arn_or_role_name() {
        let by_name = link(serde_json::json!({"accountId": "123456789012"}));
        assert_eq!(
            role_arn(&by_name, "aws"),
            "arn:aws:iam::123456789012:role/AccountLinkerAccess"
        );
        let named = link(serde_json::json!({"accountId": "123456789012", "roleName": "Ops"}));
        assert_eq!(
            role_arn(&named, "aws-cn"),
            "arn:aws-cn:iam::123456789012:role/Ops"
        );
        let arn = "arn:aws:iam::123456789012:role/path/Ops";
        let by_arn = link(serde_json::json!({"accountId": "123456789012", "roleArn": arn}));
        assert_eq!(role_arn(&by_arn, "aws"), arn);
    }

    #[test]
    fn the_sts_budget_admits_a_verification_at_every_rate_and_keeps_the_rate() {
        for rate in [1, 2, 10] {
            let quota = sts_quota(NonZeroU32::new(rate).unwrap());
            let limiter = RateLimiter::direct(quota);
            assert!(
                matches!(limiter.check_n(VERIFY_COST), Ok(Ok(()))),
                "{rate}/s cannot admit AssumeRole + GetCallerIdentity"
            );
            assert_eq!(quota.replenish_interval(), Duration::from_secs(1) / rate);
        }
    }

    #[test]
    fn intervals_parse_go_durations() {
        assert_eq!(parse_interval("30m"), Duration::from_secs(1800));
        assert_eq!(parse_interval("1h30m"), Duration::from_secs(5400));
        assert_eq!(parse_interval("90s"), Duration::from_secs(90));
        assert_eq!(parse_interval("garbage"), Duration::from_secs(1800));
    }
}
