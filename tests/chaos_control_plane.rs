//! Control-plane faults (issue 14, fault test 3), each on a control plane of the test's own
//! (`PrivateEnv`: its own etcd, kube-apiserver, controller manager and emulator): the
//! kube-apiserver SIGKILLed and restarted mid-reconcile, etcd paused (SIGSTOP/SIGCONT), every
//! watch connection of the operator cut again and again, and a storm of 409 conflicts: half
//! the operator's writes answered 409 Conflict (by [`ConflictProxy`]; the real server never
//! refuses them, they carry no resourceVersion) while another client updates the same objects.
//!
//! The operator runs as one elected replica behind a proxy; when it exits (it gives the lease
//! up when it cannot renew it) the test starts it again, as a Deployment would. After each fault:
//! no stuck object (all Ready), no lost finalizer (deleting every object closes each account
//! exactly once), no duplicate side effect (one CreateAccount per e-mail). Recovery is timed
//! from the end of the fault to the last object Ready. Small in `make test`; 30 s faults and
//! more objects with `ACCOUNT_LINKER_CHAOS=full`, printing `CHAOS {json}` figures.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use account_linker::api::{BulkRegistration, LinkedAccount, MemberAccount};
use support::conflicts::{ConflictProxy, target};
use support::replicas::{Replica, aws_calls, kube_writes, now, report};
use support::{Context, Fleet, PrivateEnv, apply_policy, create, has, permissive, unique};

/// Private control planes are heavy: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

const FLAGS: &[&str] = &["--account-poll-interval", "500ms"];
/// The conflict storm's: a BulkRegistration's StackSet operations polled every second too.
const STORM_FLAGS: &[&str] = &[
    "--account-poll-interval",
    "500ms",
    "--stackset-poll-interval",
    "1s",
];
/// How long objects may take to converge once the fault is over.
const CONVERGE: Duration = Duration::from_secs(120);

/// The size of a scenario: MemberAccounts, and how long the fault lasts.
fn size() -> (usize, Duration) {
    if support::chaos_full() {
        (8, Duration::from_secs(30))
    } else {
        (3, Duration::from_secs(6))
    }
}

/// One scenario on its own control plane.
struct Plane {
    private: PrivateEnv,
    ctx: Context,
    replica: Replica,
    name: String,
    /// How often the operator exited and was started again.
    restarts: u32,
    members: Vec<(String, String)>,
    root: String,
    /// Between the operator and the API server when the scenario refuses writes.
    conflicts: Option<ConflictProxy>,
    flags: &'static [&'static str],
}

impl Plane {
    async fn start(prefix: &str) -> Self {
        Self::start_with(prefix, false, FLAGS).await
    }

    /// With `conflicts`, the operator talks to the API server through a [`ConflictProxy`]
    /// that may refuse its writes to the operator's own kinds (never its Lease).
    async fn start_with(prefix: &str, conflicts: bool, flags: &'static [&'static str]) -> Self {
        let private = PrivateEnv::start();
        let ctx = Context::on(private.env(), prefix).await;
        let root = ctx.aws.ensure_org().await;
        apply_policy(&ctx.client, &ctx.ns.name, permissive(&ctx.ns.name, &root)).await;
        ctx.emulator
            .put(
                "/organizations",
                json!({"create_seconds": 2, "suspend_seconds": 1}),
            )
            .await;
        ctx.emulator
            .put("/requests/log", json!({"enabled": true}))
            .await;
        let name = unique("operator");
        let conflicts = match conflicts {
            true => Some(
                ConflictProxy::start(
                    ctx.client.clone(),
                    Box::new(|path| path.starts_with("/apis/accountlinker.dev/")),
                )
                .await,
            ),
            false => None,
        };
        let server = conflicts.as_ref().map(ConflictProxy::url);
        let replica = Replica::start_via(&ctx, &name, flags, server).await;
        Self {
            private,
            ctx,
            replica,
            name,
            restarts: 0,
            members: Vec::new(),
            root,
            conflicts,
            flags,
        }
    }

    fn proxy(&self) -> &ConflictProxy {
        self.conflicts.as_ref().expect("the conflict proxy")
    }

    fn api(&self) -> Api<MemberAccount> {
        self.ctx.api()
    }

    /// Starts the operator again if it exited (a Deployment's restart).
    async fn keep_running(&mut self) {
        if !self.replica.operator.is_running() {
            self.restarts += 1;
            let server = self.conflicts.as_ref().map(ConflictProxy::url);
            self.replica = Replica::start_via(&self.ctx, &self.name, self.flags, server).await;
        }
    }

    /// Creates `n` MemberAccounts and waits until the operator called CreateAccount for one.
    async fn create_members(&mut self, n: usize) {
        self.create_members_linked(n, false).await;
    }

    /// Like [`Self::create_members`]; with `link`, each one's account is linked by a child
    /// LinkedAccount too.
    async fn create_members_linked(&mut self, n: usize, link: bool) {
        let since = now();
        for i in 0..n {
            let name = format!("m{i}");
            let email = format!("{}@example.com", unique(&name));
            let spec = json!({
                "email": email, "accountName": name,
                "deletionPolicy": "Close", "link": {"enabled": link}, "parentId": self.root,
            });
            create(&self.api(), &name, spec).await;
            self.members.push((name, email));
        }
        self.until(
            Duration::from_secs(90),
            "the first CreateAccount",
            async |p| {
                let calls = aws_calls(&p.ctx, &[&p.replica]).await;
                calls
                    .iter()
                    .any(|c| c.what == "organizations:CreateAccount" && c.at >= since)
            },
        )
        .await;
    }

    /// Polls `done` every 200 ms, keeping the operator running, until it holds; returns how
    /// long that took.
    async fn until(
        &mut self,
        limit: Duration,
        what: &str,
        mut done: impl AsyncFnMut(&Self) -> bool,
    ) -> Duration {
        let began = Instant::now();
        loop {
            self.keep_running().await;
            if done(self).await {
                return began.elapsed();
            }
            assert!(
                began.elapsed() < limit,
                "{what}: not after {limit:?}; operator log:\n{}",
                self.replica.operator.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every MemberAccount is Ready with its finalizer; returns how long it took.
    async fn converge(&mut self) -> Duration {
        self.until(CONVERGE, "every MemberAccount Ready", async |p| {
            let Ok(list) = p.api().list(&Default::default()).await else {
                return false;
            };
            list.items.len() == p.members.len()
                && list.items.iter().all(|m| {
                    has(m, "Ready", "True", None)
                        && m.metadata
                            .finalizers
                            .as_ref()
                            .is_some_and(|f| !f.is_empty())
                })
        })
        .await
    }

    /// Deletes every MemberAccount and waits until all are gone; asserts each account was
    /// created once and closed once. Returns (duplicate creates, closes).
    async fn delete_all_and_count(&mut self) -> (u64, u64) {
        self.delete_all().await;
        self.wait_gone().await;
        self.count_side_effects().await
    }

    async fn delete_all(&self) {
        for (name, _) in &self.members {
            let _ = self.api().delete(name, &DeleteParams::default()).await;
        }
    }

    async fn all_gone(&self) -> bool {
        self.api()
            .list(&Default::default())
            .await
            .is_ok_and(|l| l.items.is_empty())
    }

    async fn wait_gone(&mut self) -> Duration {
        self.until(CONVERGE, "every MemberAccount gone", async |p| {
            p.all_gone().await
        })
        .await
    }

    /// Asserts each account was created once and closed once (a finalizer lost on the way
    /// closes nothing); returns (duplicate creates, closes).
    async fn count_side_effects(&self) -> (u64, u64) {
        let mut duplicates = 0;
        for (name, email) in &self.members {
            let calls = self.ctx.emulator.create_calls(email).await;
            assert_eq!(calls, 1, "CreateAccount calls for {name}");
            duplicates += calls - 1;
        }
        let closes = self.ctx.emulator.count("organizations:CloseAccount").await;
        assert_eq!(
            closes,
            self.members.len() as u64,
            "one CloseAccount per deleted MemberAccount (a lost finalizer closes nothing)"
        );
        (duplicates, closes)
    }

    /// 409 answers to the operator's writes: those of the conflict proxy, or else those of the
    /// API server (from the audit log).
    fn conflicts(&self) -> u64 {
        if let Some(proxy) = &self.conflicts {
            return proxy.tally().conflicts();
        }
        kube_writes(&self.ctx.env, &self.ctx.ns.name)
            .iter()
            .filter(|w| w.who == self.name && w.code == 409)
            .count() as u64
    }

    async fn finish(mut self, scenario: &str, fault: Duration, recovery: Duration, extra: Value) {
        let counts = self.delete_all_and_count().await;
        self.stop(scenario, fault, recovery, counts, extra);
    }

    /// Reports the figures (with `(duplicate creates, closes)` counted) and stops the operator
    /// and the control plane.
    fn stop(
        mut self,
        scenario: &str,
        fault: Duration,
        recovery: Duration,
        (duplicates, closes): (u64, u64),
        extra: Value,
    ) {
        let mut figures = json!({
            "member_accounts": self.members.len(),
            "fault_s": fault.as_secs_f64(),
            "recovery_s": (recovery.as_secs_f64() * 1000.0).round() / 1000.0,
            "operator_restarts": self.restarts,
            "duplicate_create_account": duplicates,
            "close_account_calls": closes,
            "conflicts_409": self.conflicts(),
        });
        if let (Some(f), Some(e)) = (figures.as_object_mut(), extra.as_object()) {
            f.extend(e.clone());
        }
        report(scenario, figures);
        self.replica.operator.terminate(Duration::from_secs(10));
        drop(self.private);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_killed_and_restarted_mid_reconcile() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (n, _) = size();
    let mut p = Plane::start("chaos-apiserver").await;
    p.create_members(n).await;
    let began = Instant::now();
    p.private.restart("kube-apiserver", true);
    let down = began.elapsed();
    let recovery = p.converge().await;
    p.finish(
        "control-plane-apiserver-restart",
        down,
        recovery,
        json!({"apiserver_back_s": down.as_secs_f64()}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_paused_mid_reconcile() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (n, pause) = size();
    let mut p = Plane::start("chaos-etcd").await;
    p.create_members(n).await;
    p.private.pause("etcd");
    let paused_at = Instant::now();
    // The operator may give its lease up meanwhile; it is started again as it exits.
    p.until(pause + Duration::from_secs(5), "the pause", async |_| {
        paused_at.elapsed() >= pause
    })
    .await;
    p.private.resume("etcd");
    let recovery = p.converge().await;
    p.finish("control-plane-etcd-pause", pause, recovery, json!({}))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_watch_cut_again_and_again() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (n, span) = size();
    let mut p = Plane::start("chaos-watch").await;
    p.create_members(n).await;
    let began = Instant::now();
    let mut cuts = 0;
    while began.elapsed() < span {
        p.replica.proxy.cut();
        cuts += 1;
        p.until(Duration::from_secs(5), "the next cut", async |_| {
            began.elapsed() >= Duration::from_secs(cuts)
        })
        .await;
    }
    let recovery = p.converge().await;
    p.finish(
        "control-plane-watches-dropped",
        span,
        recovery,
        json!({"cuts": cuts}),
    )
    .await;
}

/// The fraction of the operator's writes answered 409 during the storm.
const REFUSED: f64 = 0.5;

/// Another client changes every object as fast as it can for `span` (each change moves the
/// resourceVersion and is one more event for the operator); returns how many changes it made.
fn annotation_storm(
    api: Api<MemberAccount>,
    names: Vec<String>,
    span: Duration,
) -> JoinHandle<u64> {
    tokio::spawn(async move {
        let began = Instant::now();
        let mut updates = 0u64;
        while began.elapsed() < span {
            for name in &names {
                let patch =
                    json!({"metadata": {"annotations": {"chaos/storm": updates.to_string()}}});
                if api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .is_ok()
                {
                    updates += 1;
                }
            }
        }
        updates
    })
}

/// `{"<VERB> <resource>": count}`, for the figures.
fn by_write(counts: &BTreeMap<String, u64>) -> Value {
    counts.iter().map(|(k, v)| (k.clone(), json!(v))).collect()
}

/// Adds the StackSet operations the emulator lists for `stack_set` now to `seen` (by ID: an
/// operation listed twice is one operation).
async fn operations(p: &Plane, stack_set: &str, seen: &mut BTreeMap<String, String>) {
    for op in p.ctx.emulator.operations(stack_set).await {
        let id = op["operation_id"].as_str().unwrap_or_default().to_string();
        let action = op["action"].as_str().unwrap_or_default().to_string();
        seen.insert(id, action);
    }
}

/// The registration is Ready with no operation in flight, and every LinkedAccount (the
/// MemberAccounts' and the registration's children) is Ready.
async fn links_and_registration_ready(p: &Plane, links: usize) -> bool {
    let Ok(list) = p.ctx.api::<LinkedAccount>().list(&Default::default()).await else {
        return false;
    };
    let Ok(bulk) = p.ctx.api::<BulkRegistration>().get(REGISTRATION).await else {
        return false;
    };
    list.items.len() == links
        && list.items.iter().all(|l| has(l, "Ready", "True", None))
        && has(&bulk, "Ready", "True", None)
        && bulk.status.is_some_and(|s| s.operation.is_none())
}

/// The name [`Fleet::register`] gives its registration.
const REGISTRATION: &str = "fleet";

/// Half the operator's writes to its kinds (finalizers added and removed, status applied,
/// children applied) are answered 409 Conflict while MemberAccounts and a BulkRegistration are
/// created, changed by another client, and later deleted: every object converges once the
/// storm is over, each account is created once and closed once (a finalizer lost to a conflict
/// would close nothing, a status write lost to one would create twice), the StackSet sees one
/// operation per change, and the operator does not spin on the refusals.
#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_conflicts_on_the_same_objects() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (n, span) = size();
    let mut p = Plane::start_with("chaos-conflict", true, STORM_FLAGS).await;
    p.ctx
        .prepare_stack_sets(json!({"base_seconds": 0.5, "seconds_per_wave": 0.2}))
        .await;
    let mut ops = BTreeMap::new();
    p.proxy().refuse(REFUSED);
    let began = Instant::now();
    let stack_set = Fleet::register(&p.ctx, n, "1h").await;
    p.create_members_linked(n, true).await;
    let names: Vec<String> = p.members.iter().map(|(n, _)| n.clone()).collect();
    let storm = annotation_storm(p.api(), names, span);
    p.until(span + Duration::from_secs(30), "the storm", async |_| {
        storm.is_finished()
    })
    .await;
    let updates = storm.await.expect("the storm task");
    p.proxy().refuse(0.0);
    let stormed = began.elapsed();
    let during = p.proxy().tally();
    let healed = Instant::now();
    p.converge().await;
    p.until(
        CONVERGE,
        "every LinkedAccount and the registration Ready",
        async |p| links_and_registration_ready(p, 2 * n).await,
    )
    .await;
    let recovery = healed.elapsed();
    // Converged and healed: a pass that spins on a refusal would still be writing.
    let settled = p.proxy().tally().forwarded_writes();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let quiet_writes = p.proxy().tally().forwarded_writes() - settled;
    operations(&p, &stack_set, &mut ops).await;
    // Deletion under the storm too (the finalizer's removal refused as often), then healed;
    // the registration takes its StackSet with it.
    let bulks = p.ctx.api::<BulkRegistration>();
    let delete = json!({"spec": {"deletionPolicy": "Delete"}});
    bulks
        .patch(
            REGISTRATION,
            &PatchParams::default(),
            &Patch::Merge(&delete),
        )
        .await
        .expect("deletionPolicy: Delete");
    p.proxy().refuse(REFUSED);
    p.delete_all().await;
    bulks
        .delete(REGISTRATION, &DeleteParams::default())
        .await
        .expect("delete the registration");
    let deleting = Instant::now();
    let registration_gone = async |p: &Plane| {
        matches!(
            p.ctx.api::<BulkRegistration>().get_opt(REGISTRATION).await,
            Ok(None)
        )
    };
    p.until(
        span + Duration::from_secs(30),
        "the storm over deletion",
        async |p| {
            operations(p, &stack_set, &mut ops).await;
            deleting.elapsed() >= span || (p.all_gone().await && registration_gone(p).await)
        },
    )
    .await;
    p.proxy().refuse(0.0);
    let healed = Instant::now();
    p.until(CONVERGE, "every object gone", async |p| {
        operations(p, &stack_set, &mut ops).await;
        p.all_gone().await && registration_gone(p).await
    })
    .await;
    let deletion_recovery = healed.elapsed();
    let counts = p.count_side_effects().await;
    let mut actions: BTreeMap<String, u64> = BTreeMap::new();
    for action in ops.values() {
        *actions.entry(action.clone()).or_default() += 1;
    }
    let once: BTreeMap<String, u64> = [("CREATE".to_string(), 1), ("DELETE".to_string(), 1)].into();
    assert_eq!(actions, once, "one StackSet operation per change: {ops:?}");
    let total = p.proxy().tally();
    let log = p.replica.operator.log();
    // A refused status write right after CreateAccount loses the request's ID: the next pass
    // finds the request (or the account by its owner tag) instead of asking again.
    let refound = [
        "resumed a CreateAccount request in progress",
        "recovered the account with this e-mail and owner tag",
    ]
    .map(|line| log.matches(line).count())
    .iter()
    .sum::<usize>();
    let failed_passes = log.matches("reconcile failed").count();
    let deleting = total.conflicts() - during.conflicts();
    for (phase, refused) in [("creating", during.conflicts()), ("deleting", deleting)] {
        assert!(refused > 0, "no write refused while {phase}: {total:?}");
    }
    let extra = json!({
        "registration_children": n,
        "stackset_operations": by_write(&actions),
        "storm_updates": updates,
        "refused_fraction": REFUSED,
        "conflicts_409_while_creating": during.conflicts(),
        "conflicts_409_while_deleting": deleting,
        "writes_forwarded": total.forwarded_writes(),
        "deletion_recovery_s": (deletion_recovery.as_secs_f64() * 1000.0).round() / 1000.0,
        "writes_in_5s_after_ready": quiet_writes,
        "failed_passes": failed_passes,
        "create_requests_refound": refound,
        "conflicts_by_write": by_write(&total.refused),
        "forwarded_by_write": by_write(&total.forwarded),
    });
    p.stop(
        "control-plane-conflict-storm",
        stormed,
        recovery,
        counts,
        extra,
    );
}

#[test]
fn the_conflict_proxy_names_the_object_of_a_write() {
    let rows = [
        (
            "/apis/accountlinker.dev/v1alpha1/namespaces/ns/memberaccounts/m0/status",
            ("memberaccounts/status", "m0"),
        ),
        (
            "/apis/accountlinker.dev/v1alpha1/namespaces/ns/memberaccounts/m0",
            ("memberaccounts", "m0"),
        ),
        (
            "/apis/accountlinker.dev/v1alpha1/namespaces/ns/memberaccounts",
            ("memberaccounts", ""),
        ),
        ("/api/v1/namespaces/ns/events", ("events", "")),
    ];
    for (path, (resource, name)) in rows {
        assert_eq!(
            target(path),
            (resource.to_string(), name.to_string()),
            "{path}"
        );
    }
}
