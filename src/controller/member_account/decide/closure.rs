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
mod tests {
    use super::super::fixtures::{account, described, failed, found, ours, request, who};
    use super::*;

    fn close(account: Option<&str>, request: Option<&str>) -> Recorded {
        Recorded {
            policy: MemberDeletionPolicy::Close,
            account_id: account.map(Into::into),
            request_id: request.map(Into::into),
            ..Recorded::default()
        }
    }

    /// The account described ACTIVE and its tags read: this object's.
    fn active(id: &str) -> Seen {
        Seen {
            accounts: described(&[account(id, "dev@example.com", "ACTIVE")]),
            tags: [(id.to_string(), ours())].into(),
            ..Seen::default()
        }
    }

    // docs/memberaccount.md, "Deletion".

    #[test]
    fn retain_leaves_every_account_and_says_so() {
        let retain = Recorded {
            account_id: Some("111".into()),
            ..Recorded::default()
        };
        assert_eq!(
            closure(&retain, &Seen::default(), &who()),
            ClosureStep::Retain(
                "deletionPolicy is Retain: account 111 stays in the organization".into()
            )
        );
        assert_eq!(
            closure(&Recorded::default(), &Seen::default(), &who()),
            ClosureStep::Retain("deletionPolicy is Retain; no account was created".into())
        );
    }

    /// Account 111 is described first, then its tags are read.
    fn reads_the_account_then_its_tags(rec: &Recorded) {
        assert_eq!(
            closure(rec, &Seen::default(), &who()),
            ClosureStep::Look(Lookup::Account("111".into()))
        );
        let mut seen = active("111");
        seen.tags.clear();
        assert_eq!(
            closure(rec, &seen, &who()),
            ClosureStep::Look(Lookup::Tags("111".into()))
        );
    }

    #[test]
    fn the_account_in_status_is_described_its_tags_read_then_closed() {
        let rec = close(Some("111"), Some("car-1"));
        reads_the_account_then_its_tags(&rec);
        assert_eq!(
            closure(&rec, &active("111"), &who()),
            ClosureStep::Close("111".into())
        );
    }

    /// A forged `status.accountId` (or a recorded request) pointing at someone else's account:
    /// its tags, read right before CloseAccount, decide; nothing is closed.
    #[test]
    fn an_account_whose_tags_name_someone_else_is_never_closed() {
        use crate::api::labels::{CLUSTER_TAG, OWNER_TAG};
        let tags = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cases = [
            (
                tags(&[]),
                "it carries no accountlinker.dev/member-account tag",
            ),
            (
                tags(&[(OWNER_TAG, "team-a/dev"), (CLUSTER_TAG, "cluster-2")]),
                "another cluster (cluster-2)",
            ),
            (
                tags(&[(OWNER_TAG, "team-b/dev"), (CLUSTER_TAG, "cluster-1")]),
                "names team-b/dev",
            ),
        ];
        for (foreign, says) in cases {
            for rec in [close(Some("111"), None), close(None, Some("car-1"))] {
                let mut seen = active("111");
                seen.request = Some(request("car-1", "SUCCEEDED", Some("111")));
                seen.tags.insert("111".into(), foreign.clone());
                let step = closure(&rec, &seen, &who());
                let ClosureStep::NotOwned(note) = &step else {
                    panic!("{foreign:?}: not closed, got {step:?}")
                };
                assert!(
                    note.starts_with("account 111 is not this MemberAccount's: "),
                    "{note}"
                );
                assert!(note.contains(says), "{note}");
            }
        }
    }

    /// Close keeps the object while the account is PENDING_CLOSURE (for at most CLOSE_WAIT)
    /// and lets it go with the end state; Park leaves a closing account alone.
    #[test]
    fn an_account_already_closing_is_waited_for_not_closed_again() {
        let hour = Duration::from_secs(3600);
        let table = [
            ("PENDING_CLOSURE", None, Some("wait")),
            (
                "PENDING_CLOSURE",
                Some(Duration::from_secs(5)),
                Some("wait"),
            ),
            ("PENDING_CLOSURE", Some(hour), Some("PENDING_CLOSURE")),
            ("SUSPENDED", None, Some("SUSPENDED")),
            ("CLOSED", Some(Duration::from_secs(5)), Some("CLOSED")),
        ];
        for (state, closing_for, want) in table {
            let seen = Seen {
                accounts: described(&[account("111", "dev@example.com", state)]),
                ..Seen::default()
            };
            let rec = Recorded {
                closing_for,
                ..close(Some("111"), None)
            };
            let step = closure(&rec, &seen, &who());
            let expected = match want {
                Some("wait") => ClosureStep::WaitForSuspension("111".into()),
                Some(end) => ClosureStep::Closed {
                    account: "111".into(),
                    state: end.into(),
                },
                None => unreachable!(),
            };
            assert_eq!(step, expected, "{state} {closing_for:?}");
            let park = Recorded {
                policy: MemberDeletionPolicy::Park,
                park_parent: Some("ou-park".into()),
                ..rec
            };
            assert_eq!(closure(&park, &seen, &who()), ClosureStep::AlreadyClosed);
        }
    }

    fn park(account: Option<&str>, adopt: Option<&str>) -> Recorded {
        Recorded {
            policy: MemberDeletionPolicy::Park,
            account_id: account.map(Into::into),
            adopt_id: adopt.map(Into::into),
            park_parent: Some("ou-park".into()),
            ..Recorded::default()
        }
    }

    /// Park reads the account, its tags (ownership, from AWS) and its parent; it moves only
    /// when not already there and removes only the owner tags it finds.
    #[test]
    fn park_moves_an_owned_account_then_removes_the_owner_tags() {
        for rec in [park(Some("111"), None), park(None, Some("111"))] {
            reads_the_account_then_its_tags(&rec);
            let mut seen = active("111");
            assert_eq!(
                closure(&rec, &seen, &who()),
                ClosureStep::Look(Lookup::Parent("111".into()))
            );
            seen.parents.insert("111".into(), "ou-team".into());
            assert_eq!(
                closure(&rec, &seen, &who()),
                ClosureStep::Park {
                    account: "111".into(),
                    from: Some("ou-team".into()),
                    to: "ou-park".into(),
                    untag: vec![
                        "accountlinker.dev/member-account".into(),
                        "accountlinker.dev/cluster-id".into(),
                    ],
                }
            );
            // A crash after the move: the next pass only untags.
            seen.parents.insert("111".into(), "ou-park".into());
            let ClosureStep::Park { from, .. } = closure(&rec, &seen, &who()) else {
                panic!("park")
            };
            assert_eq!(from, None);
            // A crash after the untag: parked already; nothing is called.
            seen.tags.insert("111".into(), Default::default());
            assert_eq!(
                closure(&rec, &seen, &who()),
                ClosureStep::AlreadyParked("111".into())
            );
            // Untagged and elsewhere: not this object's, left alone.
            seen.parents.insert("111".into(), "ou-team".into());
            assert!(matches!(
                closure(&rec, &seen, &who()),
                ClosureStep::NotOwned(n) if n.contains("it is not parked")
            ));
        }
    }

    #[test]
    fn park_never_touches_an_account_tagged_for_someone_else() {
        use crate::api::labels::{CLUSTER_TAG, OWNER_TAG};
        let mut seen = active("111");
        seen.tags.insert(
            "111".into(),
            [
                (OWNER_TAG.to_string(), "team-b/dev".to_string()),
                (CLUSTER_TAG.to_string(), "cluster-1".to_string()),
            ]
            .into(),
        );
        let step = closure(&park(Some("111"), None), &seen, &who());
        assert!(
            matches!(&step, ClosureStep::NotOwned(n) if n.contains("names team-b/dev") && n.ends_with("it is not parked")),
            "{step:?}"
        );
        // Without any account of this object: nothing to park.
        let nothing = Recorded {
            adopt_id: None,
            ..park(None, None)
        };
        let seen = Seen {
            by_email: Some(None),
            ..Seen::default()
        };
        assert_eq!(
            closure(&nothing, &seen, &who()),
            ClosureStep::NothingToClose
        );
    }

    #[test]
    fn a_recorded_request_decides_by_its_state_and_its_account_s_e_mail() {
        let rec = close(None, Some("car-1"));
        assert_eq!(
            closure(&rec, &Seen::default(), &who()),
            ClosureStep::Look(Lookup::Request("car-1".into()))
        );
        let running = Seen {
            request: Some(request("car-1", "IN_PROGRESS", None)),
            ..Seen::default()
        };
        assert!(matches!(
            closure(&rec, &running, &who()),
            ClosureStep::WaitForRequest(_)
        ));
        let mut made = Seen {
            request: Some(request("car-1", "SUCCEEDED", Some("222"))),
            ..Seen::default()
        };
        assert_eq!(
            closure(&rec, &made, &who()),
            ClosureStep::Look(Lookup::Account("222".into()))
        );
        made.accounts = described(&[account("222", "dev@example.com", "ACTIVE")]);
        made.tags.insert("222".into(), ours());
        assert_eq!(
            closure(&rec, &made, &who()),
            ClosureStep::Close("222".into())
        );
        // An account described without an e-mail proves nothing.
        made.accounts = described(&[account("222", "", "ACTIVE")]);
        assert_eq!(closure(&rec, &made, &who()), ClosureStep::NothingToClose);
        made.accounts = described(&[account("222", "other@example.com", "ACTIVE")]);
        assert_eq!(closure(&rec, &made, &who()), ClosureStep::NothingToClose);
        let failed = Seen {
            request: Some(failed("car-1", "EMAIL_ALREADY_EXISTS")),
            ..Seen::default()
        };
        assert_eq!(closure(&rec, &failed, &who()), ClosureStep::NothingToClose);
    }

    #[test]
    fn without_status_only_an_account_with_the_e_mail_and_the_owner_tag_is_closed() {
        let rec = close(None, None);
        assert_eq!(
            closure(&rec, &Seen::default(), &who()),
            ClosureStep::Look(Lookup::ByEmail)
        );
        let mut seen = active("111");
        seen.by_email = found("111", true);
        assert_eq!(
            closure(&rec, &seen, &who()),
            ClosureStep::Close("111".into())
        );
        seen.by_email = found("111", false);
        assert_eq!(closure(&rec, &seen, &who()), ClosureStep::NothingToClose);
        seen.by_email = Some(None);
        assert_eq!(closure(&rec, &seen, &who()), ClosureStep::NothingToClose);
    }

    fn refused(class: ErrorClass, code: &str) -> Result<(), AwsError> {
        Err(AwsError {
            operation: "organizations:CloseAccount",
            class,
            code: Some(code.into()),
            reason: None,
            message: format!("{code}: no"),
        })
    }

    #[test]
    fn close_account_s_answer() {
        assert!(
            matches!(close_answered("111", Ok(())), CloseAnswer::Closed(n) if n.contains("PENDING_CLOSURE"))
        );
        assert_eq!(
            close_answered(
                "111",
                refused(ErrorClass::AlreadyClosed, "AccountAlreadyClosedException")
            ),
            CloseAnswer::AlreadyClosed
        );
        assert!(matches!(
            close_answered(
                "111",
                refused(ErrorClass::Throttled, "TooManyRequestsException")
            ),
            CloseAnswer::Retry(_)
        ));
        for (class, code, reason) in [
            (
                ErrorClass::QuotaExceeded,
                "CLOSE_ACCOUNT_QUOTA_EXCEEDED",
                "CloseAccountQuotaExceeded",
            ),
            (
                ErrorClass::AccessDenied,
                "AccessDeniedException",
                "AwsRejected",
            ),
            (ErrorClass::Rejected, "ValidationException", "AwsRejected"),
        ] {
            let CloseAnswer::Refused(report) = close_answered("111", refused(class, code)) else {
                panic!("{code} is refused for good")
            };
            assert_eq!(
                (report.health, report.reason.as_str()),
                (Health::Stalled, reason)
            );
            assert!(
                report
                    .message
                    .starts_with(&format!("CloseAccount 111: {code}: no;"))
            );
            assert_eq!(report.created.reason, "Created");
        }
    }
}
