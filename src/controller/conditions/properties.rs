//! Property tests of the condition bookkeeping: whatever sequence of decisions a controller
//! makes — verifications that succeed, are refused, time out or are blocked; instances that are
//! pending, updating or failed; registrations busy, stalled or summarised; member accounts in
//! every health with whatever `FailureReason` AWS sends; refusals by policy — every status
//! written through [`status::next`](crate::controller::status::next) keeps the kstatus
//! invariants that Flux, kpt and Argo CD read, and the API server's Condition validation:
//!
//! - `Ready` is present; `Ready=True` means `Reconciling` and `Stalled` are `False`; otherwise
//!   exactly one of them is `True`.
//! - Each condition type appears once; types, statuses, reasons and messages pass the API
//!   server's Condition validation.
//! - `observedGeneration` of the status and of the kstatus trio is the generation decided for.
//! - `lastTransitionTime` moves exactly when a condition's status changes.
//! - Writing the same decision again is a no-op (no write, no Event); a transient failure
//!   changes no condition.
//! - An Event is published exactly for a change of status or reason, as a warning exactly for
//!   `Stalled=True` or another condition turning `False`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;

use super::{Desired, Status, find, transitions};
use crate::api::conditions::{READY, RECONCILING, STALLED};
use crate::api::linked_account::{StackInstanceRef, reason as link_reason};
use crate::api::member_account::reason as member_reason;
use crate::api::{BulkRegistrationStatus, LinkedAccountStatus, MemberAccountStatus};
use crate::aws::{AwsError, CallerIdentity, ErrorClass};
use crate::controller::bulk_registration::children::Verification;
use crate::controller::bulk_registration::status::{
    self as bulk, Facts, Headline, Observed, Stall,
};
use crate::controller::linked_account::{in_sync, verdict};
use crate::controller::member_account::decide::{Health, Report, created, creation};
use crate::controller::status::{ObjectStatus, next};
use crate::controller::tenancy;

const ACCOUNT: &str = "111111111111";
const ROLE: &str = "arn:aws:iam::111111111111:role/hub";

/// Any text AWS or a user may put in a message: empty, unicode, over the 32 KiB limit.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[ -~]{0,40}",
        1 => "\\PC{0,20}",
        1 => (1usize..3).prop_map(|n| "é".repeat(16_384 * n + 1)),
    ]
}

fn class() -> impl Strategy<Value = ErrorClass> {
    prop::sample::select(vec![
        ErrorClass::AccessDenied,
        ErrorClass::RegionDisabled,
        ErrorClass::ExpiredToken,
        ErrorClass::InvalidIdentityToken,
        ErrorClass::NotFound,
        ErrorClass::AlreadyExists,
        ErrorClass::AlreadyClosed,
        ErrorClass::InProgress,
        ErrorClass::Conflict,
        ErrorClass::QuotaExceeded,
        ErrorClass::OrganizationsNotInUse,
        ErrorClass::Throttled,
        ErrorClass::Transient,
        ErrorClass::Rejected,
    ])
}

fn aws_error() -> impl Strategy<Value = AwsError> {
    (class(), prop::option::of("[A-Za-z.]{1,20}"), text()).prop_map(|(class, code, message)| {
        AwsError {
            operation: "sts:AssumeRole",
            class,
            code,
            reason: None,
            message,
        }
    })
}

/// One pass of the LinkedAccount controller, in the order its reconcile decides.
#[derive(Clone, Debug)]
struct LinkPass {
    suspend: bool,
    managed: bool,
    /// `(status, detailedStatus, driftStatus)` the registration reported.
    instance: Option<(String, String, Option<String>)>,
    /// The ExternalId could not be read.
    blocked: Option<(&'static str, String)>,
    /// `None` for a transient failure; otherwise an account ID the identity answered for,
    /// or an AWS refusal.
    outcome: Result<Option<String>, AwsError>,
    /// Seconds since the current refusal was first seen.
    refused_for: Option<u32>,
}

fn link_pass() -> impl Strategy<Value = LinkPass> {
    let instance = (
        prop::sample::select(vec!["CURRENT", "OUTDATED", "INOPERABLE", "", "???"]),
        prop::sample::select(vec![
            "SUCCEEDED",
            "PENDING",
            "RUNNING",
            "FAILED",
            "CANCELLED",
            "",
        ]),
        prop::option::of(prop::sample::select(vec![
            "IN_SYNC", "DRIFTED", "UNKNOWN", "",
        ])),
    )
        .prop_map(|(s, d, drift)| (s.to_string(), d.to_string(), drift.map(str::to_string)));
    let blocked = prop::option::weighted(
        0.1,
        (
            prop::sample::select(vec![
                link_reason::EXTERNAL_ID_SECRET_NOT_FOUND,
                link_reason::EXTERNAL_ID_KEY_NOT_FOUND,
                link_reason::INVALID_EXTERNAL_ID,
                link_reason::SECRET_NOT_LABELLED,
            ]),
            text(),
        ),
    );
    let outcome = prop_oneof![
        3 => prop::option::of(prop_oneof![4 => Just(ACCOUNT.to_string()), 1 => "[0-9]{12}"])
            .prop_map(Ok),
        2 => aws_error().prop_map(Err),
    ];
    (
        prop::bool::weighted(0.1),
        any::<bool>(),
        prop::option::of(instance),
        blocked,
        outcome,
        prop::option::of(0u32..600),
    )
        .prop_map(
            |(suspend, managed, instance, blocked, outcome, refused_for)| LinkPass {
                suspend,
                managed,
                instance,
                blocked,
                outcome,
                refused_for,
            },
        )
}

/// The conditions the LinkedAccount reconcile decides for one pass (`None`: keep them), as
/// `linked_account::reconcile` composes the pure pieces.
fn link_decision(pass: &LinkPass, current: &LinkedAccountStatus, now: Timestamp) -> LinkDecision {
    let clock = |refused_since| verdict::Clock {
        now,
        refused_since,
        grace: std::time::Duration::from_secs(300),
        verify_interval: std::time::Duration::from_secs(600),
        verify_spread: 1.0,
        attempt: 0,
    };
    let verified = super::is(
        &current.conditions,
        crate::api::conditions::ROLE_ASSUMABLE,
        Status::True,
    );
    let deployment = verdict::deployment(pass.managed, current.stack_instance.as_ref(), verified);
    if pass.suspend {
        return LinkDecision::of(verdict::blocked(&verdict::Blocked::Suspended, &clock(None)));
    }
    if let Some(waiting) = verdict::undeployed(&deployment, &clock(None), &current.conditions) {
        return LinkDecision::of(waiting);
    }
    if let Some((reason, message)) = &pass.blocked {
        let blocked = verdict::Blocked::ExternalId {
            reason,
            message: message.clone(),
        };
        return LinkDecision::of(verdict::blocked(&blocked, &clock(None)));
    }
    let outcome = match &pass.outcome {
        Ok(None) => verdict::VerifyOutcome::Transient(AwsError {
            operation: "sts:AssumeRole",
            class: ErrorClass::Transient,
            code: None,
            reason: None,
            message: "timed out".into(),
        }),
        Ok(Some(account)) => verdict::VerifyOutcome::classify(
            ACCOUNT,
            Ok(CallerIdentity {
                account: account.clone(),
                arn: format!("arn:aws:sts::{account}:assumed-role/hub/s"),
            }),
        ),
        Err(e) => verdict::VerifyOutcome::classify(ACCOUNT, Err(e.clone())),
    };
    let refused_since = pass
        .refused_for
        .map(|s| now - std::time::Duration::from_secs(u64::from(s)));
    let decided = verdict::with_deployed(
        verdict::decide(&outcome, ROLE, &clock(refused_since)),
        &deployment,
    );
    let decided = in_sync::with_drift(decided, &deployment, current.stack_instance.as_ref());
    LinkDecision {
        conditions: decided.conditions,
        starting: current.conditions.is_empty(),
    }
}

/// What a pass decided, and whether it first wrote "verifying" (a first verification).
struct LinkDecision {
    conditions: Option<Vec<Desired>>,
    starting: bool,
}

impl LinkDecision {
    fn of(v: verdict::Verdict) -> Self {
        Self {
            conditions: v.conditions,
            starting: false,
        }
    }
}

/// One pass of the BulkRegistration controller's headline decision.
fn bulk_pass() -> impl Strategy<Value = Vec<Desired>> {
    let headline = prop_oneof![
        3 => Just(Headline::Summary),
        1 => text().prop_map(|message| Headline::Busy {
            reason: crate::api::bulk_registration::reason::OPERATION_RUNNING,
            message,
        }),
        1 => (any::<bool>(), text()).prop_map(|(stack_set, message)| {
            let reason = crate::api::bulk_registration::reason::AWS_REJECTED;
            Headline::Stalled(if stack_set {
                Stall::stack_set(reason, message)
            } else {
                Stall::new(reason, message)
            })
        }),
    ];
    (
        (0i32..6, 0i32..6, 0i32..6),
        (0i32..6, 0i32..6, prop::option::of(text())),
        any::<bool>(),
        headline,
    )
        .prop_map(
            |((current, outdated, failed), (assumable, stalled, example), fresh, headline)| {
                let observed = Observed {
                    current,
                    outdated,
                    failed,
                    ..Observed::default()
                };
                let verification = Verification {
                    assumable: assumable.min(current),
                    stalled: stalled.min(current - assumable.min(current)),
                    pending: 0,
                    example,
                };
                let facts = Facts {
                    targets: current + outdated + failed,
                    observed: &observed,
                    verification: &verification,
                    stack_set_current: fresh,
                };
                bulk::conditions(&facts, &headline)
            },
        )
}

/// One pass of the MemberAccount controller: a report in any health, with a reason of its own
/// or one made from whatever `FailureReason` a CreateAccount request answered.
fn member_pass() -> impl Strategy<Value = Vec<Desired>> {
    let reason = prop_oneof![
        3 => prop::sample::select(vec![
            member_reason::READY,
            member_reason::CREATING,
            member_reason::EMAIL_IN_USE,
            member_reason::CLOSING,
            member_reason::ADOPTED,
        ])
        .prop_map(str::to_string),
        2 => prop_oneof![
            Just("EMAIL_ALREADY_EXISTS".to_string()),
            "[A-Z_]{0,30}",
            "[ -~]{0,30}",
        ]
        .prop_map(|failure| creation::classify_failure(&failure).0),
    ];
    let health = prop::sample::select(vec![Health::Ready, Health::Progressing, Health::Stalled]);
    (health, reason, text(), any::<bool>()).prop_map(|(health, reason, message, exists)| {
        let account = if exists {
            created(member_reason::CREATED, message.clone())
        } else {
            Desired::new(
                crate::api::conditions::ACCOUNT_CREATED,
                Status::False,
                &reason,
                &message,
            )
        };
        Report::new(health, reason, message, account).conditions()
    })
}

/// A decision, or a policy refusal (which any kind may meet on any pass).
fn or_refused(
    decision: impl Strategy<Value = Vec<Desired>>,
) -> impl Strategy<Value = Vec<Desired>> {
    prop_oneof![
        9 => decision,
        1 => text().prop_map(|m| tenancy::refused(link_reason::NOT_PERMITTED, &m)),
    ]
}

/// A pass: (seconds after the previous one, whether the spec changed before it), and what it
/// decided (`None`: a transient failure, keep the conditions).
type Pass = ((i64, bool), Option<Vec<Desired>>);

/// When a pass happens: seconds later, and whether the spec changed before it.
fn when() -> impl Strategy<Value = (i64, bool)> {
    (1i64..3_600, prop::bool::weighted(0.2))
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

/// Kubernetes' validation of `metav1.Condition`.
fn valid(c: &Condition) -> Result<(), String> {
    let reason_ok = {
        let b = c.reason.as_bytes();
        !b.is_empty()
            && b.len() <= 1024
            && b[0].is_ascii_alphabetic()
            && b.iter()
                .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b',' | b':'))
            && !matches!(b[b.len() - 1], b',' | b':')
    };
    let type_ok = !c.type_.is_empty()
        && c.type_.len() <= 316
        && c.type_
            .bytes()
            .all(|x| x.is_ascii_alphanumeric() || x == b'_');
    if !reason_ok {
        return Err(format!(
            "{}: reason {:?} is not a valid reason",
            c.type_, c.reason
        ));
    }
    if !type_ok {
        return Err(format!("type {:?} is not a valid type", c.type_));
    }
    if !matches!(c.status.as_str(), "True" | "False" | "Unknown") {
        return Err(format!("{}: status {:?}", c.type_, c.status));
    }
    if c.message.len() > 32_768 {
        return Err(format!("{}: message of {} bytes", c.type_, c.message.len()));
    }
    Ok(())
}

/// Checks one written status against the one before it.
fn check<S: ObjectStatus>(
    before: &S,
    after: &S,
    generation: i64,
    now: Timestamp,
) -> Result<(), TestCaseError> {
    let conds = after.conditions();
    for c in conds {
        valid(c).map_err(TestCaseError::fail)?;
        prop_assert_eq!(
            conds.iter().filter(|o| o.type_ == c.type_).count(),
            1,
            "{} appears more than once",
            &c.type_
        );
    }
    let status_of = |t: &str| find(conds, t).map(|c| c.status.as_str());
    let ready = status_of(READY);
    prop_assert!(ready.is_some(), "Ready is missing: {:?}", conds);
    let (reconciling, stalled) = (status_of(RECONCILING), status_of(STALLED));
    if ready == Some("True") {
        prop_assert!(
            reconciling != Some("True") && stalled != Some("True"),
            "Ready=True with Reconciling={:?} Stalled={:?}",
            reconciling,
            stalled
        );
    } else {
        prop_assert!(
            (reconciling == Some("True")) != (stalled == Some("True")),
            "Ready={:?} needs exactly one of Reconciling={:?} Stalled={:?}",
            ready,
            reconciling,
            stalled
        );
    }
    for t in [READY, RECONCILING, STALLED] {
        if let Some(c) = find(conds, t) {
            prop_assert_eq!(c.observed_generation, Some(generation), "{}", t);
        }
    }
    for c in conds {
        match find(before.conditions(), &c.type_) {
            Some(old) if old.status == c.status => prop_assert_eq!(
                &old.last_transition_time,
                &c.last_transition_time,
                "{} kept its status but its transition time moved",
                &c.type_
            ),
            _ => prop_assert_eq!(
                &c.last_transition_time.0,
                &now,
                "{} changed status without a new transition time",
                &c.type_
            ),
        }
    }
    for t in transitions(before.conditions(), conds, &KSTATUS) {
        let old = find(before.conditions(), &t.type_);
        prop_assert!(
            old.is_none_or(|o| o.status != t.status || o.reason != t.reason),
            "an Event for {} without a change",
            &t.type_
        );
        let unhealthy = if t.type_ == STALLED {
            t.status == "True"
        } else {
            t.status == "False"
        };
        prop_assert_eq!(t.warning, unhealthy, "{}={}", &t.type_, &t.status);
    }
    Ok(())
}

/// Runs `passes` through the status writer the way a controller does, checking every write.
fn drive<S: ObjectStatus + Default>(passes: &[Pass]) -> Result<(), TestCaseError> {
    let (mut current, mut generation, mut clock) = (S::default(), 1i64, 0i64);
    for ((later, spec_changed), desired) in passes {
        clock += later;
        generation += i64::from(*spec_changed);
        let now = at(clock);
        let Some(written) = next(
            &current,
            current.clone(),
            desired.as_deref(),
            Some(generation),
            now,
        ) else {
            continue;
        };
        let Some(desired) = desired else {
            return Err(TestCaseError::fail(format!(
                "a pass that decided nothing wrote {:?}",
                written.conditions()
            )));
        };
        check(&current, &written, generation, now)?;
        // The same decision again, later: nothing to write, no Event.
        let again = next(
            &written,
            written.clone(),
            Some(desired),
            Some(generation),
            at(clock + 1),
        );
        prop_assert!(
            again.is_none(),
            "the same decision wrote again: {:?}",
            again.map(|s| s.conditions().to_vec())
        );
        current = written;
    }
    Ok(())
}

fn passes<T: Strategy<Value = Option<Vec<Desired>>>>(
    decision: T,
) -> impl Strategy<Value = Vec<Pass>> {
    prop::collection::vec((when(), decision), 1..24)
}

const KSTATUS: [&str; 3] = [READY, STALLED, RECONCILING];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn registration_statuses_keep_the_kstatus_invariants(
        passes in passes(or_refused(bulk_pass()).prop_map(Some)),
    ) {
        drive::<BulkRegistrationStatus>(&passes)?;
    }

    #[test]
    fn member_account_statuses_keep_the_kstatus_invariants(
        passes in passes(or_refused(member_pass()).prop_map(Some)),
    ) {
        drive::<MemberAccountStatus>(&passes)?;
    }

    /// A link's passes depend on what status already says (a verified role stays Ready while
    /// its instance updates; a first verification writes "verifying" first), so the decision
    /// is made inside the loop, as the controller does.
    #[test]
    fn link_statuses_keep_the_kstatus_invariants(
        passes in prop::collection::vec((when(), link_pass(), prop::option::weighted(0.1, text())), 1..24),
    ) {
        let (mut current, mut generation, mut clock) = (LinkedAccountStatus::default(), 1i64, 0i64);
        for ((later, spec_changed), pass, refusal) in passes {
            clock += later;
            generation += i64::from(spec_changed);
            let now = at(clock);
            current.stack_instance = pass.instance.as_ref().map(|(s, d, drift)| StackInstanceRef {
                stack_set: "fleet".into(),
                region: "eu-west-1".into(),
                status: Some(s.clone()),
                detailed_status: Some(d.clone()),
                drift_status: drift.clone(),
                ..StackInstanceRef::default()
            });
            let decision = match &refusal {
                Some(m) => LinkDecision {
                    conditions: Some(tenancy::refused(link_reason::NOT_PERMITTED, m)),
                    starting: false,
                },
                None => link_decision(&pass, &current, now),
            };
            if decision.starting {
                // Written as it is before the (possibly slow) first verification.
                let mut starting = current.clone();
                starting.observed_generation = Some(generation);
                starting.conditions = super::merge(
                    &[],
                    &verdict::verifying(),
                    &verdict::OWNED_TYPES,
                    Some(generation),
                    now,
                );
                check(&current, &starting, generation, now)?;
                current = starting;
            }
            let written = next(&current, current.clone(), decision.conditions.as_deref(), Some(generation), now);
            let Some(written) = written else {
                continue;
            };
            match &decision.conditions {
                None => prop_assert!(
                    super::same_ignoring_timestamps(&written.conditions, &current.conditions),
                    "a transient failure changed conditions: {:?}",
                    &written.conditions
                ),
                Some(desired) => {
                    check(&current, &written, generation, now)?;
                    let again = next(&written, written.clone(), Some(desired), Some(generation), at(clock + 1));
                    prop_assert!(again.is_none(), "the same decision wrote again: {:?}", again);
                }
            }
            current = written;
        }
    }
}
