//! Unit tests of `status`: the summary and its table.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::*;

pub(crate) fn at(minutes_ago: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 - minutes_ago * 60).unwrap()
}

fn cond(status: &str, reason: &str, message: &str, minutes_ago: i64) -> Condition {
    Condition {
        type_: READY.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Time(at(minutes_ago)),
        observed_generation: Some(1),
    }
}

fn link(name: &str, registration: Option<&str>, ready: Option<Condition>) -> LinkedAccount {
    let mut l = LinkedAccount::new(
        name,
        serde_json::from_value(json!({"accountId": "111111111111"})).unwrap(),
    );
    l.metadata.namespace = Some("team".into());
    if let Some(r) = registration {
        l.metadata.labels = Some([(BULK_REGISTRATION_LABEL.to_string(), r.to_string())].into());
    }
    l.status = ready.map(|c| crate::api::LinkedAccountStatus {
        conditions: vec![c],
        last_verified_time: Some(Time(at(30))),
        ..Default::default()
    });
    l
}

fn bulk(name: &str) -> BulkRegistration {
    let mut b: BulkRegistration = serde_json::from_value(json!({
        "apiVersion": "accountlinker.dev/v1alpha1",
        "kind": "BulkRegistration",
        "metadata": {"name": name, "namespace": "team"},
        "spec": {"stackSet": {"permissionModel": "SelfManaged"}, "targets": {"accounts": ["111111111111"]}},
        "status": {
            "conditions": [{"type": "Ready", "status": "False", "reason": "OperationRunning", "message": "", "lastTransitionTime": "2027-01-15T08:00:00Z"}],
            "externalIdRotatedTime": "2027-01-10T08:00:00Z",
            "operation": {"id": "op", "action": "Update", "status": "RUNNING", "startedAt": at(4).to_string(), "accounts": 3},
        },
    }))
    .unwrap();
    b.metadata.namespace = Some("team".into());
    b
}

#[test]
fn accounts_are_counted_per_registration_and_reason_and_failures_listed_in_order() {
    let links = [
        link("w-1", Some("w"), Some(cond("True", "Verified", "", 60))),
        link(
            "w-3",
            Some("w"),
            Some(cond("False", "AccessDenied", "denied", 5)),
        ),
        link(
            "w-2",
            Some("w"),
            Some(cond("False", "AccessDenied", "denied", 6)),
        ),
        link("solo", None, None),
        link(
            "x-1",
            Some("x"),
            Some(cond("False", "StackInstancePending", "", 1)),
        ),
    ];
    let fleet = summarize(&[bulk("w")], &links, 2);
    let names: Vec<_> = fleet
        .groups
        .iter()
        .map(|g| g.registration.clone())
        .collect();
    assert_eq!(names, [Some("w".into()), Some("x".into()), None]);
    let w = &fleet.groups[0];
    assert_eq!((w.counts.accounts, w.counts.ready), (3, 1));
    assert_eq!(w.counts.not_ready, [("AccessDenied".to_string(), 2)].into());
    assert_eq!(w.operation.as_deref(), Some("Update RUNNING"));
    assert_eq!(w.state.as_deref(), Some("False/OperationRunning"));
    assert_eq!(w.oldest_verification, Some(at(30)));
    assert_eq!(
        fleet.groups[2].counts.not_ready,
        [(NO_STATUS.to_string(), 1)].into()
    );
    assert_eq!(fleet.total.accounts, 5);
    assert_eq!(fleet.total.failing(), 4);
    let failing: Vec<_> = fleet.failing.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(failing, ["solo", "w-2"], "first two by namespace and name");
}

#[test]
fn the_table_shows_reasons_most_frequent_first_and_the_failing_accounts() {
    let links = [
        link(
            "w-1",
            Some("w"),
            Some(cond("False", "StackInstanceFailed", "boom\nline", 3)),
        ),
        link(
            "w-2",
            Some("w"),
            Some(cond("False", "AccessDenied", "denied", 5)),
        ),
        link(
            "w-3",
            Some("w"),
            Some(cond("False", "AccessDenied", "denied", 6)),
        ),
    ];
    let fleet = summarize(&[bulk("w")], &links, 10);
    let text = render(&fleet, false, at(0), false);
    assert!(
        text.contains("AccessDenied=2 StackInstanceFailed=1"),
        "{text}"
    );
    assert!(text.contains("Update RUNNING 4m"), "{text}");
    assert!(text.contains("Failing accounts (3 of 3"), "{text}");
    assert!(text.contains("boom line"), "{text}");
    assert!(!text.contains("NAMESPACE"), "{text}");
    assert!(render(&fleet, true, at(0), false).starts_with("NAMESPACE"));
    let healthy = summarize(
        &[],
        &[link("a", None, Some(cond("True", "Verified", "", 1)))],
        10,
    );
    assert!(render(&healthy, false, at(0), false).contains("Every account is Ready."));
}
