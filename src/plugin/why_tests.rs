//! Unit tests of `why`: explanations and their rendering.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;

fn at(minutes_ago: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 - minutes_ago * 60).unwrap()
}

fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Time(at(5)),
        observed_generation: Some(1),
    }
}

#[test]
fn conditions_are_explained_ready_first_with_the_docs_rows_once_per_reason() {
    let conditions = [
        cond("Stalled", "True", "AccessDenied", "denied"),
        cond("Ready", "False", "AccessDenied", "denied"),
        cond("Reconciling", "False", "AccessDenied", ""),
    ];
    let explained = explain(Kind::LinkedAccount, &conditions, remedies::lookup);
    let types: Vec<_> = explained.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["Ready", "Reconciling", "Stalled"]);
    assert!(
        explained[0].remedies[0].what_to_do.contains("fix the role"),
        "{explained:?}"
    );
    let e = Explanation {
        kind: Kind::LinkedAccount,
        namespace: "team".into(),
        name: "w-2".into(),
        conditions: explained,
        events: vec![],
        parent: Some(Parent {
            kind: Kind::BulkRegistration,
            name: "w".into(),
            ready: Some("False/OperationRunning".into()),
            message: "operation op running".into(),
            operation: Some("Update RUNNING (op)".into()),
        }),
    };
    let text = render(&e, at(0), false);
    assert_eq!(text.matches("What to do:").count(), 1, "{text}");
    assert!(
        text.contains("Ready=False  AccessDenied  (for 5m)"),
        "{text}"
    );
    assert!(
        text.contains("Parent BulkRegistration w:\n  Ready=False/OperationRunning"),
        "{text}"
    );
    assert!(text.contains("Events: none"), "{text}");
}

#[test]
fn an_unknown_reason_says_the_docs_have_no_entry() {
    let explained = explain(
        Kind::MemberAccount,
        &[cond("Ready", "False", "Mystery", "")],
        remedies::lookup,
    );
    let e = Explanation {
        kind: Kind::MemberAccount,
        namespace: "n".into(),
        name: "m".into(),
        conditions: explained,
        events: vec![],
        parent: None,
    };
    assert!(render(&e, at(0), false).contains("the user guide has no entry for Mystery"));
}

#[test]
fn events_are_newest_last_and_capped() {
    let events: Vec<Event> = (0..15)
        .map(|i| Event {
            reason: Some(format!("R{i:02}")),
            last_timestamp: Some(Time(at(100 - i))),
            ..Event::default()
        })
        .collect();
    let lines = event_lines(&events);
    assert_eq!(lines.len(), MAX_EVENTS);
    assert_eq!(lines.first().unwrap().reason, "R05");
    assert_eq!(lines.last().unwrap().reason, "R14");
}

#[test]
fn every_condition_type_the_operator_writes_is_put_in_words() {
    use crate::api::conditions::*;
    for type_ in [
        READY,
        RECONCILING,
        STALLED,
        ROLE_ASSUMABLE,
        ROLE_DEPLOYED,
        STACK_SET_READY,
        INSTANCES_READY,
    ] {
        for status in ["True", "False", "Unknown"] {
            assert!(in_words(type_, status).is_some(), "{type_}={status}");
        }
    }
    assert_eq!(in_words("Mystery", "True"), None);
}
