//! The upgrade path of docs/upgrading.md, end to end: with objects in place and Ready under the
//! CRDs of the previous chart version (tests/fixtures/upgrade/<version>/, copied from the
//! repository at that release), the current CRDs are applied with `kubectl apply --server-side
//! --force-conflicts` and the operator is stopped and started again, as a rolling Deployment
//! does. Every object must keep its status, and the operator must not repeat an AWS call that
//! changes anything.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use account_linker::api::{BulkRegistration, MemberAccount};
use support::{Context, create, repo_root, unique, wait_ready};

/// The chart version users upgrade from (tests/fixtures/upgrade/<PREVIOUS>).
const PREVIOUS: &str = "0.1.0";

const FLAGS: &[&str] = &[
    "--stackset-poll-interval",
    "500ms",
    "--bulk-resync-interval",
    "3s",
    "--account-poll-interval",
    "500ms",
    "--access-denied-grace",
    "30s",
];
/// How long the restarted operator runs before the counts are read: every object is reconciled
/// at start, and the BulkRegistration resyncs (re-reads its OU and stack instances) every 3s,
/// so this covers the start and several resyncs.
const SETTLE: Duration = Duration::from_secs(15);

/// The AWS calls the restarted operator may make: reads only. A settled BulkRegistration re-reads
/// its targets and stack instances at each resync (`--bulk-resync-interval`), a MemberAccount
/// re-describes its account and its tags, and the STS calls are verifications that fall due (none
/// should within the default 30m interval, but a due one would be correct). Anything else —
/// CreateStackSet, CreateStackInstances, UpdateStackSet, CreateAccount, MoveAccount,
/// TagResource, … — would be a side effect repeated by the upgrade.
fn is_read(key: &str) -> bool {
    let action = key.split_once(':').map_or(key, |(_, a)| a);
    ["Describe", "List", "Get"]
        .iter()
        .any(|p| action.starts_with(p))
        || key == "sts:AssumeRole"
}

fn apply_crds(ctx: &Context, dir: &Path) {
    let dir = dir.to_str().expect("utf-8 path");
    ctx.env.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager",
        "upgrade-test",
        "-f",
        dir,
    ]);
    ctx.env.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd",
        "--all",
        "--timeout=60s",
    ]);
}

/// `.status` of every object of the kinds in the test's namespace, by `kind/name`.
fn statuses(ctx: &Context) -> BTreeMap<String, Value> {
    // By name, not the `accountlinker` category: kubectl's discovery may not list the category
    // right after the CRDs were replaced.
    let kinds = "bulkregistrations.accountlinker.dev,linkedaccounts.accountlinker.dev,\
                 memberaccounts.accountlinker.dev";
    let out = ctx
        .env
        .kubectl_ok(&["get", kinds, "-n", &ctx.ns.name, "-o", "json"]);
    let list: Value = serde_json::from_str(&out).expect("kubectl json");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| {
            let key = format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            );
            (key, o["status"].clone())
        })
        .collect()
}

/// What must survive a restart: per condition its type, status, reason, observedGeneration and
/// lastTransitionTime (a message may be rewritten with the same meaning), and the object's
/// observedGeneration.
fn settled(status: &Value) -> Value {
    let conditions: Vec<Value> = status["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    json!([
                        c["type"],
                        c["status"],
                        c["reason"],
                        c["observedGeneration"],
                        c["lastTransitionTime"]
                    ])
                })
                .collect()
        })
        .unwrap_or_default();
    json!({"conditions": conditions, "observedGeneration": status["observedGeneration"]})
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_keep_their_status_and_no_aws_call_is_repeated_across_crd_upgrade_and_restart() {
    let ctx = Context::new("upgrade").await;
    // The harness installed the current CRDs; put the previous release's in their place, as a
    // cluster running that release has them.
    apply_crds(
        &ctx,
        &repo_root().join("tests/fixtures/upgrade").join(PREVIOUS),
    );
    ctx.prepare_stack_sets(json!({"base_seconds": 0.5, "seconds_per_wave": 0.2}))
        .await;
    ctx.emulator
        .put("/organizations", json!({"create_seconds": 1}))
        .await;
    let mut operator = ctx.operator(FLAGS);
    let budget = ctx.budget().await;

    // A registration over an OU of three accounts (one StackSet, three child LinkedAccounts) and
    // a MemberAccount (a new account, placed, tagged, linked by its child LinkedAccount).
    let ou = ctx.aws.create_ou(&unique("upgrade-ou"), None).await;
    // Not in the registration's OU: it would become a fourth target.
    let member_ou = ctx.aws.create_ou(&unique("upgrade-macct"), None).await;
    ctx.aws
        .create_accounts(&unique("upgrade"), 3, Some(&ou))
        .await;
    let mut bulk_spec = json!({
        "stackSet": {"permissionModel": "ServiceManaged", "name": unique("ss")},
        "template": {"builtin": {}},
        "targets": {"organizationalUnitIds": [ou]},
        "regions": ["us-east-1"],
    });
    bulk_spec["operationPreferences"] = json!({"maxConcurrentCount": 10});
    create(&ctx.api::<BulkRegistration>(), "fleet", bulk_spec).await;
    create(
        &ctx.api::<MemberAccount>(),
        "sandbox",
        json!({
            "accountName": "sandbox",
            "email": format!("{}@example.com", unique("sandbox")),
            "parentId": member_ou,
        }),
    )
    .await;
    wait_ready(
        &ctx.api::<BulkRegistration>(),
        "fleet",
        budget.registration_ready(3, 10, 1),
    )
    .await;
    wait_ready(
        &ctx.api::<MemberAccount>(),
        "sandbox",
        budget.member_ready(),
    )
    .await;
    support::eventually(budget.react() * 2, "every object Ready", || async {
        let all = statuses(&ctx);
        let ready = all.values().all(|s| {
            s["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        });
        // 1 registration + 3 children + 1 member + its child.
        (all.len() == 6 && ready).then_some(())
    })
    .await;

    // The rollout: the old pod stops (SIGTERM), the CRDs are upgraded, a new pod starts.
    let before = statuses(&ctx);
    assert!(
        operator.terminate(Duration::from_secs(10)),
        "the operator exits on SIGTERM"
    );
    ctx.emulator.reset_counts().await;
    apply_crds(&ctx, &repo_root().join("crds"));
    assert_eq!(
        statuses(&ctx),
        before,
        "applying the new CRDs changed a stored status (pruned or defaulted)"
    );
    let mut operator = ctx.operator(FLAGS);
    tokio::time::sleep(SETTLE).await;
    assert!(operator.is_running(), "{}", operator.log());

    let after = statuses(&ctx);
    assert_eq!(after.len(), before.len());
    for (key, status) in &before {
        assert_eq!(
            settled(&after[key]),
            settled(status),
            "{key} changed its status across the upgrade\n{}",
            operator.log()
        );
    }
    let counts = ctx.emulator.get("/requests").await["counts"].clone();
    let counts: BTreeMap<String, u64> = serde_json::from_value(counts).expect("counts");
    eprintln!("AWS calls of the restarted operator in {SETTLE:?}: {counts:?}");
    let writes: Vec<&String> = counts.keys().filter(|k| !is_read(k)).collect();
    assert!(
        writes.is_empty(),
        "the restarted operator repeated side effects: {writes:?} (all calls: {counts:?})"
    );
    operator.terminate(Duration::from_secs(10));
    ctx.cleanup().await;
}

#[test]
fn reads_are_allowed_and_side_effects_are_not() {
    for read in [
        "cloudformation:DescribeStackSet",
        "cloudformation:ListStackInstances",
        "organizations:ListAccountsForParent",
        "organizations:DescribeAccount",
        "organizations:ListTagsForResource",
        "sts:AssumeRole",
        "sts:GetCallerIdentity",
    ] {
        assert!(is_read(read), "{read}");
    }
    for write in [
        "cloudformation:CreateStackSet",
        "cloudformation:CreateStackInstances",
        "cloudformation:UpdateStackSet",
        "organizations:CreateAccount",
        "organizations:MoveAccount",
        "organizations:TagResource",
    ] {
        assert!(!is_read(write), "{write}");
    }
}
