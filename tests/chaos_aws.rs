//! AWS faults against a fleet of healthy objects (standalone LinkedAccounts and a
//! BulkRegistration's children): a full outage, sustained throttling at half the rate the
//! operator needs, random server errors, and answers slower than the operator's attempt
//! timeout. For each fault every object is asked to verify while it lasts; the watch records
//! every condition transition. Asserted: no `Ready` flap on any object, AWS requests during
//! the fault within the stated bound, no verification recorded while AWS cannot answer, every
//! object verified again after the fault clears (the time it took is reported).
//!
//! Small in `make test`; `ACCOUNT_LINKER_CHAOS=full` (`make chaos`) runs 300 objects with
//! 60-second faults and prints one `CHAOS {json}` line per fault.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use support::{
    Context, Fleet, SDK_ATTEMPTS, Transitions, backoff_attempts, chaos_full, eventually,
    now_seconds, report_chaos, requests_by_service,
};

/// How big the fleet is, how long each fault lasts, and the operator's STS budget.
struct Size {
    standalone: usize,
    children: usize,
    window: Duration,
    sts_requests_per_second: u32,
}

impl Size {
    fn get() -> Self {
        if chaos_full() {
            Self {
                standalone: 100,
                children: 200,
                window: Duration::from_secs(60),
                sts_requests_per_second: 10,
            }
        } else {
            Self {
                standalone: 6,
                children: 6,
                window: Duration::from_secs(12),
                sts_requests_per_second: 4,
            }
        }
    }
}

/// The operator's per-attempt AWS timeout in these tests (`--aws-attempt-timeout`), and how
/// late a slow answer comes: past it.
const ATTEMPT_TIMEOUT: &str = "2s";
const SLOW_ANSWER_SECONDS: f64 = 3.0;

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Every AWS call answers 503.
    Outage,
    /// STS admits half the operator's budget (the rate it needs to verify the fleet).
    Throttling,
    /// 5 % of all calls fail with HTTP 500, seeded.
    ServerErrors,
    /// Every call is answered after the operator's attempt timeout.
    SlowAnswers,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::Outage => "outage",
            Self::Throttling => "throttling",
            Self::ServerErrors => "server-errors",
            Self::SlowAnswers => "slow-answers",
        }
    }

    async fn inject(self, ctx: &Context, size: &Size) {
        match self {
            Self::Outage => {
                let seconds = size.window.as_secs() + 30;
                ctx.emulator
                    .post("/outage", json!({"seconds": seconds, "mode": "error"}))
                    .await;
            }
            Self::Throttling => {
                let rate = f64::from(size.sts_requests_per_second) / 2.0;
                ctx.emulator
                    .put("/throttle", json!({"sts:*": {"rate": rate, "burst": rate}}))
                    .await;
            }
            Self::ServerErrors => {
                ctx.emulator
                    .put(
                        "/errors",
                        json!({"seed": 14, "rules": {"*": {"rate": 0.05}}}),
                    )
                    .await;
            }
            Self::SlowAnswers => {
                let rules = json!({"*": {"seconds": SLOW_ANSWER_SECONDS, "rate": 1.0}});
                ctx.emulator
                    .put("/latency", json!({"seed": 14, "rules": rules}))
                    .await;
            }
        }
    }

    async fn clear(self, ctx: &Context) {
        let path = match self {
            Self::Outage => "/outage",
            Self::Throttling => "/throttle",
            Self::ServerErrors => "/errors",
            Self::SlowAnswers => "/latency",
        };
        ctx.emulator.delete(path).await;
    }

    /// Whether AWS can answer a verification while the fault lasts.
    fn answers(self) -> bool {
        matches!(self, Self::Throttling | Self::ServerErrors)
    }
}

/// The most AWS requests a service may see during a fault of `window`: every call of a
/// healthy window as long (`baseline`) tried [`SDK_ATTEMPTS`] times, plus, for every object,
/// a failed reconcile at each step of the backoff within the window and one more, each making
/// at most two calls (AssumeRole and GetCallerIdentity, or the first failing read of a
/// registration pass), each tried [`SDK_ATTEMPTS`] times.
fn bound(baseline: u64, objects: u64, window: Duration) -> u64 {
    SDK_ATTEMPTS * baseline + objects * (backoff_attempts(window) + 1) * 2 * SDK_ATTEMPTS
}

async fn all_verified_since(
    ctx: &Context,
    fleet: &Fleet,
    since: k8s_openapi::jiff::Timestamp,
    timeout: Duration,
    what: &str,
) {
    let want = fleet.links();
    eventually(timeout, what, || async {
        (fleet.verified_since(ctx, since).await? == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_faults_flap_nothing_and_retries_stay_bounded() {
    let size = Size::get();
    let ctx = Context::new("chaos-aws").await;
    ctx.prepare_stack_sets(json!({"base_seconds": 0.5, "seconds_per_wave": 0.2}))
        .await;
    let rps = size.sts_requests_per_second.to_string();
    let mut operator = ctx.operator(&[
        "--leader-elect=false",
        "--sts-requests-per-second",
        &rps,
        "--stackset-poll-interval",
        "1s",
        "--bulk-resync-interval",
        "10s",
        "--aws-attempt-timeout",
        ATTEMPT_TIMEOUT,
        "--aws-operation-timeout",
        "5s",
    ]);
    let budget = ctx.budget().await;
    let objects = size.standalone + size.children;
    // Every link verifies once at the operator's STS budget, on top of the deployment.
    let verify_all =
        Duration::from_secs(2 * objects as u64 / u64::from(size.sts_requests_per_second));
    let ready_within = budget.registration_ready(size.children, 100, 2) + verify_all * 2;
    let fleet = Fleet::create(&ctx, size.standalone, size.children, "5m", ready_within).await;
    let watch = Transitions::watch(&ctx).await;
    // Once the fault clears: one more backoff step, then every link verified at the budget.
    let recover_within = budget.retry_after(size.window) + verify_all * 2;

    // A healthy window as long as a fault, with the same verification request.
    ctx.emulator.reset_counts().await;
    let (since, started) = (now_seconds(), Instant::now());
    fleet.request_verification(&ctx, "healthy").await;
    all_verified_since(
        &ctx,
        &fleet,
        since,
        recover_within,
        "the healthy verification",
    )
    .await;
    tokio::time::sleep_until((started + size.window).into()).await;
    let baseline = requests_by_service(&ctx).await;
    println!("healthy window of {:?}: {baseline:?}", size.window);

    let mut failures = Vec::new();
    for fault in [
        Fault::Outage,
        Fault::Throttling,
        Fault::ServerErrors,
        Fault::SlowAnswers,
    ] {
        ctx.emulator.reset_counts().await;
        let (since, started) = (now_seconds(), Instant::now());
        fault.inject(&ctx, &size).await;
        fleet.request_verification(&ctx, fault.name()).await;
        tokio::time::sleep_until((started + size.window).into()).await;
        let during = requests_by_service(&ctx).await;
        let verified_during = watch.verifications(started, Instant::now());
        fault.clear(&ctx).await;
        let cleared = Instant::now();
        all_verified_since(
            &ctx,
            &fleet,
            since,
            recover_within,
            &format!("every link verified after the {}", fault.name()),
        )
        .await;
        let recovery = cleared.elapsed();
        fleet.wait_ready(&ctx, recover_within).await;
        let flaps = watch.ready_flaps(started);
        let transitions = watch.since(started);

        let mut bounds = BTreeMap::new();
        for (service, n) in &during {
            let healthy = baseline.get(service).copied().unwrap_or(0);
            let limit = bound(healthy, objects as u64 + 1, size.window);
            bounds.insert(service.clone(), limit);
            if *n > limit {
                failures.push(format!(
                    "{}: {n} {service} requests, over the bound {limit}",
                    fault.name()
                ));
            }
        }
        if !flaps.is_empty() {
            failures.push(format!("{}: Ready flapped: {flaps:?}", fault.name()));
        }
        if !fault.answers() && verified_during > 0 {
            failures.push(format!(
                "{}: {verified_during} verification(s) recorded while AWS could not answer",
                fault.name()
            ));
        }
        let figures = json!({
            "scenario": "aws-faults",
            "fault": fault.name(),
            "objects": objects + 1,
            "window_seconds": size.window.as_secs(),
            "ready_flaps": flaps.len(),
            "condition_transitions": transitions.len(),
            "requests": during,
            "bound": bounds,
            "healthy_requests": baseline,
            "verifications_during_fault": verified_during,
            "recovery_seconds": (recovery.as_secs_f64() * 10.0).round() / 10.0,
        });
        if chaos_full() {
            report_chaos(&figures);
        } else {
            println!("{figures}");
        }
        if !transitions.is_empty() {
            println!("{}: transitions {transitions:?}", fault.name());
        }
    }
    assert!(
        operator.is_running(),
        "the operator exited:\n{}",
        operator.log()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    ctx.cleanup().await;
}
