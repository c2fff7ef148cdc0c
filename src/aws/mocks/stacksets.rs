use super::clients;
use super::wire::{Wire, query_error, query_ok};
use crate::aws::stacksets::{
    CallAs, DetailedStatus, InstanceOperation, InstanceStatus, OperationStatus, Permissions,
    Preferences, StackSetDefinition, StackSetRef, Targets, TemplateBody,
};
use crate::aws::{ErrorClass, StackSets, TemplateSummaries};

fn set(call_as: CallAs) -> StackSetRef {
    StackSetRef {
        name: "links".into(),
        call_as,
    }
}

fn definition(permissions: Permissions) -> StackSetDefinition {
    StackSetDefinition {
        template: TemplateBody::Body("Resources: {}".into()),
        parameters: vec![("ExternalId".into(), "token".into())],
        permissions,
        managed_execution: true,
        description: "links".into(),
        tags: vec![("accountlinker.dev/cluster-id".into(), "c-1".into())],
    }
}

fn self_managed() -> Permissions {
    Permissions::SelfManaged {
        administration_role_arn: None,
        execution_role_name: Some("Exec".into()),
    }
}

fn described(id: &str, status: &str) -> String {
    let stack_set =
        format!("<StackSet><StackSetId>{id}</StackSetId><Status>{status}</Status></StackSet>");
    query_ok("DescribeStackSet", &stack_set)
}

fn assert_sent(body: &str, fragments: &[&str]) {
    for fragment in fragments {
        assert!(body.contains(fragment), "{fragment} not in {body}");
    }
}

#[tokio::test]
async fn create_sends_the_definition_and_call_as() {
    let wire = Wire::default();
    let created = query_ok("CreateStackSet", "<StackSetId>links:1</StackSetId>");
    wire.reply("CreateStackSet", 200, created);
    let (aws, calls) = clients(&wire);
    let definition = definition(self_managed());
    let id = aws.create(&set(CallAs::DelegatedAdmin), &definition).await;
    assert_eq!(id.unwrap(), "links:1");
    assert_sent(
        &wire.body_of("CreateStackSet"),
        &[
            "StackSetName=links",
            "CallAs=DELEGATED_ADMIN",
            "Parameters.member.1.ParameterKey=ExternalId",
            "Parameters.member.1.ParameterValue=token",
            "Capabilities.member.1=CAPABILITY_NAMED_IAM",
            "PermissionModel=SELF_MANAGED",
            "ExecutionRoleName=Exec",
            "ManagedExecution.Active=true",
            "TemplateBody=Resources",
            "Tags.member.1.Key=accountlinker.dev%2Fcluster-id",
            "Tags.member.1.Value=c-1",
        ],
    );
    assert_eq!(calls.calls(), ["cloudformation:CreateStackSet=ok"]);
}

/// Issue 14: a taken name is answered as it is, not taken for created: whose StackSet holds it
/// (this registration's lost create, or someone else's) is for the controller's ownership check.
#[tokio::test]
async fn an_existing_name_is_answered_as_already_existing() {
    let wire = Wire::default();
    let exists = query_error("NameAlreadyExistsException", "exists");
    wire.reply("CreateStackSet", 400, exists).reply(
        "DescribeStackSet",
        200,
        described("links:existing", "ACTIVE"),
    );
    let (aws, calls) = clients(&wire);
    let definition = definition(self_managed());
    let err = aws
        .create(&set(CallAs::Management), &definition)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::AlreadyExists);
    assert_eq!(
        calls.calls(),
        ["cloudformation:CreateStackSet=already_exists"]
    );
}

#[tokio::test]
async fn update_sends_the_operation_id_and_preferences() {
    let wire = Wire::default();
    let started = query_ok("UpdateStackSet", "<OperationId>op-1</OperationId>");
    wire.reply("UpdateStackSet", 200, started);
    let (aws, _) = clients(&wire);
    let preferences = Preferences {
        max_concurrent_count: Some(10),
        failure_tolerance_count: Some(2),
        parallel_regions: true,
        region_order: vec!["eu-west-1".into(), "us-east-1".into()],
        soft_failure_tolerance: true,
        ..Preferences::default()
    };
    let service_managed = Permissions::ServiceManaged {
        auto_deployment: Some((true, false)),
    };
    let definition = definition(service_managed);
    let set = set(CallAs::Management);
    let id = aws.update(&set, &definition, "op-1", &preferences).await;
    assert_eq!(id.unwrap(), "op-1");
    assert_sent(
        &wire.body_of("UpdateStackSet"),
        &[
            "OperationId=op-1",
            "CallAs=SELF",
            "PermissionModel=SERVICE_MANAGED",
            "AutoDeployment.Enabled=true",
            "AutoDeployment.RetainStacksOnAccountRemoval=false",
            "OperationPreferences.MaxConcurrentCount=10",
            "OperationPreferences.FailureToleranceCount=2",
            "OperationPreferences.RegionConcurrencyType=PARALLEL",
            "OperationPreferences.ConcurrencyMode=SOFT_FAILURE_TOLERANCE",
            "OperationPreferences.RegionOrder.member.1=eu-west-1",
            "OperationPreferences.RegionOrder.member.2=us-east-1",
            "Tags.member.1.Key=accountlinker.dev%2Fcluster-id",
            "Tags.member.1.Value=c-1",
        ],
    );
    // Without owner tags, the StackSet's tags are left as they are (an empty list removes them).
    let untagged = StackSetDefinition {
        tags: Vec::new(),
        ..definition
    };
    let wire = Wire::default();
    let again = query_ok("UpdateStackSet", "<OperationId>op-2</OperationId>");
    wire.reply("UpdateStackSet", 200, again);
    let (aws, _) = clients(&wire);
    aws.update(&set, &untagged, "op-2", &preferences)
        .await
        .unwrap();
    assert!(!wire.body_of("UpdateStackSet").contains("Tags"));
}

#[tokio::test]
async fn absent_and_deleted_stack_sets_are_none() {
    let wire = Wire::default();
    let missing = query_error("StackSetNotFoundException", "StackSet links not found");
    wire.reply("DescribeStackSet", 404, missing)
        .reply("DescribeStackSet", 200, described("links:old", "DELETED"))
        .reply("DescribeStackSet", 200, described("links:1", "ACTIVE"));
    let (aws, calls) = clients(&wire);
    let set = set(CallAs::Management);
    assert_eq!(aws.describe(&set).await.unwrap(), None);
    assert_eq!(aws.describe(&set).await.unwrap(), None);
    let info = aws.describe(&set).await.unwrap().expect("active");
    assert_eq!(info.id, "links:1");
    assert!(info.tags.is_empty() && info.description.is_empty());
    assert_eq!(
        calls.calls()[0],
        "cloudformation:DescribeStackSet=not_found"
    );
}

#[tokio::test]
async fn instances_are_read_across_pages() {
    let wire = Wire::default();
    let first = "<Summaries><member><Account>111111111111</Account><Region>eu-west-1</Region><Status>CURRENT</Status><StackInstanceStatus><DetailedStatus>SUCCEEDED</DetailedStatus></StackInstanceStatus><OrganizationalUnitId>ou-a</OrganizationalUnitId><LastOperationId>op-1</LastOperationId></member></Summaries><NextToken>page-2</NextToken>";
    let second = "<Summaries><member><Account>222222222222</Account><Region>eu-west-1</Region><Status>OUTDATED</Status><StatusReason>role exists</StatusReason></member></Summaries>";
    wire.reply_when(
        "ListStackInstances",
        "NextToken=page-2",
        200,
        query_ok("ListStackInstances", second),
    )
    .reply(
        "ListStackInstances",
        200,
        query_ok("ListStackInstances", first),
    );
    let (aws, calls) = clients(&wire);
    let instances = aws.instances(&set(CallAs::Management)).await.unwrap();
    assert_eq!(instances.len(), 2);
    assert_eq!(instances[0].account, "111111111111");
    assert_eq!(instances[0].status, InstanceStatus::Current);
    assert_eq!(
        instances[0].detailed_status,
        Some(DetailedStatus::Succeeded)
    );
    assert_eq!(instances[0].organizational_unit.as_deref(), Some("ou-a"));
    assert_eq!(instances[0].last_operation_id.as_deref(), Some("op-1"));
    assert_eq!(instances[1].status, InstanceStatus::Outdated);
    assert_eq!(instances[1].detailed_status, None);
    assert_eq!(instances[1].reason.as_deref(), Some("role exists"));
    assert_eq!(
        calls.calls(),
        [
            "cloudformation:ListStackInstances=ok",
            "cloudformation:ListStackInstances=ok"
        ]
    );
}

#[tokio::test]
async fn operations_report_their_status_and_unknown_ones_are_none() {
    let wire = Wire::default();
    let running = "<StackSetOperation><OperationId>op-1</OperationId><Status>RUNNING</Status></StackSetOperation>";
    let unknown = query_error("OperationNotFoundException", "no such operation");
    wire.reply_when(
        "DescribeStackSetOperation",
        "OperationId=op-1",
        200,
        query_ok("DescribeStackSetOperation", running),
    )
    .reply("DescribeStackSetOperation", 404, unknown);
    let (aws, _) = clients(&wire);
    let set = set(CallAs::Management);
    let state = aws.operation(&set, "op-1").await.unwrap().expect("known");
    assert_eq!(state.status, OperationStatus::Running);
    assert!(!state.finished());
    assert_eq!(aws.operation(&set, "op-2").await.unwrap(), None);
}

fn operation(targets: Targets) -> InstanceOperation {
    InstanceOperation {
        operation_id: "op-1".into(),
        targets,
        regions: vec!["eu-west-1".into()],
        preferences: Preferences::default(),
    }
}

#[tokio::test]
async fn instance_operations_target_ous_or_accounts() {
    let wire = Wire::default();
    let started = |action| query_ok(action, "<OperationId>op-1</OperationId>");
    wire.reply("CreateStackInstances", 200, started("CreateStackInstances"))
        .reply("DeleteStackInstances", 200, started("DeleteStackInstances"));
    let (aws, _) = clients(&wire);
    let set = set(CallAs::Management);
    let through_ou = operation(Targets {
        accounts: vec!["111111111111".into()],
        organizational_units: vec!["ou-a".into()],
        intersect: Some(true),
    });
    let created = aws.create_instances(&set, &through_ou).await;
    assert_eq!(created.unwrap(), "op-1");
    let create = wire.body_of("CreateStackInstances");
    assert_sent(
        &create,
        &[
            "OperationId=op-1",
            "Regions.member.1=eu-west-1",
            "DeploymentTargets.OrganizationalUnitIds.member.1=ou-a",
            "DeploymentTargets.Accounts.member.1=111111111111",
            "DeploymentTargets.AccountFilterType=INTERSECTION",
        ],
    );
    assert!(!create.contains("&Accounts.member"), "{create}");
    let by_account = operation(Targets {
        accounts: vec!["222222222222".into()],
        ..Targets::default()
    });
    let deleted = aws.delete_instances(&set, &by_account, true).await;
    assert_eq!(deleted.unwrap(), "op-1");
    let delete = wire.body_of("DeleteStackInstances");
    assert_sent(
        &delete,
        &["Accounts.member.1=222222222222", "RetainStacks=true"],
    );
    assert!(!delete.contains("DeploymentTargets"), "{delete}");
}

#[tokio::test]
async fn another_operation_in_progress_is_classified_with_its_code() {
    let wire = Wire::default();
    let busy = query_error(
        "OperationInProgressException",
        "Another Operation on StackSet links is in progress",
    );
    wire.reply("UpdateStackInstances", 409, busy);
    let (aws, calls) = clients(&wire);
    let op = operation(Targets {
        accounts: vec!["111111111111".into()],
        ..Targets::default()
    });
    let err = aws
        .update_instances(&set(CallAs::Management), &op)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::InProgress);
    assert_eq!(err.code.as_deref(), Some("OperationInProgressException"));
    assert_eq!(err.operation, "cloudformation:UpdateStackInstances");
    assert!(err.message.contains("in progress"), "{err}");
    assert_eq!(
        calls.calls(),
        ["cloudformation:UpdateStackInstances=in_progress"]
    );
}

#[tokio::test]
async fn template_summaries_report_each_parameter_and_no_echo() {
    let wire = Wire::default();
    let summary = "<Parameters><member><ParameterKey>ExternalId</ParameterKey><NoEcho>true</NoEcho><ParameterType>String</ParameterType></member><member><ParameterKey>Owner</ParameterKey><NoEcho>false</NoEcho></member><member><ParameterKey>Team</ParameterKey></member></Parameters>";
    let unreadable = query_error("ValidationError", "Template format error");
    wire.reply_when(
        "GetTemplateSummary",
        "TemplateURL=",
        200,
        query_ok("GetTemplateSummary", summary),
    )
    .reply("GetTemplateSummary", 400, unreadable);
    let (aws, calls) = clients(&wire);
    let url = TemplateBody::Url("https://b.s3.amazonaws.com/t.json?versionId=v1".into());
    let parameters = aws.template_parameters(&url).await.unwrap();
    let found: Vec<(&str, bool)> = parameters
        .iter()
        .map(|p| (p.name.as_str(), p.no_echo))
        .collect();
    assert_eq!(
        found,
        [("ExternalId", true), ("Owner", false), ("Team", false)]
    );
    assert_sent(
        &wire.sent()[0].body,
        &["TemplateURL=https%3A%2F%2Fb.s3.amazonaws.com%2Ft.json%3FversionId%3Dv1"],
    );
    let body = TemplateBody::Body("not a template".into());
    let err = aws.template_parameters(&body).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Rejected);
    assert_eq!(err.code.as_deref(), Some("ValidationError"));
    assert_eq!(
        calls.calls(),
        [
            "cloudformation:GetTemplateSummary=ok",
            "cloudformation:GetTemplateSummary=rejected"
        ]
    );
}

#[tokio::test]
async fn describe_reads_the_owner_tags_and_the_description() {
    let wire = Wire::default();
    let stack_set = "<StackSet><StackSetId>links:1</StackSetId><Status>ACTIVE</Status>\
        <Description>account-linker BulkRegistration team-a/x</Description>\
        <Tags><member><Key>accountlinker.dev/cluster-id</Key><Value>c-1</Value></member>\
        <member><Key>team</Key><Value>a</Value></member></Tags></StackSet>";
    wire.reply(
        "DescribeStackSet",
        200,
        query_ok("DescribeStackSet", stack_set),
    );
    let (aws, _) = clients(&wire);
    let info = aws.describe(&set(CallAs::Management)).await.unwrap();
    let info = info.expect("active");
    assert_eq!(info.description, "account-linker BulkRegistration team-a/x");
    assert_eq!(
        info.tags,
        [("accountlinker.dev/cluster-id", "c-1"), ("team", "a")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into()
    );
}

#[test]
fn definitions_never_print_parameter_values() {
    let definition = StackSetDefinition {
        template: TemplateBody::Body("Resources: {}".into()),
        parameters: vec![
            ("ExternalId".into(), "s3cr3t-external-id".into()),
            ("Team".into(), "payments-noecho".into()),
        ],
        ..definition(self_managed())
    };
    let printed = format!("{definition:?}");
    assert!(!printed.contains("s3cr3t"), "{printed}");
    assert!(!printed.contains("payments-noecho"), "{printed}");
    assert!(printed.contains("ExternalId=<redacted>"), "{printed}");
    assert!(format!("{definition:#?}").contains("Resources: {}"));
}
