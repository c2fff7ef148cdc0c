//! Delegated-admin preflight: a registration with `callAs: DelegatedAdmin` makes no StackSet
//! call until Organizations lists the hub as a delegated administrator for StackSets. AWS's own
//! answer to an unregistered caller is a ValidationError on the first StackSet call; this says
//! instead which command fixes it, where to run it, and which permission the check needs.
//!
//! The answer is the hub's, not a registration's: one per process, cached — a positive one for
//! [`REGISTERED_TTL`], a negative one for a time that doubles with each negative answer
//! ([`recheck_after`]) — so stalled registrations do not call Organizations on every pass.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::status::Stall;
use super::{Context, Halt};
use crate::api::bulk_registration::reason;
use crate::aws::stacksets::CallAs;
use crate::aws::{AwsError, ErrorClass};

/// The service principal of CloudFormation StackSets in Organizations.
pub const STACKSETS_PRINCIPAL: &str = "member.org.stacksets.cloudformation.amazonaws.com";
/// How long a positive answer is trusted (a deregistration shows as AWS errors meanwhile).
pub const REGISTERED_TTL: Duration = Duration::from_secs(3600);
/// The first wait after a negative answer; it doubles up to [`LONGEST_RECHECK`].
const FIRST_RECHECK: Duration = Duration::from_secs(30);
const LONGEST_RECHECK: Duration = Duration::from_secs(900);

/// What Organizations answered about the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Registered,
    NotRegistered {
        hub: String,
    },
    /// ListDelegatedAdministrators was refused (AccessDenied): AWS's message.
    Denied {
        hub: String,
        message: String,
    },
}

/// The last answer, shared by every registration of this process.
#[derive(Default)]
pub struct Cache(Mutex<Option<Memo>>);

struct Memo {
    answer: Answer,
    until: Instant,
    negatives: u32,
}

/// How long a negative answer stands after `negatives` of them in a row.
pub fn recheck_after(negatives: u32) -> Duration {
    FIRST_RECHECK
        .saturating_mul(1 << negatives.saturating_sub(1).min(10))
        .min(LONGEST_RECHECK)
}

/// The answer from the listed administrators, or from the refusal to list them; other
/// errors are not answers (retried with backoff).
pub fn judge(hub: &str, listed: Result<Vec<String>, AwsError>) -> Result<Answer, AwsError> {
    match listed {
        Ok(admins) if admins.iter().any(|a| a == hub) => Ok(Answer::Registered),
        Ok(_) => Ok(Answer::NotRegistered { hub: hub.into() }),
        Err(e) if e.class == ErrorClass::AccessDenied => Ok(Answer::Denied {
            hub: hub.into(),
            message: e.message,
        }),
        Err(e) => Err(e),
    }
}

/// The command that registers `hub`, run in the management account.
pub fn command(hub: &str) -> String {
    format!(
        "aws organizations register-delegated-administrator --account-id {hub} --service-principal {STACKSETS_PRINCIPAL}"
    )
}

/// The stall of a negative answer (`None`: registered, go on).
pub fn stall(answer: &Answer) -> Option<Stall> {
    match answer {
        Answer::Registered => None,
        Answer::NotRegistered { hub } => Some(Stall::stack_set(
            reason::DELEGATED_ADMIN_NOT_REGISTERED,
            format!(
                "callAs: DelegatedAdmin, but the hub account {hub} is not a registered delegated administrator for CloudFormation StackSets; from the management account run `{}` (or use callAs: Self when the operator runs in the management account); no StackSet call is made until then",
                command(hub)
            ),
        )),
        Answer::Denied { hub, message } => Some(Stall::stack_set(
            reason::DELEGATED_ADMIN_UNVERIFIED,
            format!(
                "callAs: DelegatedAdmin, but the hub account {hub} may not call organizations:ListDelegatedAdministrators ({message}): AWS refuses it to a member account that is no delegated administrator, and to a role without that permission. If the account is not registered, run from the management account `{}`; and allow organizations:ListDelegatedAdministrators to the operator's role; no StackSet call is made until then",
                command(hub)
            ),
        )),
    }
}

/// The preflight for a registration acting as `call_as`: only `DelegatedAdmin` is checked.
pub(super) async fn gate(call_as: CallAs, ctx: &Context) -> Result<(), Halt> {
    if call_as != CallAs::DelegatedAdmin {
        return Ok(());
    }
    match check(ctx).await? {
        Some(stall) => Err(Halt::Stalled(stall)),
        None => Ok(()),
    }
}

/// Checks the hub's registration (from the cache while it is fresh): `Some` stall when it is
/// not registered or cannot be checked.
pub async fn check(ctx: &Context) -> Result<Option<Stall>, AwsError> {
    let now = Instant::now();
    let negatives = {
        let memo = ctx.preflight.0.lock().expect("preflight cache");
        match memo.as_ref() {
            Some(m) if m.until > now => return Ok(stall(&m.answer)),
            Some(m) => m.negatives,
            None => 0,
        }
    };
    let hub = ctx.hub.caller().await?.account;
    let listed = ctx
        .delegated
        .delegated_administrators(STACKSETS_PRINCIPAL)
        .await;
    let answer = judge(&hub, listed)?;
    let (until, negatives) = match answer {
        Answer::Registered => (now + REGISTERED_TTL, 0),
        _ => (now + recheck_after(negatives + 1), negatives + 1),
    };
    let found = stall(&answer);
    *ctx.preflight.0.lock().expect("preflight cache") = Some(Memo {
        answer,
        until,
        negatives,
    });
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB: &str = "222222222222";

    fn denied() -> AwsError {
        AwsError::new(
            "organizations:ListDelegatedAdministrators",
            ErrorClass::AccessDenied,
            "You don't have permissions to access this resource.",
        )
    }

    #[test]
    fn the_listed_administrators_decide() {
        let registered = judge(HUB, Ok(vec!["111111111111".into(), HUB.into()]));
        assert_eq!(registered.unwrap(), Answer::Registered);
        let missing = judge(HUB, Ok(vec!["111111111111".into()])).unwrap();
        assert_eq!(missing, Answer::NotRegistered { hub: HUB.into() });
        let Answer::Denied { message, .. } = judge(HUB, Err(denied())).unwrap() else {
            panic!("denied expected");
        };
        assert!(message.contains("permissions"));
        let throttled = AwsError::new("organizations:X", ErrorClass::Throttled, "slow down");
        assert!(
            judge(HUB, Err(throttled)).is_err(),
            "not an answer: retried"
        );
    }

    #[test]
    fn a_negative_answer_carries_the_exact_command_and_stalls_the_stack_set() {
        let stall = stall(&Answer::NotRegistered { hub: HUB.into() }).unwrap();
        assert_eq!(stall.reason, reason::DELEGATED_ADMIN_NOT_REGISTERED);
        assert!(stall.stack_set);
        assert!(stall.message.contains(
            "`aws organizations register-delegated-administrator --account-id 222222222222 --service-principal member.org.stacksets.cloudformation.amazonaws.com`"
        ), "{}", stall.message);
        let denied = stall_of_denied();
        assert_eq!(denied.reason, reason::DELEGATED_ADMIN_UNVERIFIED);
        assert!(
            denied
                .message
                .contains("organizations:ListDelegatedAdministrators")
        );
        assert!(denied.message.contains(&command(HUB)));
        assert_eq!(super::stall(&Answer::Registered), None);
    }

    fn stall_of_denied() -> Stall {
        let answer = Answer::Denied {
            hub: HUB.into(),
            message: "You don't have permissions".into(),
        };
        stall(&answer).unwrap()
    }

    #[test]
    fn negative_answers_are_checked_again_less_and_less_often() {
        let waits: Vec<u64> = (1..=6).map(|n| recheck_after(n).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 900]);
        assert_eq!(recheck_after(u32::MAX), LONGEST_RECHECK);
    }
}
