//! The table tests of [`super`].

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
