//! The MemberAccount controller: one AWS account created through Organizations, exactly once,
//! placed under its parent, tagged, and linked with a child LinkedAccount for its access role.
//!
//! The driver reads as its phases: [`create`] (the exactly-once CreateAccount protocol) or
//! [`adopt`] (an existing account by `spec.accountId`),
//! [`converge`] (placement, tags, state, the child link) and [`cleanup`] (Retain or Close). Each
//! gathers what AWS and the cluster say, asks a pure function in [`decide`] what to do, and
//! performs the one side effect it names. Nothing waits on AWS inside a reconcile: requests are
//! polled by requeueing.

mod adopt;
mod cleanup;
mod converge;
mod create;
pub mod decide;
mod permit;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use self::decide::{Found, Identity, Lookup, Report, Seen};
use crate::api::conditions::{ACCOUNT_CREATED, READY, STALLED};
use crate::api::labels;
use crate::api::member_account::reason;
use crate::api::{LinkedAccount, MemberAccount, MemberAccountStatus};
use crate::aws::{Accounts, AwsError};
use crate::controller::conditions::Desired;
use crate::controller::events;
use crate::controller::recorder::Recorder;
use crate::controller::runner::{self, Failure, Reconciler};
use crate::controller::status::{self, Transitions};
use crate::controller::tenancy::{self, Gate, NOT_PERMITTED_RECHECK};
use crate::runtime::ControllerReadiness;
use crate::telemetry::Metrics;

pub const CONTROLLER: &str = "memberaccount";

/// Condition transitions that become Events.
const TRANSITIONS: Transitions = Transitions {
    types: &[READY, STALLED, ACCOUNT_CREATED],
    action: "Reconcile",
    fleet: false,
};

/// At most this many reads per decision loop: each [`Lookup`] is made once, so a loop that
/// runs longer is a bug in a decision, reported instead of spinning.
const MAX_READS: usize = 8;

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often a CreateAccount request in progress is polled.
    pub poll_interval: Duration,
    /// How often a Ready account is checked again (parent, tags, state).
    pub resync_interval: Duration,
    /// This cluster's identity (`--cluster-id`): the cluster tag of every account.
    pub cluster_id: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(10),
            resync_interval: Duration::from_secs(600),
            cluster_id: String::new(),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub accounts: Arc<dyn Accounts>,
    pub recorder: Recorder,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub gate: Arc<Gate>,
}

impl Context {
    pub fn new(
        client: Client,
        accounts: Arc<dyn Accounts>,
        recorder: Recorder,
        settings: Settings,
        metrics: Arc<Metrics>,
        gate: Arc<Gate>,
    ) -> Self {
        Self {
            gate,
            client,
            accounts,
            recorder,
            settings,
            metrics,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// Cleanup cannot finish yet; the finalizer stays and the object is looked at again later.
    #[error("waiting: {0}")]
    Waiting(String, Duration),
    /// A decision kept asking for reads: a bug, backed off like any error.
    #[error("a decision kept asking for reads; the last was {0:?}")]
    Undecided(Option<Lookup>),
}

impl Reconciler for Context {
    type Object = MemberAccount;
    type Error = Error;
    const NAME: &'static str = CONTROLLER;
    const FINALIZER: Option<&'static str> = Some(labels::MEMBER_ACCOUNT_FINALIZER);

    fn client(&self) -> Client {
        self.client.clone()
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn apply(&self, member: &MemberAccount) -> Result<Action, Error> {
        apply(member, self).await
    }

    async fn cleanup(&self, member: &MemberAccount) -> Result<Action, Error> {
        cleanup::cleanup(member, self).await
    }

    fn classify(error: &Error) -> Failure {
        match error {
            Error::Waiting(_, wait) => Failure::Waiting(*wait),
            Error::Aws(_) => Failure::Aws,
            Error::Kube(e) => runner::kube_failure(e),
            Error::Undecided(_) => Failure::Other,
        }
    }
}

/// Runs the controller until `shutdown` resolves; marks `readiness` once its cache synced.
pub async fn run(
    ctx: Arc<Context>,
    members: Api<MemberAccount>,
    children: Api<LinkedAccount>,
    concurrency: u16,
    readiness: ControllerReadiness,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let controller = runner::trimmed(members, watcher::Config::default().any_semantic())
        .owns(
            children,
            watcher::Config::default().labels(labels::MEMBER_ACCOUNT_LABEL),
        )
        .reconcile_all_on(ctx.gate.changes())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    runner::run(controller, ctx, readiness, shutdown).await;
}

/// The account first (found, resumed or created), then everything that follows from the spec.
async fn apply(member: &MemberAccount, ctx: &Context) -> Result<Action, Error> {
    let mut pass = Pass::new(member, ctx);
    if let Some(message) = permit::refusal(member, ctx).await? {
        pass.write(&tenancy::refused(reason::NOT_PERMITTED, &message))
            .await?;
        return Ok(Action::requeue(NOT_PERMITTED_RECHECK));
    }
    let account = match (pass.next.account_id.clone(), member.spec.account_id.clone()) {
        (Some(account), _) => account,
        (None, Some(id)) => match adopt::adopt(&mut pass, &id).await? {
            adopt::Adopted::Done(account) => account,
            adopt::Adopted::Wait(action) => return Ok(action),
        },
        (None, None) => match create::create(&mut pass).await? {
            create::Creation::Done(account) => {
                pass.next.account_id = Some(account.clone());
                account
            }
            create::Creation::Wait(action) => return Ok(action),
        },
    };
    converge::converge(&mut pass, &account).await
}

/// One pass: the status as read, the status being built, and how to write it.
struct Pass<'a> {
    member: &'a MemberAccount,
    ctx: &'a Context,
    api: Api<MemberAccount>,
    current: MemberAccountStatus,
    next: MemberAccountStatus,
    now: Timestamp,
}

impl<'a> Pass<'a> {
    fn new(member: &'a MemberAccount, ctx: &'a Context) -> Self {
        let current = member.status.clone().unwrap_or_default();
        Self {
            member,
            ctx,
            api: Api::namespaced(ctx.client.clone(), &member.namespace().unwrap_or_default()),
            next: current.clone(),
            current,
            now: Timestamp::now(),
        }
    }

    fn generation(&self) -> Option<i64> {
        self.member.meta().generation
    }

    /// Writes `next` as it is: used to record the CreateAccount request the moment it exists.
    async fn save(&mut self) -> Result<(), Error> {
        status::patch_status(&self.api, self.member, &self.next).await?;
        self.current = self.next.clone();
        Ok(())
    }

    /// Writes `next` with the report's conditions when anything but timestamps changed;
    /// Events on transitions.
    async fn report(&mut self, report: &Report) -> Result<(), Error> {
        self.write(&report.conditions()).await
    }

    /// Writes `next` with `conditions` when anything but timestamps changed; Events on
    /// transitions.
    async fn write(&mut self, conditions: &[Desired]) -> Result<(), Error> {
        let next = status::next(
            &self.current,
            self.next.clone(),
            Some(conditions),
            self.generation(),
            self.now,
        );
        let ctx = self.ctx;
        let written = status::write(
            &self.api,
            &ctx.recorder,
            &TRANSITIONS,
            self.member,
            &self.current,
            next,
        )
        .await?;
        if let Some(written) = written {
            self.current = written.clone();
            self.next = written;
        }
        Ok(())
    }
}

/// What proves an account or a request this object's, in cluster `cluster`.
fn identity(member: &MemberAccount, cluster: &str) -> Identity {
    Identity {
        email: member.spec.email.clone().unwrap_or_default(),
        account_name: member.spec.account_name.clone().unwrap_or_default(),
        owner: labels::owner(&member.namespace().unwrap_or_default(), &member.name_any()),
        cluster: cluster.to_string(),
    }
}

/// Asks `step` again and again, making each read it asks for, until it names something else.
/// Each [`Lookup`] fills its part of [`Seen`] once, so a decision that asks more than
/// [`MAX_READS`] times is a bug, reported as an error instead of spinning.
async fn decided<T>(
    accounts: &dyn Accounts,
    who: &Identity,
    mut step: impl FnMut(&mut Seen) -> Result<T, Lookup>,
) -> Result<T, Error> {
    let mut seen = Seen::default();
    let mut last = None;
    for _ in 0..MAX_READS {
        match step(&mut seen) {
            Ok(done) => return Ok(done),
            Err(lookup) => {
                look(accounts, who, &lookup, &mut seen).await?;
                last = Some(lookup);
            }
        }
    }
    Err(Error::Undecided(last))
}

/// Makes one read a decision asked for, into `seen`.
async fn look(
    accounts: &dyn Accounts,
    who: &Identity,
    lookup: &Lookup,
    seen: &mut Seen,
) -> Result<(), Error> {
    match lookup {
        Lookup::Request(id) => seen.request = Some(accounts.create_request(id).await?),
        Lookup::Account(id) => {
            let info = accounts.account(id).await?;
            seen.accounts.insert(id.clone(), info);
        }
        Lookup::ByEmail => {
            let found = match accounts.account_by_email(&who.email).await? {
                None => None,
                Some(account) => {
                    let tags = accounts.tags(&account.id).await?;
                    Some(Found {
                        owned: decide::owned(&tags, who),
                        id: account.id,
                    })
                }
            };
            seen.by_email = Some(found);
        }
        Lookup::Tags(id) => {
            let tags = accounts.tags(id).await?;
            seen.tags.insert(id.clone(), tags);
        }
        Lookup::Parent(id) => {
            let parent = accounts.parent_of(id).await?;
            seen.parents.insert(id.clone(), parent);
        }
        Lookup::InProgress => {
            let pending = accounts.requests_in_progress().await?;
            seen.in_progress = Some(decide::creation::under_name(pending, who));
        }
    }
    Ok(())
}

async fn publish(
    member: &MemberAccount,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    events::publish(
        &ctx.recorder,
        &member.object_ref(&()),
        type_,
        reason,
        note,
        "Reconcile",
    )
    .await;
}
