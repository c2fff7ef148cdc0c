//! The operator's own costs at fleet scale (issue 15): onboarding a registration of a couple of
//! hundred accounts costs reconcile passes of the registration and Organizations /
//! CloudFormation reads by batches (operations, pages, intervals), not by children; the
//! registration's summary progresses while children verify; a settled fleet costs no
//! Kubernetes writes. One test per binary, so the emulator's request counts are this test's
//! alone. Figures are printed as one `FLEET {json}` line.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use tokio::sync::{OnceCell, RwLock};

use account_linker::api::{BulkRegistration, LinkedAccount};
use support::{Context, Running, Share, create, unique};

static SETUP: OnceCell<()> = OnceCell::const_new();
static TURN: RwLock<()> = RwLock::const_new(());

/// Children of the registration.
const ACCOUNTS: usize = 200;
/// `maxConcurrentCount`: four waves in one operation.
const CONCURRENCY: usize = 50;
/// The STS budget spreads verification over about ten seconds (two calls per child), so the
/// children's status writes arrive one by one, as at fleet scale.
const STS_RPS: u64 = 40;
/// The operator's resync interval: longer than the onboarding, so every read it causes is
/// one the test accounts for.
const RESYNC: Duration = Duration::from_secs(60);
/// At most one pass of a registration per this window is caused by its children's changes
/// (the operator's coalescing window).
const CHILD_WINDOW: Duration = Duration::from_secs(3);
/// AWS's largest page of ListAccountsForParent; ListStackInstances answers up to 100.
const ACCOUNTS_PAGE: usize = 20;
const INSTANCES_PAGE: usize = 100;

fn flags() -> Vec<String> {
    [
        "--stackset-poll-interval",
        "500ms",
        "--bulk-resync-interval",
        &format!("{}s", RESYNC.as_secs()),
        "--sts-requests-per-second",
        &STS_RPS.to_string(),
        "--sts-concurrency",
        "16",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn start() -> Running {
    let setup = async |ctx: &Context| {
        ctx.prepare_stack_sets(json!({"base_seconds": 0.5, "seconds_per_wave": 0.2}))
            .await;
    };
    let flags = flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Running::start("fleet", &flags, (&TURN, Share::Exclusive), (&SETUP, setup)).await
}

async fn passes(f: &Running, controller: &str) -> f64 {
    let label = format!("controller=\"{controller}\"");
    f.operator
        .metric("account_linker_reconciles_total", &[&label])
        .await
}

/// Every child's resourceVersion, by name.
async fn versions(f: &Running) -> BTreeMap<String, String> {
    f.api::<LinkedAccount>()
        .list(&ListParams::default().labels("accountlinker.dev/bulk-registration=fleet"))
        .await
        .expect("list children")
        .into_iter()
        .map(|c| {
            let rv = c.metadata.resource_version.clone().unwrap_or_default();
            (c.metadata.name.clone().unwrap_or_default(), rv)
        })
        .collect()
}

fn summary(bulk: &BulkRegistration) -> (i32, i32) {
    let s = bulk
        .status
        .as_ref()
        .and_then(|s| s.summary.clone())
        .unwrap_or_default();
    (s.current, s.assumable)
}

fn is_ready(bulk: &BulkRegistration) -> bool {
    support::has(bulk, "Ready", "True", None)
}

#[tokio::test(flavor = "multi_thread")]
async fn onboarding_costs_passes_and_reads_by_batches_and_a_settled_fleet_writes_nothing() {
    let mut f = start().await;
    let ou = f.aws.create_ou(&unique("ou"), None).await;
    let prefix = unique("fleet");
    let accounts = f.aws.create_accounts(&prefix, ACCOUNTS, Some(&ou)).await;
    let names: BTreeMap<String, String> = accounts
        .iter()
        .enumerate()
        .map(|(n, id)| (id.clone(), format!("{prefix}-{n}")))
        .collect();
    let bulks: Api<BulkRegistration> = f.api();
    let passes_before = passes(&f, "bulkregistration").await;
    f.emulator.reset_counts().await;

    let started = Instant::now();
    let spec = json!({
        "stackSet": {"name": unique("ss"), "permissionModel": "ServiceManaged"},
        "template": {"builtin": {}},
        "targets": {"organizationalUnitIds": [ou]},
        "regions": ["us-east-1"],
        "operationPreferences": {
            "maxConcurrentCount": CONCURRENCY,
            "failureToleranceCount": 10,
            "concurrencyMode": "SoftFailureTolerance"
        },
        "linkTemplate": {"verifyInterval": "30m"},
    });
    let stack_set = spec["stackSet"]["name"].as_str().unwrap().to_string();
    create(&bulks, "fleet", spec).await;
    // The assumable count the registration reported along the way.
    let mut seen = Vec::new();
    let timeout = f.budget.registration_ready(ACCOUNTS, CONCURRENCY, 3);
    loop {
        let bulk = bulks.get("fleet").await.expect("get registration");
        let (_, assumable) = summary(&bulk);
        if seen.last() != Some(&assumable) {
            seen.push(assumable);
        }
        if is_ready(&bulk) {
            break;
        }
        assert!(
            started.elapsed() < timeout,
            "not Ready after {timeout:?}: {:?}",
            bulk.status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = started.elapsed();
    let passes_onboarding = passes(&f, "bulkregistration").await - passes_before;
    let emulator = f.emulator.clone();
    let for_parent = emulator.count("organizations:ListAccountsForParent").await;
    let instances = emulator.count("cloudformation:ListStackInstances").await;
    let describe = emulator.count("organizations:DescribeAccount").await;
    let operations = f.emulator.operations(&stack_set).await.len();
    println!(
        "FLEET {}",
        json!({
            "accounts": ACCOUNTS,
            "seconds_until_ready": took.as_secs_f64(),
            "registration_passes": passes_onboarding,
            "stackset_operations": operations,
            "ListAccountsForParent": for_parent,
            "ListStackInstances": instances,
            "DescribeAccount": describe,
            "assumable_seen": seen,
        })
    );

    // Passes: a few per operation (polls), at most one per coalescing window for the
    // children's changes (its own status writes cause none), whatever the number of children.
    let windows = took.as_secs().div_ceil(CHILD_WINDOW.as_secs());
    let pass_bound = 10.0 + windows as f64 + 8.0 * operations as f64;
    assert!(
        passes_onboarding <= pass_bound,
        "{passes_onboarding} passes of the registration for {ACCOUNTS} children in {took:?} (bound {pass_bound})"
    );
    // The OU is walked when the spec is first seen, by the tenancy gate's membership cache and
    // at resyncs: a few walks of ⌈N / page⌉ pages each, not one walk per pass.
    let walks = 3 + took.as_secs().div_ceil(RESYNC.as_secs());
    let walk_bound = walks * (ACCOUNTS.div_ceil(ACCOUNTS_PAGE) as u64 + 1);
    assert!(
        for_parent <= walk_bound,
        "{for_parent} ListAccountsForParent calls (bound {walk_bound})"
    );
    // Instances are listed when an operation starts or ends, every few seconds while one runs,
    // and at resyncs.
    let listings = 4 + 3 * operations as u64 + took.as_secs().div_ceil(5);
    let listing_bound = listings * ACCOUNTS.div_ceil(INSTANCES_PAGE) as u64;
    assert!(
        instances <= listing_bound,
        "{instances} ListStackInstances calls (bound {listing_bound})"
    );
    // Names come from the OU listing the registration already read, not one DescribeAccount
    // per child.
    let describe_bound = ACCOUNTS.div_ceil(ACCOUNTS_PAGE) as u64;
    assert!(
        describe <= describe_bound,
        "{describe} DescribeAccount calls for {ACCOUNTS} children (bound {describe_bound})"
    );
    let children = f.api::<LinkedAccount>();
    for (id, name) in &names {
        let child = children
            .get(&format!("fleet-{id}"))
            .await
            .expect("get child");
        let shown = child.status.and_then(|s| s.account_name);
        assert_eq!(shown.as_deref(), Some(name.as_str()), "name of {id}");
    }
    // The summary moved while children became Ready, not only at the end.
    let n = i32::try_from(ACCOUNTS).unwrap();
    assert!(
        seen.iter().any(|a| *a > 0 && *a < n),
        "the assumable count went {seen:?}"
    );

    // Settled: a pass (asked for by an annotation change) writes nothing …
    let passes_touched = passes(&f, "bulkregistration").await;
    let touched = bulks
        .patch(
            "fleet",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/touch": "1"}}})),
        )
        .await
        .expect("annotate");
    let bulk_version = touched.metadata.resource_version.clone();
    let children_before = versions(&f).await;
    assert_eq!(children_before.len(), ACCOUNTS);
    support::eventually(
        Duration::from_secs(30),
        "a pass after the touch",
        || async { (passes(&f, "bulkregistration").await > passes_touched).then_some(()) },
    )
    .await;
    tokio::time::sleep(CHILD_WINDOW * 2).await;
    // … nor does a restarted operator, which reconciles every object once.
    f.emulator.reset_counts().await;
    let flags = flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    f.operator = f.ctx.operator(&flags);
    support::eventually(
        Duration::from_secs(60),
        "every child and the registration reconciled after the restart",
        || async {
            let links = passes(&f, "linkedaccount").await;
            let bulk = passes(&f, "bulkregistration").await;
            (links >= ACCOUNTS as f64 && bulk >= 1.0).then_some(())
        },
    )
    .await;
    tokio::time::sleep(CHILD_WINDOW * 2).await;
    let after = bulks.get("fleet").await.expect("get registration");
    assert_eq!(
        after.metadata.resource_version, bulk_version,
        "the settled registration was written: {:?}",
        after.status
    );
    let children_after = versions(&f).await;
    let moved: Vec<&String> = children_before
        .iter()
        .filter(|(name, rv)| children_after.get(*name) != Some(rv))
        .map(|(name, _)| name)
        .collect();
    assert!(
        moved.is_empty(),
        "{} settled children were written: {moved:?}",
        moved.len()
    );
    assert_eq!(
        emulator.count("sts:AssumeRole").await,
        0,
        "verified before due"
    );
    f.cleanup().await;
}
