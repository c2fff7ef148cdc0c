//! The table tests of [`super`].

use super::super::fixtures::{account, who};
use super::*;
use crate::aws::ErrorClass;

fn spec() -> MemberAccountSpec {
    serde_json::from_value(serde_json::json!({
        "accountName": "dev", "email": "dev@example.com", "parentId": "ou-ab12-aaaaaaaa",
        "tags": {"team": "a"},
    }))
    .unwrap()
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn in_sync() -> BTreeMap<String, String> {
    tags(&[
        ("team", "a"),
        (crate::api::labels::OWNER_TAG, "team-a/dev"),
        (crate::api::labels::CLUSTER_TAG, "cluster-1"),
    ])
}

/// The plan for account 111 in `state` under `parent` with `actual` tags.
fn plan_of(state: &str, parent: &str, actual: &BTreeMap<String, String>) -> Plan {
    let info = account("111", "dev@example.com", state);
    plan(&spec(), &who(), "111", &info, parent, actual)
}

// docs/memberaccount.md, "After creation".

#[test]
fn an_account_in_place_with_the_spec_s_tags_needs_nothing() {
    let p = plan_of("ACTIVE", "ou-ab12-aaaaaaaa", &in_sync());
    assert_eq!(p.move_from, None);
    assert!(p.tag.is_empty() && p.untag.is_empty());
    assert_eq!(p.not_active, None);
    assert_eq!(
        p.created,
        created("Created", "account 111 is ACTIVE under ou-ab12-aaaaaaaa")
    );
}

/// A forged `status.accountId`: the account's tags decide, and nothing is changed.
#[test]
fn an_account_tagged_for_someone_else_is_reported_not_changed() {
    use crate::api::labels::{CLUSTER_TAG, OWNER_TAG};
    assert_eq!(not_owned("111", &in_sync(), &who()), None);
    let legacy = tags(&[(OWNER_TAG, "team-a/dev")]);
    assert_eq!(
        not_owned("111", &legacy, &who()),
        None,
        "an earlier release's"
    );
    for foreign in [
        tags(&[(OWNER_TAG, "team-a/dev"), (CLUSTER_TAG, "cluster-2")]),
        tags(&[(OWNER_TAG, "team-b/dev"), (CLUSTER_TAG, "cluster-1")]),
        tags(&[("team", "a")]),
    ] {
        let report = not_owned("111", &foreign, &who()).expect("reported");
        assert_eq!(
            (report.health, report.reason.as_str()),
            (Health::Stalled, "AccountNotOwned")
        );
        assert!(
            report
                .message
                .starts_with("account 111 in status.accountId is not this MemberAccount's: "),
            "{}",
            report.message
        );
        assert_eq!(report.created.status, Status::False);
    }
}

#[test]
fn another_parent_is_moved_from() {
    let p = plan_of("ACTIVE", "r-ab12", &in_sync());
    assert_eq!(p.move_from.as_deref(), Some("r-ab12"));
}

#[test]
fn tags_converge_to_the_spec_plus_the_owner_tag() {
    let actual = tags(&[("team", "b"), ("by-hand", "x")]);
    let p = plan_of("ACTIVE", "ou-ab12-aaaaaaaa", &actual);
    assert_eq!(p.tag, in_sync());
    assert_eq!(p.untag, ["by-hand"]);
    let (set, remove) = tag_changes(&in_sync(), &in_sync());
    assert!(set.is_empty() && remove.is_empty());
    // An account of an earlier release gets the cluster tag.
    let legacy = tags(&[("team", "a"), (crate::api::labels::OWNER_TAG, "team-a/dev")]);
    let p = plan_of("ACTIVE", "ou-ab12-aaaaaaaa", &legacy);
    assert_eq!(
        p.tag,
        tags(&[(crate::api::labels::CLUSTER_TAG, "cluster-1")])
    );
    assert!(p.untag.is_empty());
}

#[test]
fn a_changed_name_is_reported_not_applied() {
    let mut info = account("111", "dev@example.com", "ACTIVE");
    info.name = "old".into();
    let plan_for =
        |info: &AccountInfo| plan(&spec(), &who(), "111", info, "ou-ab12-aaaaaaaa", &in_sync());
    let p = plan_for(&info);
    assert_eq!(p.created.reason, "AccountNameNotApplied");
    assert_eq!(p.created.status, Status::True);
    // An account described without a name is not reported.
    info.name.clear();
    let p = plan_for(&info);
    assert_eq!(p.created.reason, "Created");
}

#[test]
fn an_account_that_is_not_active_stalls() {
    for (state, stalls) in [
        ("ACTIVE", false),
        ("", false),
        ("SUSPENDED", true),
        ("PENDING_CLOSURE", true),
    ] {
        let p = plan_of(state, "ou-ab12-aaaaaaaa", &in_sync());
        assert_eq!(
            p.not_active.as_ref().map(|r| (r.health, r.reason.as_str())),
            stalls.then_some((Health::Stalled, "AccountNotActive")),
            "{state}"
        );
    }
}

fn child_conditions(ready: &str, stalled: &str) -> Vec<Condition> {
    let desired = [
        Cond::new(READY, status(ready), "R", "child says"),
        Cond::new(STALLED, status(stalled), "R", "child says"),
    ];
    conditions::merge(
        &[],
        &desired,
        &[],
        Some(1),
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    )
}

fn status(s: &str) -> Status {
    match s {
        "True" => Status::True,
        "False" => Status::False,
        _ => Status::Unknown,
    }
}

fn created_cond() -> Cond {
    created("Created", "account 111 is ACTIVE under ou")
}

#[test]
fn the_child_link_follows_the_child_s_conditions() {
    for (child, health, reason, ready) in [
        (Child::Missing, Health::Progressing, "Verifying", false),
        (Child::Ours(vec![]), Health::Progressing, "Verifying", false),
        (
            Child::Ours(child_conditions("False", "False")),
            Health::Progressing,
            "Verifying",
            false,
        ),
        (
            Child::Ours(child_conditions("True", "False")),
            Health::Ready,
            "Ready",
            true,
        ),
        (
            Child::Ours(child_conditions("False", "True")),
            Health::Stalled,
            "AccessRoleNotAssumable",
            false,
        ),
    ] {
        let LinkStep::Link { report, ready: r } = link(true, "111", "dev", &child, created_cond())
        else {
            panic!("{child:?} is linked")
        };
        assert_eq!(
            (report.health, report.reason.as_str(), r),
            (health, reason, ready),
            "{child:?}"
        );
        assert_eq!(report.created, created_cond());
    }
    let LinkStep::Link { report, .. } = link(
        true,
        "111",
        "dev",
        &Child::Ours(child_conditions("False", "True")),
        created_cond(),
    ) else {
        unreachable!()
    };
    assert_eq!(report.message, "LinkedAccount dev: child says");
}

#[test]
fn disabled_linking_deletes_only_this_object_s_child() {
    for (child, delete) in [
        (Child::Missing, false),
        (Child::Ours(vec![]), true),
        (Child::Foreign, false),
    ] {
        let LinkStep::Unlink { delete: d, report } =
            link(false, "111", "dev", &child, created_cond())
        else {
            panic!("{child:?} is unlinked")
        };
        assert_eq!(d, delete, "{child:?}");
        assert_eq!(
            (report.health, report.reason.as_str()),
            (Health::Ready, "Ready")
        );
    }
}

#[test]
fn a_linked_account_of_the_same_name_that_is_not_the_child_has_its_own_reason() {
    let LinkStep::NameTaken(report) = link(true, "111", "dev", &Child::Foreign, created_cond())
    else {
        panic!("a foreign LinkedAccount is never overwritten")
    };
    assert_eq!(
        (report.health, report.reason.as_str()),
        (Health::Stalled, "LinkedAccountNameTaken")
    );
    assert!(report.message.contains("\"dev\""), "{}", report.message);
    assert_eq!(report.created, created_cond());
}

#[test]
fn refusals_for_good_of_every_call_stall_with_a_reason_naming_the_step() {
    let table = [
        (
            Call::DescribeAccount,
            "DescribeAccount 111",
            "DescribeRejected",
        ),
        (Call::ListParents, "ListParents 111", "DescribeRejected"),
        (
            Call::ListTags,
            "ListTagsForResource 111",
            "DescribeRejected",
        ),
        (
            Call::MoveAccount,
            "MoveAccount 111 to ou-ab12-bbbbbbbb",
            "MoveRejected",
        ),
        (Call::TagResource, "TagResource 111", "TagRejected"),
        (Call::UntagResource, "UntagResource 111", "TagRejected"),
    ];
    for (call, names, reason) in table {
        for (class, code) in [
            (ErrorClass::AccessDenied, "AccessDeniedException"),
            (ErrorClass::Rejected, "TargetNotFoundException"),
            (ErrorClass::NotFound, "AccountNotFoundException"),
            (ErrorClass::QuotaExceeded, "TAG_POLICY_VIOLATION"),
        ] {
            let report = refused(call, "111", "ou-ab12-bbbbbbbb", &aws(class, code))
                .unwrap_or_else(|| panic!("{call:?} {code} is reported"));
            assert_eq!(
                (report.health, report.reason.as_str()),
                (Health::Stalled, reason),
                "{call:?} {code}"
            );
            assert!(
                report.message.starts_with(&format!("{names}: {code}: no")),
                "{}",
                report.message
            );
            assert_eq!(report.created.status, Status::True);
        }
        // Passing trouble backs off and retries; the next pass finds the call working.
        for class in [
            ErrorClass::Throttled,
            ErrorClass::Transient,
            ErrorClass::Conflict,
            ErrorClass::InProgress,
        ] {
            assert_eq!(
                refused(call, "111", "ou", &aws(class, "X")),
                None,
                "{call:?}"
            );
        }
    }
}

fn aws(class: ErrorClass, code: &str) -> AwsError {
    AwsError {
        operation: "organizations:MoveAccount",
        class,
        code: Some(code.into()),
        reason: None,
        message: "no".into(),
    }
}

#[test]
fn a_refused_move_stalls_with_aws_s_message_and_throttling_backs_off() {
    let report = refused(
        Call::MoveAccount,
        "111",
        "ou-ab12-bbbbbbbb",
        &aws(ErrorClass::Rejected, "ParentNotFoundException"),
    )
    .expect("a refused move is reported");
    assert_eq!(report.health, Health::Stalled);
    assert_eq!(
        report.message,
        "MoveAccount 111 to ou-ab12-bbbbbbbb: ParentNotFoundException: no; looked at again periodically and on any change to this object"
    );
    assert_eq!(report.created.status, Status::True);
    for class in [ErrorClass::Throttled, ErrorClass::Transient] {
        assert_eq!(
            refused(Call::MoveAccount, "111", "ou", &aws(class, "X")),
            None
        );
    }
}

/// Issue 14: a MoveAccount refused because the account is in the destination already, or not
/// under the source any more, is what our own earlier move (its answer lost, or ListParents not
/// showing it yet) causes: the account is read again, and the move counts as done when it is
/// under the destination and still ours. Any other refusal, or a re-read that does not explain
/// it, is reported as before.
#[test]
fn a_move_refused_as_our_own_earlier_move_would_be_is_checked_again() {
    use crate::api::labels::OWNER_TAG;
    let refusals = [
        ("DuplicateAccountException", ErrorClass::AlreadyExists, true),
        ("SourceParentNotFoundException", ErrorClass::NotFound, true),
        (
            "DestinationParentNotFoundException",
            ErrorClass::NotFound,
            true,
        ),
        ("AccessDeniedException", ErrorClass::AccessDenied, false),
        ("ConstraintViolationException", ErrorClass::Rejected, false),
        ("TooManyRequestsException", ErrorClass::Throttled, false),
    ];
    for (code, class, again) in refusals {
        assert_eq!(may_have_moved(&aws(class, code)), again, "{code}");
    }
    let someone_else = tags(&[(OWNER_TAG, "team-b/other")]);
    let rereads = [
        ("ou-ab12-aaaaaaaa", in_sync(), true),
        ("ou-ab12-bbbbbbbb", in_sync(), false),
        ("ou-ab12-aaaaaaaa", someone_else, false),
        ("ou-ab12-aaaaaaaa", tags(&[]), false),
    ];
    for (parent, found, done) in rereads {
        assert_eq!(
            moved_already(parent, "ou-ab12-aaaaaaaa", &found, &who()),
            done,
            "{parent} {found:?}"
        );
    }
}
