use futures::executor::block_on;

use super::*;
use crate::aws::stacksets::{Permissions, Targets, TemplateBody};
use crate::aws::sts::Secret;

fn set() -> StackSetRef {
    StackSetRef {
        name: "links".into(),
        call_as: CallAs::Management,
    }
}

fn definition() -> StackSetDefinition {
    StackSetDefinition {
        template: TemplateBody::Body("Resources: {}".into()),
        parameters: vec![("ExternalId".into(), "token".into())],
        permissions: Permissions::ServiceManaged {
            auto_deployment: None,
        },
        managed_execution: false,
        description: "d".into(),
        tags: vec![("owner".into(), "me".into())],
    }
}

fn op(id: &str, accounts: &[&str]) -> InstanceOperation {
    InstanceOperation {
        operation_id: id.into(),
        targets: Targets {
            accounts: accounts.iter().map(|a| a.to_string()).collect(),
            ..Targets::default()
        },
        regions: vec!["eu-west-1".into()],
        preferences: Preferences::default(),
    }
}

#[test]
fn stack_set_operations_run_one_at_a_time_and_ids_are_idempotent() {
    let aws = FakeAws::new();
    assert_eq!(block_on(aws.describe(&set())).unwrap(), None);
    block_on(aws.create(&set(), &definition())).unwrap();
    aws.state().hold_operations = true;
    block_on(aws.create_instances(&set(), &op("op-1", &["111111111111"]))).unwrap();
    // Repeating the ID starts nothing; another ID waits for the first.
    block_on(aws.create_instances(&set(), &op("op-1", &["111111111111"]))).unwrap();
    let busy = block_on(aws.create_instances(&set(), &op("op-2", &["222222222222"])));
    assert_eq!(busy.unwrap_err().class, ErrorClass::InProgress);
    let reused = block_on(aws.delete_instances(&set(), &op("op-1", &["111111111111"]), false));
    assert_eq!(reused.unwrap_err().class, ErrorClass::AlreadyExists);
    let running = block_on(aws.operation(&set(), "op-1")).unwrap().unwrap();
    assert!(!running.finished());

    aws.finish_operations();
    let done = block_on(aws.operation(&set(), "op-1")).unwrap().unwrap();
    assert_eq!(done.status, OperationStatus::Succeeded);
    let instances = block_on(aws.instances(&set())).unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].status, InstanceStatus::Current);
    assert_eq!(block_on(aws.operation(&set(), "op-9")).unwrap(), None);
}

#[test]
fn failing_accounts_fail_their_instances_and_the_operation() {
    let aws = FakeAws::new();
    block_on(aws.create(&set(), &definition())).unwrap();
    aws.state()
        .failing_accounts
        .insert("222222222222".into(), "role exists".into());
    block_on(aws.create_instances(&set(), &op("op-1", &["111111111111", "222222222222"]))).unwrap();
    let state = block_on(aws.operation(&set(), "op-1")).unwrap().unwrap();
    assert_eq!(state.status, OperationStatus::Failed);
    let failed: Vec<Instance> = block_on(aws.instances(&set()))
        .unwrap()
        .into_iter()
        .filter(|i| i.detailed_status == Some(DetailedStatus::Failed))
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].reason.as_deref(), Some("role exists"));
    // A StackSet with instances cannot be deleted.
    assert!(block_on(aws.delete(&set())).is_err());
}

#[test]
fn injected_failures_hit_the_next_call_only() {
    let aws = FakeAws::new();
    aws.fail("sts:GetCallerIdentity", ErrorClass::Throttled, "Throttling");
    let err = block_on(aws.caller()).unwrap_err();
    assert_eq!(err.class, ErrorClass::Throttled);
    assert_eq!(err.code.as_deref(), Some("Throttling"));
    assert_eq!(block_on(aws.caller()).unwrap().account, "000000000000");
    assert_eq!(
        aws.calls(),
        ["sts:GetCallerIdentity", "sts:GetCallerIdentity"]
    );
}

#[test]
fn accounts_are_created_asynchronously_and_closed_within_the_quota() {
    let aws = FakeAws::new();
    aws.state().hold_creations = true;
    let new = NewAccount {
        name: "sandbox".into(),
        email: "sandbox@example.com".into(),
        ..NewAccount::default()
    };
    let request = block_on(aws.create_account(&new)).unwrap();
    assert_eq!(request.state, CreateAccountState::InProgress);
    assert_eq!(block_on(aws.requests_in_progress()).unwrap().len(), 1);
    aws.finish_creations();
    let done = block_on(aws.create_request(&request.id)).unwrap();
    assert_eq!(done.state, CreateAccountState::Succeeded);
    let account = done.account_id.unwrap();
    let found = block_on(aws.account_by_email("SANDBOX@example.com"))
        .unwrap()
        .unwrap();
    assert_eq!(found.id, account);
    assert_eq!(block_on(aws.parent_of(&account)).unwrap(), ROOT);

    // Not idempotent: a second request for the same e-mail fails.
    aws.state().hold_creations = false;
    let again = block_on(aws.create_account(&new)).unwrap();
    let again = block_on(aws.create_request(&again.id)).unwrap();
    assert_eq!(again.state, CreateAccountState::Failed);
    assert_eq!(
        again.failure_reason.as_deref(),
        Some("EMAIL_ALREADY_EXISTS")
    );

    aws.add_account("333333333333", "other@example.com", ROOT);
    aws.state().close_quota = Some(1);
    block_on(aws.close_account(&account)).unwrap();
    let closed = block_on(aws.close_account(&account)).unwrap_err();
    assert_eq!(closed.class, ErrorClass::AlreadyClosed);
    let quota = block_on(aws.close_account("333333333333")).unwrap_err();
    assert_eq!(quota.class, ErrorClass::QuotaExceeded);
    assert_eq!(
        quota.reason.as_deref(),
        Some("CLOSE_ACCOUNT_QUOTA_EXCEEDED")
    );
}

#[test]
fn org_units_are_walked_down_without_the_management_account() {
    let aws = FakeAws::new();
    aws.state().org_units.insert("ou-a".into(), ROOT.into());
    aws.state().org_units.insert("ou-b".into(), "ou-a".into());
    aws.add_account("000000000000", "mgmt@example.com", ROOT);
    aws.add_account("111111111111", "a@example.com", "ou-a");
    aws.add_account("222222222222", "b@example.com", "ou-b");
    let under = block_on(aws.accounts_under(&["ou-a".to_string()])).unwrap();
    assert_eq!(
        under.keys().collect::<Vec<_>>(),
        ["111111111111", "222222222222"]
    );
    let all = block_on(aws.accounts_under(&[ROOT.to_string()])).unwrap();
    assert_eq!(all.len(), 2);
}

#[test]
fn roles_answer_access_denied_for_a_wrong_external_id() {
    let aws = FakeAws::new();
    let role = "arn:aws:iam::111111111111:role/Hub";
    aws.add_role(role, "right");
    let verify = |id: &str| {
        let secret = Secret::new(id);
        block_on(aws.verify(VerifyRequest {
            role_arn: role,
            external_id: &secret,
            session_name: "s",
            duration_seconds: 900,
        }))
    };
    assert_eq!(verify("wrong").unwrap_err().class, ErrorClass::AccessDenied);
    let identity = verify("right").unwrap();
    assert_eq!(identity.account, "111111111111");
    assert_eq!(identity.arn, "arn:aws:sts::111111111111:assumed-role/Hub/s");
}

#[test]
fn template_summaries_read_bodies_and_known_urls() {
    use crate::aws::TemplateSummaries;

    let aws = FakeAws::new();
    let yaml = "Parameters:\n  ExternalId: {Type: String, NoEcho: true}\n  Owner: {Type: String}\nResources: {}\n";
    let url = "https://b.s3.amazonaws.com/t.yaml?versionId=v1";
    aws.state().template_objects.insert(
        url.into(),
        r#"{"Parameters": {"ExternalId": {"NoEcho": "false"}}}"#.into(),
    );
    let found = |template: TemplateBody| {
        let mut params: Vec<(String, bool)> = block_on(aws.template_parameters(&template))
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.no_echo))
            .collect();
        params.sort();
        params
    };
    assert_eq!(
        found(TemplateBody::Body(yaml.into())),
        [("ExternalId".into(), true), ("Owner".into(), false)]
    );
    assert_eq!(
        found(TemplateBody::Url(url.into())),
        [("ExternalId".into(), false)]
    );
    let missing = TemplateBody::Url("https://b.s3.amazonaws.com/other.yaml?versionId=v1".into());
    let err = block_on(aws.template_parameters(&missing)).unwrap_err();
    assert_eq!(err.code.as_deref(), Some("ValidationError"));
    assert_eq!(aws.calls().len(), 3);
}
