//! The MemberAccount controller: one AWS account created through Organizations, exactly once,
//! placed under its parent, tagged, and linked with a child LinkedAccount for its access role.
//!
//! CreateAccount is not idempotent, so the request ID goes to status the moment the call
//! returns, and a pass without one first looks for the account by e-mail and for a request in
//! progress under the account's name before it would ever call CreateAccount. The request is
//! polled by requeueing; nothing waits on AWS inside a reconcile.

pub mod decide;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use self::decide::{Creation, classify_failure};
use crate::api::conditions::{ACCOUNT_CREATED, READY, RECONCILING, STALLED};
use crate::api::labels;
use crate::api::member_account::{BillingAccess, MemberDeletionPolicy};
use crate::api::{LinkedAccount, MemberAccount, MemberAccountStatus};
use crate::aws::accounts::{AccountState, CreateAccountState, NewAccount};
use crate::aws::{Accounts, AwsError, ErrorClass};
use crate::controller::conditions::{self, Desired as Cond, Status};
use crate::controller::events;
use crate::controller::runner::{self, Failure, Reconciler};
use crate::runtime::ControllerReadiness;
use crate::telemetry::Metrics;

pub const CONTROLLER: &str = "memberaccount";
const FINALIZER: &str = labels::MEMBER_ACCOUNT_FINALIZER;
const CHILD_LABEL: &str = labels::MEMBER_ACCOUNT_LABEL;
const FIELD_MANAGER: &str = labels::STATUS_MANAGER;
const CHILD_MANAGER: &str = labels::MEMBER_ACCOUNT_CHILD_MANAGER;

/// Condition reasons of MemberAccount.
pub mod reason {
    pub const READY: &str = "Ready";
    pub const CREATING: &str = "Creating";
    pub const CREATED: &str = "Created";
    pub const VERIFYING: &str = "Verifying";
    pub const NOT_ASSUMABLE: &str = "AccessRoleNotAssumable";
    pub const RATE_LIMITED: &str = "RateLimited";
    pub const NOT_IN_USE: &str = "OrganizationsNotInUse";
    pub const AWS_REJECTED: &str = "AwsRejected";
    pub const NAME_NOT_APPLIED: &str = "AccountNameNotApplied";
    pub const NOT_ACTIVE: &str = "AccountNotActive";
    pub const CLOSE_QUOTA: &str = "CloseAccountQuotaExceeded";
    pub const CLOSING: &str = "Closing";
    /// The e-mail belongs to an account this object did not create (AWS's own reason for it).
    pub const EMAIL_IN_USE: &str = "EmailAlreadyExists";
}

/// How often an account with this object's e-mail but not its owner tag is looked at again
/// (tagging it in AWS adopts it; a change to the object looks at once).
const UNOWNED_RECHECK: Duration = Duration::from_secs(60);

/// The owner tag's value for this object.
fn owner_of(member: &MemberAccount) -> String {
    labels::owner(&member.namespace().unwrap_or_default(), &member.name_any())
}

/// The account with the spec's e-mail, if there is one, and whether it carries this object's
/// owner tag (only then is it this object's).
async fn with_email(
    ctx: &Context,
    member: &MemberAccount,
) -> Result<Option<(String, bool)>, Error> {
    let Some(found) = ctx.accounts.account_by_email(&member.spec.email).await? else {
        return Ok(None);
    };
    let tags = ctx.accounts.tags(&found.id).await?;
    let owned = decide::owned(&tags, &owner_of(member));
    Ok(Some((found.id, owned)))
}

/// Whether `account`, made by a CreateAccount request, has the spec's e-mail (only then is the
/// request this object's).
async fn made_for(ctx: &Context, member: &MemberAccount, account: &str) -> Result<bool, Error> {
    let info = ctx.accounts.account(account).await?;
    Ok(decide::same_email(&info.email, &member.spec.email))
}

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often a CreateAccount request in progress is polled.
    pub poll_interval: Duration,
    /// How often a Ready account is checked again (parent, tags, state).
    pub resync_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(10),
            resync_interval: Duration::from_secs(600),
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
}

impl Context {
    pub fn new(
        client: Client,
        accounts: Arc<dyn Accounts>,
        recorder: Recorder,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
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
}

impl Reconciler for Context {
    type Object = MemberAccount;
    type Error = Error;
    const NAME: &'static str = CONTROLLER;
    const FINALIZER: &'static str = FINALIZER;

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
        cleanup(member, self).await
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
    members: Api<MemberAccount>,
    children: Api<LinkedAccount>,
    concurrency: u16,
    readiness: ControllerReadiness,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let controller = Controller::new(members, watcher::Config::default().any_semantic())
        .owns(children, watcher::Config::default().labels(CHILD_LABEL))
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency));
    runner::run(controller, ctx, readiness, shutdown).await;
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
        let patch = json!({
            "apiVersion": "accountlinker.dev/v1alpha1",
            "kind": "MemberAccount",
            "status": self.next,
        });
        self.api
            .patch_status(
                &self.member.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        self.current = self.next.clone();
        Ok(())
    }

    /// Writes `next` with `conds` when anything but timestamps changed; Events on transitions.
    async fn write(&mut self, conds: Vec<Cond>) -> Result<(), Error> {
        self.next.observed_generation = self.generation();
        self.next.conditions = conditions::merge(
            &self.current.conditions,
            &conds,
            &[],
            self.generation(),
            self.now,
        );
        let strip = |s: &MemberAccountStatus| MemberAccountStatus {
            conditions: Vec::new(),
            ..s.clone()
        };
        if conditions::same_ignoring_timestamps(&self.current.conditions, &self.next.conditions)
            && strip(&self.current) == strip(&self.next)
        {
            return Ok(());
        }
        let before = self.current.clone();
        self.save().await?;
        let changed = conditions::transitions(
            &before.conditions,
            &self.next.conditions,
            &[READY, STALLED, ACCOUNT_CREATED],
        );
        events::publish_transitions(
            &self.ctx.recorder,
            &self.member.object_ref(&()),
            &changed,
            "Reconcile",
        )
        .await;
        Ok(())
    }
}

fn stalled(reason: &str, message: &str, created: Cond) -> Vec<Cond> {
    vec![
        Cond::new(READY, Status::False, reason, message),
        Cond::new(RECONCILING, Status::False, reason, ""),
        Cond::new(STALLED, Status::True, reason, message),
        created,
    ]
}

fn progressing(reason: &str, message: &str, created: Cond) -> Vec<Cond> {
    vec![
        Cond::new(READY, Status::False, reason, message),
        Cond::new(RECONCILING, Status::True, reason, message),
        Cond::new(STALLED, Status::False, reason, ""),
        created,
    ]
}

fn not_created(reason: &str, message: &str) -> Cond {
    Cond::new(ACCOUNT_CREATED, Status::False, reason, message)
}

fn creating(message: &str) -> Cond {
    Cond::new(ACCOUNT_CREATED, Status::Unknown, reason::CREATING, message)
}

async fn apply(member: &MemberAccount, ctx: &Context) -> Result<Action, Error> {
    let mut pass = Pass::new(member, ctx);
    let poll = ctx.settings.poll_interval;
    if pass.next.account_id.is_none() {
        match create(&mut pass).await? {
            Creation::Done(account) => pass.next.account_id = Some(account),
            Creation::Wait(action) => return Ok(action),
        }
    }
    let account = pass.next.account_id.clone().unwrap_or_default();
    let spec = &member.spec;
    let info = ctx.accounts.account(&account).await?;
    pass.next.account_status = info.state.as_ref().map(ToString::to_string);

    // Placement.
    let parent = ctx.accounts.parent_of(&account).await?;
    if parent != spec.parent_id {
        match ctx
            .accounts
            .move_account(&account, &parent, &spec.parent_id)
            .await
        {
            Ok(()) => {
                info!(name = %member.name_any(), %account, from = %parent, to = %spec.parent_id, "moved account");
                publish(
                    member,
                    ctx,
                    EventType::Normal,
                    "Moved",
                    &format!(
                        "account {account} moved from {parent} to {}",
                        spec.parent_id
                    ),
                )
                .await;
                pass.next.parent_id = Some(spec.parent_id.clone());
            }
            Err(e) if !e.class.is_retryable() => {
                let message = format!("MoveAccount to {}: {}", spec.parent_id, aws_text(&e));
                let created = Cond::new(ACCOUNT_CREATED, Status::True, reason::CREATED, "");
                pass.next.parent_id = Some(parent);
                pass.write(stalled(reason::AWS_REJECTED, &message, created))
                    .await?;
                return Ok(Action::requeue(ctx.settings.resync_interval));
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        pass.next.parent_id = Some(parent);
    }

    // Tags: the spec (and the owner tag) is the whole truth about the account's tags.
    let tags = ctx.accounts.tags(&account).await?;
    let wanted_tags = decide::wanted_tags(&spec.tags, &owner_of(member));
    let (set, remove) = decide::tag_changes(&tags, &wanted_tags);
    if !set.is_empty() {
        ctx.accounts.tag(&account, &set).await?;
    }
    if !remove.is_empty() {
        ctx.accounts.untag(&account, &remove).await?;
    }

    // The name cannot change after creation: say so rather than ignore it.
    let created = if !info.name.is_empty() && info.name != spec.account_name {
        Cond::new(
            ACCOUNT_CREATED,
            Status::True,
            reason::NAME_NOT_APPLIED,
            format!(
                "account {account} exists as {:?}; accountName {:?} is not applied (Organizations cannot rename accounts through its API; rename it in the account's settings)",
                info.name, spec.account_name
            ),
        )
    } else {
        Cond::new(
            ACCOUNT_CREATED,
            Status::True,
            reason::CREATED,
            format!(
                "account {account} is {} under {}",
                info.state.clone().unwrap_or_default(),
                spec.parent_id
            ),
        )
    };
    if !matches!(info.state, None | Some(AccountState::Active)) {
        let message = format!(
            "account {account} is {} in Organizations; it cannot be used",
            info.state.clone().unwrap_or_default()
        );
        pass.write(stalled(reason::NOT_ACTIVE, &message, created))
            .await?;
        return Ok(Action::requeue(ctx.settings.resync_interval));
    }

    // The child link.
    let children: Api<LinkedAccount> =
        Api::namespaced(ctx.client.clone(), &member.namespace().unwrap_or_default());
    let name = member.name_any();
    if !spec.link.enabled {
        pass.next.linked_account = None;
        if let Some(child) = children.get_opt(&name).await?
            && owned_by(&child, member)
        {
            children.delete(&name, &DeleteParams::default()).await?;
        }
        let message = format!("account {account} exists; linking is disabled");
        pass.write(ready(&message, created)).await?;
        return Ok(Action::requeue(ctx.settings.resync_interval));
    }
    let wanted = child(member, &account);
    let existing = children.get_opt(&name).await?;
    if let Some(c) = &existing
        && !owned_by(c, member)
    {
        let message = format!(
            "LinkedAccount {name:?} exists and is not owned by this MemberAccount; delete or rename it"
        );
        pass.write(stalled(reason::AWS_REJECTED, &message, created))
            .await?;
        return Ok(Action::await_change());
    }
    children
        .patch(
            &name,
            &PatchParams::apply(CHILD_MANAGER).force(),
            &Patch::Apply(&wanted),
        )
        .await?;
    pass.next.linked_account = Some(name.clone());
    let child_conds = existing
        .and_then(|c| c.status)
        .map(|s| s.conditions)
        .unwrap_or_default();
    let conds = if conditions::is(&child_conds, READY, Status::True) {
        ready(
            &format!("account {account} exists and its access role is assumable"),
            created,
        )
    } else if conditions::is(&child_conds, STALLED, Status::True) {
        let message = conditions::find(&child_conds, STALLED)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        stalled(
            reason::NOT_ASSUMABLE,
            &format!("LinkedAccount {name}: {message}"),
            created,
        )
    } else {
        progressing(
            reason::VERIFYING,
            &format!("verifying the access role of account {account} (LinkedAccount {name})"),
            created,
        )
    };
    let is_ready = conditions::is(&child_conds, READY, Status::True);
    pass.write(conds).await?;
    Ok(Action::requeue(if is_ready {
        ctx.settings.resync_interval
    } else {
        poll.max(Duration::from_secs(30))
    }))
}

fn ready(message: &str, created: Cond) -> Vec<Cond> {
    vec![
        Cond::new(READY, Status::True, reason::READY, message),
        Cond::new(RECONCILING, Status::False, reason::READY, ""),
        Cond::new(STALLED, Status::False, reason::READY, ""),
        created,
    ]
}

/// Finds, resumes or starts the CreateAccount request. Never calls CreateAccount while a
/// request of this object may still be running or its account may exist.
async fn create(pass: &mut Pass<'_>) -> Result<Creation, Error> {
    let ctx = pass.ctx;
    let spec = &pass.member.spec;
    let poll = ctx.settings.poll_interval;

    // A request that failed for good is retried only for a new generation of the spec.
    if pass
        .next
        .create_account_state
        .as_deref()
        .map(CreateAccountState::from)
        == Some(CreateAccountState::Failed)
        && pass.current.observed_generation < pass.generation()
    {
        pass.next.create_account_request_id = None;
        pass.next.create_account_state = None;
    }

    if let Some(id) = pass.next.create_account_request_id.clone() {
        let request = ctx.accounts.create_request(&id).await?;
        pass.next.create_account_state = Some(request.state.to_string());
        match request.state {
            CreateAccountState::Succeeded => {
                if let Some(account) = request.account_id {
                    // A request followed by name (recovery) proves itself by the e-mail.
                    if made_for(ctx, pass.member, &account).await? {
                        info!(name = %pass.member.name_any(), %account, request = %id, "account created");
                        return Ok(Creation::Done(account));
                    }
                    warn!(name = %pass.member.name_any(), %account, request = %id, "the request made an account for another e-mail; it is not this object's");
                    pass.next.create_account_request_id = None;
                    pass.next.create_account_state = None;
                }
            }
            CreateAccountState::Failed => {
                let failure = request.failure_reason.unwrap_or_default();
                let (reason, transient) = classify_failure(&failure);
                let message = format!(
                    "CreateAccount request {id} failed: {failure}{}",
                    if transient {
                        "; retried with backoff"
                    } else {
                        "; fix the cause and change the spec to try again"
                    }
                );
                if !transient {
                    pass.write(stalled(&reason, &message, not_created(&reason, &message)))
                        .await?;
                    return Ok(Creation::Wait(Action::await_change()));
                }
                // Transient: a new request after a pause measured from when the failure was
                // first reported (status writes of this pass trigger the next one at once).
                let since = conditions::find(&pass.current.conditions, ACCOUNT_CREATED)
                    .filter(|c| c.reason == reason)
                    .map(|c| c.last_transition_time.0);
                let pause = Duration::from_secs(30);
                let waited = since.map(|t| pass.now.duration_since(t).unsigned_abs());
                if waited.is_some_and(|w| w >= pause) {
                    pass.next.create_account_request_id = None;
                    pass.next.create_account_state = None;
                } else {
                    pass.write(progressing(
                        &reason,
                        &message,
                        not_created(&reason, &message),
                    ))
                    .await?;
                    return Ok(Creation::Wait(Action::requeue(
                        pause.saturating_sub(waited.unwrap_or_default()),
                    )));
                }
            }
            _ => {
                let message = format!("CreateAccount request {id} is in progress");
                pass.write(progressing(reason::CREATING, &message, creating(&message)))
                    .await?;
                return Ok(Creation::Wait(Action::requeue(poll)));
            }
        }
    }

    if pass.next.create_account_request_id.is_none() {
        // Recovery before creation: an account with this e-mail carrying this object's owner
        // tag, or a request in progress under this name, is ours (the status write after an
        // earlier call was lost). An account with the e-mail and without the tag is not.
        if let Some((found, owned)) = with_email(ctx, pass.member).await? {
            if !owned {
                let owner = owner_of(pass.member);
                let message = format!(
                    "account {found} already has the e-mail {} and was not created for this MemberAccount (it lacks the tag {tag}={owner}); use another e-mail, or tag that account to manage it here: aws organizations tag-resource --resource-id {found} --tags Key={tag},Value={owner}",
                    spec.email,
                    tag = labels::OWNER_TAG,
                );
                pass.write(stalled(
                    reason::EMAIL_IN_USE,
                    &message,
                    not_created(reason::EMAIL_IN_USE, &message),
                ))
                .await?;
                return Ok(Creation::Wait(Action::requeue(UNOWNED_RECHECK)));
            }
            info!(name = %pass.member.name_any(), account = %found, "recovered the account with this e-mail and owner tag");
            pass.next.create_account_state = Some(CreateAccountState::Succeeded.to_string());
            return Ok(Creation::Done(found));
        }
        let pending = ctx.accounts.requests_in_progress().await?;
        if let Some(request) = pending
            .into_iter()
            .find(|r| r.account_name.as_deref() == Some(spec.account_name.as_str()))
        {
            info!(name = %pass.member.name_any(), request = %request.id, "resumed a CreateAccount request in progress");
            pass.next.create_account_request_id = Some(request.id.clone());
            pass.next.create_account_state = Some(request.state.to_string());
            let message = format!("CreateAccount request {} is in progress", request.id);
            pass.write(progressing(reason::CREATING, &message, creating(&message)))
                .await?;
            return Ok(Creation::Wait(Action::requeue(poll)));
        }
        let new = NewAccount {
            name: spec.account_name.clone(),
            email: spec.email.clone(),
            role_name: spec.role_name.clone(),
            billing_allowed: spec.iam_user_access_to_billing == BillingAccess::Allow,
            tags: decide::wanted_tags(&spec.tags, &owner_of(pass.member)),
        };
        match ctx.accounts.create_account(&new).await {
            Ok(request) => {
                ctx.metrics.aws_call("organizations", "CreateAccount", "ok");
                // Recorded before anything waits on it.
                pass.next.create_account_request_id = Some(request.id.clone());
                pass.next.create_account_state = Some(request.state.to_string());
                pass.save().await?;
                info!(name = %pass.member.name_any(), request = %request.id, "CreateAccount requested");
                let message = format!("CreateAccount request {} is in progress", request.id);
                pass.write(progressing(reason::CREATING, &message, creating(&message)))
                    .await?;
                return Ok(Creation::Wait(Action::requeue(poll)));
            }
            Err(e) => {
                ctx.metrics
                    .aws_call("organizations", "CreateAccount", e.class.as_label());
                let message = format!("CreateAccount: {}", aws_text(&e));
                if e.class == ErrorClass::Throttled {
                    pass.write(progressing(
                        reason::RATE_LIMITED,
                        &message,
                        not_created(reason::RATE_LIMITED, &message),
                    ))
                    .await?;
                    return Err(e.into());
                }
                if e.class.is_retryable() {
                    return Err(e.into());
                }
                let reason = decide::rejection_reason(e.class);
                pass.write(stalled(reason, &message, not_created(reason, &message)))
                    .await?;
                return Ok(Creation::Wait(Action::requeue(Duration::from_secs(600))));
            }
        }
    }
    // A SUCCEEDED request without an account ID: look again shortly.
    Ok(Creation::Wait(Action::requeue(poll)))
}

async fn cleanup(member: &MemberAccount, ctx: &Context) -> Result<Action, Error> {
    let name = member.name_any();
    let status = member.status.clone().unwrap_or_default();
    if member.spec.deletion_policy == MemberDeletionPolicy::Retain {
        let note = match &status.account_id {
            Some(id) => format!("deletionPolicy is Retain: account {id} stays in the organization"),
            None => "deletionPolicy is Retain; no account was created".to_string(),
        };
        publish(member, ctx, EventType::Normal, "Retained", &note).await;
        return Ok(Action::await_change());
    }
    let mut pass = Pass::new(member, ctx);
    // Only an account that is provably this object's is ever closed: the one in status, the
    // one its request made for its e-mail, or the one with its e-mail and its owner tag.
    let account = match status.account_id.clone() {
        Some(id) => Some(id),
        None => match &status.create_account_request_id {
            Some(id) => {
                let request = ctx.accounts.create_request(id).await?;
                if request.state == CreateAccountState::InProgress {
                    return Err(Error::Waiting(
                        format!("CreateAccount request {id} is still in progress"),
                        ctx.settings.poll_interval,
                    ));
                }
                match request.account_id {
                    Some(account) if made_for(ctx, member, &account).await? => Some(account),
                    _ => None,
                }
            }
            None => with_email(ctx, member)
                .await?
                .and_then(|(found, owned)| owned.then_some(found)),
        },
    };
    let Some(account) = account else {
        publish(
            member,
            ctx,
            EventType::Normal,
            "NothingToClose",
            "no account of this object exists (none was created, or the one with its e-mail is not tagged for it); nothing is closed",
        )
        .await;
        return Ok(Action::await_change());
    };
    let info = ctx.accounts.account(&account).await?;
    if info
        .state
        .as_ref()
        .is_some_and(AccountState::closing_or_closed)
    {
        return Ok(Action::await_change());
    }
    match ctx.accounts.close_account(&account).await {
        Ok(()) => {
            pass.next.account_status = Some(AccountState::PendingClosure.to_string());
            pass.save().await?;
            publish(
                member,
                ctx,
                EventType::Normal,
                reason::CLOSING,
                &format!(
                    "deletionPolicy is Close: account {account} is PENDING_CLOSURE (reinstatable for 90 days)"
                ),
            )
            .await;
            info!(%name, %account, "account closed");
            Ok(Action::await_change())
        }
        Err(e) if e.class == ErrorClass::AlreadyClosed => Ok(Action::await_change()),
        Err(e) if !e.class.is_retryable() => {
            let reason = if e.class == ErrorClass::QuotaExceeded {
                reason::CLOSE_QUOTA
            } else {
                reason::AWS_REJECTED
            };
            let message = format!(
                "CloseAccount {account}: {}; the account stays until this is resolved (retried hourly, or on any change to this object)",
                aws_text(&e)
            );
            let created = Cond::new(ACCOUNT_CREATED, Status::True, reason::CREATED, "");
            pass.write(stalled(reason, &message, created)).await?;
            Err(Error::Waiting(message, Duration::from_secs(3600)))
        }
        Err(e) => Err(e.into()),
    }
}

fn owned_by(child: &LinkedAccount, member: &MemberAccount) -> bool {
    child
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == member.meta().uid.as_ref())
}

/// The child LinkedAccount: the new account's access role, verified like any other link.
fn child(member: &MemberAccount, account: &str) -> serde_json::Value {
    let owner = member.controller_owner_ref(&());
    let mut spec = json!({
        "accountId": account,
        "roleName": member.spec.role_name,
        "displayName": member.spec.account_name,
    });
    if let Some(interval) = &member.spec.link.verify_interval {
        spec["verifyInterval"] = json!(interval);
    }
    json!({
        "apiVersion": "accountlinker.dev/v1alpha1",
        "kind": "LinkedAccount",
        "metadata": {
            "name": member.name_any(),
            "namespace": member.namespace(),
            "labels": {CHILD_LABEL: member.name_any()},
            "ownerReferences": owner.map(|o| vec![o]),
        },
        "spec": spec,
    })
}

fn aws_text(e: &AwsError) -> String {
    match &e.code {
        Some(code) if !e.message.starts_with(code.as_str()) => format!("{code}: {}", e.message),
        _ => e.message.clone(),
    }
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
