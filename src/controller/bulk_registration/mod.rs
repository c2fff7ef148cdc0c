//! The BulkRegistration controller: one StackSet, many accounts, one child LinkedAccount per
//! account.
//!
//! A pass runs the phases in order — [`token`], [`targets`], [`definition`] (and the StackSet),
//! [`operation`] (poll the one in flight, else plan and start the next: [`plan`]), [`children`],
//! [`status`] — and never blocks on AWS: an operation in flight is polled with a short requeue.
//! A phase that needs a human ends the pass with a [`Stall`]. The single-writer rule of StackSets
//! is kept by recording the operation in status before it is started and by starting the next
//! one only after the previous one finished. [`cleanup`] is the finalizer.

pub mod children;
pub mod cleanup;
mod context;
pub mod definition;
pub mod drift;
pub mod import;
pub mod management;
pub mod memo;
pub mod operation;
pub mod ownership;
mod permit;
pub mod plan;
pub mod preflight;
mod requests;
pub mod status;
pub mod targets;
pub mod template;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

pub use self::context::{Context, Settings};
use self::definition::Definition;
use self::memo::Want;
use self::operation::{Next, Poll};
use self::permit::Permit;
use self::plan::Desired;
use self::status::{Facts, Headline, Stall};
use self::targets::TargetsError;
use self::token::{Token, TokenError};
use crate::api::bulk_registration::{RotationPhase, event, reason};
use crate::api::conditions::{INSTANCES_READY, READY, STACK_SET_READY, STALLED};
use crate::api::labels;
use crate::api::{BulkRegistration, BulkRegistrationStatus};
use crate::aws::AwsError;
use crate::aws::stacksets::{Instance, StackSetRef};
use crate::controller::coalesce::coalesce;
use crate::controller::conditions::Desired as Cond;
use crate::controller::events;
use crate::controller::link_cache::{Changes, LinkCache, owner_changes};
use crate::controller::runner::{self, Failure, Reconciler};
use crate::controller::status::{self as status_writer, Transitions};
use crate::controller::tenancy::NOT_PERMITTED_RECHECK;
use crate::runtime::ControllerReadiness;
use crate::telemetry::Metrics;

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "bulkregistration";
/// Label on every child LinkedAccount, naming its BulkRegistration.
const CHILD_LABEL: &str = labels::BULK_REGISTRATION_LABEL;
/// Condition transitions that become Events.
const TRANSITIONS: Transitions = Transitions {
    types: &[READY, STALLED, STACK_SET_READY, INSTANCES_READY],
    action: "Reconcile",
    fleet: false,
};
/// How soon a stalled registration is looked at again (spec, labelled ConfigMap and child
/// changes trigger a pass anyway).
const STALLED_RECHECK: Duration = Duration::from_secs(60);
/// Children's changes cause at most one pass of their registration per window (plus one at
/// its end): a fleet of verifying children costs passes by time, not by children.
pub const CHILD_WINDOW: Duration = Duration::from_secs(3);
/// How soon a registration whose operation AWS refused is looked at again.
const REJECTED_RECHECK: Duration = Duration::from_secs(300);

/// Errors that end a reconcile early; the object is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// Cleanup is under way in AWS: the finalizer stays until it finishes. (A finalizer
    /// cleanup that returns `Ok` is done, so waiting is expressed as this error.)
    #[error("waiting: {0}")]
    Waiting(String, Duration),
}

/// Why a pass ends before its last phase.
enum Halt {
    /// Needs a human: written as conditions, looked at again later.
    Stalled(Stall),
    /// Retried with backoff.
    Failed(Error),
}

impl From<Error> for Halt {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

impl From<kube::Error> for Halt {
    fn from(e: kube::Error) -> Self {
        Self::Failed(e.into())
    }
}

impl From<AwsError> for Halt {
    fn from(e: AwsError) -> Self {
        Self::Failed(e.into())
    }
}

impl From<TokenError> for Halt {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Blocked { reason, message } => Self::Stalled(Stall::new(reason, message)),
            TokenError::Kube(e) => Self::Failed(e.into()),
        }
    }
}

impl From<TargetsError> for Halt {
    fn from(e: TargetsError) -> Self {
        match e {
            // Never act on a partial list: nothing is created or deleted until it is fixed.
            TargetsError::Invalid { reason, message } => Self::Stalled(Stall::new(reason, message)),
            TargetsError::Aws(e) if !e.class.is_retryable() => {
                Self::Stalled(Stall::new(reason::AWS_REJECTED, aws_text(&e)))
            }
            TargetsError::Aws(e) => Self::Failed(e.into()),
            TargetsError::Kube(e) => Self::Failed(e.into()),
        }
    }
}

/// AWS's answer as a condition message: the call, the code, the message.
fn aws_text(err: &AwsError) -> String {
    match &err.code {
        Some(code) => format!("{}: {code}: {}", err.operation, err.message),
        None => format!("{}: {}", err.operation, err.message),
    }
}

impl Reconciler for Context {
    type Object = BulkRegistration;
    type Error = Error;
    const NAME: &'static str = CONTROLLER;
    const FINALIZER: Option<&'static str> = Some(labels::BULK_REGISTRATION_FINALIZER);

    fn client(&self) -> Client {
        self.client.clone()
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn apply(&self, bulk: &BulkRegistration) -> Result<Action, Error> {
        apply(bulk, self).await
    }

    async fn cleanup(&self, bulk: &BulkRegistration) -> Result<Action, Error> {
        cleanup::cleanup(bulk, self).await
    }

    fn classify(error: &Error) -> Failure {
        match error {
            Error::Waiting(_, wait) => Failure::Waiting(*wait),
            Error::Aws(_) => Failure::Aws,
            Error::Kube(e) => runner::kube_failure(e),
        }
    }
}

/// Runs the controller until `shutdown` resolves; marks `readiness` once its cache synced.
/// Children are read from the namespace's shared cache `links`; their changes that a
/// registration reads (`children`, [`owner_changes`]) and their deletions trigger their
/// registration at most once per [`CHILD_WINDOW`].
pub async fn run(
    ctx: Arc<Context>,
    bulks: Api<BulkRegistration>,
    (links, children): (LinkCache, Changes),
    config_maps: Api<ConfigMap>,
    concurrency: u16,
    readiness: ControllerReadiness,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // Children are read from the cache: a pass before it synced would see none and rewrite
    // them all.
    let mut shutdown = Box::pin(shutdown);
    tokio::select! {
        synced = runner::until_ready(&links.store) => if !synced { return },
        () = &mut shutdown => return,
    }
    ctx.children.add(links.store.clone());
    let changed = owner_changes(children, links.store.clone()).map(|child| owner_of(&*child));
    let deleted = links.deleted(CHILD_LABEL).map(|child| owner_of(&child));
    let owners = futures::stream::select(changed, deleted).filter_map(std::future::ready);
    let controller =
        runner::trimmed_ignoring_status(bulks, watcher::Config::default().any_semantic())
            .reconcile_on(coalesce(owners, CHILD_WINDOW))
            .reconcile_all_on(ctx.gate.changes())
            .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    // A change to a labelled ConfigMap (account list or template) is picked up at once; the
    // rest of a namespace's ConfigMaps are neither watched nor cached, and a registration reads
    // the ones it names by name on every pass.
    let referencing = controller.store();
    let labelled = watcher::Config::default().labels(&format!(
        "{}={}",
        labels::WATCH_LABEL,
        labels::WATCH_LABEL_VALUE
    ));
    let controller = controller.watches(config_maps, labelled, move |cm| {
        let ns = cm.namespace();
        let name = cm.name_any();
        referencing
            .state()
            .into_iter()
            .filter(|b| b.namespace() == ns && references(b, &name))
            .map(|b| ObjectRef::from_obj(&*b))
            .collect::<Vec<_>>()
    });
    runner::run(controller, ctx, readiness, shutdown).await;
}

/// The registration that controls `child`, if any.
fn owner_of<K: Resource>(child: &K) -> Option<ObjectRef<BulkRegistration>> {
    let ns = child.namespace();
    child
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "BulkRegistration")
        .map(|o| ObjectRef::new(&o.name).within(ns.as_deref().unwrap_or_default()))
}

/// Whether the registration reads ConfigMap `name` (account lists or the template).
fn references(bulk: &BulkRegistration, name: &str) -> bool {
    let spec = &bulk.spec;
    spec.targets
        .accounts_from
        .iter()
        .any(|s| s.config_map_ref.name == name)
        || spec
            .template
            .config_map_ref
            .as_ref()
            .is_some_and(|r| r.name == name)
}

/// One reconcile of one registration: the object, the StackSet it addresses, the status it
/// started from and the status it builds.
pub struct Pass<'a> {
    bulk: &'a BulkRegistration,
    ctx: &'a Context,
    set: StackSetRef,
    current: BulkRegistrationStatus,
    next: BulkRegistrationStatus,
    now: Timestamp,
    /// Failures besides the instances': accounts whose stack to import could not be looked at.
    extra_failures: Vec<crate::api::bulk_registration::InstanceFailure>,
    /// The management account's plain stack, read as an instance ([`management`]).
    management: Option<Instance>,
    /// Whether the pass wrote status (see [`Settings::after_settled`]).
    wrote: bool,
}

/// What the phases before the operation found.
struct Inputs {
    token: Token,
    desired: Desired,
    definition: Definition,
}

impl<'a> Pass<'a> {
    fn new(bulk: &'a BulkRegistration, ctx: &'a Context) -> Self {
        let current = bulk.status.clone().unwrap_or_default();
        let set = definition::stack_set_ref(bulk, &ctx.settings.cluster_id);
        Self {
            bulk,
            ctx,
            // A recorded name stays until [`ownership::locate`] has looked at its StackSet.
            next: BulkRegistrationStatus {
                stack_set_name: current.stack_set_name.clone().or(Some(set.name.clone())),
                ..current.clone()
            },
            set,
            current,
            now: Timestamp::now(),
            extra_failures: Vec::new(),
            management: None,
            wrote: false,
        }
    }

    fn generation(&self) -> Option<i64> {
        self.bulk.meta().generation
    }

    fn api(&self) -> Api<BulkRegistration> {
        let ns = self.bulk.namespace().unwrap_or_default();
        Api::namespaced(self.ctx.client.clone(), &ns)
    }

    /// Writes `next` with `conds` when that says something new (timestamps aside), with an
    /// Event per condition transition.
    async fn write(&mut self, conds: Vec<Cond>) -> Result<(), Error> {
        let generation = self.generation();
        let next = status_writer::next(
            &self.current,
            self.next.clone(),
            Some(&conds),
            generation,
            self.now,
        );
        let recorder = &self.ctx.recorder;
        let api = self.api();
        if let Some(written) =
            status_writer::write(&api, recorder, &TRANSITIONS, self.bulk, &self.current, next)
                .await?
        {
            self.next = written.clone();
            self.current = written;
            self.wrote = true;
        }
        Ok(())
    }

    /// Writes `next` as it is (used to record an operation before starting it).
    async fn save(&self) -> Result<(), Error> {
        status_writer::patch_status(&self.api(), self.bulk, &self.next).await?;
        Ok(())
    }

    /// The registration's stack instances: listed again when `want` says the last listing
    /// may not hold any more ([`memo`]).
    async fn instances(&self, want: Want) -> Result<Arc<Vec<Instance>>, AwsError> {
        let uid = self.bulk.meta().uid.clone().unwrap_or_default();
        let memo = &self.ctx.instances;
        if let Some(listed) = memo.get(&uid, &self.set.name, want) {
            return Ok(listed);
        }
        let listed = self.ctx.stacksets.instances(&self.set).await?;
        Ok(memo.put(&uid, &self.set.name, listed))
    }

    async fn publish(&self, type_: EventType, reason: &str, note: &str) {
        let regarding = self.bulk.object_ref(&());
        events::publish(
            &self.ctx.recorder,
            &regarding,
            type_,
            reason,
            note,
            "Reconcile",
        )
        .await;
    }

    /// The last phases: the children, then status from what the instances and the children
    /// say under `headline`. Returns whether the registration is Ready.
    async fn settle(
        &mut self,
        inputs: &Inputs,
        instances: &[Instance],
        headline: Headline,
    ) -> Result<bool, Error> {
        let management = self.management.clone();
        let (desired, instances) =
            management::with_management(&inputs.desired, instances, management.as_ref());
        let (desired, instances) = (desired.as_ref(), instances.as_ref());
        let observed = status::observe(desired, instances);
        let stack_set_current =
            self.next.template_hash.as_deref() == Some(inputs.definition.hash.as_str());
        let settled = matches!(headline, Headline::Summary) && stack_set_current;
        let verification = children::sync(self, desired, instances, &inputs.token, settled).await?;
        let mut summary = status::summary(desired, &observed, &verification);
        summary.drifted = drift::summary(self.bulk, desired, instances);
        let facts = Facts {
            targets: summary.targets,
            observed: &observed,
            verification: &verification,
            stack_set_current,
        };
        let conds = status::conditions(&facts, &headline);
        // The replaced token goes once the StackSet no longer trusts it (narrowed, and that
        // update done); an overlap narrows once every deployed child uses the new token.
        let phase = self.next.external_id_rotation;
        if !self.next.external_id_retired_secrets.is_empty()
            && phase != Some(RotationPhase::Overlap)
            && token::retirement_due(&headline, stack_set_current, &verification)
        {
            let ns = self.bulk.namespace().unwrap_or_default();
            let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &ns);
            token::retire(&secrets, self.bulk, &mut self.next).await?;
        }
        self.next.external_id_rotation = if self.next.external_id_retired_secrets.is_empty() {
            None
        } else {
            token::next_phase(phase, settled, &verification)
        };
        if phase != self.next.external_id_rotation {
            let (from, to) = (phase, self.next.external_id_rotation);
            tracing::info!(name = %self.bulk.name_any(), from = token::phase_name(from), to = token::phase_name(to), "token rotation moves on");
        }
        self.next.summary = Some(summary);
        self.next.failures = observed.failures;
        let room = status::MAX_FAILURES.saturating_sub(self.next.failures.len());
        (self.next.failures).extend(self.extra_failures.iter().take(room).cloned());
        let ready = status::is_ready(&conds);
        self.write(conds).await?;
        crate::failpoint!(crate::failpoints::after_rotation(
            phase,
            self.next.external_id_rotation
        ));
        Ok(ready)
    }
}

async fn apply(bulk: &BulkRegistration, ctx: &Context) -> Result<Action, Error> {
    let mut pass = Pass::new(bulk, ctx);
    match gated(&mut pass).await {
        Ok(action) => Ok(action),
        Err(Halt::Stalled(stall)) => {
            pass.write(status::stalled(&stall)).await?;
            Ok(Action::requeue(STALLED_RECHECK))
        }
        Err(Halt::Failed(e)) => Err(e),
    }
}

/// The tenancy gate, then the phases: nothing in AWS or Kubernetes is changed for a
/// registration no LinkPolicy permits.
async fn gated(pass: &mut Pass<'_>) -> Result<Action, Halt> {
    if let Some(value) = requests::verify(pass.bulk, &pass.current) {
        // Targets and instances are read on every pass; OU membership comes from a cache.
        pass.ctx.gate.refresh_membership();
        pass.next.last_handled_verify_request = Some(value);
    }
    match permit::permit(pass.bulk, pass.ctx).await? {
        Permit::Granted(resolved) => phases(pass, resolved).await,
        Permit::Refused(message) => {
            let stall = Stall::new(reason::NOT_PERMITTED, message);
            pass.write(status::stalled(&stall)).await?;
            Ok(Action::requeue(NOT_PERMITTED_RECHECK))
        }
    }
}

/// The phases of a pass, in order (`resolved`: the targets, when the gate resolved them).
async fn phases(pass: &mut Pass<'_>, resolved: Option<Desired>) -> Result<Action, Halt> {
    let (bulk, ctx) = (pass.bulk, pass.ctx);
    let ns = bulk.namespace().unwrap_or_default();
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);

    // Delegated-admin preflight (STS once, Organizations): before any StackSet call.
    preflight::gate(pass.set.call_as, ctx).await?;

    // Token (Kubernetes).
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let rotation = requests::rotation(bulk, &pass.current);
    if let requests::Rotation::NotPossible(value) = &rotation {
        let note = requests::not_possible_note(bulk);
        pass.publish(EventType::Warning, event::ROTATE_NOT_POSSIBLE, &note)
            .await;
        pass.next.last_handled_rotate_request = Some(value.clone());
    }
    let requested = matches!(rotation, requests::Rotation::Rotate(_));
    let mut token = token::ensure(&secrets, bulk, &pass.current, pass.now, requested).await?;
    if let requests::Rotation::Rotate(value) = rotation
        && token.replaced.is_some()
    {
        pass.next.last_handled_rotate_request = Some(value);
    }
    pass.next.external_id_secret = Some(token.secret_name.clone());
    pass.next.external_id_rotated_time = token.rotated.clone();
    let retired = &mut pass.next.external_id_retired_secrets;
    if let Some(replaced) = &token.replaced
        && !retired.contains(replaced)
    {
        retired.push(replaced.clone());
        let builtin = bulk.spec.template.builtin.is_some();
        pass.next.external_id_rotation = Some(token::first_phase(builtin));
    } else if !retired.is_empty() && pass.next.external_id_rotation.is_none() {
        // Replaced before rotations overlapped: the StackSet trusts the new token only.
        pass.next.external_id_rotation = Some(RotationPhase::Narrowing);
    }
    token.previous = token::previous(&secrets, bulk, &pass.next).await?;
    if token.previous.is_none() && pass.next.external_id_rotation == Some(RotationPhase::Overlap) {
        // The replaced token cannot be read any more: nothing to overlap with.
        pass.next.external_id_rotation = Some(RotationPhase::Narrowing);
    }

    // Targets (Kubernetes, Organizations).
    let region = &ctx.settings.region;
    let mut desired = match resolved {
        Some(desired) => desired,
        None => {
            let max = ctx.settings.max_targets;
            let (org, walks) = (ctx.org.as_ref(), &ctx.walks);
            targets::resolve(bulk, &config_maps, org, walks, region, max).await?
        }
    };

    // Definition (Kubernetes, STS once), then the StackSet (CloudFormation).
    let definition = definition::build(bulk, ctx, &config_maps, &token).await?;
    definition::ensure_stack_set(pass, &definition).await?;
    // The management account's plain stack (CloudFormation, beside the StackSet's operations).
    management::converge(pass, &definition, &mut desired).await?;
    let inputs = Inputs {
        token,
        desired,
        definition,
    };

    // The operation in flight (CloudFormation).
    let mut finished = None;
    let polled = operation::poll(pass).await?;
    operation::credit_update(pass, &polled, &inputs.definition.hash);
    match polled {
        Poll::Running { message } => {
            let instances = pass.instances(Want::Progress).await?;
            let action = pass.next.operation.as_ref().map(|o| o.action.clone());
            let headline = Headline::running(&action.unwrap_or_default(), message);
            pass.settle(&inputs, &instances, headline).await?;
            return Ok(Action::requeue(ctx.settings.poll_interval));
        }
        Poll::Finished { ok, note } => {
            finished = pass.current.operation.clone();
            let (type_, why) = if ok {
                (EventType::Normal, event::OPERATION_SUCCEEDED)
            } else {
                (EventType::Warning, event::OPERATION_FAILED)
            };
            pass.publish(type_, why, &note).await;
        }
        Poll::Idle => {}
    }

    // Instances and the next operation (CloudFormation; the plan is pure).
    let want = if finished.is_some() || requests::verify(bulk, &pass.current).is_some() {
        Want::Fresh
    } else {
        Want::Settled
    };
    let instances = pass.instances(want).await?;
    if let Some(op) = finished {
        drift::finished(pass, &inputs.desired, &instances, &op).await;
    }
    let hash = &inputs.definition.hash;
    let current = pass.next.template_hash.as_deref() == Some(hash.as_str());
    let uid = bulk.meta().uid.clone().unwrap_or_default();
    let generation = pass.generation().unwrap_or_default();
    let lookups = if current {
        import::look_up(pass, &inputs.desired, &instances).await?
    } else {
        import::Lookups::default()
    };
    pass.extra_failures = import::failures(&lookups);
    let step = import::next_step(&inputs.desired, &instances, current, &lookups);
    let id_of = |step: &plan::Step| plan::operation_id(&uid, generation, hash, step);
    match operation::next(step, id_of, pass.next.last_operation.as_ref()) {
        Next::Start { step, id } => {
            Ok(operation::begin(pass, &inputs, &instances, step, id).await?)
        }
        Next::Refused(stall) => {
            pass.settle(&inputs, &instances, Headline::Stalled(stall))
                .await?;
            Ok(Action::requeue(REJECTED_RECHECK))
        }
        Next::Settle => {
            if let Some((step, id)) = drift::due_for(pass, &inputs.desired, &instances, &uid) {
                return Ok(operation::begin(pass, &inputs, &instances, step, id).await?);
            }
            let ready = pass.settle(&inputs, &instances, Headline::Summary).await?;
            // A rotation counts verifications, which do not trigger the registration.
            let moving = pass.wrote || pass.next.external_id_rotation.is_some();
            Ok(Action::requeue(ctx.settings.after_settled(ready, moving)))
        }
    }
}
