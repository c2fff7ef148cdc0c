//! The crash matrix (issue 14, fault test 1): for every crash point the operator has
//! (src/failpoints.rs: after every AWS side effect, every status write, every rotation step),
//! start the operator with that point armed, drive the object that reaches it, let the process
//! die there, restart it without the point and wait for the final state. Every row asserts
//! 0 duplicate StackSet operations (the emulator's operation list, by deterministic ID),
//! 0 duplicate accounts (CreateAccount calls by e-mail), 0 lost instances (the StackSet's
//! instances as CloudFormation lists them) and the final state (Ready, or deleted as asked).
//!
//! [`MATRIX`] is the one list of rows; [`every_point_of_the_build_has_a_row`] fails when a
//! point has none. `make test` runs the rows marked small (every point at least once);
//! `ACCOUNT_LINKER_CHAOS=full` runs all of them and prints one `CHAOS {json}` line per row.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, RwLock};

use account_linker::api::{BulkRegistration, LinkedAccount, MemberAccount};
use account_linker::failpoints;
use support::{
    Context, HUB_ACCOUNT, MemberStacks, Operator, apply_policy, condition, create, permissive,
    unique, wait_for, wait_ready,
};

use Scenario::*;

static SETUP: OnceCell<()> = OnceCell::const_new();
/// Rows run side by side (one namespace and operator each); nothing here changes emulator-wide
/// settings after [`setup`].
static SHARED: RwLock<()> = RwLock::const_new(());

const FLAGS: &[&str] = &[
    "--leader-elect=false",
    "--stackset-poll-interval",
    "500ms",
    "--bulk-resync-interval",
    "3s",
    "--account-poll-interval",
    "500ms",
    "--sts-requests-per-second",
    "200",
    "--sts-concurrency",
    "32",
    "--access-denied-grace",
    "20s",
];
/// How long a driven object may take to reach its point.
const REACH: Duration = Duration::from_secs(60);
/// How long the restarted operator may take to finish.
const FINISH: Duration = Duration::from_secs(90);

/// What drives an object to a point, and what its final state must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    /// A SelfManaged registration over two accounts is created.
    SelfManaged,
    /// A ServiceManaged registration over an OU of two accounts is created.
    ServiceManaged,
    /// A Ready ServiceManaged registration's template changes (one UpdateStackSet).
    TemplateChanged,
    /// One of a Ready SelfManaged registration's two accounts is removed from its targets.
    AccountRemoved,
    /// A Ready ServiceManaged registration with `deletionPolicy: Delete` is deleted.
    RegistrationDeleted,
    /// A ServiceManaged registration with drift detection on is created (one check).
    DriftChecked,
    /// A SelfManaged registration imports the existing stacks of two accounts.
    StacksImported,
    /// A ServiceManaged registration that includes the management account is created.
    ManagementStack,
    /// Its template changes (the plain stack is updated).
    ManagementStackUpdated,
    /// It is deleted with `deletionPolicy: Delete` (the plain stack is deleted).
    ManagementStackDeleted,
    /// A MemberAccount creates an account, placed in an OU.
    MemberCreated,
    /// A MemberAccount adopts an existing account by ID.
    MemberAdopted,
    /// A Ready MemberAccount with `deletionPolicy: Park` is deleted.
    MemberParked,
    /// A Ready MemberAccount with `deletionPolicy: Close` is deleted.
    MemberClosed,
    /// A LinkedAccount over an existing role is created.
    Linked,
    /// A LinkedAccount without an ExternalId is created (the operator generates its Secret);
    /// its role is deployed once the Secret is there.
    LinkedGenerated,
    /// A Ready ServiceManaged registration's token rotation is requested.
    Rotation,
}

/// One row of the matrix: the point armed (`point` or `point@hit`) and the scenario that
/// reaches it.
struct Row {
    point: &'static str,
    scenario: Scenario,
    /// Run in `make test` too, not only at full size.
    small: bool,
}

const fn row(point: &'static str, scenario: Scenario, small: bool) -> Row {
    Row {
        point,
        scenario,
        small,
    }
}

/// The matrix. Every point of the build has at least one small row.
const MATRIX: &[Row] = &[
    // BulkRegistration, created.
    row("cloudformation:CreateStackSet", SelfManaged, true),
    row("cloudformation:CreateStackSet", ServiceManaged, false),
    row("cloudformation:CreateStackInstances", SelfManaged, false),
    row("cloudformation:CreateStackInstances", ServiceManaged, true),
    row("token:secret-created", ServiceManaged, true),
    row("status:BulkRegistration", ServiceManaged, true),
    row("status:BulkRegistration@2", SelfManaged, false),
    row("status:BulkRegistration@3", ServiceManaged, false),
    row("status:BulkRegistration@4", SelfManaged, false),
    row("children:written", SelfManaged, true),
    row("status:LinkedAccount", ServiceManaged, false),
    // BulkRegistration, changed or deleted.
    row("cloudformation:UpdateStackSet", TemplateChanged, true),
    row("status:BulkRegistration", TemplateChanged, false),
    row("cloudformation:DeleteStackInstances", AccountRemoved, true),
    row(
        "cloudformation:DeleteStackInstances",
        RegistrationDeleted,
        false,
    ),
    row("cloudformation:DeleteStackSet", RegistrationDeleted, true),
    row("status:BulkRegistration", RegistrationDeleted, false),
    row("cloudformation:DetectStackSetDrift", DriftChecked, true),
    row(
        "cloudformation:ImportStacksToStackSet",
        StacksImported,
        true,
    ),
    row("cloudformation:UpdateStackInstances", StacksImported, true),
    // The management account's plain stack.
    row("cloudformation:CreateStack", ManagementStack, true),
    row("cloudformation:UpdateStack", ManagementStackUpdated, true),
    row("cloudformation:DeleteStack", ManagementStackDeleted, true),
    // MemberAccount.
    row("organizations:CreateAccount", MemberCreated, true),
    row("organizations:MoveAccount", MemberCreated, false),
    row("status:MemberAccount", MemberCreated, true),
    row("status:MemberAccount@2", MemberCreated, false),
    row("status:MemberAccount@3", MemberCreated, false),
    row("organizations:TagResource", MemberAdopted, true),
    row("organizations:MoveAccount", MemberAdopted, true),
    row("status:MemberAccount", MemberAdopted, false),
    row("organizations:MoveAccount", MemberParked, false),
    row("organizations:UntagResource", MemberParked, true),
    row("organizations:CloseAccount", MemberClosed, true),
    row("status:MemberAccount", MemberClosed, false),
    // LinkedAccount.
    row("status:LinkedAccount", Linked, true),
    row("status:LinkedAccount@2", Linked, false),
    row("link:secret-created", LinkedGenerated, true),
    row("status:LinkedAccount", LinkedGenerated, false),
    // Token rotation (tests/chaos_rotation.rs kills every step in one rotation, at size).
    row("token:secret-created", Rotation, false),
    row("cloudformation:UpdateStackSet", Rotation, false),
    row("cloudformation:UpdateStackSet@2", Rotation, true),
    row("rotation:Narrowing", Rotation, true),
    row("token:secret-retired", Rotation, true),
    row("rotation:done", Rotation, true),
];

fn full() -> bool {
    std::env::var("ACCOUNT_LINKER_CHAOS").is_ok_and(|v| v == "full")
}

/// The point a row arms, without its hit.
fn point_name(point: &str) -> &str {
    point.split('@').next().unwrap_or(point)
}

#[test]
fn every_point_of_the_build_has_a_row() {
    let small: BTreeSet<&str> = MATRIX
        .iter()
        .filter(|r| r.small)
        .map(|r| point_name(r.point))
        .collect();
    let missing: Vec<&str> = failpoints::points()
        .filter(|p| !small.contains(p))
        .collect();
    assert!(
        missing.is_empty(),
        "crash points without a small row in MATRIX: {missing:?}"
    );
    for r in MATRIX {
        assert!(
            failpoints::points().any(|p| p == point_name(r.point)),
            "{}: not a point of this build",
            r.point
        );
    }
}

async fn setup(ctx: &Context) {
    ctx.prepare_stack_sets(json!({"base_seconds": 0.5, "seconds_per_wave": 0.2}))
        .await;
    ctx.emulator
        .put(
            "/organizations",
            json!({"create_seconds": 1, "suspend_seconds": 2}),
        )
        .await;
}

/// Runs the rows of `scenario` (the small ones unless at full size), one after the other.
async fn run(scenario: Scenario) {
    let rows: Vec<&Row> = MATRIX
        .iter()
        .filter(|r| r.scenario == scenario && (r.small || full()))
        .collect();
    assert!(!rows.is_empty(), "{scenario:?} has no rows");
    for r in rows {
        let _turn = SHARED.read().await;
        let started = Instant::now();
        let outcome = crash_and_recover(r).await;
        let line = json!({
            "test": "crash_matrix",
            "point": r.point,
            "scenario": format!("{scenario:?}"),
            "outcome": outcome,
            "seconds": started.elapsed().as_secs_f64(),
        });
        if full() {
            println!("CHAOS {line}");
        } else {
            eprintln!("crash matrix: {line}");
        }
    }
}

/// One row: arm, drive, die, restart, finish, check. Returns what was checked.
async fn crash_and_recover(r: &Row) -> Value {
    let ctx = Context::new(&format!("crash-{}", slug(r))).await;
    ctx.once(&SETUP, setup).await;
    let mut world = World::prepare(&ctx, r.scenario).await;
    let vars = [(failpoints::ENV.to_string(), r.point.to_string())];
    let mut armed = Operator::start_with_env(&ctx.env, &ctx.ns.name, FLAGS, &vars);
    world.trigger(&ctx).await;
    let deadline = Instant::now() + REACH;
    while !armed.exited_within(Duration::from_millis(500)).await {
        world.observe(&ctx).await;
        assert!(
            Instant::now() < deadline,
            "{} ({:?}): the point was not reached in {REACH:?}; log:\n{}",
            r.point,
            r.scenario,
            tail(&armed.log())
        );
    }
    let log = armed.log();
    assert!(
        log.contains(&format!("FAILPOINT {}", point_name(r.point))),
        "{}: the operator ended without dying at the point; log:\n{}",
        r.point,
        tail(&log)
    );
    let mut restarted = ctx.operator(FLAGS);
    let outcome = world.finish(&ctx).await;
    restarted.terminate(Duration::from_secs(10));
    ctx.cleanup().await;
    outcome
}

fn slug(r: &Row) -> String {
    let scenario = format!("{:?}", r.scenario).to_lowercase();
    scenario.chars().take(12).collect()
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// What a scenario made, and the StackSet operations seen so far (by ID, so one seen twice
/// counts once and a second operation for the same change counts twice).
#[derive(Default)]
struct World {
    scenario: Option<Scenario>,
    name: String,
    stack_set: String,
    accounts: Vec<String>,
    email: String,
    account: String,
    park: String,
    management_stack: String,
    old_secret: String,
    operations: BTreeMap<String, String>,
}

impl World {
    fn scenario(&self) -> Scenario {
        self.scenario.expect("prepared")
    }

    /// Creates what the scenario acts on. Scenarios that change a Ready object make it Ready
    /// first, with an operator that has no point armed.
    async fn prepare(ctx: &Context, scenario: Scenario) -> Self {
        let mut w = World {
            scenario: Some(scenario),
            name: "crashy".into(),
            ..World::default()
        };
        match scenario {
            SelfManaged | AccountRemoved => {
                let ou = ctx.aws.create_ou(&unique("ou"), None).await;
                w.accounts = ctx.aws.create_accounts(&unique("acct"), 2, Some(&ou)).await;
                for account in &w.accounts {
                    ctx.aws.put_execution_role(account).await;
                }
            }
            ServiceManaged | TemplateChanged | RegistrationDeleted | DriftChecked | Rotation => {
                let ou = ctx.aws.create_ou(&unique("ou"), None).await;
                w.accounts = ctx.aws.create_accounts(&unique("acct"), 2, Some(&ou)).await;
                w.stack_set = unique("ss");
                w.park = ou;
            }
            StacksImported => {
                let root = ctx.aws.root().await;
                let mut policy = permissive(&ctx.ns.name, &root);
                policy["bulkRegistrations"]["importStackNames"] = json!(["legacy-*"]);
                apply_policy(&ctx.client, &ctx.ns.name, policy).await;
                let ou = ctx.aws.create_ou(&unique("ou"), None).await;
                w.accounts = ctx.aws.create_accounts(&unique("acct"), 2, Some(&ou)).await;
                let stacks = MemberStacks::new(&ctx.env).await;
                for (n, account) in w.accounts.iter().enumerate() {
                    ctx.aws.put_execution_role(account).await;
                    let token = format!("legacy-token-{n:04}-of-{account}");
                    stacks
                        .create(
                            account,
                            "legacy-linker",
                            &support::access_role_template(),
                            &token,
                        )
                        .await;
                }
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": "legacy-template",
                                 "labels": {"accountlinker.dev/watch": "true"}},
                    "data": {"template.json": support::access_role_template()},
                }))
                .expect("ConfigMap");
                ctx.api::<ConfigMap>()
                    .create(&PostParams::default(), &cm)
                    .await
                    .expect("create ConfigMap");
            }
            ManagementStack | ManagementStackUpdated | ManagementStackDeleted => {
                let root = ctx.aws.root().await;
                let mut policy = permissive(&ctx.ns.name, &root);
                policy["bulkRegistrations"]["managementAccount"] = json!(true);
                apply_policy(&ctx.client, &ctx.ns.name, policy).await;
                let ou = ctx.aws.create_ou(&unique("ou"), None).await;
                w.accounts = ctx.aws.create_accounts(&unique("acct"), 1, Some(&ou)).await;
                w.park = ou;
                w.stack_set = unique("ss");
                w.management_stack = format!("{}-management", w.stack_set);
            }
            MemberCreated | MemberParked | MemberClosed => {
                w.park = ctx.aws.create_ou(&unique("ou"), None).await;
                w.email = format!("{}@example.com", unique("crashy"));
            }
            MemberAdopted => {
                w.park = ctx.aws.create_ou(&unique("ou"), None).await;
                w.email = format!("{}@example.com", unique("legacy"));
                w.account = ctx.aws.create_account("legacy", &w.email).await;
            }
            LinkedGenerated => {
                w.account = ctx.aws.member_account("la").await;
            }
            Linked => {
                w.account = ctx.aws.member_account("la").await;
                ctx.aws
                    .put_role(&w.account, "crash-matrix-external-id", HUB_ACCOUNT)
                    .await;
                let secret: Secret = serde_json::from_value(json!({
                    "metadata": {"name": "xid", "labels": {"accountlinker.dev/external-id": "true"}},
                    "stringData": {"externalId": "crash-matrix-external-id"},
                }))
                .expect("Secret");
                ctx.api::<Secret>()
                    .create(&PostParams::default(), &secret)
                    .await
                    .expect("create Secret");
            }
        }
        let changes_a_ready_object = matches!(
            scenario,
            TemplateChanged
                | AccountRemoved
                | RegistrationDeleted
                | ManagementStackUpdated
                | ManagementStackDeleted
                | MemberParked
                | MemberClosed
                | Rotation
        );
        if changes_a_ready_object {
            let mut op = ctx.operator(FLAGS);
            w.create(ctx).await;
            w.wait_ready(ctx).await;
            w.observe(ctx).await;
            op.terminate(Duration::from_secs(10));
            if matches!(scenario, MemberParked | MemberClosed) {
                let m = ctx.api::<MemberAccount>().get(&w.name).await.expect("get");
                w.account = m.status.and_then(|s| s.account_id).expect("account");
            }
            if scenario == Rotation {
                let bulk = ctx
                    .api::<BulkRegistration>()
                    .get(&w.name)
                    .await
                    .expect("get");
                w.old_secret = bulk
                    .status
                    .and_then(|s| s.external_id_secret)
                    .expect("token Secret");
            }
        }
        w
    }

    /// The object of the scenario, created.
    async fn create(&mut self, ctx: &Context) {
        let name = self.name.clone();
        match self.scenario() {
            SelfManaged | AccountRemoved => {
                self.stack_set = unique("ss");
                let spec = json!({
                    "stackSet": {"name": self.stack_set, "permissionModel": "SelfManaged"},
                    "template": {"builtin": {}},
                    "targets": {"accounts": self.accounts},
                    "regions": ["us-east-1"],
                    "operationPreferences": {"maxConcurrentCount": 2, "failureToleranceCount": 1},
                });
                create(&ctx.api::<BulkRegistration>(), &name, spec).await;
            }
            ServiceManaged | TemplateChanged | RegistrationDeleted | DriftChecked | Rotation => {
                let mut spec = json!({
                    "stackSet": {"name": self.stack_set, "permissionModel": "ServiceManaged"},
                    "template": {"builtin": {}},
                    "targets": {"organizationalUnitIds": [self.park]},
                    "regions": ["us-east-1"],
                    "operationPreferences": {"maxConcurrentCount": 10, "failureToleranceCount": 1,
                                             "concurrencyMode": "SoftFailureTolerance"},
                    "deletionPolicy": "Delete",
                });
                if self.scenario() == DriftChecked {
                    spec["drift"] = json!({"checkInterval": "24h"});
                }
                create(&ctx.api::<BulkRegistration>(), &name, spec).await;
            }
            StacksImported => {
                self.stack_set = unique("ss");
                let spec = json!({
                    "stackSet": {"name": self.stack_set, "permissionModel": "SelfManaged"},
                    "template": {"configMapRef": {"name": "legacy-template", "key": "template.json"}},
                    "import": {"stackName": "legacy-linker"},
                    "targets": {"accounts": self.accounts},
                    "regions": ["us-east-1"],
                    "operationPreferences": {"maxConcurrentCount": 10, "failureToleranceCount": 1,
                                             "concurrencyMode": "SoftFailureTolerance"},
                });
                create(&ctx.api::<BulkRegistration>(), &name, spec).await;
            }
            ManagementStack | ManagementStackUpdated | ManagementStackDeleted => {
                let spec = json!({
                    "stackSet": {"name": self.stack_set, "permissionModel": "ServiceManaged"},
                    "template": {"builtin": {"roleName": unique("MgmtAccess")}},
                    "targets": {"organizationalUnitIds": [self.park],
                                "includeManagementAccount": true},
                    "regions": ["us-east-1"],
                    "operationPreferences": {"maxConcurrentCount": 10, "failureToleranceCount": 1,
                                             "concurrencyMode": "SoftFailureTolerance"},
                    "deletionPolicy": "Delete",
                });
                create(&ctx.api::<BulkRegistration>(), &name, spec).await;
            }
            MemberCreated | MemberParked | MemberClosed => {
                let policy = match self.scenario() {
                    MemberClosed => json!({"deletionPolicy": "Close"}),
                    MemberParked => {
                        json!({"deletionPolicy": "Park", "parkParentId": ctx.aws.root().await})
                    }
                    _ => json!({}),
                };
                let mut spec = json!({
                    "accountName": name, "email": self.email, "parentId": self.park,
                    "tags": {"team": "crash"}, "link": {"enabled": false},
                });
                for (k, v) in policy.as_object().into_iter().flatten() {
                    spec[k] = v.clone();
                }
                create(&ctx.api::<MemberAccount>(), &name, spec).await;
            }
            MemberAdopted => {
                let spec = json!({
                    "accountId": self.account, "parentId": self.park,
                    "tags": {"team": "crash"}, "link": {"enabled": false},
                });
                create(&ctx.api::<MemberAccount>(), &name, spec).await;
            }
            Linked => {
                let spec = json!({
                    "accountId": self.account,
                    "externalId": {"secretRef": {"name": "xid", "key": "externalId"}},
                });
                create(&ctx.api::<LinkedAccount>(), &name, spec).await;
            }
            LinkedGenerated => {
                let spec = json!({"accountId": self.account});
                create(&ctx.api::<LinkedAccount>(), &name, spec).await;
            }
        }
    }

    /// What the armed operator is asked to do.
    async fn trigger(&mut self, ctx: &Context) {
        let bulks = ctx.api::<BulkRegistration>();
        let merge = |spec: Value| Patch::Merge(json!({"spec": spec}));
        match self.scenario() {
            TemplateChanged | ManagementStackUpdated => {
                let template = json!({"template": {"builtin": {"maxSessionDuration": 7200}}});
                bulks
                    .patch(&self.name, &PatchParams::default(), &merge(template))
                    .await
                    .expect("patch template");
            }
            AccountRemoved => {
                bulks
                    .patch(
                        &self.name,
                        &PatchParams::default(),
                        &merge(json!({"targets": {"accounts": [self.accounts[0]]}})),
                    )
                    .await
                    .expect("patch targets");
            }
            RegistrationDeleted | ManagementStackDeleted => {
                bulks
                    .delete(&self.name, &DeleteParams::default())
                    .await
                    .expect("delete");
            }
            MemberParked | MemberClosed => {
                ctx.api::<MemberAccount>()
                    .delete(&self.name, &DeleteParams::default())
                    .await
                    .expect("delete");
            }
            Rotation => {
                let at = k8s_openapi::jiff::Timestamp::now().to_string();
                bulks
                    .patch(
                        &self.name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"annotations": {
                            "accountlinker.dev/rotate-requested-at": at}}})),
                    )
                    .await
                    .expect("request a rotation");
            }
            _ => self.create(ctx).await,
        }
    }

    /// Adds the StackSet operations the emulator lists now to those seen.
    async fn observe(&mut self, ctx: &Context) {
        if self.stack_set.is_empty() {
            return;
        }
        for op in ctx.emulator.operations(&self.stack_set).await {
            let id = op["operation_id"].as_str().unwrap_or_default().to_string();
            let action = op["action"].as_str().unwrap_or_default().to_string();
            self.operations.insert(id, action);
        }
    }

    async fn wait_ready(&mut self, ctx: &Context) {
        let name = self.name.clone();
        match self.scenario() {
            MemberCreated | MemberAdopted | MemberParked | MemberClosed => {
                wait_ready(&ctx.api::<MemberAccount>(), &name, FINISH).await;
            }
            Linked => {
                wait_ready(&ctx.api::<LinkedAccount>(), &name, FINISH).await;
            }
            LinkedGenerated => {
                // The role is deployed by hand, with the value the operator generated.
                let links = ctx.api::<LinkedAccount>();
                let secret = wait_for(&links, &name, "a generated Secret", FINISH, |l| {
                    l.status
                        .as_ref()
                        .is_some_and(|s| s.external_id_secret.is_some())
                })
                .await
                .status
                .and_then(|s| s.external_id_secret)
                .expect("Secret");
                let data = ctx.api::<Secret>().get(&secret).await.expect("Secret").data;
                let value = data
                    .and_then(|d| d.get("externalId").cloned())
                    .map(|v| String::from_utf8(v.0).expect("utf-8"))
                    .expect("externalId");
                ctx.aws.put_role(&self.account, &value, HUB_ACCOUNT).await;
                wait_ready(&links, &name, FINISH).await;
            }
            _ => {
                let bulks = ctx.api::<BulkRegistration>();
                let deadline = Instant::now() + FINISH;
                loop {
                    self.observe(ctx).await;
                    let bulk = bulks.get(&name).await.expect("get");
                    let status = bulk.status.clone().unwrap_or_default();
                    if support::has(&bulk, "Ready", "True", None)
                        && support::has(&bulk, "StackSetReady", "True", None)
                        && status.operation.is_none()
                        && status.external_id_rotation.is_none()
                        && status.external_id_retired_secrets.is_empty()
                        && status.observed_generation == bulk.metadata.generation
                        // A rotation killed before its status write has not begun to show.
                        && status.external_id_secret.as_deref() != Some(self.old_secret.as_str())
                    {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{name} not Ready in {FINISH:?}: {:?}",
                        bulk.status
                    );
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    }

    /// Waits for the final state and checks it; what was checked.
    async fn finish(&mut self, ctx: &Context) -> Value {
        let scenario = self.scenario();
        let deleted = matches!(
            scenario,
            RegistrationDeleted | ManagementStackDeleted | MemberParked | MemberClosed
        );
        if deleted {
            let deadline = Instant::now() + FINISH;
            loop {
                self.observe(ctx).await;
                let exists = match scenario {
                    MemberParked | MemberClosed => ctx
                        .api::<MemberAccount>()
                        .get_opt(&self.name)
                        .await
                        .expect("get")
                        .is_some(),
                    _ => ctx
                        .api::<BulkRegistration>()
                        .get_opt(&self.name)
                        .await
                        .expect("get")
                        .is_some(),
                };
                if !exists {
                    break;
                }
                assert!(Instant::now() < deadline, "{} not deleted", self.name);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        } else {
            self.wait_ready(ctx).await;
        }
        // Side effects of the restarted operator after the final state: none may repeat.
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.observe(ctx).await;
        match scenario {
            MemberCreated | MemberAdopted | MemberParked | MemberClosed => {
                self.check_member(ctx).await
            }
            Linked | LinkedGenerated => {
                let owned = ctx
                    .api::<Secret>()
                    .list(&ListParams::default())
                    .await
                    .expect("Secrets")
                    .into_iter()
                    .filter(|s| {
                        s.metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .any(|o| o.kind == "LinkedAccount")
                    })
                    .count();
                assert_eq!(
                    owned,
                    usize::from(scenario == LinkedGenerated),
                    "one generated Secret at most"
                );
                let link = ctx
                    .api::<LinkedAccount>()
                    .get(&self.name)
                    .await
                    .expect("get");
                assert_eq!(condition(&link, "Ready"), Some(("True", "Verified")));
                json!({"final": "Ready"})
            }
            _ => self.check_registration(ctx).await,
        }
    }

    /// StackSet operations by action, each counted once per ID.
    fn actions(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for action in self.operations.values() {
            *out.entry(action.clone()).or_default() += 1;
        }
        out
    }

    async fn check_registration(&mut self, ctx: &Context) -> Value {
        let scenario = self.scenario();
        let expected: &[(&str, usize)] = match scenario {
            SelfManaged | ServiceManaged | ManagementStack => &[("CREATE", 1)],
            TemplateChanged | ManagementStackUpdated => &[("CREATE", 1), ("UPDATE", 1)],
            AccountRemoved | RegistrationDeleted | ManagementStackDeleted => {
                &[("CREATE", 1), ("DELETE", 1)]
            }
            DriftChecked => &[("CREATE", 1), ("DETECT_DRIFT", 1)],
            StacksImported => &[("IMPORT", 1), ("UPDATE", 1)],
            Rotation => &[("CREATE", 1), ("UPDATE", 2)],
            _ => unreachable!(),
        };
        let expected: BTreeMap<String, usize> =
            expected.iter().map(|(a, n)| (a.to_string(), *n)).collect();
        let actions = self.actions();
        assert_eq!(
            actions, expected,
            "{scenario:?}: duplicate or missing StackSet operations: {:?}",
            self.operations
        );
        let stacks = MemberStacks::new(&ctx.env).await;
        let management = if self.management_stack.is_empty() {
            None
        } else {
            Some(stacks.in_hub(&self.management_stack).await)
        };
        let instances = ctx.aws.stack_instances(&self.stack_set).await;
        if matches!(scenario, RegistrationDeleted | ManagementStackDeleted) {
            assert!(
                !ctx.aws.stack_set_exists(&self.stack_set).await,
                "the StackSet is deleted"
            );
            if let Some(stack) = management {
                assert_eq!(stack, None, "the management account's stack is deleted");
            }
            return json!({"final": "deleted", "operations": actions, "instances_left": instances.len()});
        }
        let wanted: Vec<String> = match scenario {
            AccountRemoved => vec![self.accounts[0].clone()],
            _ => self.accounts.clone(),
        };
        let deployed: Vec<String> = instances.iter().map(|i| i.0.clone()).collect();
        assert_eq!(
            deployed,
            sorted(&wanted),
            "instances lost or left over: {instances:?}"
        );
        assert!(instances.iter().all(|i| i.2 == "CURRENT"), "{instances:?}");
        if let Some(stack) = management {
            let (status, _) = stack.expect("the management account's stack");
            assert!(status.ends_with("_COMPLETE"), "{status}");
        }
        let children = ctx
            .api::<LinkedAccount>()
            .list(&ListParams::default().labels(&format!(
                "accountlinker.dev/bulk-registration={}",
                self.name
            )))
            .await
            .expect("children");
        let mut with_child: Vec<String> = children
            .iter()
            .filter(|c| c.spec.account_id != HUB_ACCOUNT)
            .map(|c| c.spec.account_id.clone())
            .collect();
        with_child.sort();
        assert_eq!(with_child, sorted(&wanted), "one child per account");
        for child in &children {
            assert_eq!(
                condition(child, "Ready"),
                Some(("True", "Verified")),
                "{}",
                child.spec.account_id
            );
        }
        if scenario == Rotation {
            self.check_rotation(ctx, &children.items).await;
        }
        json!({"final": "Ready", "operations": actions, "instances": instances.len()})
    }

    /// One rotation, whatever the crash: the token Secrets are the new one only, and every
    /// child reads it.
    async fn check_rotation(&self, ctx: &Context, children: &[LinkedAccount]) {
        let bulk = ctx
            .api::<BulkRegistration>()
            .get(&self.name)
            .await
            .expect("get");
        let current = bulk
            .status
            .and_then(|s| s.external_id_secret)
            .expect("token Secret");
        assert_ne!(current, self.old_secret, "rotated");
        let secrets: Vec<String> = ctx
            .api::<Secret>()
            .list(&ListParams::default())
            .await
            .expect("Secrets")
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .filter(|n| n.starts_with(&format!("{}-registration-token", self.name)))
            .collect();
        assert_eq!(
            secrets,
            vec![current.clone()],
            "no third Secret, the old one retired"
        );
        for child in children {
            let on = child
                .spec
                .external_id
                .as_ref()
                .map(|e| e.secret_ref.name.clone());
            assert_eq!(on.as_deref(), Some(current.as_str()));
        }
    }

    async fn check_member(&self, ctx: &Context) -> Value {
        let scenario = self.scenario();
        let created = ctx.emulator.create_calls(&self.email).await;
        let expected_calls = u64::from(scenario != MemberAdopted);
        let admin_calls = u64::from(scenario == MemberAdopted);
        assert_eq!(
            created,
            expected_calls + admin_calls,
            "CreateAccount calls with {}",
            self.email
        );
        let account = match scenario {
            MemberAdopted | MemberParked | MemberClosed => self.account.clone(),
            _ => ctx
                .aws
                .account_by_email(&self.email)
                .await
                .expect("one account with the e-mail"),
        };
        let described = ctx.aws.describe_account(&account).await;
        match scenario {
            MemberClosed => {
                assert!(
                    ["SUSPENDED", "PENDING_CLOSURE"].contains(&described.status.as_str()),
                    "{}",
                    described.status
                );
            }
            MemberParked => {
                assert_eq!(described.parent_id, ctx.aws.root().await, "parked");
                assert_eq!(described.status, "ACTIVE");
                assert!(
                    !described
                        .tags
                        .contains_key("accountlinker.dev/member-account"),
                    "ownership tags removed: {:?}",
                    described.tags
                );
            }
            _ => {
                let m = ctx
                    .api::<MemberAccount>()
                    .get(&self.name)
                    .await
                    .expect("get");
                let status = m.status.clone().expect("status");
                assert_eq!(status.account_id.as_deref(), Some(account.as_str()));
                assert_eq!(described.parent_id, self.park, "placed");
                assert_eq!(
                    described.tags.get("team").map(String::as_str),
                    Some("crash")
                );
                assert!(
                    described
                        .tags
                        .contains_key("accountlinker.dev/member-account"),
                    "{:?}",
                    described.tags
                );
            }
        }
        json!({"final": if matches!(scenario, MemberParked | MemberClosed) { "deleted" } else { "Ready" },
               "create_account_calls": created - admin_calls, "account_status": described.status})
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_self_managed_registration() {
    run(SelfManaged).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_service_managed_registration() {
    run(ServiceManaged).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_template_change() {
    run(TemplateChanged).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_account_removed() {
    run(AccountRemoved).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_registration_deleted() {
    run(RegistrationDeleted).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_drift_check() {
    run(DriftChecked).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_stack_import() {
    run(StacksImported).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_management_stack() {
    run(ManagementStack).await;
    run(ManagementStackUpdated).await;
    run(ManagementStackDeleted).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_member_account_created() {
    run(MemberCreated).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_member_account_adopted() {
    run(MemberAdopted).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_member_account_parked_and_closed() {
    run(MemberParked).await;
    run(MemberClosed).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_linked_account() {
    run(Linked).await;
    run(LinkedGenerated).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_token_rotation() {
    run(Rotation).await;
}
