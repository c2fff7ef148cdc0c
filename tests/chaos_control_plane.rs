//! Control-plane faults (issue 14, fault test 3), each on a control plane of the test's own
//! (`PrivateEnv`: its own etcd, kube-apiserver, controller manager and emulator): the
//! kube-apiserver SIGKILLed and restarted mid-reconcile, etcd paused (SIGSTOP/SIGCONT), every
//! watch connection of the operator cut again and again, and a storm of 409 conflicts from
//! another client updating the same objects.
//!
//! The operator runs as one elected replica behind a proxy; when it exits (it gives the lease
//! up when it cannot renew it) the test starts it again, as a Deployment would. After each fault:
//! no stuck object (all Ready), no lost finalizer (deleting every object closes each account
//! exactly once), no duplicate side effect (one CreateAccount per e-mail). Recovery is timed
//! from the end of the fault to the last object Ready. Small in `make test`; 30 s faults and
//! more objects with `ACCOUNT_LINKER_CHAOS=full`, printing `CHAOS {json}` figures.

mod support;

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use account_linker::api::MemberAccount;
use support::replicas::{Replica, aws_calls, kube_writes, now, report};
use support::{Context, PrivateEnv, apply_policy, create, has, permissive, unique};

/// Private control planes are heavy: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

const FLAGS: &[&str] = &["--account-poll-interval", "500ms"];
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
}

impl Plane {
    async fn start(prefix: &str) -> Self {
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
        let replica = Replica::start(&ctx, &name, FLAGS).await;
        Self {
            private,
            ctx,
            replica,
            name,
            restarts: 0,
            members: Vec::new(),
            root,
        }
    }

    fn api(&self) -> Api<MemberAccount> {
        self.ctx.api()
    }

    /// Starts the operator again if it exited (a Deployment's restart).
    async fn keep_running(&mut self) {
        if !self.replica.operator.is_running() {
            self.restarts += 1;
            self.replica = Replica::start(&self.ctx, &self.name, FLAGS).await;
        }
    }

    /// Creates `n` MemberAccounts and waits until the operator called CreateAccount for one.
    async fn create_members(&mut self, n: usize) {
        let since = now();
        for i in 0..n {
            let name = format!("m{i}");
            let email = format!("{}@example.com", unique(&name));
            let spec = json!({
                "email": email, "accountName": name,
                "deletionPolicy": "Close", "link": {"enabled": false}, "parentId": self.root,
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
        for (name, _) in &self.members {
            let _ = self.api().delete(name, &DeleteParams::default()).await;
        }
        self.until(CONVERGE, "every MemberAccount gone", async |p| {
            p.api()
                .list(&Default::default())
                .await
                .is_ok_and(|l| l.items.is_empty())
        })
        .await;
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

    /// 409 answers to the operator's writes, from the audit log.
    fn conflicts(&self) -> usize {
        kube_writes(&self.ctx.env, &self.ctx.ns.name)
            .iter()
            .filter(|w| w.who == self.name && w.code == 409)
            .count()
    }

    async fn finish(mut self, scenario: &str, fault: Duration, recovery: Duration, extra: Value) {
        let (duplicates, closes) = self.delete_all_and_count().await;
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

#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_conflicts_on_the_same_objects() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (n, span) = size();
    let mut p = Plane::start("chaos-conflict").await;
    p.create_members(n).await;
    // Another client changes every object as fast as it can: each change moves the
    // resourceVersion under the operator's feet.
    let api = p.api();
    let names: Vec<String> = p.members.iter().map(|(n, _)| n.clone()).collect();
    let storm = tokio::spawn(async move {
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
    });
    p.until(span + Duration::from_secs(30), "the storm", async |_| {
        storm.is_finished()
    })
    .await;
    let updates = storm.await.expect("the storm task");
    let recovery = p.converge().await;
    p.finish(
        "control-plane-conflict-storm",
        span,
        recovery,
        json!({"storm_updates": updates}),
    )
    .await;
}
