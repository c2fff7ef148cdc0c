//! What a verification means for a LinkedAccount's conditions and next check. Pure: every
//! decision here is a function of the outcome, the clock and what status already says.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::LinkedAccountStatus;
use crate::api::conditions::{READY, RECONCILING, ROLE_ASSUMABLE, ROLE_DEPLOYED, STALLED};
use crate::api::linked_account::{StackInstanceRef, reason};
use crate::aws::{AwsError, CallerIdentity, ErrorClass};
use crate::controller::conditions::{Desired, Status};
use crate::controller::runner::backoff;

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

/// Records a verification in status. Only an answer is a verification: a transient failure
/// leaves the time of the last one, so its age shows how long the conditions have gone
/// unconfirmed, a restart verifies at once instead of an interval after a failed attempt, and a
/// token rotation never counts a child as verified with the new token when STS only failed.
pub fn record(status: &mut LinkedAccountStatus, outcome: &VerifyOutcome, now: Timestamp) {
    if outcome.answered() {
        status.last_verified_time = Some(Time(now));
    }
    if let VerifyOutcome::Verified(identity) = outcome {
        status.verified_identity = Some(identity.arn.clone());
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
    /// This verification's spread of the interval ([`spread`]): a verified link is looked at
    /// again `verify_interval × verify_spread` after the verification.
    pub verify_spread: f64,
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
            requeue_after: clock.verify_interval.mul_f64(clock.verify_spread),
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

/// The factor (0.9 to 1.1) by which the verification made at `verified` (whole seconds, as
/// status records it) stretches the interval to the next one, so accounts created together drift
/// apart. A function of the object and the recorded time, not of the clock: the requeue after a
/// verification and every later look at the object (which may come from a watch event, another
/// replica or a restart) agree on when the next one is due.
pub fn spread(uid: &str, verified: Timestamp) -> f64 {
    // FNV-1a: stable across builds and processes, unlike std's randomly keyed hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let second = verified.as_second().to_le_bytes();
    for byte in uid.as_bytes().iter().chain(&second) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Folded so the low bits (the only ones the seconds moved last) reach the result.
    let unit = ((hash ^ (hash >> 32)) % 1_000_000) as f64 / 1_000_000.0;
    0.9 + 0.2 * unit
}

/// How long until the verification after the one at `verified` is due (`None`: due now). A
/// second or less counts as due: the look that the verdict's requeue brings may come a moment
/// before status's whole-second time says, and waking again a second later is a pass for
/// nothing.
pub fn until_due(
    interval: Duration,
    uid: &str,
    verified: Timestamp,
    now: Timestamp,
) -> Option<Duration> {
    let elapsed = now.duration_since(verified).unsigned_abs();
    interval
        .mul_f64(spread(uid, verified))
        .checked_sub(elapsed)
        .filter(|wait| *wait > Duration::from_secs(1))
}

#[cfg(test)]
mod tests;
