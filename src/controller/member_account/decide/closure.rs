//! Deletion: which account, if any, this object may close or park, as a pure step function
//! like [`super::creation`]. Only an account provably the object's is ever closed or parked: the
//! one in status, the one its recorded request made for its e-mail, the one in `spec.accountId`,
//! or the one with its e-mail and its owner tag — and in every case only when its tags, read
//! right before CloseAccount or MoveAccount, name this object and this cluster (status is a
//! cache: a forged `status.accountId` closes or parks nothing). Anything else is an Event and
//! nothing is changed.
//!
//! `Close` holds the finalizer while the account is PENDING_CLOSURE (polled, never awaited in a
//! reconcile) so the end state, SUSPENDED, is reported, for at most [`CLOSE_WAIT`]. `Park` is
//! idempotent across crashes: a pass that finds the account under `parkParentId` without an
//! owner tag knows an earlier pass parked it.

use std::time::Duration;

use super::Identity;
use super::{Found, Health, Lookup, Report, Seen, account_owner, created, request_account};
use crate::api::labels::{CLUSTER_TAG, OWNER_TAG};
use crate::api::member_account::{MemberDeletionPolicy, reason};
use crate::aws::accounts::{AccountState, CreateAccountState};
use crate::aws::{AwsError, ErrorClass};

/// How often a refused CloseAccount is tried again without a change to the object.
pub const CLOSE_RECHECK: Duration = Duration::from_secs(3600);

/// How long deletion with `Close` keeps the object while the account is PENDING_CLOSURE,
/// waiting to report SUSPENDED. After that the object goes with the account still closing.
pub const CLOSE_WAIT: Duration = Duration::from_secs(3600);

/// What status and spec recorded that deletion needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub policy: MemberDeletionPolicy,
    pub account_id: Option<String>,
    pub request_id: Option<String>,
    /// `spec.accountId`: the adopted account, when status has none yet.
    pub adopt_id: Option<String>,
    /// `spec.parkParentId`.
    pub park_parent: Option<String>,
    /// How long ago status first said the account is closing (the `Closing` report).
    pub closing_for: Option<Duration>,
}

/// The next step of deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClosureStep {
    /// Read this, then ask again.
    Look(Lookup),
    /// `Retain`: an Event with this note; the object goes.
    Retain(String),
    /// The recorded request is still running: wait for it (the finalizer stays).
    WaitForRequest(String),
    /// No account is provably this object's: an Event, nothing is closed or parked, the
    /// object goes.
    NothingToClose,
    /// The account is already closing or closed, and the policy is not `Close`: the object
    /// goes.
    AlreadyClosed,
    /// `Close`: the account is PENDING_CLOSURE; report it and look again (the finalizer stays).
    WaitForSuspension(String),
    /// `Close`: the account reached SUSPENDED (or CLOSED) with this state, or [`CLOSE_WAIT`]
    /// passed: an Event, record the state; the object goes.
    Closed { account: String, state: String },
    /// The account's tags do not make it this object's: an Event with this note, nothing is
    /// closed or parked, the object goes.
    NotOwned(String),
    /// Call CloseAccount for this account.
    Close(String),
    /// `Park`: move the account from `from` (when not already under the park parent) to
    /// `to`, then remove `untag`; an Event `Parked`; the object goes.
    Park {
        account: String,
        from: Option<String>,
        to: String,
        untag: Vec<String>,
    },
    /// `Park`: an earlier pass parked the account (under the park parent, no owner tag).
    AlreadyParked(String),
}

pub fn closure(recorded: &Recorded, seen: &Seen, who: &Identity) -> ClosureStep {
    if recorded.policy == MemberDeletionPolicy::Retain {
        return ClosureStep::Retain(match &recorded.account_id {
            Some(id) => format!("deletionPolicy is Retain: account {id} stays in the organization"),
            None => "deletionPolicy is Retain; no account was created".to_string(),
        });
    }
    let account = match (&recorded.account_id, &recorded.request_id) {
        (Some(id), _) => Some(id.clone()),
        (None, Some(id)) => {
            let Some(request) = &seen.request else {
                return ClosureStep::Look(Lookup::Request(id.clone()));
            };
            if request.state == CreateAccountState::InProgress {
                return ClosureStep::WaitForRequest(format!(
                    "CreateAccount request {id} is still in progress"
                ));
            }
            match request_account(request, seen, who) {
                Err(lookup) => return ClosureStep::Look(lookup),
                Ok(account) => account,
            }
        }
        (None, None) => match (&recorded.adopt_id, &seen.by_email) {
            (Some(id), _) => Some(id.clone()),
            (None, None) => return ClosureStep::Look(Lookup::ByEmail),
            (None, Some(Some(Found { id, owned: true }))) => Some(id.clone()),
            (None, Some(_)) => None,
        },
    };
    let Some(account) = account else {
        return ClosureStep::NothingToClose;
    };
    let Some(info) = seen.accounts.get(&account) else {
        return ClosureStep::Look(Lookup::Account(account));
    };
    if let Some(state) = info.state.as_ref().filter(|s| s.closing_or_closed()) {
        if recorded.policy != MemberDeletionPolicy::Close {
            return ClosureStep::AlreadyClosed;
        }
        let waited_enough = recorded.closing_for.is_some_and(|w| w >= CLOSE_WAIT);
        if *state == AccountState::PendingClosure && !waited_enough {
            return ClosureStep::WaitForSuspension(account);
        }
        return ClosureStep::Closed {
            account,
            state: state.to_string(),
        };
    }
    let Some(tags) = seen.tags.get(&account) else {
        return ClosureStep::Look(Lookup::Tags(account));
    };
    let owner = account_owner(tags, who);
    let park = match (&recorded.policy, &recorded.park_parent) {
        (MemberDeletionPolicy::Park, Some(park)) => park,
        (MemberDeletionPolicy::Park, None) => {
            // CEL requires parkParentId with Park; without it nothing can be parked.
            return ClosureStep::NothingToClose;
        }
        _ => {
            return match owner {
                Ok(()) => ClosureStep::Close(account),
                Err(whose) => ClosureStep::NotOwned(not_owned(&account, &whose, "closed")),
            };
        }
    };
    let untagged = !tags.contains_key(OWNER_TAG);
    if let Err(whose) = &owner
        && !untagged
    {
        return ClosureStep::NotOwned(not_owned(&account, whose, "parked"));
    }
    let Some(parent) = seen.parents.get(&account) else {
        return ClosureStep::Look(Lookup::Parent(account));
    };
    if untagged {
        return if parent == park {
            ClosureStep::AlreadyParked(account)
        } else {
            let whose = owner.err().unwrap_or_default();
            ClosureStep::NotOwned(not_owned(&account, &whose, "parked"))
        };
    }
    ClosureStep::Park {
        from: (parent != park).then(|| parent.clone()),
        to: park.clone(),
        untag: [OWNER_TAG, CLUSTER_TAG]
            .into_iter()
            .filter(|k| tags.contains_key(*k))
            .map(String::from)
            .collect(),
        account,
    }
}

fn not_owned(account: &str, whose: &str, done: &str) -> String {
    format!("account {account} is not this MemberAccount's: {whose}; it is not {done}")
}

/// The report while deletion with `Close` waits for the account to be SUSPENDED.
pub fn closing(account: &str) -> Report {
    Report::new(
        Health::Progressing,
        reason::CLOSING,
        format!(
            "deletionPolicy is Close: account {account} is PENDING_CLOSURE; the object goes once it is SUSPENDED"
        ),
        created(reason::CREATED, ""),
    )
}

/// How long the Ready condition has said `Closing`, if it does.
pub fn closing_for(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    now: k8s_openapi::jiff::Timestamp,
) -> Option<Duration> {
    crate::controller::conditions::find(conditions, crate::api::conditions::READY)
        .filter(|c| c.reason == reason::CLOSING)
        .map(|c| now.duration_since(c.last_transition_time.0).unsigned_abs())
}

/// What to do with CloseAccount's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseAnswer {
    /// Record PENDING_CLOSURE, an Event with this note; the object goes.
    Closed(String),
    /// Someone closed it first: the object goes.
    AlreadyClosed,
    /// Refused for good: write the report, keep the finalizer, look again after
    /// [`CLOSE_RECHECK`] or on any change.
    Refused(Report),
    /// Back off and try again.
    Retry(AwsError),
}

pub fn close_answered(account: &str, result: Result<(), AwsError>) -> CloseAnswer {
    let e = match result {
        Ok(()) => {
            return CloseAnswer::Closed(format!(
                "deletionPolicy is Close: account {account} is PENDING_CLOSURE (reinstatable for 90 days)"
            ));
        }
        Err(e) => e,
    };
    if e.class == ErrorClass::AlreadyClosed {
        return CloseAnswer::AlreadyClosed;
    }
    if e.class.is_retryable() {
        return CloseAnswer::Retry(e);
    }
    let reason = if e.class == ErrorClass::QuotaExceeded {
        reason::CLOSE_QUOTA
    } else {
        reason::AWS_REJECTED
    };
    let message = format!(
        "CloseAccount {account}: {}; the account stays until this is resolved (retried hourly, or on any change to this object)",
        super::aws_text(&e)
    );
    CloseAnswer::Refused(Report::new(
        Health::Stalled,
        reason,
        message,
        created(reason::CREATED, ""),
    ))
}

#[cfg(test)]
mod tests;
