//! Token rotation under load (issue 14, fault test 5): a BulkRegistration with many children
//! (20 in `make test`, 1,000 with `ACCOUNT_LINKER_CHAOS=full`) rotates its token twice.
//! The first rotation runs undisturbed while every child is watched: no AssumeRole may fail
//! (the emulator counts them) and no child may leave Ready. The second rotation is killed at
//! every step (crash points, src/failpoints.rs) and restarted each time: it must finish as one
//! rotation — exactly two UpdateStackSets, no third Secret, every child on the new Secret, the
//! old token dropped from every role.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use account_linker::api::{BulkRegistration, LinkedAccount};
use account_linker::failpoints;
use support::{Context, Operator, condition, create, unique};

/// The rotation's steps, in the order a rotation reaches them: the operator is killed at the
/// next occurrence of each, then restarted with the next one armed.
const STEPS: &[&str] = &[
    // The next token's Secret is created; status does not name it yet.
    "token:secret-created",
    // Status records the overlap and the first UpdateStackSet, before it is sent.
    "status:BulkRegistration",
    // The first UpdateStackSet (both tokens trusted) is accepted; status does not know.
    "cloudformation:UpdateStackSet",
    // Children are written (moved to the new token as their instances carry it).
    "children:written",
    // Status says the rotation narrows.
    "rotation:Narrowing",
    // The second UpdateStackSet (the old token dropped) is accepted.
    "cloudformation:UpdateStackSet",
    // The old token's Secret is deleted; status still lists it.
    "token:secret-retired",
    // Status says the rotation is done.
    "rotation:done",
];

fn full() -> bool {
    std::env::var("ACCOUNT_LINKER_CHAOS").is_ok_and(|v| v == "full")
}

fn flags(children: usize) -> Vec<String> {
    let sts = if children > 100 { "600" } else { "200" };
    [
        "--leader-elect=false",
        "--stackset-poll-interval",
        "500ms",
        "--bulk-resync-interval",
        "3s",
        "--sts-requests-per-second",
        sts,
        "--sts-concurrency",
        "64",
        "--access-denied-grace",
        "30s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

struct Fleet {
    ctx: Context,
    flags: Vec<String>,
    stack_set: String,
    accounts: Vec<String>,
    budget: Duration,
}

/// What one watch of a rotation saw.
#[derive(Default, Debug)]
struct Watched {
    /// Child observations that were not Ready=True and RoleAssumable=True.
    not_ready: usize,
    /// The children seen not Ready (first 10).
    examples: Vec<String>,
    polls: usize,
}

impl Fleet {
    fn bulks(&self) -> Api<BulkRegistration> {
        self.ctx.api()
    }

    fn operator(&self, point: Option<&str>) -> Operator {
        let vars: Vec<(String, String)> = point
            .map(|p| vec![(failpoints::ENV.to_string(), p.to_string())])
            .unwrap_or_default();
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        Operator::start_with_env(&self.ctx.env, &self.ctx.ns.name, &flags, &vars)
    }

    async fn children(&self) -> Vec<LinkedAccount> {
        self.ctx
            .api::<LinkedAccount>()
            .list(&ListParams::default().labels("accountlinker.dev/bulk-registration=fleet"))
            .await
            .expect("children")
            .items
    }

    async fn status(&self) -> account_linker::api::BulkRegistrationStatus {
        self.bulks()
            .get("fleet")
            .await
            .expect("registration")
            .status
            .unwrap_or_default()
    }

    /// One look at every child; adds what is not Ready to `watched`.
    async fn look(&self, watched: &mut Watched) {
        watched.polls += 1;
        for child in self.children().await {
            let ok = ["Ready", "RoleAssumable"]
                .iter()
                .all(|t| condition(&child, t).map(|c| c.0) == Some("True"));
            if !ok {
                watched.not_ready += 1;
                if watched.examples.len() < 10 {
                    watched.examples.push(format!(
                        "{}: {:?}",
                        child.spec.account_id,
                        child.status.as_ref().map(|s| &s.conditions)
                    ));
                }
            }
        }
    }

    /// Whether the rotation that replaced `old_secret` is over and the registration settled.
    async fn rotated(&self, old_secret: &str) -> bool {
        let bulk = self.bulks().get("fleet").await.expect("registration");
        let status = bulk.status.clone().unwrap_or_default();
        status
            .external_id_secret
            .as_deref()
            .is_some_and(|s| s != old_secret)
            && status.external_id_rotation.is_none()
            && status.external_id_retired_secrets.is_empty()
            && status.operation.is_none()
            && support::has(&bulk, "Ready", "True", None)
    }

    /// Asks for a rotation.
    async fn request_rotation(&self) {
        let at = k8s_openapi::jiff::Timestamp::now().to_string();
        self.bulks()
            .patch(
                "fleet",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    "accountlinker.dev/rotate-requested-at": at}}})),
            )
            .await
            .expect("request a rotation");
    }

    async fn token_secrets(&self) -> BTreeMap<String, String> {
        self.ctx
            .api::<Secret>()
            .list(&ListParams::default())
            .await
            .expect("Secrets")
            .into_iter()
            .filter(|s| {
                s.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("fleet-registration-token"))
            })
            .map(|s| {
                let value = s
                    .data
                    .and_then(|d| d.into_values().next())
                    .map(|v| String::from_utf8(v.0).expect("utf-8"))
                    .unwrap_or_default();
                (s.metadata.name.unwrap_or_default(), value)
            })
            .collect()
    }

    async fn updates(&self) -> usize {
        self.ctx
            .emulator
            .operations(&self.stack_set)
            .await
            .iter()
            .filter(|op| op["action"] == "UPDATE")
            .count()
    }

    async fn failed_assume_role(&self) -> u64 {
        self.ctx.emulator.get("/requests").await["outcomes"]["sts:AssumeRole"]["error"]
            .as_u64()
            .unwrap_or(0)
    }

    /// After a rotation from `old` (Secret name, token): one Secret, every child on it, every
    /// role trusting the new token and not the old one.
    async fn check_one_rotation(&self, old: &(String, String)) -> (String, String) {
        let secrets = self.token_secrets().await;
        assert_eq!(
            secrets.len(),
            1,
            "no third Secret, the old one retired: {secrets:?}"
        );
        let (new_secret, new_token) = secrets.clone().into_iter().next().expect("one");
        assert_ne!(new_secret, old.0);
        let children = self.children().await;
        assert_eq!(children.len(), self.accounts.len(), "no child lost");
        for child in &children {
            let on = child
                .spec
                .external_id
                .as_ref()
                .map(|e| e.secret_ref.name.as_str());
            assert_eq!(on, Some(new_secret.as_str()), "{}", child.spec.account_id);
            assert_eq!(condition(child, "Ready"), Some(("True", "Verified")));
        }
        // Every role, or a sample of 50 at full size.
        let step = (self.accounts.len() / 50).max(1);
        for account in self.accounts.iter().step_by(step) {
            let policy = self.ctx.aws.access_role(account).await["trust_policy"].to_string();
            assert!(
                policy.contains(&new_token) && !policy.contains(&old.1),
                "{account}: the role trusts the new token only"
            );
        }
        (new_secret, new_token)
    }
}

async fn fleet(children: usize) -> Fleet {
    let ctx = Context::new("chaos-rotation").await;
    ctx.prepare_stack_sets(json!({"base_seconds": 0.5, "seconds_per_wave": 0.2}))
        .await;
    let ou = ctx.aws.create_ou(&unique("ou"), None).await;
    let accounts = ctx
        .aws
        .create_accounts(&unique("acct"), children, Some(&ou))
        .await;
    let stack_set = unique("ss");
    let spec = json!({
        "stackSet": {"name": stack_set, "permissionModel": "ServiceManaged"},
        "template": {"builtin": {}},
        "targets": {"organizationalUnitIds": [ou]},
        "regions": ["us-east-1"],
        "operationPreferences": {"maxConcurrentCount": 100, "failureToleranceCount": 10,
                                 "concurrencyMode": "SoftFailureTolerance"},
    });
    let waves = children.div_ceil(100) as u64;
    let budget = Duration::from_secs(60 + 4 * waves + children as u64 / 10);
    let fleet = Fleet {
        ctx,
        flags: flags(children),
        stack_set,
        accounts,
        budget,
    };
    create(&fleet.bulks(), "fleet", spec).await;
    fleet
}

/// Waits until `done`, looking at every child on the way; panics after the fleet's budget.
async fn watch(fleet: &Fleet, watched: &mut Watched, old_secret: &str, what: &str) {
    let deadline = Instant::now() + fleet.budget;
    let pause = Duration::from_millis(if fleet.accounts.len() > 100 { 500 } else { 100 });
    loop {
        fleet.look(watched).await;
        if fleet.rotated(old_secret).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not done in {:?}: {:?}",
            fleet.budget,
            fleet.status().await
        );
        tokio::time::sleep(pause).await;
    }
}

/// Waits until the registration and its `children` children are Ready.
async fn wait_fleet_ready(fleet: &Fleet, children: usize) {
    let deadline = Instant::now() + fleet.budget;
    loop {
        let bulk = fleet.bulks().get("fleet").await.expect("registration");
        let ready = fleet
            .children()
            .await
            .iter()
            .all(|c| condition(c, "Ready").map(|c| c.0) == Some("True"));
        if support::has(&bulk, "Ready", "True", None)
            && ready
            && fleet.children().await.len() == children
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet is not Ready: {:?}",
            bulk.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_under_load_fails_no_verification() {
    let children = if full() { 1000 } else { 20 };
    let fleet = fleet(children).await;
    let mut op = fleet.operator(None);
    let started = Instant::now();
    wait_fleet_ready(&fleet, children).await;
    let onboarding = started.elapsed();

    // 1. Undisturbed, watched.
    let first = fleet
        .token_secrets()
        .await
        .into_iter()
        .next()
        .expect("token");
    fleet.ctx.emulator.reset_counts().await;
    let updates_before = fleet.updates().await;
    let mut watched = Watched::default();
    let rotation_started = Instant::now();
    fleet.request_rotation().await;
    watch(&fleet, &mut watched, &first.0, "the watched rotation").await;
    let rotation_seconds = rotation_started.elapsed().as_secs_f64();
    let failed = fleet.failed_assume_role().await;
    let assumed = fleet.ctx.emulator.count("sts:AssumeRole").await;
    let updates = fleet.updates().await - updates_before;
    fleet.check_one_rotation(&first).await;
    assert_eq!(failed, 0, "AssumeRole failed during the rotation");
    assert_eq!(
        watched.not_ready, 0,
        "children left Ready during the rotation: {:?}",
        watched.examples
    );
    assert_eq!(
        updates, 2,
        "one update adds the new token, one drops the old"
    );
    let figures: Value = json!({
        "test": "rotation_under_load",
        "children": children,
        "onboarding_seconds": onboarding.as_secs_f64(),
        "rotation_seconds": rotation_seconds, "update_stack_sets": updates,
        "assume_role": assumed, "assume_role_failed": failed,
        "child_not_ready_observations": watched.not_ready, "polls": watched.polls,
    });
    if full() {
        println!("CHAOS {figures}");
    } else {
        eprintln!("rotation under load: {figures}");
    }
    op.terminate(Duration::from_secs(10));
    fleet.ctx.cleanup().await;
}

/// Ready fleet, then one rotation killed at every step in turn ([`STEPS`]): it resumes after
/// each kill into the same rotation (exactly two UpdateStackSets, no third Secret), and no
/// verification fails on the way.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_killed_at_every_step_resumes_without_a_second_rotation() {
    let children = if full() { 1000 } else { 20 };
    let fleet = fleet(children).await;
    let mut op = fleet.operator(None);
    wait_fleet_ready(&fleet, children).await;
    let second = fleet
        .token_secrets()
        .await
        .into_iter()
        .next()
        .expect("token");
    op.terminate(Duration::from_secs(10));
    let updates_before = fleet.updates().await;
    fleet.ctx.emulator.reset_counts().await;
    let mut killed = Vec::new();
    let mut watched_killed = Watched::default();
    let kill_started = Instant::now();
    for (n, step) in STEPS.iter().enumerate() {
        let mut armed = fleet.operator(Some(step));
        if n == 0 {
            fleet.request_rotation().await;
        }
        let deadline = Instant::now() + fleet.budget;
        while !armed.exited_within(Duration::from_millis(300)).await {
            fleet.look(&mut watched_killed).await;
            assert!(
                Instant::now() < deadline,
                "step {n} ({step}) not reached; killed so far at {killed:?}; status {:?}",
                fleet.status().await
            );
        }
        assert!(
            armed.log().contains(&format!("FAILPOINT {step}")),
            "step {step}: the operator ended without dying there"
        );
        killed.push(step.to_string());
    }
    let mut op = fleet.operator(None);
    watch(
        &fleet,
        &mut watched_killed,
        &second.0,
        "the killed rotation",
    )
    .await;
    let kill_seconds = kill_started.elapsed().as_secs_f64();
    let updates_killed = fleet.updates().await - updates_before;
    let failed_killed = fleet.failed_assume_role().await;
    fleet.check_one_rotation(&second).await;
    assert_eq!(
        updates_killed,
        2,
        "killed {} times, still one rotation: exactly two UpdateStackSets",
        killed.len()
    );

    let figures: Value = json!({
        "test": "rotation_killed_at_every_step",
        "children": children,
        "kills": killed.len(), "steps": killed, "rotation_seconds": kill_seconds,
        "update_stack_sets": updates_killed, "assume_role_failed": failed_killed,
        "child_not_ready_observations": watched_killed.not_ready,
    });
    if full() {
        println!("CHAOS {figures}");
    } else {
        eprintln!("rotation killed at every step: {figures}");
    }
    op.terminate(Duration::from_secs(10));
    fleet.ctx.cleanup().await;
}
