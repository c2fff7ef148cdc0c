//! The BulkRegistration controller end to end: the real operator binary against a real API
//! server and the strict AWS emulator, with StackSet operation latency on. Each test has its
//! own namespace, accounts (in OUs of its own) and operator process; operation counts are read
//! from the emulator per StackSet.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, RwLock};

use account_linker::api::{BulkRegistration, LinkedAccount};
use support::{
    Context, HUB_ACCOUNT, Operator, Running, Share, Share::Exclusive, Share::Shared, condition,
    create, eventually, gone, message, unique, wait_for, wait_ready,
};

static SETUP: OnceCell<()> = OnceCell::const_new();
/// Trusted access is organization-wide: the test that turns it off holds this for writing.
static TRUSTED_ACCESS: RwLock<()> = RwLock::const_new(());
/// The emulator's injected StackSet failures are global: tests that set them take turns.
static FAILURE_INJECTION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Operator flags of every test: fast polling and resync, and an STS budget that lets a few
/// hundred children verify in seconds.
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
const ACCESS_DENIED_GRACE: Duration = Duration::from_secs(20);
/// `maxConcurrentCount` of [`service_managed`] registrations.
const CONCURRENCY: usize = 50;

/// A test's operator; [`Share::Exclusive`] for a test that changes emulator-wide settings.
async fn fixture(prefix: &str, share: Share) -> Running {
    fixture_with(prefix, share, FLAGS).await
}

/// [`fixture`] with other operator flags.
async fn fixture_with(prefix: &str, share: Share, flags: &[&str]) -> Running {
    // The organization, trusted access and operation latency, once per test binary.
    let setup = async |ctx: &Context| {
        ctx.prepare_stack_sets(json!({"base_seconds": 0.5, "seconds_per_wave": 0.2}))
            .await;
    };
    Running::start(prefix, flags, (&TRUSTED_ACCESS, share), (&SETUP, setup)).await
}

/// What the tests of this file do with their operator.
impl Running {
    fn bulks(&self) -> Api<BulkRegistration> {
        self.api()
    }

    /// A new OU (under `parent`, else the root) holding `count` new accounts.
    async fn ou_with_accounts(&self, count: usize, parent: Option<&str>) -> (String, Vec<String>) {
        let ou = self.aws.create_ou(&unique("ou"), parent).await;
        let accounts = self.accounts_in(count, &ou).await;
        (ou, accounts)
    }

    async fn accounts_in(&self, count: usize, parent: &str) -> Vec<String> {
        self.aws
            .create_accounts(&unique("acct"), count, Some(parent))
            .await
    }

    /// Creates a BulkRegistration named `name`; returns its StackSet name.
    async fn create(&self, name: &str, spec: Value) -> String {
        let stack_set = unique("ss");
        let mut spec = spec;
        spec["stackSet"]["name"] = json!(stack_set);
        create(&self.bulks(), name, spec).await;
        stack_set
    }

    async fn patch_spec(&self, name: &str, spec: Value) {
        self.bulks()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .expect("patch spec");
    }

    /// Waits until `check` holds for the registration.
    async fn wait(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&BulkRegistration) -> bool,
    ) -> BulkRegistration {
        wait_for(&self.bulks(), name, what, timeout, check).await
    }

    async fn wait_ready(&self, name: &str, timeout: Duration) -> BulkRegistration {
        wait_ready(&self.bulks(), name, timeout).await
    }

    /// Ready over `accounts` accounts of a [`service_managed`] registration, after at most
    /// `operations` StackSet operations.
    fn ready_within(&self, accounts: usize, operations: u32) -> Duration {
        self.budget
            .registration_ready(accounts, CONCURRENCY, operations)
    }

    async fn children(&self, bulk: &str) -> BTreeMap<String, LinkedAccount> {
        self.api::<LinkedAccount>()
            .list(
                &ListParams::default()
                    .labels(&format!("accountlinker.dev/bulk-registration={bulk}")),
            )
            .await
            .expect("list children")
            .into_iter()
            .map(|c| (c.spec.account_id.clone(), c))
            .collect()
    }
}

/// Whether condition `type_` is `status` with `reason`.
fn is(bulk: &BulkRegistration, type_: &str, status: &str, reason: &str) -> bool {
    support::has(bulk, type_, status, Some(reason))
}

fn summary(bulk: &BulkRegistration) -> (i32, i32, i32, i32) {
    let s = bulk
        .status
        .as_ref()
        .and_then(|s| s.summary.clone())
        .unwrap_or_default();
    (s.targets, s.current, s.failed, s.assumable)
}

fn service_managed(targets: Value) -> Value {
    json!({
        "stackSet": {"permissionModel": "ServiceManaged"},
        "template": {"builtin": {}},
        "targets": targets,
        "regions": ["us-east-1"],
        "operationPreferences": {
            "maxConcurrentCount": CONCURRENCY,
            "failureToleranceCount": 10,
            "concurrencyMode": "SoftFailureTolerance"
        },
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_accounts_reach_ready_in_at_most_three_operations() {
    let f = fixture("bulk-200", Shared).await;
    let (ou, accounts) = f.ou_with_accounts(200, None).await;
    let started = Instant::now();
    let stack_set = f
        .create(
            "fleet",
            service_managed(json!({"organizationalUnitIds": [ou]})),
        )
        .await;
    let bulk = f.wait_ready("fleet", f.ready_within(200, 3)).await;
    let took = started.elapsed();
    assert_eq!(summary(&bulk), (200, 200, 0, 200));
    let ops = f.emulator.operations(&stack_set).await;
    println!(
        "200 accounts Ready in {:.1}s with {} StackSet operation(s): {:?}",
        took.as_secs_f64(),
        ops.len(),
        ops.iter()
            .map(|o| format!(
                "{} of {} account(s)",
                o["action"],
                o["accounts"].as_array().map_or(0, Vec::len)
            ))
            .collect::<Vec<_>>()
    );
    assert!(ops.len() <= 3, "{} operations: {ops:?}", ops.len());
    let children = f.children("fleet").await;
    assert_eq!(
        children.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from_iter(accounts)
    );
    for child in children.values() {
        assert_eq!(condition(child, "Ready"), Some(("True", "Verified")));
        assert_eq!(
            condition(child, "RoleDeployed"),
            Some(("True", "StackInstanceSucceeded"))
        );
        let owner = &child.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("BulkRegistration", Some(true))
        );
    }
    // Settled: nothing more is started.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(f.emulator.operations(&stack_set).await.len(), ops.len());
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_accounts_are_listed_and_the_rest_become_ready() {
    let _injecting = FAILURE_INJECTION.lock().await;
    let f = fixture("bulk-fail", Shared).await;
    let (ou, accounts) = f.ou_with_accounts(20, None).await;
    let failing: BTreeMap<String, String> = accounts[..5]
        .iter()
        .map(|a| (a.clone(), format!("injected failure for {a}")))
        .collect();
    let mut current = f.emulator.get("/stacksets/failures").await["accounts"].clone();
    for (a, r) in &failing {
        current[a] = json!(r);
    }
    f.emulator
        .put("/stacksets/failures", json!({"accounts": current}))
        .await;
    let stack_set = f
        .create(
            "partial",
            service_managed(json!({"organizationalUnitIds": [ou]})),
        )
        .await;
    let bulk = f
        .wait(
            "partial",
            "5 failures listed and Stalled",
            f.ready_within(20, 1),
            |b| summary(b) == (20, 15, 5, 15) && support::has(b, "Stalled", "True", None),
        )
        .await;
    let status = bulk.status.as_ref().expect("status");
    let listed: BTreeMap<String, Option<String>> = status
        .failures
        .iter()
        .map(|f| (f.account.clone(), f.reason.clone()))
        .collect();
    assert_eq!(listed.len(), 5);
    for (account, reason) in &failing {
        let got = listed[account].as_deref().unwrap_or_default();
        assert!(got.contains(reason), "{account}: {got}");
    }
    assert_eq!(condition(&bulk, "Ready").map(|c| c.0), Some("False"));
    assert_eq!(
        condition(&bulk, "InstancesReady").map(|c| c.1),
        Some("InstancesFailed")
    );
    // Tolerance 10 was respected: one operation, which succeeded despite 5 failures.
    let ops = f.emulator.operations(&stack_set).await;
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["status"], "SUCCEEDED");
    let children = f.children("partial").await;
    for account in &accounts {
        let child = &children[account];
        if failing.contains_key(account) {
            assert_eq!(condition(child, "Ready").map(|c| c.0), Some("False"));
            assert_eq!(
                condition(child, "RoleDeployed"),
                Some(("False", "StackInstanceFailed"))
            );
        } else {
            assert_eq!(condition(child, "Ready"), Some(("True", "Verified")));
        }
    }
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_cancelled_by_failure_tolerance_are_finished_by_one_update() {
    let _injecting = FAILURE_INJECTION.lock().await;
    let f = fixture("bulk-cancel", Shared).await;
    let (ou, accounts) = f.ou_with_accounts(6, None).await;
    // Every account would fail a create; one at a time with no tolerance, the first failure
    // cancels the other five. Updates are not made to fail.
    let failing: serde_json::Map<String, Value> = accounts
        .iter()
        .map(|a| (a.clone(), json!("injected create failure")))
        .collect();
    f.emulator
        .put(
            "/stacksets/failures",
            json!({"accounts": failing, "actions": ["CREATE"]}),
        )
        .await;
    let mut spec = service_managed(json!({"organizationalUnitIds": [ou]}));
    spec["operationPreferences"] = json!({
        "maxConcurrentCount": 1,
        "failureToleranceCount": 0,
        "concurrencyMode": "StrictFailureTolerance"
    });
    let stack_set = f.create("cancel", spec).await;
    let bulk = f
        .wait(
            "cancel",
            "one failed, five finished by the update",
            f.budget.registration_ready(6, 1, 2),
            |b| summary(b) == (6, 5, 1, 5),
        )
        .await;
    f.emulator.delete("/stacksets/failures").await;
    let ops = f.emulator.operations(&stack_set).await;
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert_eq!(
        (&ops[0]["action"], &ops[0]["status"]),
        (&json!("CREATE"), &json!("FAILED"))
    );
    assert_eq!(
        (&ops[1]["action"], &ops[1]["status"]),
        (&json!("UPDATE"), &json!("SUCCEEDED"))
    );
    let status = bulk.status.as_ref().expect("status");
    assert_eq!(status.failures.len(), 1);
    assert!(
        status.failures[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("injected create failure")),
        "{:?}",
        status.failures
    );
    assert_eq!(
        status
            .last_operation
            .as_ref()
            .map(|o| (o.action.as_str(), o.accounts)),
        Some(("Update", 5)),
        "the update covered exactly the cancelled accounts"
    );
    assert_eq!(
        condition(&bulk, "Stalled").map(|c| (c.0, c.1)),
        Some(("True", "InstancesFailed"))
    );
    // Nothing more is attempted: the failed instance is not retried in a loop.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(f.emulator.operations(&stack_set).await.len(), 2);
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn adding_and_removing_accounts_is_one_operation_each() {
    let f = fixture("bulk-delta", Shared).await;
    let (ou, accounts) = f.ou_with_accounts(30, None).await;
    let _ = ou;
    let first: Vec<&String> = accounts[..20].iter().collect();
    let stack_set = f
        .create("delta", service_managed(json!({"accounts": first})))
        .await;
    f.wait_ready("delta", f.ready_within(20, 1)).await;
    let before = f.emulator.operations(&stack_set).await;
    assert_eq!(before.len(), 1, "{before:?}");

    // Add 10: one create for exactly those 10.
    f.patch_spec("delta", json!({"targets": {"accounts": accounts}}))
        .await;
    let bulk = f.wait_ready("delta", f.ready_within(30, 1)).await;
    assert_eq!(summary(&bulk), (30, 30, 0, 30));
    let ops = f.emulator.operations(&stack_set).await;
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert_eq!(ops[1]["action"], "CREATE");
    let created: BTreeSet<String> = ops[1]["results"]
        .as_object()
        .expect("results")
        .keys()
        .map(|k| k.split('/').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        created,
        accounts[20..].iter().cloned().collect::<BTreeSet<_>>()
    );

    // Remove 10: one delete, and their children go afterwards.
    let kept: Vec<&String> = accounts[10..].iter().collect();
    f.patch_spec("delta", json!({"targets": {"accounts": kept}}))
        .await;
    let bulk = f.wait_ready("delta", f.ready_within(30, 1)).await;
    assert_eq!(summary(&bulk).0, 20);
    let ops = f.emulator.operations(&stack_set).await;
    assert_eq!(ops.len(), 3, "{ops:?}");
    assert_eq!(ops[2]["action"], "DELETE");
    assert_eq!(ops[2]["results"].as_object().expect("results").len(), 10);
    let removed: BTreeSet<String> = accounts[..10].iter().cloned().collect();
    eventually(f.budget.react(), "removed children gone", || async {
        let children = f.children("delta").await;
        (children.len() == 20 && children.keys().all(|a| !removed.contains(a))).then_some(())
    })
    .await;
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_ous_are_resolved_and_auto_deployed_accounts_get_linked() {
    let f = fixture("bulk-ou", Shared).await;
    let (parent, top) = f.ou_with_accounts(2, None).await;
    let (_child_ou, nested) = f.ou_with_accounts(2, Some(&parent)).await;
    let mut spec = service_managed(json!({"organizationalUnitIds": [parent], "exclude": [top[0]]}));
    spec["autoDeployment"] = json!({"enabled": true});
    let stack_set = f.create("org", spec).await;
    let bulk = f.wait_ready("org", f.ready_within(4, 1)).await;
    assert_eq!(summary(&bulk).0, 3, "2 nested + 2 top - 1 excluded");
    let children = f.children("org").await;
    assert!(
        !children.contains_key(&top[0]),
        "excluded account has no child"
    );
    assert!(nested.iter().all(|a| children.contains_key(a)));

    // An account that joins the nested OU later is deployed by CloudFormation's automatic
    // deployment and linked by the next resync.
    let nested_ou = f.aws.create_ou(&unique("late"), Some(&parent)).await;
    let late = f.accounts_in(1, &nested_ou).await.remove(0);
    let bulk = f
        .wait(
            "org",
            "the late account linked",
            f.ready_within(4, 2),
            |b| summary(b) == (4, 4, 0, 4),
        )
        .await;
    assert_eq!(condition(&bulk, "Ready").map(|c| c.0), Some("True"));
    let child = &f.children("org").await[&late];
    assert_eq!(condition(child, "Ready"), Some(("True", "Verified")));
    assert!(
        f.emulator
            .operations(&stack_set)
            .await
            .iter()
            .any(|op| op["auto_deployment"] == true),
        "the late account came through automatic deployment"
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_csv_line_is_named_and_nothing_is_deployed_until_fixed() {
    let f = fixture("bulk-csv", Shared).await;
    let (ou, accounts) = f.ou_with_accounts(3, None).await;
    let _ = ou;
    let csv = format!(
        "account,name\n{},a\n12345,b\n{},c\n",
        accounts[0], accounts[1]
    );
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        // Labelled: the fix below must reach the registration at once.
        "metadata": {"name": "accounts", "labels": {"accountlinker.dev/watch": "true"}},
        "data": {"accounts.csv": csv},
    }))
    .expect("configmap");
    let cms: Api<ConfigMap> = f.api();
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create cm");
    let stack_set = f
        .create(
            "csv",
            service_managed(json!({
                "accounts": [accounts[2]],
                "accountsFrom": [{"configMapRef": {"name": "accounts", "key": "accounts.csv"}}]
            })),
        )
        .await;
    let bulk = f
        .wait("csv", "Stalled naming line 3", f.budget.react(), |b| {
            is(b, "Stalled", "True", "InvalidAccountList")
        })
        .await;
    let text = message(&bulk, "Stalled");
    assert!(
        text.contains("line 3") && text.contains("\"12345\""),
        "{text}"
    );
    assert!(
        f.emulator.operations(&stack_set).await.is_empty(),
        "nothing deployed from a broken list"
    );

    let fixed = format!("account,name\n{},a\n{},c\n", accounts[0], accounts[1]);
    cms.patch(
        "accounts",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"accounts.csv": fixed}})),
    )
    .await
    .expect("fix cm");
    let bulk = f.wait_ready("csv", f.ready_within(3, 1)).await;
    assert_eq!(summary(&bulk), (3, 3, 0, 3));
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_change_is_one_update_and_children_verify_again() {
    let f = fixture("bulk-tpl", Shared).await;
    let (ou, accounts) = f.ou_with_accounts(3, None).await;
    let stack_set = f
        .create(
            "tpl",
            service_managed(json!({"organizationalUnitIds": [ou]})),
        )
        .await;
    f.wait_ready("tpl", f.ready_within(3, 1)).await;
    let verified_before: BTreeMap<String, String> = f
        .children("tpl")
        .await
        .into_iter()
        .map(|(a, c)| {
            (
                a,
                format!("{:?}", c.status.and_then(|s| s.last_verified_time)),
            )
        })
        .collect();
    let hash_before = f
        .bulks()
        .get("tpl")
        .await
        .expect("get")
        .status
        .and_then(|s| s.template_hash);

    f.patch_spec(
        "tpl",
        json!({"template": {"builtin": {"maxSessionDuration": 7200}}}),
    )
    .await;
    let bulk = f.wait_ready("tpl", f.ready_within(3, 1)).await;
    assert_ne!(
        bulk.status.as_ref().and_then(|s| s.template_hash.clone()),
        hash_before
    );
    let ops = f.emulator.operations(&stack_set).await;
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert_eq!(ops[1]["action"], "UPDATE");
    let role = f.aws.access_role(&accounts[0]).await;
    assert_eq!(
        role["max_session_duration"], 7200,
        "the role was updated in place"
    );
    eventually(f.budget.react(), "every child verified again", || async {
        let children = f.children("tpl").await;
        children
            .iter()
            .all(|(a, c)| {
                let now = format!(
                    "{:?}",
                    c.status.as_ref().and_then(|s| s.last_verified_time.clone())
                );
                verified_before.get(a) != Some(&now)
                    && condition(c, "Ready") == Some(("True", "Verified"))
            })
            .then_some(())
    })
    .await;
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_due_token_rotation_updates_the_stack_set_and_children_verify_with_the_new_token() {
    let f = fixture("bulk-rotate", Shared).await;
    let (ou, accounts) = f.ou_with_accounts(2, None).await;
    let mut spec = service_managed(json!({"organizationalUnitIds": [ou]}));
    spec["externalId"] = json!({"rotateEvery": "1h"});
    let stack_set = f.create("rot", spec).await;
    let bulk = f.wait_ready("rot", f.ready_within(2, 1)).await;
    let status = bulk.status.clone().expect("status");
    let old_secret = status.external_id_secret.clone().expect("token Secret");
    assert_eq!(old_secret, "rot-registration-token");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = f.api();
    let token = |s: k8s_openapi::api::core::v1::Secret| {
        String::from_utf8(s.data.expect("data").into_values().next().expect("key").0)
            .expect("utf-8")
    };
    let first = secrets.get(&old_secret).await.expect("Secret");
    assert_eq!(
        first.immutable,
        Some(true),
        "generated Secrets are immutable"
    );
    let old_token = token(first);
    let trusts = async |account: &str| f.aws.access_role(account).await["trust_policy"].to_string();
    assert!(trusts(&accounts[0]).await.contains(&old_token));
    assert_eq!(f.emulator.operations(&stack_set).await.len(), 1);

    // Two hours pass, as far as the registration knows: the token is due. A rotation cannot
    // rewrite the immutable Secret: it makes a new one.
    let two_hours_ago =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(2);
    f.bulks()
        .patch_status(
            "rot",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"externalIdRotatedTime": two_hours_ago.to_string()}})),
        )
        .await
        .expect("backdate the rotation time");
    // The rotation overlaps: the StackSet trusts both tokens, each child moves to the new one
    // once its role trusts it, and only then is the old one dropped. Watched every 100 ms, no
    // child ever fails a verification or stops being Ready on the way (while its instance is
    // updated, RoleDeployed says so and Ready keeps what verification said).
    let mut phases: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + f.ready_within(2, 1) * 3;
    let bulk = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotation did not finish; phases seen: {phases:?}"
        );
        for (account, child) in f.children("rot").await {
            for type_ in ["RoleAssumable", "Ready"] {
                assert_eq!(
                    condition(&child, type_).map(|c| c.0),
                    Some("True"),
                    "child of {account} not {type_} during the rotation: {:?}",
                    child.status
                );
            }
        }
        let bulk = f.bulks().get("rot").await.expect("registration");
        let status = bulk.status.clone().unwrap_or_default();
        let phase = status
            .external_id_rotation
            .map_or("done".to_string(), |p| format!("{p:?}"));
        if phases.last() != Some(&phase) {
            phases.push(phase);
        }
        let rotated = status.external_id_rotated_time.as_ref().is_some_and(|t| {
            t.0 > two_hours_ago + k8s_openapi::jiff::SignedDuration::from_hours(1)
        });
        if rotated
            && status.external_id_rotation.is_none()
            && status.external_id_retired_secrets.is_empty()
            && status.operation.is_none()
            && support::has(&bulk, "Ready", "True", None)
        {
            break bulk;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        phases.contains(&"Overlap".to_string()) && phases.contains(&"Narrowing".to_string()),
        "{phases:?}"
    );
    let status = bulk.status.clone().expect("status");
    let new_secret = status.external_id_secret.clone().expect("token Secret");
    assert!(
        new_secret.starts_with("rot-registration-token-") && new_secret != old_secret,
        "{new_secret}"
    );
    let second = secrets.get(&new_secret).await.expect("the new Secret");
    assert_eq!(second.immutable, Some(true));
    let rotated_at = second
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .get("accountlinker.dev/rotated-at")
        .cloned()
        .expect("the rotation time on the Secret");
    assert_eq!(
        Some(
            rotated_at
                .parse::<k8s_openapi::jiff::Timestamp>()
                .expect("RFC 3339")
        ),
        status.external_id_rotated_time.as_ref().map(|t| t.0)
    );
    let new_token = token(second);
    assert_ne!(new_token, old_token);
    let ops = f.emulator.operations(&stack_set).await;
    assert_eq!(
        ops.len(),
        3,
        "one update adds the new token, one drops the old: {ops:?}"
    );
    assert_eq!(
        (&ops[1]["action"], &ops[2]["action"]),
        (&json!("UPDATE"), &json!("UPDATE"))
    );
    for account in &accounts {
        let policy = trusts(account).await;
        assert!(
            policy.contains(&new_token) && !policy.contains(&old_token),
            "{policy}"
        );
    }
    let rotated = status
        .external_id_rotated_time
        .clone()
        .expect("rotation time");
    let children = f.children("rot").await;
    assert_eq!(children.len(), 2);
    for child in children.values() {
        assert_eq!(
            child
                .spec
                .external_id
                .as_ref()
                .map(|e| e.secret_ref.name.as_str()),
            Some(new_secret.as_str())
        );
        assert!(
            child
                .status
                .as_ref()
                .and_then(|s| s.last_verified_time.as_ref())
                .is_some_and(|t| t.0 >= rotated.0),
            "verified with the new token"
        );
        assert_eq!(condition(child, "Ready"), Some(("True", "Verified")));
    }
    // Proven, the old token goes: its Secret is deleted and no longer listed.
    eventually(f.budget.react(), "the replaced Secret retired", || async {
        let gone = secrets.get_opt(&old_secret).await.expect("get").is_none();
        let listed = f
            .bulks()
            .get("rot")
            .await
            .ok()?
            .status?
            .external_id_retired_secrets;
        (gone && listed.is_empty()).then_some(())
    })
    .await;
    assert!(
        !serde_json::to_string(&bulk)
            .expect("json")
            .contains(&new_token),
        "the token never appears in the object"
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployed_role_that_cannot_be_assumed_stalls_the_registration_naming_the_child() {
    let f = fixture("bulk-stalled-child", Shared).await;
    let (ou, accounts) = f.ou_with_accounts(2, None).await;
    let mut spec = service_managed(json!({"organizationalUnitIds": [ou]}));
    spec["linkTemplate"] = json!({"verifyInterval": "1m"});
    f.create("roles", spec).await;
    f.wait_ready("roles", f.ready_within(2, 1)).await;

    // The role disappears from one account behind the operator's back: its next verification
    // is refused, and after the grace period the child is Stalled, and so is the registration.
    f.aws.delete_role(&accounts[0]).await;
    let bulk = f
        .wait(
            "roles",
            "Stalled RolesNotAssumable",
            f.budget.next_verification(Duration::from_secs(60))
                + f.budget.stall_after(ACCESS_DENIED_GRACE),
            |b| is(b, "Stalled", "True", "RolesNotAssumable"),
        )
        .await;
    let text = message(&bulk, "Ready");
    assert!(
        text.starts_with("1 of 2 role(s) cannot be assumed")
            && text.contains(&format!("roles-{}", accounts[0]))
            && text.contains("AccessDenied"),
        "{text}"
    );
    assert_eq!(
        summary(&bulk),
        (2, 2, 0, 1),
        "deployed everywhere, one assumable"
    );
    let healthy = &f.children("roles").await[&accounts[1]];
    assert_eq!(condition(healthy, "Ready").map(|c| c.0), Some("True"));
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_in_the_middle_of_an_operation_starts_no_duplicate() {
    let mut f = fixture("bulk-crash", Shared).await;
    f.operator.kill();
    // Without leader election the replacement does not wait for the old lease to expire.
    let mut flags = FLAGS.to_vec();
    flags.push("--leader-elect=false");
    f.operator = f.ctx.operator(&flags);
    let (ou, _) = f.ou_with_accounts(30, None).await;
    let mut spec = service_managed(json!({"organizationalUnitIds": [ou]}));
    spec["operationPreferences"] = json!({"maxConcurrentCount": 1});
    let stack_set = f.create("crash", spec).await;
    let bulk = f
        .wait("crash", "an operation in flight", f.budget.react(), |b| {
            b.status
                .as_ref()
                .and_then(|s| s.operation.as_ref())
                .is_some_and(|o| o.status.as_deref() == Some("RUNNING"))
        })
        .await;
    let in_flight = bulk.status.and_then(|s| s.operation).expect("operation").id;
    f.operator.kill();
    assert_eq!(
        f.emulator.operations(&stack_set).await[0]["status"],
        "RUNNING",
        "killed mid-operation"
    );
    f.operator = f.ctx.operator(&flags);
    let bulk = f
        .wait_ready("crash", f.budget.registration_ready(30, 1, 1))
        .await;
    let ops = f.emulator.operations(&stack_set).await;
    assert_eq!(ops.len(), 1, "no duplicate operation: {ops:?}");
    assert_eq!(ops[0]["operation_id"], in_flight.as_str());
    assert_eq!(
        bulk.status.and_then(|s| s.last_operation).map(|o| o.id),
        Some(in_flight)
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn self_managed_without_the_execution_role_fails_that_account_with_the_reason() {
    let f = fixture("bulk-self", Shared).await;
    let (_, accounts) = f.ou_with_accounts(3, None).await;
    for account in &accounts[..2] {
        f.aws.put_execution_role(account).await;
    }
    let stack_set = f
        .create(
            "selfm",
            json!({
                "stackSet": {"permissionModel": "SelfManaged"},
                "template": {"builtin": {}},
                "targets": {"accounts": accounts},
                "regions": ["us-east-1"],
                "operationPreferences": {"maxConcurrentCount": 3, "failureToleranceCount": 2},
            }),
        )
        .await;
    let bulk = f
        .wait(
            "selfm",
            "one failure",
            f.budget.registration_ready(3, 3, 1),
            |b| summary(b) == (3, 2, 1, 2),
        )
        .await;
    let failure = &bulk.status.as_ref().expect("status").failures[0];
    assert_eq!(failure.account, accounts[2]);
    let reason = failure.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("AWSCloudFormationStackSetExecutionRole"),
        "{reason}"
    );
    assert_eq!(f.emulator.operations(&stack_set).await.len(), 1);
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_removes_instances_stack_set_and_children_or_retains_them() {
    let f = fixture("bulk-del", Shared).await;
    let (ou, _) = f.ou_with_accounts(3, None).await;
    let mut delete_spec = service_managed(json!({"organizationalUnitIds": [ou]}));
    delete_spec["deletionPolicy"] = json!("Delete");
    let deleted = f.create("gone", delete_spec).await;
    // No deletionPolicy: the default retains.
    let mut retain_spec = service_managed(json!({"organizationalUnitIds": [ou]}));
    // A second role name: two StackSets creating one named role in the same accounts collide.
    retain_spec["template"] = json!({"builtin": {"roleName": "KeptAccess"}});
    let retained = f.create("kept", retain_spec).await;
    f.wait_ready("gone", f.ready_within(3, 1)).await;
    f.wait_ready("kept", f.ready_within(3, 1)).await;

    f.bulks()
        .delete("gone", &DeleteParams::default())
        .await
        .expect("delete");
    gone(
        &f.bulks(),
        "gone",
        f.budget.registration_deleted(3, CONCURRENCY),
    )
    .await;
    // The emulator forgets a deleted StackSet's operations; the operator's Events tell the
    // order: instances first, then the StackSet.
    let reasons = f.event_reasons("gone").await;
    let started = reasons.iter().position(|r| r == "Deleting");
    let removed = reasons.iter().position(|r| r == "StackSetDeleted");
    assert!(
        started.is_some() && removed.is_some() && started < removed,
        "events in order: {reasons:?}"
    );
    assert!(f.children("gone").await.is_empty(), "children deleted");
    let exists = f.aws.stack_set_exists(&deleted).await;
    assert!(!exists, "StackSet {deleted} deleted:\n{}", f.operator.log());

    f.bulks()
        .delete("kept", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&f.bulks(), "kept", f.budget.react()).await;
    assert!(
        f.aws.stack_set_exists(&retained).await,
        "Retain leaves the StackSet"
    );
    assert!(
        f.emulator
            .operations(&retained)
            .await
            .iter()
            .all(|o| o["action"] != "DELETE"),
        "Retain deletes no instance"
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn service_managed_without_trusted_access_says_how_to_enable_it() {
    let f = fixture("bulk-trust", Exclusive).await;
    let (ou, _) = f.ou_with_accounts(2, None).await;
    f.aws.set_trusted_access(false).await;
    let stack_set = f
        .create(
            "trust",
            service_managed(json!({"organizationalUnitIds": [ou]})),
        )
        .await;
    let bulk = f
        .wait(
            "trust",
            "Stalled on trusted access",
            f.budget.react(),
            |b| is(b, "Stalled", "True", "TrustedAccessDisabled"),
        )
        .await;
    let text = message(&bulk, "StackSetReady");
    assert!(text.contains("activate-organizations-access"), "{text}");
    assert_eq!(condition(&bulk, "Ready").map(|c| c.0), Some("False"));
    assert!(
        !f.aws.stack_set_exists(&stack_set).await,
        "nothing created without trusted access"
    );

    f.aws.set_trusted_access(true).await;
    let bulk = f.wait_ready("trust", f.ready_within(2, 1)).await;
    assert_eq!(summary(&bulk), (2, 2, 0, 2));
    f.cleanup().await;
}

/// Restarts the test's operator with `extra` flags and, when given, the AWS credentials `creds`
/// (access key, secret key, session token) instead of the environment's.
fn restart_operator(f: &mut Running, extra: &[&str], creds: Option<(String, String, String)>) {
    f.operator.terminate(Duration::from_secs(10));
    let mut flags = FLAGS.to_vec();
    flags.extend_from_slice(extra);
    let vars: Vec<(String, String)> = creds
        .map(|(key, secret, token)| {
            vec![
                ("AWS_ACCESS_KEY_ID".into(), key),
                ("AWS_SECRET_ACCESS_KEY".into(), secret),
                ("AWS_SESSION_TOKEN".into(), token),
            ]
        })
        .unwrap_or_default();
    f.operator = Operator::start_with_env(&f.env, &f.ns.name, &flags, &vars);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_builtin_role_trusts_the_operators_own_role() {
    let mut f = fixture("bulk-trust", Shared).await;
    // The operator runs as a role of the hub account, as with IRSA or EKS Pod Identity.
    let role = unique("OperatorRole");
    let creds = f.aws.assume_hub_role(&role).await;
    restart_operator(&mut f, &[], Some(creds));
    let (ou, accounts) = f.ou_with_accounts(1, None).await;
    f.create(
        "trust",
        service_managed(json!({"organizationalUnitIds": [ou]})),
    )
    .await;
    f.wait_ready("trust", f.ready_within(1, 1)).await;
    let policy = &f.aws.access_role(&accounts[0]).await["trust_policy"];
    let statement = &policy["Statement"][0];
    assert_eq!(
        statement["Principal"]["AWS"],
        format!("arn:aws:iam::{HUB_ACCOUNT}:role/{role}"),
        "the role trusts the operator's role, not the hub account: {policy}"
    );
    // The registration token, twice: the second slot holds the token a rotation replaces
    // while the fleet moves to the new one.
    let tokens = &statement["Condition"]["StringEquals"]["sts:ExternalId"];
    assert!(
        tokens.as_array().is_some_and(|t| t.len() == 2
            && t[0] == t[1]
            && t[0].as_str().is_some_and(|v| v.len() >= 32)),
        "{policy}"
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_template_hash_key_is_created_once_and_survives_restarts() {
    let mut f = fixture("bulk-hash-key", Shared).await;
    let (ou, _) = f.ou_with_accounts(1, None).await;
    let stack_set = f
        .create(
            "keyed",
            service_managed(json!({"organizationalUnitIds": [ou]})),
        )
        .await;
    let bulk = f.wait_ready("keyed", f.ready_within(1, 1)).await;
    let hash = bulk.status.and_then(|s| s.template_hash).expect("hash");
    // The operator keeps the key in its own namespace (here the Lease's), immutable.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = f.api();
    let key = secrets
        .get("account-linker-hash-key")
        .await
        .expect("the key Secret");
    assert_eq!(key.immutable, Some(true));
    assert_eq!(key.data.as_ref().expect("data")["key"].0.len(), 32);

    // A new process reads the same key: the hash stays, and no update is made.
    restart_operator(&mut f, &[], None);
    f.patch_spec(
        "keyed",
        json!({"linkTemplate": {"labels": {"restarted": "yes"}}}),
    )
    .await;
    let bulk = f
        .wait(
            "keyed",
            "the restarted operator reconciled",
            f.budget.react(),
            |b| {
                b.status.as_ref().and_then(|s| s.observed_generation) == b.metadata.generation
                    && support::has(b, "Ready", "True", None)
            },
        )
        .await;
    assert_eq!(bulk.status.and_then(|s| s.template_hash), Some(hash));
    assert_eq!(f.emulator.operations(&stack_set).await.len(), 1);
    let again = secrets.get("account-linker-hash-key").await.expect("key");
    assert_eq!(again.data, key.data);
    f.cleanup().await;
}

/// A role template whose ExternalId parameter is declared with `no_echo` (or without it).
fn custom_template(no_echo: bool) -> String {
    let mut parameter = json!({"Type": "String"});
    if no_echo {
        parameter["NoEcho"] = json!(true);
    }
    json!({
        "Parameters": {"ExternalId": parameter},
        "Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": support::ACCESS_ROLE,
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

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_template_that_would_show_the_token_is_refused_before_any_stack_set_call() {
    let f = fixture("bulk-noecho", Shared).await;
    let (ou, _) = f.ou_with_accounts(1, None).await;
    let config_maps: Api<ConfigMap> = f.api();
    let template = |no_echo| {
        serde_json::from_value::<ConfigMap>(json!({
            "metadata": {"name": "role-template", "labels": {"accountlinker.dev/watch": "true"}},
            "data": {"template.json": custom_template(no_echo)},
        }))
        .expect("ConfigMap")
    };
    config_maps
        .create(&PostParams::default(), &template(false))
        .await
        .expect("create ConfigMap");
    let mut spec = service_managed(json!({"organizationalUnitIds": [ou]}));
    spec["template"] = json!({"configMapRef": {"name": "role-template", "key": "template.json"}});
    let stack_set = f.create("custom", spec).await;
    let bulk = f
        .wait(
            "custom",
            "Stalled ExternalIdNotNoEcho",
            f.budget.react(),
            |b| is(b, "Stalled", "True", "ExternalIdNotNoEcho"),
        )
        .await;
    assert!(message(&bulk, "Ready").contains("NoEcho"), "{bulk:?}");
    assert!(
        !f.aws.stack_set_exists(&stack_set).await,
        "no StackSet was created"
    );
    assert!(f.emulator.operations(&stack_set).await.is_empty());

    // Declared NoEcho, the same template deploys.
    config_maps
        .replace("role-template", &PostParams::default(), &{
            let mut fixed = template(true);
            fixed.metadata.resource_version = config_maps
                .get("role-template")
                .await
                .expect("ConfigMap")
                .metadata
                .resource_version;
            fixed
        })
        .await
        .expect("fix the template");
    f.wait_ready("custom", f.ready_within(1, 1)).await;
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registration_over_the_target_limit_is_stalled_before_any_stack_set_call() {
    let mut f = fixture("bulk-max", Shared).await;
    restart_operator(&mut f, &["--max-targets", "2"], None);
    let (ou, accounts) = f.ou_with_accounts(3, None).await;
    let stack_set = f
        .create(
            "big",
            service_managed(json!({"organizationalUnitIds": [ou]})),
        )
        .await;
    let bulk = f
        .wait("big", "Stalled TooManyTargets", f.budget.react(), |b| {
            is(b, "Stalled", "True", "TooManyTargets")
        })
        .await;
    let text = message(&bulk, "Ready");
    assert!(
        text.contains('3') && text.contains("--max-targets"),
        "{text}"
    );
    assert!(!f.aws.stack_set_exists(&stack_set).await);

    // Within the limit again, it deploys.
    f.patch_spec("big", json!({"targets": {"exclude": [accounts[0]]}}))
        .await;
    let bulk = f.wait_ready("big", f.ready_within(2, 1)).await;
    assert_eq!(summary(&bulk).0, 2);
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_interrupted_after_creating_the_next_secret_uses_that_secret() {
    use account_linker::controller::bulk_registration::token::next_secret_name;
    use account_linker::controller::external_id::{ExternalId, generated_secret};
    use kube::Resource;

    let f = fixture("bulk-rotate-crash", Shared).await;
    let (ou, accounts) = f.ou_with_accounts(1, None).await;
    let mut spec = service_managed(json!({"organizationalUnitIds": [ou]}));
    spec["externalId"] = json!({"rotateEvery": "1h"});
    let stack_set = f.create("rot", spec).await;
    let bulk = f.wait_ready("rot", f.ready_within(1, 1)).await;
    let current = bulk
        .status
        .as_ref()
        .and_then(|s| s.external_id_secret.clone())
        .expect("token Secret");

    // An earlier attempt of the rotation created the next Secret and stopped before status said
    // so: the rotation finds it and uses its token, never making another one.
    let next = next_secret_name(&bulk, &current);
    let left_behind = ExternalId::new("token-of-an-interrupted-rotation");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = f.api();
    secrets
        .create(
            &PostParams::default(),
            &generated_secret(&next, bulk.controller_owner_ref(&()), &left_behind),
        )
        .await
        .expect("the Secret an interrupted rotation left");
    let two_hours_ago =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(2);
    f.bulks()
        .patch_status(
            "rot",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"externalIdRotatedTime": two_hours_ago.to_string()}})),
        )
        .await
        .expect("backdate the rotation time");
    f.wait(
        "rot",
        "Ready on the next Secret",
        f.ready_within(1, 1),
        // No operation in flight: the write that records the update still carries the
        // conditions of the pass before.
        |b| {
            support::has(b, "Ready", "True", None)
                && b.status.as_ref().is_some_and(|s| s.operation.is_none())
                && b.status
                    .as_ref()
                    .and_then(|s| s.external_id_secret.as_deref())
                    == Some(next.as_str())
        },
    )
    .await;
    let policy = f.aws.access_role(&accounts[0]).await["trust_policy"].to_string();
    assert!(policy.contains(left_behind.expose()), "{policy}");
    // The rotation finishes: the old token is dropped and its Secret retired.
    f.wait(
        "rot",
        "the rotation finished",
        f.ready_within(1, 1) * 2,
        |b| {
            b.status.as_ref().is_some_and(|s| {
                s.external_id_rotation.is_none()
                    && s.external_id_retired_secrets.is_empty()
                    && s.operation.is_none()
            })
        },
    )
    .await;
    let ops = f.emulator.operations(&stack_set).await;
    assert_eq!(
        ops.len(),
        3,
        "two updates for the rotation (add the new token, drop the old): {ops:?}"
    );
    let names: Vec<String> = secrets
        .list(&ListParams::default())
        .await
        .expect("list Secrets")
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .filter(|n| n.starts_with("rot-registration-token"))
        .collect();
    assert!(
        names.iter().all(|n| *n == next || *n == current),
        "no third token Secret: {names:?}"
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_labelled_config_maps_trigger_a_registration_at_once() {
    // No resync within the test: only a watch event can start a pass. Alone, because every
    // LinkPolicy another test creates re-evaluates (so passes) every registration.
    let mut flags = FLAGS.to_vec();
    let resync = 1 + flags
        .iter()
        .position(|f| *f == "--bulk-resync-interval")
        .expect("a resync flag");
    flags[resync] = "1h";
    let f = fixture_with("bulk-cm-watch", Exclusive, &flags).await;
    let (_, accounts) = f.ou_with_accounts(2, None).await;
    let cms: Api<ConfigMap> = f.api();
    let list = |accounts: &[String]| json!({"accounts.csv": accounts.join("\n")});
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "accounts"}, "data": list(&accounts[..1]),
    }))
    .expect("configmap");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create cm");
    let stack_set = f
        .create(
            "cm-watch",
            service_managed(json!({
                "accountsFrom": [{"configMapRef": {"name": "accounts", "key": "accounts.csv"}}]
            })),
        )
        .await;
    let bulk = f.wait_ready("cm-watch", f.ready_within(1, 1)).await;
    assert_eq!(summary(&bulk).0, 1);
    // The pass that the Ready status write itself triggers ends before the edit.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let operations = f.emulator.operations(&stack_set).await.len();

    // An unlabelled ConfigMap is read by name, not watched: editing it starts nothing.
    cms.patch(
        "accounts",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": list(&accounts)})),
    )
    .await
    .expect("edit cm");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let bulk = f.bulks().get("cm-watch").await.expect("get");
    assert_eq!(
        summary(&bulk).0,
        1,
        "an unlabelled ConfigMap edit was acted on"
    );
    assert_eq!(f.emulator.operations(&stack_set).await.len(), operations);

    // Labelled, it is watched: the registration picks up the second account at once.
    cms.patch(
        "accounts",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"accountlinker.dev/watch": "true"}}})),
    )
    .await
    .expect("label cm");
    let bulk = f
        .wait("cm-watch", "two targets", f.ready_within(2, 1), |b| {
            summary(b).0 == 2 && support::has(b, "Ready", "True", None)
        })
        .await;
    assert_eq!(summary(&bulk), (2, 2, 0, 2));
    f.cleanup().await;
}
