//! What a verification means for a LinkedAccount's conditions and next check. Pure: every
//! decision here is a function of the outcome, the clock and what status already says.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use crate::api::conditions::{READY, RECONCILING, ROLE_ASSUMABLE, ROLE_DEPLOYED, STALLED};
use crate::api::linked_account::{StackInstanceRef, reason};
use crate::aws::{AwsError, CallerIdentity, ErrorClass};
use crate::controller::conditions::{Desired, Status};
use crate::controller::runner::{backoff, jitter};

/// The result of one AssumeRole + GetCallerIdentity, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// The role was assumed and the identity is in the expected account.
    Verified(CallerIdentity),
    /// The role was assumed, but GetCallerIdentity answered for another account.
    AccountMismatch { actual: CallerIdentity },
    /// AWS refused, for a reason that will not go away by retrying the same call soon
    /// (possibly after IAM propagates, see [`Verdict`]).
    Refused { class: ErrorClass, error: AwsError },
    /// Throttling, server errors, timeouts, network failures.
    Transient(AwsError),
}

impl VerifyOutcome {
    /// Classifies the result of verifying a role that should belong to `account_id`.
    pub fn classify(account_id: &str, result: Result<CallerIdentity, AwsError>) -> Self {
        match result {
            Ok(identity) if identity.account == account_id => Self::Verified(identity),
            Ok(actual) => Self::AccountMismatch { actual },
            Err(error) if error.class.is_retryable() => Self::Transient(error),
            Err(error) => Self::Refused {
                class: error.class,
                error,
            },
        }
    }

    /// Whether AWS answered about the role (assumed, or refused), as opposed to failing
    /// transiently: only an answer is a verification.
    pub fn answered(&self) -> bool {
        !matches!(self, Self::Transient(_))
    }
}

/// Why verification did not run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// `spec.suspend` is true.
    Suspended,
    /// The ExternalId could not be read: reason constant and a message naming what is missing.
    ExternalId {
        reason: &'static str,
        message: String,
    },
}

/// Inputs of a decision besides the outcome.
#[derive(Clone, Debug)]
pub struct Clock {
    pub now: Timestamp,
    /// Since when the current refusal has been seen for this generation (from status), if any.
    pub refused_since: Option<Timestamp>,
    /// How long AccessDenied / RegionDisabled are retried before the object is Stalled.
    pub grace: Duration,
    /// The object's verify interval.
    pub verify_interval: Duration,
    /// Consecutive retry attempts so far (for backoff).
    pub attempt: u32,
}

/// What to write and when to look again.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The conditions to write; `None` keeps the current ones (transient errors never flap).
    pub conditions: Option<Vec<Desired>>,
    /// When to reconcile again.
    pub requeue_after: Duration,
    /// Whether this counts as a retry (backoff grows) or a settled state (backoff resets).
    pub retrying: bool,
}

/// Condition types this controller writes (others, such as RoleDeployed, belong to the
/// BulkRegistration and are kept as they are).
pub const OWNED_TYPES: [&str; 4] = [READY, RECONCILING, STALLED, ROLE_ASSUMABLE];

/// Where the role of a link deployed by a BulkRegistration stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deployment {
    /// Not deployed by a BulkRegistration: verify as usual, no RoleDeployed.
    Unmanaged,
    /// The stack instance SUCCEEDED: verify, RoleDeployed=True.
    Deployed,
    /// The role is deployed and was verified assumable; its instance is being updated (or
    /// waits for an update): what verification said stands, RoleDeployed=True, no STS call
    /// until the update ends (its end makes the link verify again). The role stays in place
    /// during an update, so a healthy link does not turn un-Ready for every template change.
    Updating(String),
    /// Not deployed yet (no instance, pending, running, outdated): do not call STS.
    Waiting(String),
    /// The instance failed: needs a human (or the registration's next operation).
    Failed(String),
}

/// Reads the deployment state a BulkRegistration reported on its child. `managed` says the
/// link carries the registration's label, so an instance not reported yet means "waiting";
/// `verified`: the role was verified assumable, so an instance in flight is an update.
pub fn deployment(
    managed: bool,
    instance: Option<&StackInstanceRef>,
    verified: bool,
) -> Deployment {
    let Some(i) = instance else {
        return if managed {
            Deployment::Waiting("waiting for the BulkRegistration to deploy the role".into())
        } else {
            Deployment::Unmanaged
        };
    };
    let status = i.status.as_deref().unwrap_or_default();
    let detailed = i.detailed_status.as_deref().unwrap_or_default();
    let describe = || {
        format!(
            "stack instance of StackSet {} in {} is {status}/{detailed}{}",
            i.stack_set,
            i.region,
            i.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )
    };
    match (status, detailed) {
        ("CURRENT", "SUCCEEDED" | "") => Deployment::Deployed,
        (_, "PENDING" | "RUNNING") | ("OUTDATED", "SUCCEEDED") if verified => {
            Deployment::Updating(describe())
        }
        (_, "PENDING" | "RUNNING") | ("OUTDATED", "SUCCEEDED") => Deployment::Waiting(describe()),
        _ => Deployment::Failed(describe()),
    }
}

/// Conditions for a link whose role is not deployed (yet), or is being updated (`current`: the
/// conditions it has, kept). `None` when verification runs.
pub fn undeployed(
    deployment: &Deployment,
    clock: &Clock,
    current: &[Condition],
) -> Option<Verdict> {
    let (conditions, requeue_after) = match deployment {
        Deployment::Unmanaged | Deployment::Deployed => return None,
        Deployment::Updating(message) => {
            let mut c: Vec<Desired> = OWNED_TYPES
                .iter()
                .filter_map(|type_| {
                    let kept = current.iter().find(|c| c.type_ == *type_)?;
                    let status = match kept.status.as_str() {
                        "True" => Status::True,
                        "False" => Status::False,
                        _ => Status::Unknown,
                    };
                    Some(Desired::new(type_, status, &kept.reason, &kept.message))
                })
                .collect();
            c.push(Desired::new(
                ROLE_DEPLOYED,
                Status::True,
                reason::STACK_INSTANCE_UPDATING,
                message,
            ));
            (c, clock.verify_interval)
        }
        Deployment::Waiting(message) => {
            let mut c = progressing(
                Status::Unknown,
                Status::False,
                reason::STACK_INSTANCE_PENDING,
                message,
            );
            c.push(Desired::new(
                ROLE_DEPLOYED,
                Status::False,
                reason::STACK_INSTANCE_PENDING,
                message,
            ));
            (c, clock.verify_interval)
        }
        Deployment::Failed(message) => {
            let mut c = stalled(
                Some(Status::Unknown),
                reason::STACK_INSTANCE_FAILED,
                message,
            );
            c.push(Desired::new(
                ROLE_DEPLOYED,
                Status::False,
                reason::STACK_INSTANCE_FAILED,
                message,
            ));
            (c, clock.verify_interval)
        }
    };
    // The registration updates the instance state on this object, which triggers the next
    // look; the requeue is only a safety net.
    Some(Verdict {
        conditions: Some(conditions),
        requeue_after,
        retrying: false,
    })
}

/// Adds RoleDeployed=True to a verdict for a deployed link.
pub fn with_deployed(mut verdict: Verdict, deployment: &Deployment) -> Verdict {
    if *deployment == Deployment::Deployed
        && let Some(c) = verdict.conditions.as_mut()
    {
        c.push(Desired::new(
            ROLE_DEPLOYED,
            Status::True,
            reason::STACK_INSTANCE_SUCCEEDED,
            "the stack instance deploying the role succeeded",
        ));
    }
    verdict
}

/// Initial conditions before the first verification finishes.
pub fn verifying() -> Vec<Desired> {
    progressing(
        Status::Unknown,
        Status::Unknown,
        reason::VERIFYING,
        "verifying that the hub can assume the role",
    )
}

/// Decides conditions and requeue for a blocked verification.
pub fn blocked(blocked: &Blocked, clock: &Clock) -> Verdict {
    match blocked {
        Blocked::Suspended => Verdict {
            conditions: Some(stalled(
                None,
                reason::SUSPENDED,
                "verification is suspended (spec.suspend is true)",
            )),
            requeue_after: clock.verify_interval,
            retrying: false,
        },
        Blocked::ExternalId { reason, message } => Verdict {
            conditions: Some(stalled(Some(Status::Unknown), reason, message)),
            // Referenced Secrets are read, not watched (the operator only reads Secrets it is
            // pointed at), so look again on a backoff capped at a minute: a fixed Secret is
            // picked up quickly without hammering the API server.
            requeue_after: backoff(clock.attempt, clock.now).min(Duration::from_secs(60)),
            retrying: true,
        },
    }
}

/// Decides conditions and requeue for a verification outcome.
pub fn decide(outcome: &VerifyOutcome, role_arn: &str, clock: &Clock) -> Verdict {
    match outcome {
        VerifyOutcome::Verified(identity) => Verdict {
            conditions: Some(vec![
                Desired::new(
                    ROLE_ASSUMABLE,
                    Status::True,
                    reason::VERIFIED,
                    format!("assumed {role_arn} as {}", identity.arn),
                ),
                Desired::new(
                    READY,
                    Status::True,
                    reason::VERIFIED,
                    "the role is assumable",
                ),
                Desired::new(RECONCILING, Status::False, reason::VERIFIED, ""),
                Desired::new(STALLED, Status::False, reason::VERIFIED, ""),
            ]),
            requeue_after: jittered(clock.verify_interval, clock.now),
            retrying: false,
        },
        VerifyOutcome::AccountMismatch { actual } => Verdict {
            conditions: Some(stalled(
                Some(Status::False),
                reason::ACCOUNT_MISMATCH,
                &format!(
                    "assumed {role_arn} but GetCallerIdentity answered {} in account {}",
                    actual.arn, actual.account
                ),
            )),
            requeue_after: clock.verify_interval,
            retrying: false,
        },
        VerifyOutcome::Refused { class, error } => refused(*class, error, clock),
        VerifyOutcome::Transient(_) => Verdict {
            conditions: None,
            requeue_after: backoff(clock.attempt, clock.now),
            retrying: true,
        },
    }
}

fn refused(class: ErrorClass, error: &AwsError, clock: &Clock) -> Verdict {
    let aws = error_text(error);
    match class {
        // IAM is eventually consistent and fresh accounts reject STS briefly: retry within the
        // grace period, then ask for a human.
        ErrorClass::AccessDenied | ErrorClass::RegionDisabled => {
            let reason = if class == ErrorClass::AccessDenied {
                reason::ACCESS_DENIED
            } else {
                reason::REGION_DISABLED
            };
            let since = clock.refused_since.unwrap_or(clock.now);
            let elapsed = clock.now.duration_since(since).unsigned_abs();
            if elapsed < clock.grace {
                let remaining = clock.grace - elapsed;
                Verdict {
                    conditions: Some(progressing(
                        Status::False,
                        Status::False,
                        reason,
                        &format!(
                            "{aws}; retrying for another {}s in case IAM has not propagated yet",
                            remaining.as_secs()
                        ),
                    )),
                    requeue_after: backoff(clock.attempt, clock.now).min(remaining.max(SECOND)),
                    retrying: true,
                }
            } else {
                Verdict {
                    conditions: Some(stalled(Some(Status::False), reason, &aws)),
                    requeue_after: clock.verify_interval,
                    retrying: false,
                }
            }
        }
        // The hub's own credentials expired: they refresh on their own, keep trying.
        ErrorClass::ExpiredToken => Verdict {
            conditions: Some(progressing(
                Status::Unknown,
                Status::False,
                reason::EXPIRED_TOKEN,
                &format!("the hub's credentials expired: {aws}"),
            )),
            requeue_after: backoff(clock.attempt, clock.now),
            retrying: true,
        },
        ErrorClass::InvalidIdentityToken => Verdict {
            conditions: Some(stalled(
                Some(Status::Unknown),
                reason::INVALID_IDENTITY_TOKEN,
                &format!("the hub's web identity token was rejected: {aws}"),
            )),
            requeue_after: clock.verify_interval,
            retrying: false,
        },
        _ => Verdict {
            conditions: Some(stalled(Some(Status::False), reason::AWS_REJECTED, &aws)),
            requeue_after: clock.verify_interval,
            retrying: false,
        },
    }
}

const SECOND: Duration = Duration::from_secs(1);

fn error_text(error: &AwsError) -> String {
    match &error.code {
        Some(code) => format!("{code}: {}", error.message),
        None => error.message.clone(),
    }
}

/// Ready not True (`ready` is Unknown before a first answer, False after a refusal), work in
/// flight.
fn progressing(assumable: Status, ready: Status, reason: &str, message: &str) -> Vec<Desired> {
    vec![
        Desired::new(ROLE_ASSUMABLE, assumable, reason, message),
        Desired::new(READY, ready, reason, message),
        Desired::new(RECONCILING, Status::True, reason, message),
        Desired::new(STALLED, Status::False, reason, ""),
    ]
}

/// Ready False, progress needs a human. `assumable` None leaves RoleAssumable as it was.
fn stalled(assumable: Option<Status>, reason: &str, message: &str) -> Vec<Desired> {
    let mut out = Vec::with_capacity(4);
    if let Some(status) = assumable {
        out.push(Desired::new(ROLE_ASSUMABLE, status, reason, message));
    }
    out.push(Desired::new(READY, Status::False, reason, message));
    out.push(Desired::new(RECONCILING, Status::False, reason, ""));
    out.push(Desired::new(STALLED, Status::True, reason, message));
    out
}

/// The verify interval spread by ±10 %, so accounts created together drift apart.
pub fn jittered(interval: Duration, now: Timestamp) -> Duration {
    jitter(interval, 0.1, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/AccountLinkerAccess";

    fn identity(account: &str) -> CallerIdentity {
        CallerIdentity {
            account: account.into(),
            arn: format!("arn:aws:sts::{account}:assumed-role/AccountLinkerAccess/s"),
        }
    }

    fn error(class: ErrorClass, code: &str) -> AwsError {
        AwsError {
            code: Some(code.into()),
            ..AwsError::new("sts:AssumeRole", class, "nope")
        }
    }

    fn clock(now: i64, refused_since: Option<i64>) -> Clock {
        let t = |s| Timestamp::from_second(1_800_000_000 + s).unwrap();
        Clock {
            now: t(now),
            refused_since: refused_since.map(t),
            grace: Duration::from_secs(120),
            verify_interval: Duration::from_secs(1800),
            attempt: 0,
        }
    }

    fn find<'a>(v: &'a Verdict, type_: &str) -> &'a Desired {
        v.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|d| d.type_ == type_)
            .unwrap()
    }

    /// kstatus: when Ready is not True exactly one of Reconciling and Stalled is True.
    fn assert_kstatus(v: &Verdict) {
        let ready = find(v, READY).status;
        let reconciling = find(v, RECONCILING).status == Status::True;
        let stalled = find(v, STALLED).status == Status::True;
        if ready == Status::True {
            assert!(!reconciling && !stalled);
        } else {
            assert!(reconciling ^ stalled, "{v:?}");
        }
    }

    #[test]
    fn classification_separates_every_kind_of_outcome() {
        let ok = VerifyOutcome::classify("123456789012", Ok(identity("123456789012")));
        assert!(matches!(ok, VerifyOutcome::Verified(_)));
        let other = VerifyOutcome::classify("123456789012", Ok(identity("210987654321")));
        assert!(matches!(other, VerifyOutcome::AccountMismatch { .. }));
        let denied = VerifyOutcome::classify(
            "123456789012",
            Err(error(ErrorClass::AccessDenied, "AccessDenied")),
        );
        assert!(matches!(
            denied,
            VerifyOutcome::Refused {
                class: ErrorClass::AccessDenied,
                ..
            }
        ));
        let throttled = VerifyOutcome::classify(
            "123456789012",
            Err(error(ErrorClass::Throttled, "Throttling")),
        );
        assert!(matches!(throttled, VerifyOutcome::Transient(_)));
    }

    #[test]
    fn only_an_answer_counts_as_a_verification() {
        let rows = [
            (Ok(identity("123456789012")), true),
            (Ok(identity("210987654321")), true),
            (Err(error(ErrorClass::AccessDenied, "AccessDenied")), true),
            (Err(error(ErrorClass::Rejected, "ValidationError")), true),
            (Err(error(ErrorClass::Throttled, "Throttling")), false),
            (
                Err(error(ErrorClass::Transient, "ServiceUnavailable")),
                false,
            ),
            (
                Err(AwsError::new(
                    "sts:AssumeRole",
                    ErrorClass::Transient,
                    "request timed out",
                )),
                false,
            ),
        ];
        for (result, answered) in rows {
            let outcome = VerifyOutcome::classify("123456789012", result);
            assert_eq!(outcome.answered(), answered, "{outcome:?}");
        }
    }

    #[test]
    fn verified_is_ready_and_requeues_near_the_interval() {
        let v = decide(
            &VerifyOutcome::Verified(identity("123456789012")),
            ROLE,
            &clock(0, None),
        );
        assert_eq!(find(&v, READY).status, Status::True);
        assert_eq!(find(&v, ROLE_ASSUMABLE).status, Status::True);
        assert_kstatus(&v);
        let secs = v.requeue_after.as_secs();
        assert!((1620..=1980).contains(&secs), "{secs}");
        assert!(!v.retrying);
    }

    #[test]
    fn access_denied_retries_within_grace_then_stalls() {
        let outcome = VerifyOutcome::Refused {
            class: ErrorClass::AccessDenied,
            error: error(ErrorClass::AccessDenied, "AccessDenied"),
        };
        let early = decide(&outcome, ROLE, &clock(30, Some(0)));
        assert_eq!(find(&early, ROLE_ASSUMABLE).status, Status::False);
        assert_eq!(find(&early, ROLE_ASSUMABLE).reason, reason::ACCESS_DENIED);
        assert_eq!(find(&early, RECONCILING).status, Status::True);
        assert!(early.retrying);
        assert!(early.requeue_after <= Duration::from_secs(90));
        assert_kstatus(&early);

        let late = decide(&outcome, ROLE, &clock(121, Some(0)));
        assert_eq!(find(&late, STALLED).status, Status::True);
        assert_eq!(find(&late, STALLED).reason, reason::ACCESS_DENIED);
        assert!(!late.retrying);
        assert_kstatus(&late);
    }

    #[test]
    fn region_disabled_has_its_own_reason() {
        let outcome = VerifyOutcome::Refused {
            class: ErrorClass::RegionDisabled,
            error: error(ErrorClass::RegionDisabled, "RegionDisabledException"),
        };
        let v = decide(&outcome, ROLE, &clock(0, None));
        assert_eq!(find(&v, READY).reason, reason::REGION_DISABLED);
        assert_kstatus(&v);
    }

    #[test]
    fn mismatch_and_rejections_stall_with_the_aws_message() {
        let v = decide(
            &VerifyOutcome::AccountMismatch {
                actual: identity("210987654321"),
            },
            ROLE,
            &clock(0, None),
        );
        assert_eq!(find(&v, STALLED).reason, reason::ACCOUNT_MISMATCH);
        assert!(find(&v, READY).message.contains("210987654321"));
        assert_kstatus(&v);

        let rejected = VerifyOutcome::Refused {
            class: ErrorClass::Rejected,
            error: error(ErrorClass::Rejected, "ValidationError"),
        };
        let v = decide(&rejected, ROLE, &clock(0, None));
        assert_eq!(find(&v, READY).reason, reason::AWS_REJECTED);
        assert!(find(&v, READY).message.starts_with("ValidationError: "));
        assert_kstatus(&v);
    }

    #[test]
    fn expired_token_keeps_trying_and_invalid_identity_token_stalls() {
        let expired = VerifyOutcome::Refused {
            class: ErrorClass::ExpiredToken,
            error: error(ErrorClass::ExpiredToken, "ExpiredTokenException"),
        };
        let v = decide(&expired, ROLE, &clock(0, None));
        assert_eq!(find(&v, RECONCILING).status, Status::True);
        assert_kstatus(&v);
        let invalid = VerifyOutcome::Refused {
            class: ErrorClass::InvalidIdentityToken,
            error: error(ErrorClass::InvalidIdentityToken, "InvalidIdentityToken"),
        };
        let v = decide(&invalid, ROLE, &clock(0, None));
        assert_eq!(find(&v, STALLED).reason, reason::INVALID_IDENTITY_TOKEN);
        assert_kstatus(&v);
    }

    #[test]
    fn transient_errors_keep_conditions_and_back_off() {
        let outcome = VerifyOutcome::Transient(error(ErrorClass::Throttled, "Throttling"));
        let mut c = clock(0, None);
        let first = decide(&outcome, ROLE, &c);
        assert_eq!(first.conditions, None);
        assert!(first.retrying);
        c.attempt = 5;
        let later = decide(&outcome, ROLE, &c);
        assert!(later.requeue_after > first.requeue_after);
        c.attempt = 30;
        assert!(decide(&outcome, ROLE, &c).requeue_after <= Duration::from_secs(360));
    }

    #[test]
    fn blocked_states_stall_with_their_reason() {
        let v = blocked(&Blocked::Suspended, &clock(0, None));
        assert_eq!(find(&v, READY).reason, reason::SUSPENDED);
        assert_kstatus(&v);
        let v = blocked(
            &Blocked::ExternalId {
                reason: reason::EXTERNAL_ID_SECRET_NOT_FOUND,
                message: "Secret payments-external-id not found".into(),
            },
            &clock(0, None),
        );
        assert_eq!(
            find(&v, STALLED).reason,
            reason::EXTERNAL_ID_SECRET_NOT_FOUND
        );
        assert!(find(&v, READY).message.contains("payments-external-id"));
        assert_kstatus(&v);
    }

    #[test]
    fn a_verified_link_stays_ready_while_its_instance_is_updated() {
        let instance = |status: &str, detailed: &str| StackInstanceRef {
            stack_set: "ss".into(),
            region: "eu-west-1".into(),
            status: Some(status.into()),
            detailed_status: Some(detailed.into()),
            ..StackInstanceRef::default()
        };
        let kind = |d: &Deployment| match d {
            Deployment::Unmanaged => "unmanaged",
            Deployment::Deployed => "deployed",
            Deployment::Updating(_) => "updating",
            Deployment::Waiting(_) => "waiting",
            Deployment::Failed(_) => "failed",
        };
        // (status, detailed, verified before) → deployment
        let rows = [
            ("CURRENT", "SUCCEEDED", false, "deployed"),
            ("CURRENT", "SUCCEEDED", true, "deployed"),
            ("OUTDATED", "PENDING", false, "waiting"),
            ("OUTDATED", "RUNNING", false, "waiting"),
            ("OUTDATED", "PENDING", true, "updating"),
            ("OUTDATED", "RUNNING", true, "updating"),
            ("OUTDATED", "SUCCEEDED", true, "updating"),
            ("OUTDATED", "FAILED", true, "failed"),
            ("INOPERABLE", "INOPERABLE", true, "failed"),
        ];
        for (status, detailed, verified, want) in rows {
            let got = deployment(true, Some(&instance(status, detailed)), verified);
            assert_eq!(kind(&got), want, "{status}/{detailed} verified={verified}");
        }
        assert_eq!(kind(&deployment(true, None, true)), "waiting");
        assert_eq!(kind(&deployment(false, None, false)), "unmanaged");

        // What verification said stands; RoleDeployed says the update runs.
        let verified = decide(
            &VerifyOutcome::Verified(identity("123456789012")),
            ROLE,
            &clock(0, None),
        );
        let current: Vec<Condition> = crate::controller::conditions::merge(
            &[],
            verified.conditions.as_ref().unwrap(),
            &OWNED_TYPES,
            Some(1),
            clock(0, None).now,
        );
        let updating = deployment(true, Some(&instance("OUTDATED", "RUNNING")), true);
        let v = undeployed(&updating, &clock(10, None), &current).expect("a verdict");
        assert_kstatus(&v);
        assert_eq!(find(&v, READY).status, Status::True);
        assert_eq!(find(&v, ROLE_ASSUMABLE).status, Status::True);
        let deployed = find(&v, ROLE_DEPLOYED);
        assert_eq!(
            (deployed.status, deployed.reason.as_str()),
            (Status::True, reason::STACK_INSTANCE_UPDATING)
        );
        assert!(
            deployed.message.contains("OUTDATED/RUNNING"),
            "{}",
            deployed.message
        );
        assert!(!v.retrying);
    }
}
