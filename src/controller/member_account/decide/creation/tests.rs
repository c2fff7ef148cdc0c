//! The decision table of creation (docs/memberaccount.md, "Creation, step by step").

use super::super::fixtures::{account, described, failed, found, request, who};
use super::*;

fn recorded(id: Option<&str>, state: Option<&str>) -> Recorded {
    Recorded {
        request_id: id.map(Into::into),
        request_state: state.map(Into::into),
        ..Recorded::default()
    }
}

fn seen_request(request: CreateRequest) -> Seen {
    Seen {
        request: Some(request),
        ..Seen::default()
    }
}

fn reported(step: &CreationStep) -> (Health, &str, Then) {
    match step {
        CreationStep::Report { report, then } => (report.health, report.reason.as_str(), *then),
        other => panic!("not a report: {other:?}"),
    }
}

// docs/memberaccount.md, "Creation": no request recorded.

#[test]
fn without_a_request_the_e_mail_is_looked_up_first() {
    let step = creation(&Recorded::default(), &Seen::default(), &who());
    assert_eq!(step, CreationStep::Look(Lookup::ByEmail));
}

#[test]
fn an_account_with_the_e_mail_and_the_owner_tag_is_adopted() {
    let seen = Seen {
        by_email: found("111", true),
        ..Seen::default()
    };
    assert_eq!(
        creation(&Recorded::default(), &seen, &who()),
        CreationStep::Done {
            account: "111".into(),
            proof: Proof::OwnerTag
        }
    );
}

#[test]
fn an_account_with_the_e_mail_but_not_the_tag_is_reported_never_taken() {
    let seen = Seen {
        by_email: found("111", false),
        ..Seen::default()
    };
    let step = creation(&Recorded::default(), &seen, &who());
    assert_eq!(
        reported(&step),
        (
            Health::Stalled,
            "EmailAlreadyExists",
            Then::After(Duration::from_secs(60))
        )
    );
    let CreationStep::Report { report, .. } = step else {
        unreachable!()
    };
    assert!(
        report
            .message
            .contains("--tags Key=accountlinker.dev/member-account,Value=team-a/dev"),
        "{}",
        report.message
    );
    assert_eq!(
        report.created.status,
        crate::controller::conditions::Status::False
    );
}

#[test]
fn no_account_with_the_e_mail_then_the_requests_in_progress_are_looked_at() {
    let seen = Seen {
        by_email: Some(None),
        ..Seen::default()
    };
    assert_eq!(
        creation(&Recorded::default(), &seen, &who()),
        CreationStep::Look(Lookup::InProgress)
    );
}

#[test]
fn a_request_in_progress_under_the_name_is_followed() {
    let pending = request("car-2", "IN_PROGRESS", None);
    let seen = Seen {
        by_email: Some(None),
        in_progress: Some(Some(pending.clone())),
        ..Seen::default()
    };
    assert_eq!(
        creation(&Recorded::default(), &seen, &who()),
        CreationStep::Follow(pending)
    );
}

#[test]
fn only_when_nothing_of_the_object_exists_or_runs_is_create_account_called() {
    let seen = Seen {
        by_email: Some(None),
        in_progress: Some(None),
        ..Seen::default()
    };
    assert_eq!(
        creation(&Recorded::default(), &seen, &who()),
        CreationStep::Create
    );
}

#[test]
fn requests_in_progress_count_only_under_the_spec_s_name() {
    let mut other = request("car-1", "IN_PROGRESS", None);
    other.account_name = Some("prod".into());
    let mine = request("car-2", "IN_PROGRESS", None);
    assert_eq!(
        under_name(vec![other.clone(), mine.clone()], &who()),
        Some(mine)
    );
    assert_eq!(under_name(vec![other], &who()), None);
}

// A request recorded in status.

#[test]
fn a_recorded_request_is_described_before_anything_else() {
    let step = creation(
        &recorded(Some("car-1"), Some("IN_PROGRESS")),
        &Seen::default(),
        &who(),
    );
    assert_eq!(step, CreationStep::Look(Lookup::Request("car-1".into())));
}

#[test]
fn a_request_in_progress_is_polled_as_creating() {
    let seen = seen_request(request("car-1", "IN_PROGRESS", None));
    let step = creation(&recorded(Some("car-1"), None), &seen, &who());
    assert_eq!(
        reported(&step),
        (Health::Progressing, "Creating", Then::Poll)
    );
    let CreationStep::Report { report, .. } = step else {
        unreachable!()
    };
    assert_eq!(
        report.created.status,
        crate::controller::conditions::Status::Unknown
    );
    assert_eq!(report.message, "CreateAccount request car-1 is in progress");
}

#[test]
fn a_succeeded_request_s_account_is_described_then_adopted_by_its_e_mail() {
    let mut seen = seen_request(request("car-1", "SUCCEEDED", Some("222")));
    let recorded = recorded(Some("car-1"), Some("IN_PROGRESS"));
    assert_eq!(
        creation(&recorded, &seen, &who()),
        CreationStep::Look(Lookup::Account("222".into()))
    );
    seen.accounts = described(&[account("222", "Dev@Example.com", "ACTIVE")]);
    assert_eq!(
        creation(&recorded, &seen, &who()),
        CreationStep::Done {
            account: "222".into(),
            proof: Proof::Request
        }
    );
    // An account described without an e-mail is not proven this object's.
    seen.accounts = described(&[account("222", "", "ACTIVE")]);
    assert_eq!(
        creation(&recorded, &seen, &who()),
        CreationStep::Forget(Forgotten::MadeAnotherAccount("222".into()))
    );
}

#[test]
fn a_request_that_made_an_account_for_another_e_mail_is_forgotten() {
    let mut seen = seen_request(request("car-1", "SUCCEEDED", Some("222")));
    seen.accounts = described(&[account("222", "other@example.com", "ACTIVE")]);
    assert_eq!(
        creation(&recorded(Some("car-1"), None), &seen, &who()),
        CreationStep::Forget(Forgotten::MadeAnotherAccount("222".into()))
    );
}

#[test]
fn a_succeeded_request_without_an_account_is_polled_quietly() {
    let seen = seen_request(request("car-1", "SUCCEEDED", None));
    assert_eq!(
        creation(&recorded(Some("car-1"), None), &seen, &who()),
        CreationStep::PollQuietly
    );
}

#[test]
fn a_request_that_failed_for_good_stalls_until_the_spec_changes() {
    for (failure, reason) in [
        ("EMAIL_ALREADY_EXISTS", "EmailAlreadyExists"),
        ("ACCOUNT_LIMIT_EXCEEDED", "AccountLimitExceeded"),
        ("INVALID_EMAIL", "InvalidEmail"),
        ("", "CreateAccountFailed"),
    ] {
        let seen = Seen {
            // EMAIL_ALREADY_EXISTS looks for an account of this object first; there is none.
            by_email: Some(None),
            ..seen_request(failed("car-1", failure))
        };
        let step = creation(&recorded(Some("car-1"), Some("FAILED")), &seen, &who());
        assert_eq!(
            reported(&step),
            (Health::Stalled, reason, Then::Change),
            "{failure}"
        );
        let CreationStep::Report { report, .. } = step else {
            unreachable!()
        };
        assert!(report.message.contains(failure), "{}", report.message);
        assert_eq!(report.created.reason, reason);
    }
    // The spec changed: the failed request is set aside, creation starts over.
    let mut changed = recorded(Some("car-1"), Some("FAILED"));
    changed.spec_changed = true;
    assert_eq!(
        creation(&changed, &Seen::default(), &who()),
        CreationStep::Forget(Forgotten::FailedBeforeSpecChange)
    );
    // A recorded request that had not FAILED is not set aside by a spec change.
    let mut running = recorded(Some("car-1"), Some("IN_PROGRESS"));
    running.spec_changed = true;
    assert_eq!(
        creation(&running, &Seen::default(), &who()),
        CreationStep::Look(Lookup::Request("car-1".into()))
    );
}

#[test]
fn a_transient_failure_is_reported_then_retried_after_the_pause() {
    let seen = seen_request(failed("car-1", "CONCURRENT_ACCOUNT_MODIFICATION"));
    let mut rec = recorded(Some("car-1"), Some("IN_PROGRESS"));
    // First seen: reported, a full pause.
    let step = creation(&rec, &seen, &who());
    assert_eq!(
        reported(&step),
        (
            Health::Progressing,
            "ConcurrentAccountModification",
            Then::After(RETRY_PAUSE)
        )
    );
    // Reported 10 s ago: the rest of the pause.
    rec.created = Some((
        "ConcurrentAccountModification".into(),
        Duration::from_secs(10),
    ));
    assert_eq!(
        reported(&creation(&rec, &seen, &who())).2,
        Then::After(Duration::from_secs(20))
    );
    // A condition of another reason does not count.
    rec.created = Some(("Creating".into(), Duration::from_secs(100)));
    assert_eq!(
        reported(&creation(&rec, &seen, &who())).2,
        Then::After(RETRY_PAUSE)
    );
    // The pause is over: forgotten, and creation starts over with recovery.
    rec.created = Some(("ConcurrentAccountModification".into(), RETRY_PAUSE));
    assert_eq!(
        creation(&rec, &seen, &who()),
        CreationStep::Forget(Forgotten::TransientFailure)
    );
    let internal = seen_request(failed("car-1", "INTERNAL_FAILURE"));
    assert_eq!(
        reported(&creation(&recorded(Some("car-1"), None), &internal, &who())).0,
        Health::Progressing
    );
}

/// Runs the step function the way the driver does against a small world, and returns the
/// reads and the final step.
fn drive(mut recorded: Recorded, world: &World) -> (Vec<Lookup>, CreationStep) {
    let mut seen = Seen::default();
    let mut reads = Vec::new();
    for _ in 0..10 {
        match creation(&recorded, &seen, &who()) {
            CreationStep::Look(lookup) => {
                match &lookup {
                    Lookup::Request(_) => seen.request = world.request.clone(),
                    Lookup::Account(id) => {
                        seen.accounts.insert(id.clone(), world.accounts[id].clone());
                    }
                    Lookup::ByEmail => seen.by_email = Some(world.by_email.clone()),
                    Lookup::InProgress => {
                        seen.in_progress = Some(under_name(world.in_progress.clone(), &who()));
                    }
                    Lookup::Tags(id) => panic!("creation reads no tags by ID ({id})"),
                    Lookup::Parent(id) => panic!("creation reads no parent ({id})"),
                }
                assert!(!reads.contains(&lookup), "read twice: {lookup:?}");
                reads.push(lookup);
            }
            CreationStep::Forget(_) => {
                recorded.request_id = None;
                recorded.request_state = None;
            }
            step => return (reads, step),
        }
    }
    panic!("no step after 10 reads");
}

#[derive(Default)]
struct World {
    request: Option<CreateRequest>,
    accounts: std::collections::BTreeMap<String, crate::aws::accounts::AccountInfo>,
    by_email: Option<Found>,
    in_progress: Vec<CreateRequest>,
}

#[test]
fn after_a_forgotten_request_recovery_comes_before_a_new_create_account() {
    let world = World {
        request: Some(request("car-1", "SUCCEEDED", Some("222"))),
        accounts: described(&[account("222", "other@example.com", "ACTIVE")]),
        ..World::default()
    };
    let (reads, step) = drive(recorded(Some("car-1"), Some("IN_PROGRESS")), &world);
    assert_eq!(
        reads,
        [
            Lookup::Request("car-1".into()),
            Lookup::Account("222".into()),
            Lookup::ByEmail,
            Lookup::InProgress
        ]
    );
    assert_eq!(step, CreationStep::Create);
}

#[test]
fn create_account_needs_both_recovery_reads_in_every_world() {
    let requests = [
        None,
        Some(request("car-1", "IN_PROGRESS", None)),
        Some(request("car-1", "SUCCEEDED", Some("222"))),
        Some(request("car-1", "SUCCEEDED", None)),
        Some(failed("car-1", "EMAIL_ALREADY_EXISTS")),
        Some(failed("car-1", "INTERNAL_FAILURE")),
    ];
    let emails = [None, Some(("111", true)), Some(("111", false))];
    let pendings = [vec![], vec![request("car-9", "IN_PROGRESS", None)]];
    let mine = ["dev@example.com", "other@example.com"];
    for request in &requests {
        for email in emails {
            for pending in &pendings {
                for e in mine {
                    for (state, changed, age) in [
                        (None, false, None),
                        (Some("FAILED"), true, None),
                        (Some("FAILED"), false, None),
                        (Some("IN_PROGRESS"), false, Some(RETRY_PAUSE)),
                    ] {
                        let world = World {
                            request: request.clone(),
                            accounts: described(&[account("222", e, "ACTIVE")]),
                            by_email: email.map(|(id, owned)| Found {
                                id: id.into(),
                                owned,
                            }),
                            in_progress: pending.clone(),
                        };
                        let rec = Recorded {
                            request_id: request.as_ref().map(|r| r.id.clone()),
                            request_state: state.map(Into::into),
                            spec_changed: changed,
                            created: age.map(|a| ("InternalFailure".to_string(), a)),
                        };
                        let (reads, step) = drive(rec, &world);
                        if step == CreationStep::Create {
                            assert!(reads.contains(&Lookup::ByEmail));
                            assert!(reads.contains(&Lookup::InProgress));
                            assert!(email.is_none() && pending.is_empty());
                        }
                    }
                }
            }
        }
    }
}

/// Issue 14: a second request sent after our first one's answer and its account were not
/// visible yet (a lost answer, a failover) FAILS with EMAIL_ALREADY_EXISTS because of our own
/// account. The account with the e-mail and this object's owner tag is ours: recovered, not
/// stalled. One without the tag still stalls.
#[test]
fn an_email_already_exists_failure_recovers_our_own_account_by_its_owner_tag() {
    let rec = recorded(Some("car-2"), Some("FAILED"));
    let mut seen = seen_request(failed("car-2", "EMAIL_ALREADY_EXISTS"));
    assert_eq!(
        creation(&rec, &seen, &who()),
        CreationStep::Look(Lookup::ByEmail)
    );
    seen.by_email = found("111", true);
    assert_eq!(
        creation(&rec, &seen, &who()),
        CreationStep::Done {
            account: "111".into(),
            proof: Proof::OwnerTag
        }
    );
    for other in [found("111", false), Some(None)] {
        seen.by_email = other;
        assert_eq!(
            reported(&creation(&rec, &seen, &who())),
            (Health::Stalled, "EmailAlreadyExists", Then::Change)
        );
    }
    // Other failures for good never read by e-mail.
    let limit = seen_request(failed("car-2", "ACCOUNT_LIMIT_EXCEEDED"));
    assert_eq!(
        reported(&creation(&rec, &limit, &who())).1,
        "AccountLimitExceeded"
    );
}

// CreateAccount's answer.

fn refused(class: ErrorClass, code: &str) -> Result<CreateRequest, AwsError> {
    Err(AwsError {
        operation: "organizations:CreateAccount",
        class,
        code: Some(code.into()),
        reason: None,
        message: "no".into(),
    })
}

#[test]
fn create_account_s_answer_is_recorded_retried_or_reported() {
    let ok = request("car-1", "IN_PROGRESS", None);
    assert_eq!(answered(Ok(ok.clone())), CreateAnswer::Recorded(ok));
    let CreateAnswer::RetryReported(report, _) =
        answered(refused(ErrorClass::Throttled, "TooManyRequestsException"))
    else {
        panic!("throttling is reported and retried")
    };
    assert_eq!(
        (report.health, report.reason.as_str()),
        (Health::Progressing, "RateLimited")
    );
    assert!(matches!(
        answered(refused(ErrorClass::Transient, "ServiceException")),
        CreateAnswer::Retry(_)
    ));
    for (class, code, reason) in [
        (
            ErrorClass::OrganizationsNotInUse,
            "AWSOrganizationsNotInUseException",
            "OrganizationsNotInUse",
        ),
        (
            ErrorClass::AccessDenied,
            "AccessDeniedException",
            "AwsRejected",
        ),
    ] {
        let CreateAnswer::Rejected(report) = answered(refused(class, code)) else {
            panic!("{code} is refused for good")
        };
        assert_eq!(
            (report.health, report.reason.as_str()),
            (Health::Stalled, reason)
        );
        assert_eq!(report.message, format!("CreateAccount: {code}: no"));
    }
}

#[test]
fn failure_reasons_become_condition_reasons() {
    assert_eq!(
        classify_failure("EMAIL_ALREADY_EXISTS"),
        ("EmailAlreadyExists".to_string(), false)
    );
    assert_eq!(
        classify_failure("CONCURRENT_ACCOUNT_MODIFICATION"),
        ("ConcurrentAccountModification".to_string(), true)
    );
    assert_eq!(
        classify_failure("INTERNAL_FAILURE"),
        ("InternalFailure".to_string(), true)
    );
    // Whatever else AWS sends becomes a reason the API server accepts.
    for odd in ["", "___", "0", "9_LIVES", &"X".repeat(1025)] {
        assert_eq!(
            classify_failure(odd),
            ("CreateAccountFailed".to_string(), false),
            "{odd}"
        );
    }
}

#[test]
fn the_new_account_carries_the_owner_tag() {
    let spec: crate::api::MemberAccountSpec = serde_json::from_value(serde_json::json!({
        "accountName": "dev", "email": "dev@example.com", "parentId": "r-ab12",
        "iamUserAccessToBilling": "Deny", "tags": {"team": "a"},
    }))
    .unwrap();
    let new = new_account(&spec, &who());
    assert!(!new.billing_allowed);
    assert_eq!(new.role_name, "OrganizationAccountAccessRole");
    assert_eq!(
        new.tags.get(OWNER_TAG).map(String::as_str),
        Some("team-a/dev")
    );
    assert_eq!(
        new.tags
            .get(crate::api::labels::CLUSTER_TAG)
            .map(String::as_str),
        Some("cluster-1")
    );
    assert_eq!(new.tags.len(), 3);
}
