//! The BulkRegistration controller end to end: the real operator binary against a real API
//! server and the strict AWS emulator, with StackSet operation latency on. Each test has its
//! own namespace, accounts (in OUs of its own) and operator process; operation counts are read
//! from the emulator per StackSet.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use account_linker::api::{BulkRegistration, LinkedAccount};
use support::{Operator, TestEnv, TestNamespace, aws_admin, emulator, eventually, gone};

static SETUP: Once = Once::new();
/// Trusted access is organization-wide: the test that turns it off holds this for writing.
static TRUSTED_ACCESS: RwLock<()> = RwLock::const_new(());
static SEQ: AtomicU32 = AtomicU32::new(0);
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

/// The organization, trusted access and operation latency, once per test binary.
fn setup(env: &TestEnv) {
    SETUP.call_once(|| {
        aws_admin(env, &["ensure-org"]);
        aws_admin(env, &["activate-trusted-access"]);
        emulator(
            env,
            "PUT",
            "/stacksets/timing",
            Some(json!({"base_seconds": 0.5, "seconds_per_wave": 0.2})),
        );
    });
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A new OU (under `parent`, else the root) holding `count` new accounts.
fn ou_with_accounts(env: &TestEnv, count: usize, parent: Option<&str>) -> (String, Vec<String>) {
    let name = unique("ou");
    let mut args = vec!["create-ou", "--name", &name];
    if let Some(p) = parent {
        args.extend(["--parent", p]);
    }
    let ou = aws_admin(env, &args)["ouId"]
        .as_str()
        .expect("ou id")
        .to_string();
    let accounts = accounts_in(env, count, &ou);
    (ou, accounts)
}

fn accounts_in(env: &TestEnv, count: usize, parent: &str) -> Vec<String> {
    if count == 0 {
        return Vec::new();
    }
    let prefix = unique("acct");
    let count = count.to_string();
    let out = aws_admin(
        env,
        &[
            "create-accounts",
            "--prefix",
            &prefix,
            "--count",
            &count,
            "--parent",
            parent,
        ],
    );
    out["accountIds"]
        .as_array()
        .expect("account ids")
        .iter()
        .map(|v| v.as_str().expect("id").to_string())
        .collect()
}

/// StackSet operations the emulator ran for `stack_set`, oldest first.
fn operations(env: &TestEnv, stack_set: &str) -> Vec<Value> {
    emulator(env, "GET", "/stacksets/operations", None)["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .filter(|op| op["stack_set_name"] == stack_set)
        .cloned()
        .collect()
}

/// Held for the life of a fixture: shared, or exclusive for a test that changes
/// organization-wide settings.
struct OrgGuard {
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _exclusive: Option<RwLockWriteGuard<'static, ()>>,
}

struct Fixture {
    env: TestEnv,
    client: Client,
    ns: TestNamespace,
    operator: Operator,
    _org: OrgGuard,
}

impl Fixture {
    async fn new(prefix: &str) -> Self {
        let guard = OrgGuard {
            _shared: Some(TRUSTED_ACCESS.read().await),
            _exclusive: None,
        };
        Self::start(prefix, guard).await
    }

    /// A fixture that may change organization-wide settings.
    async fn exclusive(prefix: &str) -> Self {
        let guard = OrgGuard {
            _shared: None,
            _exclusive: Some(TRUSTED_ACCESS.write().await),
        };
        Self::start(prefix, guard).await
    }

    async fn start(prefix: &str, org: OrgGuard) -> Self {
        let env = support::env();
        setup(&env);
        let client = env.client().await;
        let ns = TestNamespace::create(&client, prefix).await;
        let operator = Operator::start(&env, &ns.name, FLAGS);
        Self {
            env,
            client,
            ns,
            operator,
            _org: org,
        }
    }

    fn bulks(&self) -> Api<BulkRegistration> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    fn links(&self) -> Api<LinkedAccount> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// Creates a BulkRegistration named `name`; returns its StackSet name.
    async fn create(&self, name: &str, spec: Value) -> String {
        let stack_set = unique("ss");
        let mut spec = spec;
        spec["stackSet"]["name"] = json!(stack_set);
        let bulk: BulkRegistration = serde_json::from_value(json!({
            "apiVersion": "accountlinker.dev/v1alpha1", "kind": "BulkRegistration",
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("valid BulkRegistration");
        self.bulks()
            .create(&PostParams::default(), &bulk)
            .await
            .expect("create BulkRegistration");
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
        let api = self.bulks();
        let check = &check;
        eventually(timeout, &format!("{name}: {what}"), || {
            let api = api.clone();
            async move {
                let bulk = api.get_opt(name).await.ok()??;
                check(&bulk).then_some(bulk)
            }
        })
        .await
    }

    async fn wait_ready(&self, name: &str, timeout: Duration) -> BulkRegistration {
        let generation = self
            .bulks()
            .get(name)
            .await
            .expect("get")
            .metadata
            .generation;
        self.wait(
            name,
            "Ready=True for the current generation",
            timeout,
            |b| {
                condition(b, "Ready").is_some_and(|(s, _, _)| s == "True")
                    && b.status.as_ref().and_then(|s| s.observed_generation) >= generation
            },
        )
        .await
    }

    async fn children(&self, bulk: &str) -> BTreeMap<String, LinkedAccount> {
        self.links()
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

    async fn cleanup(self) {
        let Self {
            ns, mut operator, ..
        } = self;
        operator.terminate(Duration::from_secs(10));
        ns.cleanup().await;
    }
}

fn condition<'a>(bulk: &'a BulkRegistration, type_: &str) -> Option<(&'a str, &'a str, &'a str)> {
    bulk.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

fn link_condition<'a>(link: &'a LinkedAccount, type_: &str) -> Option<(&'a str, &'a str)> {
    link.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
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
            "maxConcurrentCount": 50,
            "failureToleranceCount": 10,
            "concurrencyMode": "SoftFailureTolerance"
        },
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_accounts_reach_ready_in_at_most_three_operations() {
    let f = Fixture::new("bulk-200").await;
    let (ou, accounts) = ou_with_accounts(&f.env, 200, None);
    let started = Instant::now();
    let stack_set = f
        .create(
            "fleet",
            service_managed(json!({"organizationalUnitIds": [ou]})),
        )
        .await;
    let bulk = f.wait_ready("fleet", Duration::from_secs(240)).await;
    let took = started.elapsed();
    assert_eq!(summary(&bulk), (200, 200, 0, 200));
    let ops = operations(&f.env, &stack_set);
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
        assert_eq!(link_condition(child, "Ready"), Some(("True", "Verified")));
        assert_eq!(
            link_condition(child, "RoleDeployed"),
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
    assert_eq!(operations(&f.env, &stack_set).len(), ops.len());
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_accounts_are_listed_and_the_rest_become_ready() {
    let _injecting = FAILURE_INJECTION.lock().await;
    let f = Fixture::new("bulk-fail").await;
    let (ou, accounts) = ou_with_accounts(&f.env, 20, None);
    let failing: BTreeMap<String, String> = accounts[..5]
        .iter()
        .map(|a| (a.clone(), format!("injected failure for {a}")))
        .collect();
    let mut current = emulator(&f.env, "GET", "/stacksets/failures", None)["accounts"].clone();
    for (a, r) in &failing {
        current[a] = json!(r);
    }
    emulator(
        &f.env,
        "PUT",
        "/stacksets/failures",
        Some(json!({"accounts": current})),
    );
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
            Duration::from_secs(120),
            |b| {
                summary(b) == (20, 15, 5, 15)
                    && condition(b, "Stalled").is_some_and(|(s, _, _)| s == "True")
            },
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
    let ops = operations(&f.env, &stack_set);
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["status"], "SUCCEEDED");
    let children = f.children("partial").await;
    for account in &accounts {
        let child = &children[account];
        if failing.contains_key(account) {
            assert_eq!(link_condition(child, "Ready").map(|c| c.0), Some("False"));
            assert_eq!(
                link_condition(child, "RoleDeployed"),
                Some(("False", "StackInstanceFailed"))
            );
        } else {
            assert_eq!(link_condition(child, "Ready"), Some(("True", "Verified")));
        }
    }
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_cancelled_by_failure_tolerance_are_finished_by_one_update() {
    let _injecting = FAILURE_INJECTION.lock().await;
    let f = Fixture::new("bulk-cancel").await;
    let (ou, accounts) = ou_with_accounts(&f.env, 6, None);
    // Every account would fail a create; one at a time with no tolerance, the first failure
    // cancels the other five. Updates are not made to fail.
    let failing: serde_json::Map<String, Value> = accounts
        .iter()
        .map(|a| (a.clone(), json!("injected create failure")))
        .collect();
    emulator(
        &f.env,
        "PUT",
        "/stacksets/failures",
        Some(json!({"accounts": failing, "actions": ["CREATE"]})),
    );
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
            Duration::from_secs(120),
            |b| summary(b) == (6, 5, 1, 5),
        )
        .await;
    emulator(&f.env, "DELETE", "/stacksets/failures", None);
    let ops = operations(&f.env, &stack_set);
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
    assert_eq!(operations(&f.env, &stack_set).len(), 2);
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn adding_and_removing_accounts_is_one_operation_each() {
    let f = Fixture::new("bulk-delta").await;
    let (ou, accounts) = ou_with_accounts(&f.env, 30, None);
    let _ = ou;
    let first: Vec<&String> = accounts[..20].iter().collect();
    let stack_set = f
        .create("delta", service_managed(json!({"accounts": first})))
        .await;
    f.wait_ready("delta", Duration::from_secs(120)).await;
    let before = operations(&f.env, &stack_set);
    assert_eq!(before.len(), 1, "{before:?}");

    // Add 10: one create for exactly those 10.
    f.patch_spec("delta", json!({"targets": {"accounts": accounts}}))
        .await;
    let bulk = f.wait_ready("delta", Duration::from_secs(120)).await;
    assert_eq!(summary(&bulk), (30, 30, 0, 30));
    let ops = operations(&f.env, &stack_set);
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
    let bulk = f.wait_ready("delta", Duration::from_secs(120)).await;
    assert_eq!(summary(&bulk).0, 20);
    let ops = operations(&f.env, &stack_set);
    assert_eq!(ops.len(), 3, "{ops:?}");
    assert_eq!(ops[2]["action"], "DELETE");
    assert_eq!(ops[2]["results"].as_object().expect("results").len(), 10);
    let removed: BTreeSet<String> = accounts[..10].iter().cloned().collect();
    eventually(Duration::from_secs(30), "removed children gone", || async {
        let children = f.children("delta").await;
        (children.len() == 20 && children.keys().all(|a| !removed.contains(a))).then_some(())
    })
    .await;
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nested_ous_are_resolved_and_auto_deployed_accounts_get_linked() {
    let f = Fixture::new("bulk-ou").await;
    let (parent, top) = ou_with_accounts(&f.env, 2, None);
    let (_child_ou, nested) = ou_with_accounts(&f.env, 2, Some(&parent));
    let mut spec = service_managed(json!({"organizationalUnitIds": [parent], "exclude": [top[0]]}));
    spec["autoDeployment"] = json!({"enabled": true});
    let stack_set = f.create("org", spec).await;
    let bulk = f.wait_ready("org", Duration::from_secs(120)).await;
    assert_eq!(summary(&bulk).0, 3, "2 nested + 2 top - 1 excluded");
    let children = f.children("org").await;
    assert!(
        !children.contains_key(&top[0]),
        "excluded account has no child"
    );
    assert!(nested.iter().all(|a| children.contains_key(a)));

    // An account that joins the nested OU later is deployed by CloudFormation's automatic
    // deployment and linked by the next resync.
    let (_, _) = (&stack_set, ());
    let nested_ou = aws_admin(
        &f.env,
        &["create-ou", "--name", &unique("late"), "--parent", &parent],
    )["ouId"]
        .as_str()
        .expect("ou")
        .to_string();
    let late = accounts_in(&f.env, 1, &nested_ou).remove(0);
    let bulk = f
        .wait(
            "org",
            "the late account linked",
            Duration::from_secs(120),
            |b| summary(b) == (4, 4, 0, 4),
        )
        .await;
    assert_eq!(condition(&bulk, "Ready").map(|c| c.0), Some("True"));
    let child = &f.children("org").await[&late];
    assert_eq!(link_condition(child, "Ready"), Some(("True", "Verified")));
    assert!(
        operations(&f.env, &stack_set)
            .iter()
            .any(|op| op["auto_deployment"] == true),
        "the late account came through automatic deployment"
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_csv_line_is_named_and_nothing_is_deployed_until_fixed() {
    let f = Fixture::new("bulk-csv").await;
    let (ou, accounts) = ou_with_accounts(&f.env, 3, None);
    let _ = ou;
    let csv = format!(
        "account,name\n{},a\n12345,b\n{},c\n",
        accounts[0], accounts[1]
    );
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "accounts"}, "data": {"accounts.csv": csv},
    }))
    .expect("configmap");
    let cms: Api<ConfigMap> = Api::namespaced(f.client.clone(), &f.ns.name);
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
        .wait(
            "csv",
            "Stalled naming line 3",
            Duration::from_secs(60),
            |b| {
                condition(b, "Stalled")
                    .is_some_and(|(s, r, _)| s == "True" && r == "InvalidAccountList")
            },
        )
        .await;
    let (_, _, message) = condition(&bulk, "Stalled").expect("stalled");
    assert!(
        message.contains("line 3") && message.contains("\"12345\""),
        "{message}"
    );
    assert!(
        operations(&f.env, &stack_set).is_empty(),
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
    let bulk = f.wait_ready("csv", Duration::from_secs(120)).await;
    assert_eq!(summary(&bulk), (3, 3, 0, 3));
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_change_is_one_update_and_children_verify_again() {
    let f = Fixture::new("bulk-tpl").await;
    let (ou, accounts) = ou_with_accounts(&f.env, 3, None);
    let stack_set = f
        .create(
            "tpl",
            service_managed(json!({"organizationalUnitIds": [ou]})),
        )
        .await;
    f.wait_ready("tpl", Duration::from_secs(120)).await;
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
    let bulk = f.wait_ready("tpl", Duration::from_secs(120)).await;
    assert_ne!(
        bulk.status.as_ref().and_then(|s| s.template_hash.clone()),
        hash_before
    );
    let ops = operations(&f.env, &stack_set);
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert_eq!(ops[1]["action"], "UPDATE");
    let role = aws_admin(&f.env, &["get-role", "--account", &accounts[0]]);
    assert_eq!(
        role["maxSessionDuration"], 7200,
        "the role was updated in place"
    );
    eventually(
        Duration::from_secs(60),
        "every child verified again",
        || async {
            let children = f.children("tpl").await;
            children
                .iter()
                .all(|(a, c)| {
                    let now = format!(
                        "{:?}",
                        c.status.as_ref().and_then(|s| s.last_verified_time.clone())
                    );
                    verified_before.get(a) != Some(&now)
                        && link_condition(c, "Ready") == Some(("True", "Verified"))
                })
                .then_some(())
        },
    )
    .await;
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_due_token_rotation_updates_the_stack_set_and_children_verify_with_the_new_token() {
    let f = Fixture::new("bulk-rotate").await;
    let (ou, accounts) = ou_with_accounts(&f.env, 2, None);
    let mut spec = service_managed(json!({"organizationalUnitIds": [ou]}));
    spec["externalId"] = json!({"rotateEvery": "1h"});
    let stack_set = f.create("rot", spec).await;
    let bulk = f.wait_ready("rot", Duration::from_secs(120)).await;
    let status = bulk.status.clone().expect("status");
    let secret_name = status.external_id_secret.clone().expect("token Secret");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(f.client.clone(), &f.ns.name);
    let token = |s: k8s_openapi::api::core::v1::Secret| {
        String::from_utf8(s.data.expect("data").into_values().next().expect("key").0)
            .expect("utf-8")
    };
    let old_token = token(secrets.get(&secret_name).await.expect("Secret"));
    let trusts = |account: &str| {
        aws_admin(&f.env, &["get-role", "--account", account])["trustPolicy"].to_string()
    };
    assert!(trusts(&accounts[0]).contains(&old_token));
    assert_eq!(operations(&f.env, &stack_set).len(), 1);

    // Two hours pass, as far as the registration knows: the token is due.
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
    let new_token = eventually(Duration::from_secs(60), "the token rotated", || async {
        let value = token(secrets.get(&secret_name).await.ok()?);
        (value != old_token).then_some(value)
    })
    .await;
    let bulk = f
        .wait(
            "rot",
            "Ready after the rotation",
            Duration::from_secs(120),
            |b| {
                condition(b, "Ready").is_some_and(|(s, _, _)| s == "True")
                    && b.status
                        .as_ref()
                        .and_then(|s| s.external_id_rotated_time.as_ref())
                        .is_some_and(|t| {
                            t.0 > two_hours_ago + k8s_openapi::jiff::SignedDuration::from_hours(1)
                        })
            },
        )
        .await;
    let ops = operations(&f.env, &stack_set);
    assert_eq!(ops.len(), 2, "one update for the new token: {ops:?}");
    assert_eq!(ops[1]["action"], "UPDATE");
    for account in &accounts {
        let policy = trusts(account);
        assert!(
            policy.contains(&new_token) && !policy.contains(&old_token),
            "{policy}"
        );
    }
    let rotated = bulk
        .status
        .as_ref()
        .and_then(|s| s.external_id_rotated_time.clone())
        .expect("rotation time");
    eventually(
        Duration::from_secs(90),
        "every child verified again, with the new token",
        || async {
            let children = f.children("rot").await;
            (children.len() == 2
                && children.values().all(|c| {
                    c.status
                        .as_ref()
                        .and_then(|s| s.last_verified_time.as_ref())
                        .is_some_and(|t| t.0 >= rotated.0)
                        && link_condition(c, "Ready") == Some(("True", "Verified"))
                }))
            .then_some(())
        },
    )
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
    let f = Fixture::new("bulk-stalled-child").await;
    let (ou, accounts) = ou_with_accounts(&f.env, 2, None);
    let mut spec = service_managed(json!({"organizationalUnitIds": [ou]}));
    spec["linkTemplate"] = json!({"verifyInterval": "1m"});
    f.create("roles", spec).await;
    f.wait_ready("roles", Duration::from_secs(120)).await;

    // The role disappears from one account behind the operator's back: its next verification
    // is refused, and after the grace period the child is Stalled, and so is the registration.
    aws_admin(&f.env, &["delete-role", "--account", &accounts[0]]);
    let bulk = f
        .wait(
            "roles",
            "Stalled RolesNotAssumable",
            Duration::from_secs(180),
            |b| {
                condition(b, "Stalled")
                    .is_some_and(|(s, r, _)| s == "True" && r == "RolesNotAssumable")
            },
        )
        .await;
    let (_, _, message) = condition(&bulk, "Ready").expect("Ready");
    assert!(
        message.starts_with("1 of 2 role(s) cannot be assumed")
            && message.contains(&format!("roles-{}", accounts[0]))
            && message.contains("AccessDenied"),
        "{message}"
    );
    assert_eq!(
        summary(&bulk),
        (2, 2, 0, 1),
        "deployed everywhere, one assumable"
    );
    let healthy = &f.children("roles").await[&accounts[1]];
    assert_eq!(link_condition(healthy, "Ready").map(|c| c.0), Some("True"));
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_in_the_middle_of_an_operation_starts_no_duplicate() {
    let mut f = Fixture::new("bulk-crash").await;
    f.operator.kill();
    // Without leader election the replacement does not wait for the old lease to expire.
    let mut flags = FLAGS.to_vec();
    flags.push("--leader-elect=false");
    f.operator = Operator::start(&f.env, &f.ns.name, &flags);
    let (ou, _) = ou_with_accounts(&f.env, 30, None);
    let mut spec = service_managed(json!({"organizationalUnitIds": [ou]}));
    spec["operationPreferences"] = json!({"maxConcurrentCount": 1});
    let stack_set = f.create("crash", spec).await;
    let bulk = f
        .wait(
            "crash",
            "an operation in flight",
            Duration::from_secs(60),
            |b| {
                b.status
                    .as_ref()
                    .and_then(|s| s.operation.as_ref())
                    .is_some_and(|o| o.status.as_deref() == Some("RUNNING"))
            },
        )
        .await;
    let in_flight = bulk.status.and_then(|s| s.operation).expect("operation").id;
    f.operator.kill();
    assert_eq!(
        operations(&f.env, &stack_set)[0]["status"],
        "RUNNING",
        "killed mid-operation"
    );
    f.operator = Operator::start(&f.env, &f.ns.name, &flags);
    let bulk = f.wait_ready("crash", Duration::from_secs(180)).await;
    let ops = operations(&f.env, &stack_set);
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
    let f = Fixture::new("bulk-self").await;
    let (_, accounts) = ou_with_accounts(&f.env, 3, None);
    for account in &accounts[..2] {
        aws_admin(&f.env, &["put-execution-role", "--account", account]);
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
        .wait("selfm", "one failure", Duration::from_secs(120), |b| {
            summary(b) == (3, 2, 1, 2)
        })
        .await;
    let failure = &bulk.status.as_ref().expect("status").failures[0];
    assert_eq!(failure.account, accounts[2]);
    let reason = failure.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("AWSCloudFormationStackSetExecutionRole"),
        "{reason}"
    );
    assert_eq!(operations(&f.env, &stack_set).len(), 1);
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_removes_instances_stack_set_and_children_or_retains_them() {
    let f = Fixture::new("bulk-del").await;
    let (ou, _) = ou_with_accounts(&f.env, 3, None);
    let deleted = f
        .create(
            "gone",
            service_managed(json!({"organizationalUnitIds": [ou]})),
        )
        .await;
    let mut retain_spec = service_managed(json!({"organizationalUnitIds": [ou]}));
    retain_spec["deletionPolicy"] = json!("Retain");
    // A second role name: two StackSets creating one named role in the same accounts collide.
    retain_spec["template"] = json!({"builtin": {"roleName": "KeptAccess"}});
    let retained = f.create("kept", retain_spec).await;
    f.wait_ready("gone", Duration::from_secs(120)).await;
    f.wait_ready("kept", Duration::from_secs(120)).await;

    f.bulks()
        .delete("gone", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&f.bulks(), "gone", Duration::from_secs(120)).await;
    // The emulator forgets a deleted StackSet's operations; the operator's Events tell the
    // order: instances first, then the StackSet.
    let reasons = event_reasons(&f.client, &f.ns.name, "gone").await;
    let started = reasons.iter().position(|r| r == "Deleting");
    let removed = reasons.iter().position(|r| r == "StackSetDeleted");
    assert!(
        started.is_some() && removed.is_some() && started < removed,
        "events in order: {reasons:?}"
    );
    assert!(f.children("gone").await.is_empty(), "children deleted");
    let exists = stack_set_exists(&f.env, &deleted);
    assert!(!exists, "StackSet {deleted} deleted:\n{}", f.operator.log());

    f.bulks()
        .delete("kept", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&f.bulks(), "kept", Duration::from_secs(60)).await;
    assert!(
        stack_set_exists(&f.env, &retained),
        "Retain leaves the StackSet"
    );
    assert!(
        operations(&f.env, &retained)
            .iter()
            .all(|o| o["action"] != "DELETE"),
        "Retain deletes no instance"
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn service_managed_without_trusted_access_says_how_to_enable_it() {
    let f = Fixture::exclusive("bulk-trust").await;
    let (ou, _) = ou_with_accounts(&f.env, 2, None);
    aws_admin(&f.env, &["deactivate-trusted-access"]);
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
            Duration::from_secs(60),
            |b| {
                condition(b, "Stalled")
                    .is_some_and(|(s, r, _)| s == "True" && r == "TrustedAccessDisabled")
            },
        )
        .await;
    let (_, _, message) = condition(&bulk, "StackSetReady").expect("StackSetReady");
    assert!(
        message.contains("activate-organizations-access"),
        "{message}"
    );
    assert_eq!(condition(&bulk, "Ready").map(|c| c.0), Some("False"));
    assert!(
        !stack_set_exists(&f.env, &stack_set),
        "nothing created without trusted access"
    );

    aws_admin(&f.env, &["activate-trusted-access"]);
    let bulk = f.wait_ready("trust", Duration::from_secs(120)).await;
    assert_eq!(summary(&bulk), (2, 2, 0, 2));
    f.cleanup().await;
}

/// Reasons of the Events about BulkRegistration `name`, oldest first.
async fn event_reasons(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let mut list: Vec<_> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect();
    list.sort_by_key(|e| e.event_time.clone().map(|t| t.0));
    list.into_iter().filter_map(|e| e.reason).collect()
}

fn stack_set_exists(env: &TestEnv, name: &str) -> bool {
    aws_admin(env, &["stack-set-exists", "--name", name])["exists"]
        .as_bool()
        .expect("bool")
}
