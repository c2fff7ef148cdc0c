//! Shared harness of the integration tests: one real control plane (etcd, kube-apiserver,
//! kube-controller-manager) and one strict AWS emulator per test binary ([`env`]), and per test
//! a [`Context`]: a namespace of its own, a kube client, the emulator's control API, the
//! administrator's AWS clients and the [`Budget`] of timeouts.
#![allow(dead_code, unused_imports)] // each test binary uses a different part of the harness

mod aws;
mod budget;
mod cluster;
pub mod conflicts;
mod emulator;
mod env;
mod fleet;
mod operator;
pub mod proxy;
pub mod replicas;
mod stacks;
mod tenancy;

pub use self::aws::{ACCESS_ROLE, Account, AwsAdmin, EXECUTION_ROLE, HUB_ACCOUNT};
pub use self::budget::Budget;
pub use self::cluster::{
    Conditions, TestNamespace, condition, create, event_reasons, eventually, gone, has, message,
    object, run, run_ok, unique, wait_condition, wait_for, wait_ready,
};
pub use self::emulator::{Emulator, trust_policy};
pub use self::env::{PrivateEnv, TestEnv, env, repo_root};
pub use self::fleet::{
    Fleet, SDK_ATTEMPTS, Transition, Transitions, backoff_attempts, chaos_full, is_ready,
    now_seconds, process_sample, report_chaos, requests_by_service,
};
pub use self::operator::Operator;
pub use self::stacks::{MemberStacks, access_role_template};
pub use self::tenancy::{apply_policy, delete_policy, permissive};

use std::ops::Deref;
use std::time::Duration;

use kube::{Api, Client, Resource};
use serde_json::Value;
use tokio::sync::{OnceCell, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Everything one test works with. Create one per test: its clients belong to the test's
/// tokio runtime.
pub struct Context {
    pub env: TestEnv,
    pub client: Client,
    pub ns: TestNamespace,
    pub emulator: Emulator,
    pub aws: AwsAdmin,
}

impl Context {
    /// Starts the environment if needed, creates a namespace whose name starts with `prefix`,
    /// and a LinkPolicy named like it that permits the namespace everything the tests ask for
    /// ([`permissive`]): the operator enforces tenancy.
    pub async fn new(prefix: &str) -> Self {
        let ctx = Self::without_policy(prefix).await;
        let root = ctx.aws.ensure_org().await;
        let ns = &ctx.ns.name;
        apply_policy(&ctx.client, ns, permissive(ns, &root)).await;
        ctx
    }

    /// Like [`Context::new`], with no LinkPolicy selecting the namespace: nothing in it is
    /// permitted until the test applies one (named like the namespace, so cleanup removes it).
    pub async fn without_policy(prefix: &str) -> Self {
        Self::on(env(), prefix).await
    }

    /// Like [`Context::without_policy`], in the environment `env` (e.g. a [`PrivateEnv`]).
    pub async fn on(env: TestEnv, prefix: &str) -> Self {
        let client = env.client().await;
        let ns = TestNamespace::create(&client, prefix).await;
        let emulator = Emulator::new(&env);
        let aws = AwsAdmin::new(&env, emulator.clone()).await;
        Self {
            env,
            client,
            ns,
            emulator,
            aws,
        }
    }

    /// What StackSet tests need of the emulator: the organization, trusted access between
    /// StackSets and Organizations, and operations as fast as `timing` says
    /// (`{"base_seconds": …, "seconds_per_wave": …}`).
    pub async fn prepare_stack_sets(&self, timing: Value) {
        self.aws.ensure_org().await;
        self.aws.set_trusted_access(true).await;
        self.emulator.put("/stacksets/timing", timing).await;
    }

    /// Runs `init` once per test binary: the first test to get here runs it, the others wait.
    pub async fn once(&self, cell: &'static OnceCell<()>, init: impl AsyncFnOnce(&Context)) {
        cell.get_or_init(|| async { init(self).await }).await;
    }

    /// The objects of kind `K` in the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// The operator watching the test's namespace, with `flags`.
    pub fn operator(&self, flags: &[&str]) -> Operator {
        Operator::start(&self.env, &self.ns.name, flags)
    }

    /// The timeouts, from the emulator's latencies as configured now.
    pub async fn budget(&self) -> Budget {
        Budget::read(&self.emulator).await
    }

    /// Reasons of the Events about `name` in the test's namespace, oldest first.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        event_reasons(&self.client, &self.ns.name, name).await
    }

    pub async fn cleanup(self) {
        delete_policy(&self.client, &self.ns.name).await;
        self.ns.cleanup().await;
    }
}

/// Whether a test changes emulator-wide settings (trusted access, throttling, injected
/// failures): such tests run alone, the others together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    Shared,
    Exclusive,
}

/// A test's turn under a lock of [`Share`].
pub enum Turn {
    Shared(RwLockReadGuard<'static, ()>),
    Exclusive(RwLockWriteGuard<'static, ()>),
}

impl Turn {
    pub async fn take(lock: &'static RwLock<()>, share: Share) -> Self {
        match share {
            Share::Shared => Self::Shared(lock.read().await),
            Share::Exclusive => Self::Exclusive(lock.write().await),
        }
    }
}

/// A test's context with the operator running in its namespace, and the budget of timeouts
/// as the emulator is configured when it starts.
pub struct Running {
    pub ctx: Context,
    pub operator: Operator,
    pub budget: Budget,
    _turn: Turn,
}

impl Running {
    /// Waits for the test's turn under `lock`, creates its context, runs `init` once per test
    /// binary (emulator settings the budget depends on) and starts the operator with `flags`.
    pub async fn start(
        prefix: &str,
        flags: &[&str],
        (lock, share): (&'static RwLock<()>, Share),
        setup: (&'static OnceCell<()>, impl AsyncFnOnce(&Context)),
    ) -> Self {
        let turn = Turn::take(lock, share).await;
        let ctx = Context::new(prefix).await;
        ctx.once(setup.0, setup.1).await;
        let operator = ctx.operator(flags);
        let budget = ctx.budget().await;
        Self {
            ctx,
            operator,
            budget,
            _turn: turn,
        }
    }

    /// Stops the operator (SIGTERM), then removes the namespace.
    pub async fn cleanup(self) {
        let Self {
            ctx, mut operator, ..
        } = self;
        operator.terminate(Duration::from_secs(10));
        ctx.cleanup().await;
    }
}

impl Deref for Running {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.ctx
    }
}
