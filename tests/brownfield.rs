//! Brownfield BulkRegistrations end to end: an estate that existed before the operator (roles
//! deployed one stack per account by a console wizard) taken into one StackSet with
//! `spec.import`, against the real API server and the strict emulator. A binary of its own, so
//! its runtime stays apart from tests/bulk_registration.rs.

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use tokio::sync::{OnceCell, RwLock};

use account_linker::api::BulkRegistration;
use support::{
    ACCESS_ROLE, Context, HUB_ACCOUNT, MemberStacks, Running, Share, Share::Exclusive,
    Share::Shared, apply_policy, create, message, permissive, unique, wait_for, wait_ready,
};

static SETUP: OnceCell<()> = OnceCell::const_new();
/// Tests that read the emulator's request counts run alone.
static COUNTS: RwLock<()> = RwLock::const_new(());

const FLAGS: &[&str] = &[
    "--stackset-poll-interval",
    "500ms",
    "--bulk-resync-interval",
    "3s",
    "--sts-requests-per-second",
    "200",
    "--sts-concurrency",
    "32",
    "--access-denied-grace",
    "20s",
];
/// The per-account stack's name in the estate.
const LEGACY_STACK: &str = "legacy-linker";

async fn fixture(prefix: &str, share: Share) -> Running {
    let setup = async |ctx: &Context| {
        ctx.prepare_stack_sets(json!({"base_seconds": 0.5, "seconds_per_wave": 0.2}))
            .await;
    };
    Running::start(prefix, FLAGS, (&COUNTS, share), (&SETUP, setup)).await
}

/// The console wizard's template: the access role trusting the hub with the account's own
/// ExternalId. `max_session` varies it (a stack made from another template version).
fn wizard_template(max_session: u32) -> String {
    json!({
        "Parameters": {"ExternalId": {"Type": "String", "NoEcho": true}},
        "Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": ACCESS_ROLE,
            "MaxSessionDuration": max_session,
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{HUB_ACCOUNT}:root")},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}
            }]}
        }}}
    })
    .to_string()
}

impl Running {
    fn bulks(&self) -> Api<BulkRegistration> {
        self.api()
    }

    /// Permits what [`permissive`] does, plus importing stacks named `legacy-*`.
    async fn permit_import(&self) {
        let root = self.aws.root().await;
        let mut policy = permissive(&self.ns.name, &root);
        policy["bulkRegistrations"]["importStackNames"] = json!(["legacy-*"]);
        apply_policy(&self.client, &self.ns.name, policy).await;
    }

    /// `count` new accounts in an OU of their own, each with the StackSet execution role.
    async fn estate(&self, count: usize) -> Vec<String> {
        let ou = self.aws.create_ou(&unique("ou"), None).await;
        let accounts = self
            .aws
            .create_accounts(&unique("acct"), count, Some(&ou))
            .await;
        for account in &accounts {
            self.aws.put_execution_role(account).await;
        }
        accounts
    }

    /// The registration's template in a ConfigMap, as the wizard's stacks were made from it.
    async fn template_config_map(&self) {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "wizard-template", "labels": {"accountlinker.dev/watch": "true"}},
            "data": {"template.json": wizard_template(3600)},
        }))
        .expect("ConfigMap");
        self.api::<ConfigMap>()
            .create(&PostParams::default(), &cm)
            .await
            .expect("create ConfigMap");
    }

    /// Creates registration `name` importing [`LEGACY_STACK`] over `accounts`; its StackSet.
    async fn import_registration(&self, name: &str, accounts: &[String]) -> String {
        let stack_set = unique("ss");
        let spec = json!({
            "stackSet": {"name": stack_set, "permissionModel": "SelfManaged"},
            "template": {"configMapRef": {"name": "wizard-template", "key": "template.json"}},
            "import": {"stackName": LEGACY_STACK},
            "targets": {"accounts": accounts},
            "regions": ["us-east-1"],
            "operationPreferences": {
                "maxConcurrentCount": 20,
                "failureToleranceCount": 5,
                "concurrencyMode": "SoftFailureTolerance"
            },
        });
        create(&self.bulks(), name, spec).await;
        stack_set
    }
}

fn summary(bulk: &BulkRegistration) -> (i32, i32, i32, i32) {
    let s = bulk
        .status
        .as_ref()
        .and_then(|s| s.summary.clone())
        .unwrap_or_default();
    (s.targets, s.current, s.failed, s.assumable)
}

/// Twelve accounts with the wizard's stack and three without become one StackSet: two imports
/// (ten and two stacks), one create of three, one update that gives the twelve imported stacks
/// the registration's token; no account gets a second stack or role, none fails.
#[tokio::test(flavor = "multi_thread")]
async fn an_estate_is_imported_ten_stacks_per_operation_and_the_rest_created() {
    let f = fixture("brown-estate", Exclusive).await;
    f.permit_import().await;
    let accounts = f.estate(15).await;
    f.template_config_map().await;
    let stacks = MemberStacks::new(&f.env).await;
    let mut legacy = Vec::new();
    for (n, account) in accounts[..12].iter().enumerate() {
        let token = format!("wizard-token-{n:04}-of-{account}");
        legacy.push(
            stacks
                .create(account, LEGACY_STACK, &wizard_template(3600), &token)
                .await,
        );
    }
    f.emulator.reset_counts().await;

    let stack_set = f.import_registration("estate", &accounts).await;
    let bulk = wait_ready(
        &f.bulks(),
        "estate",
        f.budget.registration_ready(15, 20, 4) * 2,
    )
    .await;
    assert_eq!(summary(&bulk), (15, 15, 0, 15));
    let count = async |key: &str| f.emulator.count(key).await;
    let counts = json!({
        "DescribeStacks": count("cloudformation:DescribeStacks").await,
        "ImportStacksToStackSet": count("cloudformation:ImportStacksToStackSet").await,
        "CreateStackInstances": count("cloudformation:CreateStackInstances").await,
        "UpdateStackInstances": count("cloudformation:UpdateStackInstances").await,
        "AssumeRole": count("sts:AssumeRole").await,
        "ListStackInstances": count("cloudformation:ListStackInstances").await,
    });
    eprintln!("AWS calls of the estate's migration: {counts}");
    // One look-up per account without an instance, once: the 3 created accounts are not
    // looked at again, nor are the imported ones (read before this test's own calls).
    assert_eq!(counts["DescribeStacks"], 15, "{counts}");
    assert_eq!(counts["ImportStacksToStackSet"], 2, "{counts}");
    assert_eq!(counts["CreateStackInstances"], 1, "{counts}");

    let ops = f.emulator.operations(&stack_set).await;
    let shape: Vec<(String, usize, String)> = ops
        .iter()
        .map(|op| {
            (
                op["action"].as_str().unwrap_or_default().to_string(),
                op["accounts"].as_array().map_or(0, Vec::len),
                op["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, usize, String)> =
        [("IMPORT", 10), ("IMPORT", 2), ("CREATE", 3), ("UPDATE", 12)]
            .iter()
            .map(|(a, n)| (a.to_string(), *n, "SUCCEEDED".to_string()))
            .collect();
    assert_eq!(shape, expected, "{ops:#?}");
    for op in &ops {
        for (target, result) in op["results"].as_object().expect("results") {
            assert_eq!(result["status"], "SUCCEEDED", "{target}: {result}");
        }
    }
    // The imported accounts keep their one stack; the others have the StackSet's.
    for (account, id) in accounts.iter().zip(&legacy) {
        assert_eq!(stacks.ids(account).await, vec![id.clone()], "{account}");
    }
    for account in &accounts[12..] {
        assert_eq!(stacks.ids(account).await.len(), 1, "{account}");
    }

    f.cleanup().await;
}

/// A stack made from another template is not taken over: its account is reported
/// `FAILED_IMPORT` with AWS's reason, the others are imported.
#[tokio::test(flavor = "multi_thread")]
async fn a_stack_with_another_template_is_reported_failed_import() {
    let f = fixture("brown-mismatch", Shared).await;
    f.permit_import().await;
    let accounts = f.estate(3).await;
    f.template_config_map().await;
    let stacks = MemberStacks::new(&f.env).await;
    for (n, account) in accounts.iter().enumerate() {
        let template = wizard_template(if n == 2 { 7200 } else { 3600 });
        let token = format!("wizard-token-{n:04}");
        stacks
            .create(account, LEGACY_STACK, &template, &token)
            .await;
    }
    f.import_registration("mixed", &accounts).await;
    let bulk = wait_for(
        &f.bulks(),
        "mixed",
        "one failed import",
        f.budget.registration_ready(3, 20, 3) * 2,
        |b| summary(b) == (3, 2, 1, 2),
    )
    .await;
    let failures = &bulk.status.as_ref().expect("status").failures;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].account, accounts[2]);
    assert_eq!(failures[0].detailed_status, "FAILED_IMPORT");
    let reason = failures[0].reason.clone().unwrap_or_default();
    assert!(reason.contains("does not match"), "{reason}");
    assert!(
        support::has(&bulk, "Stalled", "True", Some("InstancesFailed")),
        "{:?}",
        bulk.status
    );
    f.cleanup().await;
}

/// Without a LinkPolicy naming the stack, nothing is looked at or imported.
#[tokio::test(flavor = "multi_thread")]
async fn import_is_refused_unless_a_policy_names_the_stack() {
    let f = fixture("brown-refused", Shared).await;
    let accounts = f.estate(1).await;
    f.template_config_map().await;
    let stack_set = f.import_registration("refused", &accounts).await;
    let bulk = wait_for(
        &f.bulks(),
        "refused",
        "Stalled NotPermitted",
        f.budget.react(),
        |b| support::has(b, "Stalled", "True", Some("NotPermitted")),
    )
    .await;
    let text = message(&bulk, "Ready");
    assert!(
        text.contains("spec.import.stackName=legacy-linker") && text.contains("importStackNames"),
        "{text}"
    );
    assert!(!f.aws.stack_set_exists(&stack_set).await);
    assert!(f.emulator.operations(&stack_set).await.is_empty());

    // Permitted, it goes ahead (the account has no stack: one create).
    f.permit_import().await;
    wait_ready(
        &f.bulks(),
        "refused",
        f.budget.registration_ready(1, 20, 2) * 2,
    )
    .await;
    let ops = f.emulator.operations(&stack_set).await;
    let actions: Vec<&str> = ops.iter().filter_map(|op| op["action"].as_str()).collect();
    assert_eq!(actions, ["CREATE"]);
    f.cleanup().await;
}

/// A service-managed registration over an OU with the management account included.
fn with_management_account(ou: &str, role: &str) -> serde_json::Value {
    json!({
        "stackSet": {"name": unique("ss"), "permissionModel": "ServiceManaged"},
        "template": {"builtin": {"roleName": role}},
        "targets": {"organizationalUnitIds": [ou], "includeManagementAccount": true},
        "regions": ["us-east-1"],
        "operationPreferences": {"maxConcurrentCount": 10, "failureToleranceCount": 2, "concurrencyMode": "SoftFailureTolerance"},
        "deletionPolicy": "Delete",
    })
}

/// The management account gets its role from a plain stack owned by the registration, with a
/// child like the others; `deletionPolicy: Delete` removes the stack.
#[tokio::test(flavor = "multi_thread")]
async fn the_management_account_gets_an_owned_plain_stack_and_a_child() {
    let f = fixture("brown-mgmt", Shared).await;
    let root = f.aws.root().await;
    let mut policy = permissive(&f.ns.name, &root);
    policy["bulkRegistrations"]["managementAccount"] = json!(true);
    apply_policy(&f.client, &f.ns.name, policy).await;
    let ou = f.aws.create_ou(&unique("ou"), None).await;
    f.aws.create_accounts(&unique("acct"), 2, Some(&ou)).await;
    let spec = with_management_account(&ou, "MgmtAccessA");
    let stack_set = spec["stackSet"]["name"].as_str().unwrap().to_string();
    create(&f.bulks(), "mgmt", spec).await;
    let bulk = wait_ready(
        &f.bulks(),
        "mgmt",
        f.budget.registration_ready(3, 10, 1) * 2,
    )
    .await;
    assert_eq!(summary(&bulk), (3, 3, 0, 3));

    let stacks = MemberStacks::new(&f.env).await;
    let name = format!("{stack_set}-management");
    let (status, tags) = stacks
        .in_hub(&name)
        .await
        .expect("the management account's stack");
    assert_eq!(status, "CREATE_COMPLETE");
    assert_eq!(
        tags.get("accountlinker.dev/bulk-registration")
            .map(String::as_str),
        Some("mgmt")
    );
    assert_eq!(tags.get("accountlinker.dev/namespace"), Some(&f.ns.name));
    let children: Vec<String> = f
        .api::<account_linker::api::LinkedAccount>()
        .list(&kube::api::ListParams::default().labels("accountlinker.dev/bulk-registration=mgmt"))
        .await
        .expect("children")
        .into_iter()
        .map(|c| c.spec.account_id)
        .collect();
    assert!(children.contains(&HUB_ACCOUNT.to_string()), "{children:?}");
    // The StackSet itself never targets the management account.
    for op in f.emulator.operations(&stack_set).await {
        let accounts = op["accounts"].as_array().cloned().unwrap_or_default();
        assert!(!accounts.iter().any(|a| a == HUB_ACCOUNT), "{op}");
    }

    f.bulks()
        .delete("mgmt", &kube::api::DeleteParams::default())
        .await
        .expect("delete");
    support::gone(&f.bulks(), "mgmt", f.budget.registration_deleted(3, 10) * 2).await;
    assert_eq!(stacks.in_hub(&name).await, None, "the stack was deleted");
    f.cleanup().await;
}

/// The most powerful account needs the explicit right: `*` and the root do not cover it.
#[tokio::test(flavor = "multi_thread")]
async fn the_management_account_is_refused_unless_a_policy_allows_it() {
    let f = fixture("brown-mgmt-no", Shared).await;
    let ou = f.aws.create_ou(&unique("ou"), None).await;
    let spec = with_management_account(&ou, "MgmtAccessB");
    let stack_set = spec["stackSet"]["name"].as_str().unwrap().to_string();
    create(&f.bulks(), "mgmt-no", spec).await;
    let bulk = wait_for(
        &f.bulks(),
        "mgmt-no",
        "Stalled NotPermitted",
        f.budget.react(),
        |b| support::has(b, "Stalled", "True", Some("NotPermitted")),
    )
    .await;
    let text = message(&bulk, "Ready");
    assert!(
        text.contains("spec.targets.includeManagementAccount=true")
            && text.contains("managementAccount"),
        "{text}"
    );
    assert!(!f.aws.stack_set_exists(&stack_set).await);
    let stacks = MemberStacks::new(&f.env).await;
    assert_eq!(
        stacks.in_hub(&format!("{stack_set}-management")).await,
        None
    );
    f.cleanup().await;
}
