//! The BulkRegistration controller: one StackSet, many accounts, one child LinkedAccount per
//! account.
//!
//! Each reconcile is a pass of named phases — token, targets, template, StackSet, operation,
//! instances, plan, children, status — that never blocks on AWS: an operation in flight is
//! polled with a short requeue. The single-writer rule of StackSets is kept by recording the
//! operation in status before it is started and by starting the next one only after the
//! previous one finished.

pub mod plan;
pub mod targets;
pub mod template;
pub mod token;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::OnceCell;
use tracing::info;

use self::plan::{Desired, Step};
use self::targets::TargetsError;
use self::token::TokenError;
use crate::api::bulk_registration::{
    BulkDeletionPolicy, CallAs as SpecCallAs, ConcurrencyMode, PermissionModel, RegionConcurrency,
    StackSetOperation, Summary,
};
use crate::api::conditions::{
    INSTANCES_READY, READY, RECONCILING, ROLE_ASSUMABLE, STACK_SET_READY, STALLED,
};
use crate::api::labels;
use crate::api::linked_account::{DEFAULT_ROLE_NAME, StackInstanceRef};
use crate::api::{BulkRegistration, BulkRegistrationStatus, LinkedAccount};
use crate::aws::stacksets::{
    CallAs, DetailedStatus, Instance, InstanceOperation, OperationStatus, Permissions, Preferences,
    StackSetDefinition, StackSetRef, TemplateBody,
};
use crate::aws::{AwsError, ErrorClass, HubIdentity, OrgUnits, StackSets};
use crate::controller::conditions::{self, Desired as Cond, Status};
use crate::controller::events;
use crate::controller::runner::{self, Failure, Reconciler};
use crate::runtime::ControllerReadiness;
use crate::telemetry::Metrics;

/// The controller's name in metrics and logs.
pub const CONTROLLER: &str = "bulkregistration";
const FINALIZER: &str = labels::BULK_REGISTRATION_FINALIZER;
const CHILD_LABEL: &str = labels::BULK_REGISTRATION_LABEL;
const FIELD_MANAGER: &str = labels::STATUS_MANAGER;
const CHILD_MANAGER: &str = labels::BULK_REGISTRATION_CHILD_MANAGER;

/// Condition reasons of BulkRegistration.
pub mod reason {
    pub const READY: &str = "Ready";
    pub const STACK_SET_CURRENT: &str = "StackSetCurrent";
    pub const STACK_SET_PENDING: &str = "StackSetPending";
    pub const TRUSTED_ACCESS_DISABLED: &str = "TrustedAccessDisabled";
    pub const AWS_REJECTED: &str = "AwsRejected";
    pub const OPERATION_RUNNING: &str = "OperationRunning";
    pub const OPERATION_IN_PROGRESS: &str = "OperationInProgress";
    pub const INSTANCES_CURRENT: &str = "InstancesCurrent";
    pub const INSTANCES_PENDING: &str = "InstancesPending";
    pub const INSTANCES_FAILED: &str = "InstancesFailed";
    pub const VERIFYING: &str = "Verifying";
    pub const NOT_ASSUMABLE: &str = "RolesNotAssumable";
    pub const DELETING: &str = "Deleting";
}

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The operator's region: where StackSets live, and the default deployment region.
    pub region: String,
    pub partition: String,
    /// How often an operation in flight is polled.
    pub poll_interval: Duration,
    /// How often a settled registration is looked at again (drift, auto-deployed accounts).
    pub resync_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            partition: "aws".into(),
            poll_interval: Duration::from_secs(5),
            resync_interval: Duration::from_secs(300),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub stacksets: Arc<dyn StackSets>,
    pub org: Arc<dyn OrgUnits>,
    pub hub: Arc<dyn HubIdentity>,
    pub recorder: Recorder,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    hub_account: OnceCell<String>,
}

impl Context {
    pub fn new(
        client: Client,
        aws: Arc<crate::aws::AwsClients>,
        recorder: Recorder,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            stacksets: aws.clone(),
            org: aws.clone(),
            hub: aws,
            recorder,
            settings,
            metrics,
            hub_account: OnceCell::new(),
        }
    }
}

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

impl From<TokenError> for Error {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Kube(k) => Self::Kube(k),
            // Blocked tokens are handled before conversion; this keeps the type total.
            TokenError::Blocked { message, .. } => {
                Self::Aws(AwsError::new("token", ErrorClass::Rejected, message))
            }
        }
    }
}

/// The StackSet name: `spec.stackSet.name`, else `account-linker-<namespace>-<name>`
/// (CloudFormation allows 128 characters of `[a-zA-Z0-9-]`, starting with a letter).
pub fn stack_set_name(bulk: &BulkRegistration) -> String {
    if let Some(name) = &bulk.spec.stack_set.name {
        return name.clone();
    }
    let raw = format!(
        "account-linker-{}-{}",
        bulk.namespace().unwrap_or_default(),
        bulk.name_any()
    );
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if cleaned.len() <= 128 {
        return cleaned;
    }
    let hash = template::fingerprint(&[&raw]);
    format!("{}-{}", &cleaned[..128 - 17], &hash)
}

/// Name of the child LinkedAccount of `account`.
pub fn child_name(bulk: &BulkRegistration, account: &str) -> String {
    let name = bulk.name_any();
    let keep = 253usize.saturating_sub(13).min(name.len());
    format!("{}-{account}", name[..keep].trim_end_matches(['-', '.']))
}

fn stack_set_ref(bulk: &BulkRegistration, name: String) -> StackSetRef {
    StackSetRef {
        name,
        call_as: match bulk.spec.stack_set.call_as {
            SpecCallAs::SelfAccount => CallAs::Management,
            SpecCallAs::DelegatedAdmin => CallAs::DelegatedAdmin,
        },
    }
}

impl Reconciler for Context {
    type Object = BulkRegistration;
    type Error = Error;
    const NAME: &'static str = CONTROLLER;
    const FINALIZER: &'static str = FINALIZER;

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
        cleanup(bulk, self).await
    }

    fn classify(error: &Error) -> Failure {
        match error {
            Error::Waiting(_, wait) => Failure::Waiting(*wait),
            Error::Aws(_) => Failure::Aws,
            Error::Kube(_) => Failure::Other,
        }
    }
}

/// Runs the controller until `shutdown` resolves; marks `readiness` once its cache synced.
pub async fn run(
    ctx: Arc<Context>,
    bulks: Api<BulkRegistration>,
    children: Api<LinkedAccount>,
    config_maps: Api<ConfigMap>,
    concurrency: u16,
    readiness: ControllerReadiness,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let controller = Controller::new(bulks, watcher::Config::default().any_semantic())
        .owns(children, watcher::Config::default().labels(CHILD_LABEL))
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    let store = controller.store();
    // A fixed account list or template in a ConfigMap is picked up at once.
    let referencing = store.clone();
    let controller = controller.watches(config_maps, watcher::Config::default(), move |cm| {
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

/// Whether the registration reads ConfigMap `name` (account lists or the template).
fn references(bulk: &BulkRegistration, name: &str) -> bool {
    bulk.spec
        .targets
        .accounts_from
        .iter()
        .any(|s| s.config_map_ref.name == name)
        || bulk
            .spec
            .template
            .config_map_ref
            .as_ref()
            .is_some_and(|r| r.name == name)
}

/// What a pass found, before conditions.
struct Pass<'a> {
    bulk: &'a BulkRegistration,
    ctx: &'a Context,
    api: Api<BulkRegistration>,
    current: BulkRegistrationStatus,
    next: BulkRegistrationStatus,
    now: Timestamp,
}

impl Pass<'_> {
    fn generation(&self) -> Option<i64> {
        self.bulk.meta().generation
    }

    /// Writes `next` (with `conds`) when it differs from what status says, ignoring
    /// timestamps; publishes Events for condition transitions.
    async fn write(&mut self, conds: Vec<Cond>) -> Result<(), Error> {
        self.next.observed_generation = self.generation();
        self.next.conditions = conditions::merge(
            &self.current.conditions,
            &conds,
            &[],
            self.generation(),
            self.now,
        );
        let strip = |s: &BulkRegistrationStatus| BulkRegistrationStatus {
            conditions: Vec::new(),
            ..s.clone()
        };
        if conditions::same_ignoring_timestamps(&self.current.conditions, &self.next.conditions)
            && strip(&self.current) == strip(&self.next)
        {
            return Ok(());
        }
        self.save().await?;
        publish_transitions(self.bulk, self.ctx, &self.current, &self.next).await;
        self.current = self.next.clone();
        Ok(())
    }

    /// Writes `next` as it is (used to record an operation before starting it).
    async fn save(&self) -> Result<(), Error> {
        let patch = json!({
            "apiVersion": "accountlinker.dev/v1alpha1",
            "kind": "BulkRegistration",
            "status": self.next,
        });
        self.api
            .patch_status(
                &self.bulk.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        Ok(())
    }
}

/// Conditions for a registration that needs a human before it can go on.
fn stalled(stack_set_ready: Option<(&str, &str)>, reason: &str, message: &str) -> Vec<Cond> {
    let mut out = vec![
        Cond::new(READY, Status::False, reason, message),
        Cond::new(STALLED, Status::True, reason, message),
        Cond::new(RECONCILING, Status::False, reason, ""),
    ];
    if let Some((r, m)) = stack_set_ready {
        out.push(Cond::new(STACK_SET_READY, Status::False, r, m));
    }
    out
}

/// Conditions while work is in flight.
fn progressing(reason: &str, message: &str, extra: Vec<Cond>) -> Vec<Cond> {
    let mut out = vec![
        Cond::new(READY, Status::False, reason, message),
        Cond::new(RECONCILING, Status::True, reason, message),
        Cond::new(STALLED, Status::False, reason, ""),
    ];
    out.extend(extra);
    out
}

fn aws_text(err: &AwsError) -> String {
    match &err.code {
        Some(code) => format!("{}: {code}: {}", err.operation, err.message),
        None => format!("{}: {}", err.operation, err.message),
    }
}

async fn apply(bulk: &BulkRegistration, ctx: &Context) -> Result<Action, Error> {
    let ns = bulk.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let current = bulk.status.clone().unwrap_or_default();
    let name = current
        .stack_set_name
        .clone()
        .unwrap_or_else(|| stack_set_name(bulk));
    let set = stack_set_ref(bulk, name.clone());
    let mut pass = Pass {
        bulk,
        ctx,
        api: Api::namespaced(ctx.client.clone(), &ns),
        next: BulkRegistrationStatus {
            stack_set_name: Some(name),
            ..current.clone()
        },
        current,
        now: Timestamp::now(),
    };
    let slow = Action::requeue(Duration::from_secs(60));

    // Token.
    let token = match token::ensure(
        &secrets,
        bulk,
        pass.current.external_id_rotated_time.as_ref(),
        pass.now,
    )
    .await
    {
        Ok(token) => token,
        Err(TokenError::Blocked { reason, message }) => {
            pass.write(stalled(None, reason, &message)).await?;
            return Ok(slow);
        }
        Err(e) => return Err(e.into()),
    };
    pass.next.external_id_secret = Some(token.secret_name.clone());
    pass.next.external_id_rotated_time = token.rotated.clone();

    // Targets.
    let service_managed = bulk.spec.stack_set.permission_model == PermissionModel::ServiceManaged;
    let desired =
        match targets::resolve(bulk, &config_maps, ctx.org.as_ref(), &ctx.settings.region).await {
            Ok(d) => d,
            Err(TargetsError::Invalid { reason, message }) => {
                // Never act on a partial list: nothing is created or deleted until it is fixed.
                pass.write(stalled(None, reason, &message)).await?;
                return Ok(slow);
            }
            Err(TargetsError::Kube(e)) => return Err(e.into()),
            Err(TargetsError::Aws(e)) if !e.class.is_retryable() => {
                let message = aws_text(&e);
                pass.write(stalled(None, reason::AWS_REJECTED, &message))
                    .await?;
                return Ok(slow);
            }
            Err(TargetsError::Aws(e)) => return Err(e.into()),
        };

    // Template.
    let definition = match definition(bulk, ctx, &config_maps, &token.value).await {
        Ok(d) => d,
        Err(DefinitionError::Blocked { reason, message }) => {
            pass.write(stalled(Some((reason, &message)), reason, &message))
                .await?;
            return Ok(slow);
        }
        Err(DefinitionError::Kube(e)) => return Err(e.into()),
        Err(DefinitionError::Aws(e)) => return Err(e.into()),
    };
    let hash = definition_hash(&definition);

    // Service-managed prerequisites.
    if service_managed && !ctx.stacksets.trusted_access(set.call_as).await? {
        let message = "trusted access between CloudFormation StackSets and AWS Organizations is \
            disabled: enable it from the management account with `aws cloudformation \
            activate-organizations-access` (or in the CloudFormation console under StackSets > \
            Enable trusted access); the registration continues on its own once it is on";
        pass.write(stalled(
            Some((reason::TRUSTED_ACCESS_DISABLED, message)),
            reason::TRUSTED_ACCESS_DISABLED,
            message,
        ))
        .await?;
        return Ok(slow);
    }

    // StackSet.
    let info = ctx.stacksets.describe(&set).await?;
    if info.is_none() {
        // A StackSet that vanished takes its operations with it.
        pass.next.operation = None;
        match ctx.stacksets.create(&set, &definition).await {
            Ok(id) => {
                pass.next.stack_set_id = Some(id);
                pass.next.template_hash = Some(hash.clone());
                publish(
                    bulk,
                    ctx,
                    EventType::Normal,
                    "StackSetCreated",
                    &format!("created StackSet {}", set.name),
                )
                .await;
            }
            Err(e) if !e.class.is_retryable() => {
                let message = aws_text(&e);
                pass.write(stalled(
                    Some((reason::AWS_REJECTED, &message)),
                    reason::AWS_REJECTED,
                    &message,
                ))
                .await?;
                return Ok(slow);
            }
            Err(e) => return Err(e.into()),
        }
    } else if let Some(info) = &info {
        pass.next.stack_set_id = Some(info.id.clone());
    }

    // The operation in flight, if any.
    if let Some(op) = pass.next.operation.clone() {
        match ctx.stacksets.operation(&set, &op.id).await? {
            Some(state) if !state.finished() => {
                pass.next.operation = Some(StackSetOperation {
                    status: Some(state.status.to_string()),
                    ..op.clone()
                });
                let instances = ctx.stacksets.instances(&set).await?;
                let message = format!(
                    "{} operation {} is {} for {} account(s)",
                    op.action, op.id, state.status, op.accounts
                );
                settle(
                    &mut pass,
                    &desired,
                    &instances,
                    &token,
                    true,
                    progressing(reason::OPERATION_RUNNING, &message, Vec::new()),
                )
                .await?;
                return Ok(Action::requeue(ctx.settings.poll_interval));
            }
            Some(state) => {
                let ok = state.status == OperationStatus::Succeeded;
                ctx.metrics
                    .stackset_operation(action_label(&op.action), outcome(ok));
                let text = format!(
                    "{} operation {} {}{}",
                    op.action,
                    op.id,
                    state.status,
                    state
                        .reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                );
                publish(
                    bulk,
                    ctx,
                    if ok {
                        EventType::Normal
                    } else {
                        EventType::Warning
                    },
                    if ok {
                        "OperationSucceeded"
                    } else {
                        "OperationFailed"
                    },
                    &text,
                )
                .await;
                pass.next.last_operation = Some(StackSetOperation {
                    status: Some(state.status.to_string()),
                    ended_at: Some(Time(pass.now)),
                    ..op
                });
                pass.next.operation = None;
            }
            // Recorded but never started (the process stopped in between): plan again, which
            // yields the same ID.
            None => pass.next.operation = None,
        }
    }

    // Instances and the next operation.
    let instances = ctx.stacksets.instances(&set).await?;
    let template_current = pass.next.template_hash.as_deref() == Some(hash.as_str());
    let generation = pass.generation().unwrap_or_default();
    let uid = bulk.meta().uid.clone().unwrap_or_default();
    let step = plan::next_step(&desired, &instances, template_current)
        .map(|step| {
            let id = plan::operation_id(&uid, generation, &hash, &step);
            (step, id)
        })
        .filter(|(_, id)| pass.next.last_operation.as_ref().map(|o| &o.id) != Some(id));
    if let Some((step, id)) = step {
        return start(
            &mut pass,
            &set,
            &definition,
            &desired,
            &instances,
            &token,
            step,
            id,
            &hash,
        )
        .await;
    }
    let done = settle(&mut pass, &desired, &instances, &token, false, Vec::new()).await?;
    Ok(Action::requeue(if done {
        ctx.settings.resync_interval
    } else {
        ctx.settings.poll_interval.max(Duration::from_secs(10))
    }))
}

/// Records `step` in status, then starts it.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the phases' results"
)]
async fn start(
    pass: &mut Pass<'_>,
    set: &StackSetRef,
    definition: &StackSetDefinition,
    desired: &Desired,
    instances: &[Instance],
    token: &token::Token,
    step: Step,
    id: String,
    hash: &str,
) -> Result<Action, Error> {
    let ctx = pass.ctx;
    let preferences = preferences(pass.bulk);
    let accounts = step.batch().map_or(instances.len(), plan::Batch::accounts);
    let record = StackSetOperation {
        id: id.clone(),
        action: step.action().into(),
        status: Some("PENDING".into()),
        started_at: Some(Time(pass.now)),
        ended_at: None,
        accounts: i32::try_from(accounts).unwrap_or(i32::MAX),
    };
    pass.next.operation = Some(record.clone());
    // Recorded before it is started: after a crash the next pass polls this ID, or plans it
    // again, and CloudFormation treats a repeated ID as the same operation.
    pass.save().await?;
    pass.current = pass.next.clone();
    let result = match &step {
        Step::UpdateStackSet => {
            ctx.stacksets
                .update(set, definition, &id, &preferences)
                .await
        }
        Step::Create(batch) => {
            ctx.stacksets
                .create_instances(set, &instance_op(&id, batch, &preferences))
                .await
        }
        Step::Delete {
            batch,
            retain_stacks,
        } => {
            ctx.stacksets
                .delete_instances(set, &instance_op(&id, batch, &preferences), *retain_stacks)
                .await
        }
        Step::Update(batch) => {
            ctx.stacksets
                .update_instances(set, &instance_op(&id, batch, &preferences))
                .await
        }
    };
    match result {
        Ok(_) => {
            if matches!(step, Step::UpdateStackSet) {
                // The StackSet holds the new template from now on, whatever the instances do.
                pass.next.template_hash = Some(hash.to_string());
            }
            pass.next.operation = Some(StackSetOperation {
                status: Some("RUNNING".into()),
                ..record
            });
            info!(name = %pass.bulk.name_any(), operation = %id, action = step.action(), accounts, "started StackSet operation");
            let message = format!(
                "{} operation {id} started for {accounts} account(s)",
                step.action()
            );
            settle(
                pass,
                desired,
                instances,
                token,
                true,
                progressing(reason::OPERATION_RUNNING, &message, Vec::new()),
            )
            .await?;
            Ok(Action::requeue(ctx.settings.poll_interval))
        }
        Err(e) => {
            match e.class {
                // Someone else's operation (automatic deployment, a console user) runs: wait for
                // it, never fail.
                ErrorClass::InProgress => {
                    pass.next.operation = None;
                    let message = format!(
                        "another operation is running on StackSet {}; waiting for it to finish",
                        set.name
                    );
                    settle(
                        pass,
                        desired,
                        instances,
                        token,
                        true,
                        progressing(reason::OPERATION_IN_PROGRESS, &message, Vec::new()),
                    )
                    .await?;
                    Ok(Action::requeue(ctx.settings.poll_interval * 2))
                }
                // The operation ID was used already (a retried start): nothing new began.
                ErrorClass::AlreadyExists => Ok(Action::requeue(ctx.settings.poll_interval)),
                _ if !e.class.is_retryable() => {
                    // Rejected: remember it as the last operation so the same batch is not sent
                    // again until something changes (a new generation or template).
                    pass.next.operation = None;
                    pass.next.last_operation = Some(StackSetOperation {
                        status: Some("FAILED".into()),
                        ended_at: Some(Time(pass.now)),
                        ..record
                    });
                    if matches!(step, Step::UpdateStackSet) {
                        pass.next.template_hash = Some(hash.to_string());
                    }
                    ctx.metrics
                        .stackset_operation(action_label(step.action()), outcome(false));
                    let message = aws_text(&e);
                    publish(
                        pass.bulk,
                        ctx,
                        EventType::Warning,
                        reason::AWS_REJECTED,
                        &message,
                    )
                    .await;
                    let mut conds = stalled(None, reason::AWS_REJECTED, &message);
                    if matches!(step, Step::UpdateStackSet) {
                        conds.push(Cond::new(
                            STACK_SET_READY,
                            Status::False,
                            reason::AWS_REJECTED,
                            &message,
                        ));
                    }
                    settle(pass, desired, instances, token, false, conds).await?;
                    Ok(Action::requeue(Duration::from_secs(300)))
                }
                // Transient: the recorded operation is polled next time; CloudFormation does not
                // know it, so it is planned again with the same ID.
                _ => Err(e.into()),
            }
        }
    }
}

fn instance_op(id: &str, batch: &plan::Batch, preferences: &Preferences) -> InstanceOperation {
    InstanceOperation {
        operation_id: id.to_string(),
        targets: batch.targets.clone(),
        regions: batch.regions.clone(),
        preferences: preferences.clone(),
    }
}

fn action_label(action: &str) -> &'static str {
    match action {
        "Create" => "create",
        "Delete" => "delete",
        "UpdateStackSet" => "update_stack_set",
        _ => "update",
    }
}

fn outcome(ok: bool) -> &'static str {
    if ok { "succeeded" } else { "failed" }
}

fn preferences(bulk: &BulkRegistration) -> Preferences {
    let p = bulk.spec.operation_preferences.clone().unwrap_or_default();
    Preferences {
        max_concurrent_count: p.max_concurrent_count,
        max_concurrent_percentage: p.max_concurrent_percentage,
        failure_tolerance_count: p.failure_tolerance_count,
        failure_tolerance_percentage: p.failure_tolerance_percentage,
        parallel_regions: p.region_concurrency_type == Some(RegionConcurrency::Parallel),
        region_order: p.region_order,
        soft_failure_tolerance: p.concurrency_mode == Some(ConcurrencyMode::SoftFailureTolerance),
    }
}

/// Applies children, computes the summary and conditions, and writes status. Returns whether
/// the registration is Ready.
async fn settle(
    pass: &mut Pass<'_>,
    desired: &Desired,
    instances: &[Instance],
    token: &token::Token,
    busy: bool,
    conds: Vec<Cond>,
) -> Result<bool, Error> {
    let observed = plan::observe(desired, instances);
    let Verification {
        assumable,
        stalled: stalled_children,
        example,
    } = sync_children(pass, desired, instances, token).await?;
    let targets = i32::try_from(desired.accounts.len()).unwrap_or(i32::MAX);
    pass.next.summary = Some(Summary {
        targets,
        current: observed.current,
        outdated: observed.outdated,
        failed: observed.failed,
        assumable,
    });
    pass.next.failures = observed.failures.clone();
    let template_current = pass.next.template_hash.is_some();
    let stack_set = if template_current && !busy {
        Cond::new(
            STACK_SET_READY,
            Status::True,
            reason::STACK_SET_CURRENT,
            "the StackSet has the current template and settings",
        )
    } else {
        Cond::new(
            STACK_SET_READY,
            Status::Unknown,
            reason::STACK_SET_PENDING,
            "a StackSet operation is in flight",
        )
    };
    let instances_cond = if observed.failed > 0 {
        Cond::new(
            INSTANCES_READY,
            Status::False,
            reason::INSTANCES_FAILED,
            format!(
                "{} of {targets} account(s) failed to deploy; see status.failures",
                observed.failed
            ),
        )
    } else if observed.outdated > 0 {
        Cond::new(
            INSTANCES_READY,
            Status::False,
            reason::INSTANCES_PENDING,
            format!(
                "{} of {targets} account(s) not deployed yet",
                observed.outdated
            ),
        )
    } else {
        Cond::new(
            INSTANCES_READY,
            Status::True,
            reason::INSTANCES_CURRENT,
            format!("all {targets} account(s) deployed"),
        )
    };
    let mut out = conds;
    let decided = !out.is_empty();
    if !decided {
        out = if observed.failed > 0 {
            stalled(
                None,
                reason::INSTANCES_FAILED,
                &format!(
                    "{} of {targets} account(s) failed to deploy; see status.failures",
                    observed.failed
                ),
            )
        } else if observed.outdated > 0 {
            progressing(
                reason::INSTANCES_PENDING,
                &format!(
                    "{} of {targets} account(s) not deployed yet",
                    observed.outdated
                ),
                Vec::new(),
            )
        } else if assumable < targets && stalled_children > 0 {
            stalled(
                None,
                reason::NOT_ASSUMABLE,
                &format!(
                    "{stalled_children} of {targets} role(s) cannot be assumed; {}",
                    example.unwrap_or_default()
                ),
            )
        } else if assumable < targets {
            progressing(
                reason::VERIFYING,
                &format!("{assumable} of {targets} role(s) verified assumable"),
                Vec::new(),
            )
        } else {
            vec![
                Cond::new(
                    READY,
                    Status::True,
                    reason::READY,
                    format!("all {targets} account(s) deployed and assumable"),
                ),
                Cond::new(RECONCILING, Status::False, reason::READY, ""),
                Cond::new(STALLED, Status::False, reason::READY, ""),
            ]
        };
    }
    if !out.iter().any(|c| c.type_ == STACK_SET_READY) {
        out.push(stack_set);
    }
    out.push(instances_cond);
    let ready = out
        .iter()
        .any(|c| c.type_ == READY && c.status == Status::True);
    pass.write(out).await?;
    Ok(ready)
}

/// What the children say about their roles.
struct Verification {
    /// Children whose role is deployed and verified assumable.
    assumable: i32,
    /// Children whose role is deployed but that are Stalled (the role cannot be assumed).
    stalled: i32,
    /// The first stalled child and its message.
    example: Option<String>,
}

/// Applies one child per target account, reports each child's stack instance, deletes
/// children whose account is no longer targeted and has no instance left.
async fn sync_children(
    pass: &Pass<'_>,
    desired: &Desired,
    instances: &[Instance],
    token: &token::Token,
) -> Result<Verification, Error> {
    let bulk = pass.bulk;
    let ns = bulk.namespace().unwrap_or_default();
    let api: Api<LinkedAccount> = Api::namespaced(pass.ctx.client.clone(), &ns);
    let selector = format!("{CHILD_LABEL}={}", bulk.name_any());
    let existing: BTreeMap<String, LinkedAccount> = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .into_iter()
        .filter(|c| {
            c.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == bulk.meta().uid.as_ref())
        })
        .map(|c| (c.spec.account_id.clone(), c))
        .collect();
    let region = desired.regions.first().cloned().unwrap_or_default();
    let by_account: BTreeMap<&str, &Instance> = instances
        .iter()
        .filter(|i| i.region == region)
        .map(|i| (i.account.as_str(), i))
        .collect();
    let set_name = pass.next.stack_set_name.clone().unwrap_or_default();
    let mut verification = Verification {
        assumable: 0,
        stalled: 0,
        example: None,
    };
    let mut writes = Vec::new();
    for account in &desired.accounts {
        let name = child_name(bulk, account);
        let wanted = child(bulk, account, &name, token);
        let child = existing.get(account);
        let spec = child
            .is_none_or(|c| !matches_child(c, &wanted))
            .then_some(wanted);
        let instance = by_account.get(account.as_str()).map(|i| StackInstanceRef {
            stack_set: set_name.clone(),
            region: i.region.clone(),
            status: Some(i.status.to_string()),
            detailed_status: i.detailed_status.as_ref().map(ToString::to_string),
            reason: i.reason.clone(),
            last_operation_id: i.last_operation_id.clone(),
        });
        let reported = child
            .and_then(|c| c.status.as_ref())
            .and_then(|s| s.stack_instance.clone());
        let status = (instance.is_some() && instance != reported).then(|| {
            json!({
                "apiVersion": "accountlinker.dev/v1alpha1",
                "kind": "LinkedAccount",
                "status": {"stackInstance": instance},
            })
        });
        if spec.is_some() || status.is_some() {
            writes.push(ChildWrite {
                name: name.clone(),
                spec,
                status,
            });
        }
        let deployed = instance
            .as_ref()
            .and_then(|i| i.detailed_status.as_deref())
            .map(DetailedStatus::from)
            == Some(DetailedStatus::Succeeded);
        let conds = child
            .and_then(|c| c.status.as_ref())
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        // A verification from before the token was rotated proves nothing about the new one.
        let verified_since_rotation = match &pass.next.external_id_rotated_time {
            Some(rotated) => child
                .and_then(|c| c.status.as_ref())
                .and_then(|s| s.last_verified_time.as_ref())
                .is_some_and(|t| t.0 >= rotated.0),
            None => true,
        };
        if deployed
            && verified_since_rotation
            && conditions::is(conds, ROLE_ASSUMABLE, Status::True)
        {
            verification.assumable += 1;
        } else if deployed && conditions::is(conds, STALLED, Status::True) {
            verification.stalled += 1;
            if verification.example.is_none() {
                let message = conditions::find(conds, STALLED)
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                verification.example = Some(format!("LinkedAccount {name}: {message}"));
            }
        }
    }
    write_children(&api, writes).await?;
    let deployed: std::collections::BTreeSet<&str> =
        instances.iter().map(|i| i.account.as_str()).collect();
    for (account, child) in &existing {
        // Removed from targets: the instance goes first, then the child.
        if !desired.accounts.contains(account) && !deployed.contains(account.as_str()) {
            match api
                .delete(&child.name_any(), &DeleteParams::default())
                .await
            {
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
    }
    Ok(verification)
}

/// Child writes in flight at once: enough to hide the API server's latency when thousands of
/// children are created, few enough not to crowd out the other controllers' requests.
const CHILD_WRITES_IN_FLIGHT: usize = 16;

/// What one child needs written: its spec (server-side apply), its `status.stackInstance`.
struct ChildWrite {
    name: String,
    spec: Option<serde_json::Value>,
    status: Option<serde_json::Value>,
}

/// Writes children concurrently; each child's spec goes before its status.
async fn write_children(api: &Api<LinkedAccount>, writes: Vec<ChildWrite>) -> Result<(), Error> {
    futures::stream::iter(writes)
        .map(|write| async move {
            let params = PatchParams::apply(CHILD_MANAGER).force();
            if let Some(spec) = &write.spec {
                api.patch(&write.name, &params, &Patch::Apply(spec)).await?;
            }
            if let Some(status) = &write.status {
                api.patch_status(&write.name, &params, &Patch::Apply(status))
                    .await?;
            }
            Ok::<_, kube::Error>(())
        })
        .buffer_unordered(CHILD_WRITES_IN_FLIGHT)
        .try_collect::<()>()
        .await?;
    Ok(())
}

fn child(
    bulk: &BulkRegistration,
    account: &str,
    name: &str,
    token: &token::Token,
) -> serde_json::Value {
    let link = bulk.spec.link_template.clone().unwrap_or_default();
    let mut labels = link.labels.clone();
    labels.insert(CHILD_LABEL.into(), bulk.name_any());
    let role_name = bulk
        .spec
        .template
        .builtin
        .as_ref()
        .map_or(DEFAULT_ROLE_NAME.to_string(), |b| b.role_name.clone());
    let mut spec = json!({
        "accountId": account,
        "roleName": role_name,
        "externalId": {"secretRef": {"name": token.secret_name, "key": token.key}},
    });
    if let Some(v) = &link.verify_interval {
        spec["verifyInterval"] = json!(v);
    }
    if let Some(s) = link.session_duration_seconds {
        spec["sessionDurationSeconds"] = json!(s);
    }
    let owner = bulk.controller_owner_ref(&());
    json!({
        "apiVersion": "accountlinker.dev/v1alpha1",
        "kind": "LinkedAccount",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": link.annotations,
            "ownerReferences": owner.map(|o| vec![o]).unwrap_or_default(),
        },
        "spec": spec,
    })
}

/// Whether an existing child already has what [`child`] would apply.
fn matches_child(existing: &LinkedAccount, wanted: &serde_json::Value) -> bool {
    let Ok(spec) = serde_json::from_value::<crate::api::LinkedAccountSpec>(wanted["spec"].clone())
    else {
        return false;
    };
    let labels: BTreeMap<String, String> =
        serde_json::from_value(wanted["metadata"]["labels"].clone()).unwrap_or_default();
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(wanted["metadata"]["annotations"].clone()).unwrap_or_default();
    existing.spec == spec
        && labels
            .iter()
            .all(|(k, v)| existing.labels().get(k) == Some(v))
        && annotations
            .iter()
            .all(|(k, v)| existing.annotations().get(k) == Some(v))
}

/// Why the StackSet definition cannot be built.
enum DefinitionError {
    Blocked {
        reason: &'static str,
        message: String,
    },
    Kube(kube::Error),
    Aws(AwsError),
}

async fn definition(
    bulk: &BulkRegistration,
    ctx: &Context,
    config_maps: &Api<ConfigMap>,
    token: &str,
) -> Result<StackSetDefinition, DefinitionError> {
    let source = &bulk.spec.template;
    let template = if let Some(builtin) = &source.builtin {
        let trusted = match &builtin.trusted_account_id {
            Some(account) => account.clone(),
            None => ctx
                .hub_account
                .get_or_try_init(|| ctx.hub.hub_account())
                .await
                .map_err(DefinitionError::Aws)?
                .clone(),
        };
        let names: Vec<&str> = bulk
            .spec
            .parameters
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        TemplateBody::Body(template::builtin(
            builtin,
            &trusted,
            &ctx.settings.partition,
            &names,
        ))
    } else if let Some(reference) = &source.config_map_ref {
        let cm = config_maps
            .get_opt(&reference.name)
            .await
            .map_err(DefinitionError::Kube)?
            .ok_or_else(|| DefinitionError::Blocked {
                reason: "TemplateConfigMapNotFound",
                message: format!("ConfigMap {:?} not found", reference.name),
            })?;
        let body = cm
            .data
            .as_ref()
            .and_then(|d| d.get(&reference.key))
            .cloned()
            .ok_or_else(|| DefinitionError::Blocked {
                reason: "TemplateKeyNotFound",
                message: format!(
                    "ConfigMap {:?} has no key {:?}",
                    reference.name, reference.key
                ),
            })?;
        TemplateBody::Body(body)
    } else {
        TemplateBody::Url(source.url.clone().unwrap_or_default())
    };
    let mut parameters: Vec<(String, String)> = bulk
        .spec
        .parameters
        .iter()
        .map(|p| (p.name.clone(), p.value.clone()))
        .collect();
    parameters.push((template::EXTERNAL_ID_PARAMETER.into(), token.to_string()));
    parameters.sort();
    let spec = &bulk.spec.stack_set;
    let permissions = match spec.permission_model {
        PermissionModel::ServiceManaged => Permissions::ServiceManaged {
            auto_deployment: bulk
                .spec
                .auto_deployment
                .as_ref()
                .map(|a| (a.enabled, a.retain_stacks_on_account_removal)),
        },
        PermissionModel::SelfManaged => Permissions::SelfManaged {
            administration_role_arn: spec.administration_role_arn.clone(),
            execution_role_name: spec.execution_role_name.clone(),
        },
    };
    Ok(StackSetDefinition {
        template,
        parameters,
        permissions,
        managed_execution: spec.managed_execution,
        description: format!(
            "account-linker BulkRegistration {}/{}",
            bulk.namespace().unwrap_or_default(),
            bulk.name_any()
        ),
    })
}

fn definition_hash(d: &StackSetDefinition) -> String {
    let template = match &d.template {
        TemplateBody::Body(b) => format!("body:{b}"),
        TemplateBody::Url(u) => format!("url:{u}"),
    };
    let params: Vec<String> = d
        .parameters
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    template::fingerprint(&[
        &template,
        &params.join("\n"),
        &format!("{:?}", d.permissions),
        &d.managed_execution.to_string(),
    ])
}

async fn cleanup(bulk: &BulkRegistration, ctx: &Context) -> Result<Action, Error> {
    let ns = bulk.namespace().unwrap_or_default();
    let children: Api<LinkedAccount> = Api::namespaced(ctx.client.clone(), &ns);
    if bulk.spec.deletion_policy == BulkDeletionPolicy::Delete {
        let current = bulk.status.clone().unwrap_or_default();
        let name = current
            .stack_set_name
            .clone()
            .unwrap_or_else(|| stack_set_name(bulk));
        let set = stack_set_ref(bulk, name);
        let mut pass = Pass {
            bulk,
            ctx,
            api: Api::namespaced(ctx.client.clone(), &ns),
            next: current.clone(),
            current,
            now: Timestamp::now(),
        };
        if let Some(wait) = delete_in_aws(&mut pass, &set).await? {
            return Err(Error::Waiting(
                format!("deleting StackSet {} and its instances", set.name),
                wait,
            ));
        }
    } else {
        publish(
            bulk,
            ctx,
            EventType::Normal,
            "Retained",
            "deletionPolicy is Retain: the StackSet and its stacks stay in AWS",
        )
        .await;
    }
    // The children go before the finalizer is released (garbage collection would remove them
    // too, but only after this object is gone).
    let selector = format!("{CHILD_LABEL}={}", bulk.name_any());
    children
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&selector),
        )
        .await?;
    Ok(Action::await_change())
}

/// Deletes every instance, then the StackSet. `Some(wait)` while that is in progress.
async fn delete_in_aws(pass: &mut Pass<'_>, set: &StackSetRef) -> Result<Option<Duration>, Error> {
    let ctx = pass.ctx;
    let poll = Some(ctx.settings.poll_interval);
    if ctx.stacksets.describe(set).await?.is_none() {
        info!(name = %pass.bulk.name_any(), stack_set = %set.name, "StackSet already gone");
        return Ok(None);
    }
    if let Some(op) = pass.next.operation.clone() {
        match ctx.stacksets.operation(set, &op.id).await? {
            Some(state) if !state.finished() => return Ok(poll),
            Some(state) => {
                ctx.metrics.stackset_operation(
                    action_label(&op.action),
                    outcome(state.status == OperationStatus::Succeeded),
                );
                pass.next.last_operation = Some(StackSetOperation {
                    status: Some(state.status.to_string()),
                    ended_at: Some(Time(pass.now)),
                    ..op
                });
                pass.next.operation = None;
            }
            None => pass.next.operation = None,
        }
    }
    let instances = ctx.stacksets.instances(set).await?;
    info!(name = %pass.bulk.name_any(), stack_set = %set.name, instances = instances.len(), "deleting");
    if instances.is_empty() {
        return match ctx.stacksets.delete(set).await {
            Ok(()) => {
                publish(
                    pass.bulk,
                    ctx,
                    EventType::Normal,
                    "StackSetDeleted",
                    &format!("deleted StackSet {}", set.name),
                )
                .await;
                Ok(None)
            }
            Err(e) if e.class == ErrorClass::InProgress => Ok(poll),
            Err(e) => Err(e.into()),
        };
    }
    let mut desired = Desired {
        service_managed: pass.bulk.spec.stack_set.permission_model
            == PermissionModel::ServiceManaged,
        ..Desired::default()
    };
    if desired.service_managed && instances.iter().any(|i| i.organizational_unit.is_none()) {
        desired.root = Some(ctx.org.root().await?);
    }
    let Some(step) = plan::next_step(&desired, &instances, true) else {
        return Ok(poll);
    };
    let uid = pass.bulk.meta().uid.clone().unwrap_or_default();
    let id = plan::operation_id(&uid, pass.generation().unwrap_or_default(), "delete", &step);
    if pass.next.last_operation.as_ref().map(|o| &o.id) == Some(&id) {
        // Already tried and finished, yet instances remain: they turned INOPERABLE or the
        // operation failed. Say so and look again later.
        let message = format!(
            "deleting the stack instances of StackSet {} did not finish: {} instance(s) remain",
            set.name,
            instances.len()
        );
        pass.write(stalled(None, reason::DELETING, &message))
            .await?;
        return Ok(Some(Duration::from_secs(60)));
    }
    let Step::Delete {
        batch,
        retain_stacks,
    } = &step
    else {
        return Ok(poll);
    };
    let record = StackSetOperation {
        id: id.clone(),
        action: step.action().into(),
        status: Some("PENDING".into()),
        started_at: Some(Time(pass.now)),
        ended_at: None,
        accounts: i32::try_from(batch.accounts()).unwrap_or(i32::MAX),
    };
    pass.next.operation = Some(record.clone());
    pass.save().await?;
    match ctx
        .stacksets
        .delete_instances(
            set,
            &instance_op(&id, batch, &preferences(pass.bulk)),
            *retain_stacks,
        )
        .await
    {
        Ok(_) => {
            pass.next.operation = Some(StackSetOperation {
                status: Some("RUNNING".into()),
                ..record
            });
            let message = format!("deleting {} stack instance(s)", batch.accounts());
            pass.write(progressing(reason::DELETING, &message, Vec::new()))
                .await?;
            Ok(poll)
        }
        Err(e) if e.class == ErrorClass::InProgress => {
            pass.next.operation = None;
            pass.save().await?;
            Ok(poll)
        }
        Err(e) => Err(e.into()),
    }
}

async fn publish(
    bulk: &BulkRegistration,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    events::publish(
        &ctx.recorder,
        &bulk.object_ref(&()),
        type_,
        reason,
        note,
        "Reconcile",
    )
    .await;
}

/// One Event per transition of Ready, Stalled, StackSetReady and InstancesReady.
async fn publish_transitions(
    bulk: &BulkRegistration,
    ctx: &Context,
    before: &BulkRegistrationStatus,
    after: &BulkRegistrationStatus,
) {
    let changed = conditions::transitions(
        &before.conditions,
        &after.conditions,
        &[READY, STALLED, STACK_SET_READY, INSTANCES_READY],
    );
    events::publish_transitions(&ctx.recorder, &bulk.object_ref(&()), &changed, "Reconcile").await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(name: &str, spec: serde_json::Value) -> BulkRegistration {
        let mut b = BulkRegistration::new(name, serde_json::from_value(spec).unwrap());
        b.metadata.namespace = Some("platform".into());
        b
    }

    fn spec() -> serde_json::Value {
        json!({
            "stackSet": {"permissionModel": "SelfManaged"},
            "template": {"builtin": {}},
            "targets": {"accounts": ["111111111111"]},
        })
    }

    #[test]
    fn stack_set_names_are_derived_and_valid() {
        assert_eq!(
            stack_set_name(&bulk("workloads", spec())),
            "account-linker-platform-workloads"
        );
        let long = bulk(&"x.y".repeat(80), spec());
        let name = stack_set_name(&long);
        assert_eq!(name.len(), 128);
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let mut named = spec();
        named["stackSet"]["name"] = json!("chosen");
        assert_eq!(stack_set_name(&bulk("w", named)), "chosen");
    }

    #[test]
    fn child_names_fit_and_carry_the_account() {
        assert_eq!(
            child_name(&bulk("workloads", spec()), "111111111111"),
            "workloads-111111111111"
        );
        let long = bulk(&"a".repeat(253), spec());
        let name = child_name(&long, "111111111111");
        assert!(name.len() <= 253 && name.ends_with("-111111111111"));
    }

    #[test]
    fn children_inherit_the_link_template_and_the_token() {
        let mut s = spec();
        s["linkTemplate"] = json!({"labels": {"team": "a"}, "verifyInterval": "10m", "sessionDurationSeconds": 1800});
        let b = bulk("w", s);
        let token = token::Token {
            value: "v".into(),
            secret_name: "w-registration-token".into(),
            key: "externalId".into(),
            rotated: None,
        };
        let c = child(&b, "111111111111", "w-111111111111", &token);
        assert_eq!(c["metadata"]["labels"]["team"], "a");
        assert_eq!(c["metadata"]["labels"][CHILD_LABEL], "w");
        assert_eq!(c["spec"]["verifyInterval"], "10m");
        assert_eq!(c["spec"]["sessionDurationSeconds"], 1800);
        assert_eq!(
            c["spec"]["externalId"]["secretRef"]["name"],
            "w-registration-token"
        );
        assert_eq!(c["spec"]["roleName"], "AccountLinkerAccess");
        assert!(
            !c.to_string().contains("\"v\""),
            "the token value never appears in a child"
        );
    }

    #[test]
    fn definition_hashes_change_with_what_is_deployed() {
        let base = StackSetDefinition {
            template: TemplateBody::Body("a".into()),
            parameters: vec![("ExternalId".into(), "one".into())],
            permissions: Permissions::ServiceManaged {
                auto_deployment: None,
            },
            managed_execution: false,
            description: "d".into(),
        };
        let mut rotated = base.clone();
        rotated.parameters[0].1 = "two".into();
        let mut auto = base.clone();
        auto.permissions = Permissions::ServiceManaged {
            auto_deployment: Some((true, false)),
        };
        assert_eq!(definition_hash(&base), definition_hash(&base.clone()));
        assert_ne!(definition_hash(&base), definition_hash(&rotated));
        assert_ne!(definition_hash(&base), definition_hash(&auto));
    }
}
