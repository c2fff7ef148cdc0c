//! Table tests of the verdicts.

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
        verify_spread: 1.0,
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
fn a_transient_failure_records_no_verification() {
    let t = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
    let before = LinkedAccountStatus {
        last_verified_time: Some(Time(t(0))),
        verified_identity: Some("arn:aws:sts::123456789012:assumed-role/A/old".into()),
        ..LinkedAccountStatus::default()
    };
    let transient = VerifyOutcome::Transient(error(ErrorClass::Transient, "ServiceUnavailable"));
    let mut status = before.clone();
    record(&mut status, &transient, t(60));
    assert_eq!(status, before, "a transient failure changed status");

    let denied = VerifyOutcome::Refused {
        class: ErrorClass::AccessDenied,
        error: error(ErrorClass::AccessDenied, "AccessDenied"),
    };
    record(&mut status, &denied, t(120));
    assert_eq!(status.last_verified_time, Some(Time(t(120))));
    assert_eq!(status.verified_identity, before.verified_identity);

    let verified = VerifyOutcome::Verified(identity("123456789012"));
    record(&mut status, &verified, t(180));
    assert_eq!(status.last_verified_time, Some(Time(t(180))));
    assert_eq!(
        status.verified_identity.as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/AccountLinkerAccess/s")
    );
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
    assert_eq!(v.requeue_after, Duration::from_secs(1800));
    assert!(!v.retrying);
    let mut spread = clock(0, None);
    spread.verify_spread = 0.95;
    let v = decide(
        &VerifyOutcome::Verified(identity("123456789012")),
        ROLE,
        &spread,
    );
    assert_eq!(v.requeue_after, Duration::from_secs(1710));
}

#[test]
fn the_spread_stays_within_ten_percent_and_separates_objects() {
    let at = Timestamp::from_second(1_800_000_000).unwrap();
    let factors: Vec<f64> = (0..1000)
        .map(|i| spread(&format!("0f1e2d3c-0000-4000-8000-{i:012}"), at))
        .collect();
    assert!(
        factors.iter().all(|f| (0.9..=1.1).contains(f)),
        "{factors:?}"
    );
    let (low, high) = factors
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), f| (l.min(*f), h.max(*f)));
    assert!(low < 0.91 && high > 1.09, "{low} {high}");
    let mean = factors.iter().sum::<f64>() / factors.len() as f64;
    assert!((0.98..1.02).contains(&mean), "{mean}");
    // The same object verified at another second gets another factor; the same second the same.
    let uid = "0f1e2d3c-0000-4000-8000-000000000007";
    let later = Timestamp::from_second(1_800_000_001).unwrap();
    assert_eq!(spread(uid, at), spread(uid, at));
    assert_ne!(spread(uid, at), spread(uid, later));
    // Sub-second digits (never in status) change nothing.
    let nanos = Timestamp::new(1_800_000_000, 700_000_000).unwrap();
    assert_eq!(spread(uid, at), spread(uid, nanos));
}

#[test]
fn the_next_verification_is_due_when_the_verdict_looks_again() {
    let uid = "0f1e2d3c-0000-4000-8000-000000000042";
    let interval = Duration::from_secs(1800);
    // Verified at 0.7 s past a second; status keeps the whole second.
    let verified = Timestamp::new(1_800_000_000, 700_000_000).unwrap();
    let recorded = Timestamp::from_second(1_800_000_000).unwrap();
    let mut at = clock(0, None);
    at.now = verified;
    at.verify_spread = spread(uid, recorded);
    let requeue = decide(
        &VerifyOutcome::Verified(identity("123456789012")),
        ROLE,
        &at,
    )
    .requeue_after;
    // The requeued look finds the verification due: no extra pass.
    let looked = verified + requeue;
    assert_eq!(until_due(interval, uid, recorded, looked), None);
    // A look halfway (a watch event) waits for the rest, to the same moment.
    let halfway = recorded + requeue / 2;
    let wait = until_due(interval, uid, recorded, halfway).unwrap();
    assert_eq!(halfway + wait, recorded + requeue);
    // A second before it is due counts as due.
    let almost = recorded + requeue - Duration::from_millis(900);
    assert_eq!(until_due(interval, uid, recorded, almost), None);
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
