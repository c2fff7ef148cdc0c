//! Drift detection and the delegated-admin preflight of BulkRegistration, end to end: the real
//! operator binary against a real API server and the strict AWS emulator, which detects drift
//! by comparing each deployed role with the template. Roles are changed "by hand" through the
//! emulator's control API (what an administrator does with IAM in the member account). The
//! operator runs with `--drift-check-interval` (hidden, for tests) so that checks come every
//! few seconds instead of the API's minimum of 10 minutes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, RwLock};

use account_linker::api::{BulkRegistration, LinkedAccount};
use support::{
    ACCESS_ROLE, Context, HUB_ACCOUNT, Operator, Running, Share, Share::Exclusive, Share::Shared,
    condition, create, unique, wait_for, wait_ready,
};

static SETUP: OnceCell<()> = OnceCell::const_new();
/// The preflight test counts every StackSet call of the emulator: it runs alone.
static COUNTING: RwLock<()> = RwLock::const_new(());

/// Operator flags: fast polling and resync, and a drift check every 2 s.
const FLAGS: &[&str] = &[
    "--stackset-poll-interval",
    "300ms",
    "--bulk-resync-interval",
    "3s",
    "--sts-requests-per-second",
    "200",
    "--access-denied-grace",
    "20s",
    "--drift-check-interval",
    "2s",
];

async fn fixture(prefix: &str, share: Share) -> Running {
    let setup = async |ctx: &Context| {
        ctx.prepare_stack_sets(json!({"base_seconds": 0.5, "seconds_per_wave": 0.2}))
            .await;
    };
    Running::start(prefix, FLAGS, (&COUNTING, share), (&SETUP, setup)).await
}

/// A ServiceManaged registration of `ous` with drift detection and `remediation`.
fn spec(ous: &[&str], remediation: &str) -> Value {
    json!({
        "stackSet": {"permissionModel": "ServiceManaged", "name": unique("drift")},
        "template": {"builtin": {}},
        "targets": {"organizationalUnitIds": ous},
        "regions": ["us-east-1"],
        "operationPreferences": {
            "maxConcurrentCount": 10,
            "failureToleranceCount": 9,
            "concurrencyMode": "SoftFailureTolerance"
        },
        "drift": {"checkInterval": "10m", "remediation": remediation},
    })
}

fn stack_set(bulk: &BulkRegistration) -> String {
    bulk.spec.stack_set.name.clone().expect("named")
}

fn drifted(bulk: &BulkRegistration) -> Option<i32> {
    bulk.status
        .as_ref()
        .and_then(|s| s.summary.as_ref())
        .and_then(|s| s.drifted)
}

/// The last check, when it has ended: (operation ID, drifted accounts it found).
fn last_check(bulk: &BulkRegistration) -> Option<(String, i32)> {
    let check = bulk.status.as_ref()?.last_drift_check.as_ref()?;
    check.completed_at.as_ref()?;
    Some((check.operation_id.clone(), check.drifted?))
}

async fn children(f: &Running, bulk: &str) -> BTreeMap<String, LinkedAccount> {
    f.api::<LinkedAccount>()
        .list(&ListParams::default().labels(&format!("accountlinker.dev/bulk-registration={bulk}")))
        .await
        .expect("list children")
        .into_iter()
        .map(|c| (c.spec.account_id.clone(), c))
        .collect()
}

/// Waits until every child of `bulk` says `RoleInSync` as `want` says per account.
async fn wait_in_sync(f: &Running, bulk: &str, want: &BTreeMap<String, (&str, &str)>) {
    let timeout = f.budget.react() * 4;
    support::eventually(timeout, "children's RoleInSync", || async move {
        let children = children(f, bulk).await;
        let got: BTreeMap<String, (String, String)> = children
            .iter()
            .filter_map(|(a, c)| {
                condition(c, "RoleInSync").map(|(s, r)| (a.clone(), (s.into(), r.into())))
            })
            .collect();
        let want: BTreeMap<String, (String, String)> = want
            .iter()
            .map(|(a, (s, r))| (a.clone(), ((*s).into(), (*r).into())))
            .collect();
        (got == want).then_some(())
    })
    .await;
}

/// A hand edit in `account`: the role's trust policy loses its ExternalId condition (the hub
/// can still assume it, so the child stays Ready).
async fn edit_by_hand(f: &Running, account: &str) {
    f.emulator
        .put_role(account, ACCESS_ROLE, HUB_ACCOUNT, None)
        .await;
}

/// The emulator's operations of `stack_set`: (action, accounts).
async fn operations(f: &Running, stack_set: &str) -> Vec<(String, BTreeSet<String>)> {
    f.emulator
        .operations(stack_set)
        .await
        .iter()
        .map(|o| {
            let accounts = o["accounts"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            (
                o["action"].as_str().unwrap_or_default().to_string(),
                accounts,
            )
        })
        .collect()
}

fn count(ops: &[(String, BTreeSet<String>)], action: &str) -> usize {
    ops.iter().filter(|(a, _)| a == action).count()
}

/// Ready, and the first check found every role in sync.
async fn ready_and_in_sync(f: &Running, name: &str, accounts: &[String]) -> BulkRegistration {
    let bulks: Api<BulkRegistration> = f.api();
    wait_ready(
        &bulks,
        name,
        f.budget.registration_ready(accounts.len(), 10, 2),
    )
    .await;
    let bulk = wait_for(
        &bulks,
        name,
        "a first drift check",
        f.budget.react() * 2,
        |b| last_check(b).is_some_and(|(_, n)| n == 0) && drifted(b) == Some(0),
    )
    .await;
    let in_sync = accounts
        .iter()
        .map(|a| (a.clone(), ("True", "InSync")))
        .collect();
    wait_in_sync(f, name, &in_sync).await;
    bulk
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_changed_by_hand_is_reported_and_left_alone_without_remediation() {
    let f = fixture("drift-none", Shared).await;
    let ou = f.aws.create_ou(&unique("ou"), None).await;
    let accounts = f.aws.create_accounts(&unique("acct"), 3, Some(&ou)).await;
    let bulks: Api<BulkRegistration> = f.api();
    let bulk = create(&bulks, "fleet", spec(&[&ou], "None")).await;
    let stack_set = stack_set(&bulk);
    let first = ready_and_in_sync(&f, "fleet", &accounts).await;
    let (first_check, _) = last_check(&first).expect("a check");

    edit_by_hand(&f, &accounts[1]).await;
    let bulk = wait_for(
        &bulks,
        "fleet",
        "the edit found",
        f.budget.react() * 2,
        |b| {
            drifted(b) == Some(1)
                && last_check(b).is_some_and(|(id, n)| id != first_check && n == 1)
        },
    )
    .await;
    let mut want: BTreeMap<String, (&str, &str)> = accounts
        .iter()
        .map(|a| (a.clone(), ("True", "InSync")))
        .collect();
    want.insert(accounts[1].clone(), ("False", "Drifted"));
    wait_in_sync(&f, "fleet", &want).await;
    // Drift never makes a child or the registration un-Ready.
    let children = children(&f, "fleet").await;
    assert_eq!(
        condition(&children[&accounts[1]], "Ready"),
        Some(("True", "Verified"))
    );
    assert_eq!(condition(&bulk, "Ready").map(|c| c.0), Some("True"));
    assert!(
        f.event_reasons("fleet")
            .await
            .iter()
            .any(|r| r == "DriftDetected"),
        "a DriftDetected Event"
    );

    // Later checks find it again; nothing is redeployed.
    let seen = bulk
        .status
        .as_ref()
        .and_then(|s| s.last_drift_check.clone());
    wait_for(
        &bulks,
        "fleet",
        "another check",
        f.budget.react() * 2,
        |b| {
            let check = b.status.as_ref().and_then(|s| s.last_drift_check.clone());
            check.is_some_and(|c| Some(&c) != seen.as_ref() && c.completed_at.is_some())
                && drifted(b) == Some(1)
        },
    )
    .await;
    let ops = operations(&f, &stack_set).await;
    println!("remediation None: {ops:?}");
    assert_eq!(count(&ops, "CREATE"), 1, "{ops:?}");
    assert_eq!(count(&ops, "UPDATE"), 0, "nothing redeployed: {ops:?}");
    assert!(count(&ops, "DETECT_DRIFT") >= 3, "{ops:?}");
    assert_eq!(
        f.aws.access_role(&accounts[1]).await["trust_policy"],
        support::trust_policy(HUB_ACCOUNT, None),
        "the hand edit stays"
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn remediation_update_redeploys_exactly_the_drifted_accounts_in_one_operation() {
    let f = fixture("drift-update", Shared).await;
    let ou = f.aws.create_ou(&unique("ou"), None).await;
    let accounts = f.aws.create_accounts(&unique("acct"), 4, Some(&ou)).await;
    let bulks: Api<BulkRegistration> = f.api();
    let bulk = create(&bulks, "fixed", spec(&[&ou], "Update")).await;
    let stack_set = stack_set(&bulk);
    ready_and_in_sync(&f, "fixed", &accounts).await;
    let before = f.aws.access_role(&accounts[0]).await["trust_policy"].clone();

    edit_by_hand(&f, &accounts[0]).await;
    edit_by_hand(&f, &accounts[2]).await;
    let edited: BTreeSet<String> = [accounts[0].clone(), accounts[2].clone()].into();
    // Found, redeployed, and found in sync by the next check.
    let bulk = wait_for(
        &bulks,
        "fixed",
        "the redeployment and a clean check",
        f.budget.react() * 4,
        |b| {
            let check = b.status.as_ref().and_then(|s| s.last_drift_check.as_ref());
            check.is_some_and(|c| c.remediation_operation_id.is_none() && c.drifted == Some(0))
                && b.status
                    .as_ref()
                    .and_then(|s| s.last_operation.as_ref())
                    .is_some_and(|o| {
                        o.action == "RemediateDrift" && o.status.as_deref() == Some("SUCCEEDED")
                    })
        },
    )
    .await;
    assert_eq!(drifted(&bulk), Some(0));
    let ops = operations(&f, &stack_set).await;
    println!("remediation Update: {ops:?}");
    let updates: Vec<&BTreeSet<String>> = ops
        .iter()
        .filter(|(a, _)| a == "UPDATE")
        .map(|(_, accts)| accts)
        .collect();
    assert_eq!(
        updates,
        [&edited],
        "one UpdateStackInstances of exactly the drifted accounts"
    );
    assert_eq!(count(&ops, "CREATE"), 1, "{ops:?}");
    for account in &edited {
        assert_eq!(
            f.aws.access_role(account).await["trust_policy"],
            before,
            "{account}"
        );
    }
    let in_sync = accounts
        .iter()
        .map(|a| (a.clone(), ("True", "InSync")))
        .collect();
    wait_in_sync(&f, "fixed", &in_sync).await;
    let reasons = f.event_reasons("fixed").await;
    for reason in ["DriftDetected", "DriftRemediated"] {
        assert!(reasons.iter().any(|r| r == reason), "{reason}: {reasons:?}");
    }
    f.cleanup().await;
}

/// Start and end of each operation of `stack_set`, in order.
async fn spans(f: &Running, stack_set: &str) -> Vec<(String, String, String)> {
    f.emulator
        .operations(stack_set)
        .await
        .iter()
        .map(|o| {
            let text = |k: &str| o[k].as_str().unwrap_or_default().to_string();
            (text("action"), text("created"), text("ended"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drift_check_never_overlaps_another_operation() {
    let f = fixture("drift-overlap", Shared).await;
    let first = f.aws.create_ou(&unique("ou"), None).await;
    let second = f.aws.create_ou(&unique("ou"), None).await;
    let mut accounts = f
        .aws
        .create_accounts(&unique("acct"), 3, Some(&first))
        .await;
    accounts.extend(
        f.aws
            .create_accounts(&unique("acct"), 6, Some(&second))
            .await,
    );
    let bulks: Api<BulkRegistration> = f.api();
    let mut spec = spec(&[&first], "Update");
    // One account at a time: each create runs for seconds, across several check intervals.
    spec["operationPreferences"] = json!({"maxConcurrentCount": 1, "failureToleranceCount": 0});
    let bulk = create(&bulks, "busy", spec).await;
    let stack_set = stack_set(&bulk);
    ready_and_in_sync(&f, "busy", &accounts[..3]).await;
    bulks
        .patch(
            "busy",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"targets": {"organizationalUnitIds": [first, second]}}})),
        )
        .await
        .expect("patch");
    ready_and_in_sync(&f, "busy", &accounts).await;
    let spans = spans(&f, &stack_set).await;
    println!("operations: {spans:?}");
    assert_eq!(
        spans.iter().filter(|(a, _, _)| a == "CREATE").count(),
        2,
        "{spans:?}"
    );
    for pair in spans.windows(2) {
        let ((_, _, ended), (action, started, _)) = (&pair[0], &pair[1]);
        assert!(
            started >= ended,
            "{action} started at {started}, before {ended}: {spans:?}"
        );
    }
    // No start was refused as "in progress": the controller never tried to overlap.
    let refused = f.emulator.get("/requests").await["outcomes"]["cloudformation:DetectStackSetDrift"]
        ["error"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(refused, 0);
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unregistered_delegated_admin_stalls_with_the_command_and_no_stack_set_call_then_proceeds()
 {
    let mut f = fixture("drift-delegated", Exclusive).await;
    let ou = f.aws.create_ou(&unique("ou"), None).await;
    let accounts = f.aws.create_accounts(&unique("acct"), 2, Some(&ou)).await;
    let elsewhere = f.aws.create_ou(&unique("ou"), None).await;
    let admin = f
        .aws
        .create_accounts(&unique("admin"), 1, Some(&elsewhere))
        .await
        .remove(0);
    // The operator runs in a member account that is not (yet) a delegated administrator.
    f.operator.terminate(Duration::from_secs(10));
    let (key, secret, token) = f.aws.credentials_in(&admin).await;
    let vars = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), key),
        ("AWS_SECRET_ACCESS_KEY".to_string(), secret),
        ("AWS_SESSION_TOKEN".to_string(), token),
    ];
    f.emulator.reset_counts().await;
    f.operator = Operator::start_with_env(&f.env, &f.ns.name, FLAGS, &vars);
    let bulks: Api<BulkRegistration> = f.api();
    let mut spec = spec(&[&ou], "None");
    spec["stackSet"]["callAs"] = json!("DelegatedAdmin");
    let bulk = create(&bulks, "delegated", spec).await;
    let stack_set = stack_set(&bulk);
    // An unregistered member may not even list the delegated administrators (AccessDenied, as
    // in AWS): the stall says so, with the command that registers it.
    let stalled = wait_for(&bulks, "delegated", "Stalled", f.budget.react(), |b| {
        support::has(b, "Stalled", "True", Some("DelegatedAdminUnverified"))
    })
    .await;
    let message = support::message(&stalled, "Stalled");
    let command = format!(
        "aws organizations register-delegated-administrator --account-id {admin} --service-principal member.org.stacksets.cloudformation.amazonaws.com"
    );
    assert!(message.contains(&command), "{message}");
    assert!(
        message.contains("organizations:ListDelegatedAdministrators"),
        "{message}"
    );
    assert_eq!(
        condition(&stalled, "StackSetReady"),
        Some(("False", "DelegatedAdminUnverified"))
    );
    let requests = f.emulator.get("/requests").await["counts"].clone();
    let stack_set_calls: Vec<&String> = requests
        .as_object()
        .expect("counts")
        .keys()
        .filter(|k| k.starts_with("cloudformation:"))
        .collect();
    assert!(stack_set_calls.is_empty(), "no StackSet call: {requests}");
    assert_eq!(
        requests["organizations:ListDelegatedAdministrators"], 1,
        "{requests}"
    );

    // Registered: the next check (a negative answer stands 30 s, a stalled registration is
    // looked at again after 60 s) lets it proceed.
    f.aws.register_stack_sets_admin(&admin).await;
    let ready = f
        .budget
        .registration_ready(accounts.len(), 10, 2)
        .max(Duration::from_secs(60))
        + Duration::from_secs(60);
    wait_ready(&bulks, "delegated", ready).await;
    assert!(!f.emulator.operations(&stack_set).await.is_empty());
    let requests = f.emulator.get("/requests").await["counts"].clone();
    println!("delegated admin: {requests}");
    let checks = requests["organizations:ListDelegatedAdministrators"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        (2..=3).contains(&checks),
        "cached, not asked every pass: {requests}"
    );
    f.cleanup().await;
}
