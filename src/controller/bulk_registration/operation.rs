//! Phase "operation": the single writer of the StackSet. An operation in flight is polled;
//! otherwise the planned step becomes the next operation, recorded in status before it is
//! started (a [`Recorded`] is the only way to call [`start`]), so a crash at any point leaves an
//! ID the next pass polls or plans again — and CloudFormation treats a repeated ID as the same
//! operation. Which operation comes next and what its answer does to status are pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::plan::{self, Step, action_label, outcome_label};
use super::status::{Headline, Stall};
use super::template::fingerprint;
use super::{Error, Inputs, Pass, REJECTED_RECHECK, aws_text};
use super::{definition, drift, import};
use crate::api::BulkRegistrationStatus;
use crate::api::bulk_registration::{StackSetOperation, reason};
use crate::aws::stacksets::{
    Instance, InstanceOperation, OperationState, OperationStatus, Preferences, StackSetDefinition,
};
use crate::aws::{AwsError, ErrorClass};

/// `status` of an operation recorded but not yet started.
pub const PENDING: &str = "PENDING";
/// `status` of an operation AWS refused to start.
pub const REJECTED: &str = "REJECTED";

/// What the operation in flight is doing.
pub enum Poll {
    /// None in flight (it finished before this pass, or was recorded and never started).
    Idle,
    /// Still running: `status.operation` carries its latest status.
    Running { message: String },
    /// It ended during this pass and moved to `status.lastOperation`.
    Finished { ok: bool, note: String },
}

/// Looks at the operation in flight, if any, and moves a finished one to `lastOperation`.
pub async fn poll(pass: &mut Pass<'_>) -> Result<Poll, Error> {
    let Some(op) = pass.next.operation.clone() else {
        return Ok(Poll::Idle);
    };
    let ctx = pass.ctx;
    match ctx.stacksets.operation(&pass.set, &op.id).await? {
        Some(state) if !state.finished() => {
            let message = format!(
                "{} operation {} is {} for {} account(s)",
                op.action, op.id, state.status, op.accounts
            );
            pass.next.operation = Some(StackSetOperation {
                status: Some(state.status.to_string()),
                ..op
            });
            Ok(Poll::Running { message })
        }
        Some(state) => {
            let ok = state.status == OperationStatus::Succeeded;
            ctx.metrics
                .stackset_operation(action_label(&op.action), outcome_label(ok));
            let note = format!(
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
            let record = finished(op, state, pass.now);
            // A drift check deploys nothing: `lastOperation` stays the last one that did.
            match record.action.as_str() {
                "DetectDrift" => pass.next.last_drift_check = Some(drift::completed(&record, 0)),
                _ => pass.next.last_operation = Some(record),
            }
            pass.next.operation = None;
            Ok(Poll::Finished { ok, note })
        }
        // Recorded but never started (the process stopped in between): plan again, which
        // yields the same ID.
        None => {
            pass.next.operation = None;
            Ok(Poll::Idle)
        }
    }
}

/// Credits the definition `hash` to the StackSet when the operation that was in flight is an
/// UpdateStackSet of it that CloudFormation knows (`polled` running or finished). The hash is
/// otherwise written only by [`after_start`]; a crash after CloudFormation accepted the update
/// and before that write left `templateHash` behind, and [`next`], seeing the step done, settled
/// with the StackSet counted outdated for ever (a rotation never narrowed to its end).
pub fn credit_update(pass: &mut Pass<'_>, polled: &Poll, hash: &str) {
    let uid = pass.bulk.meta().uid.clone().unwrap_or_default();
    let generation = pass.generation().unwrap_or_default();
    let planned = plan::operation_id(&uid, generation, hash, &Step::UpdateStackSet);
    let known = !matches!(polled, Poll::Idle);
    if known
        && let Some(op) = &pass.current.operation
        && carries(op, &planned)
    {
        pass.next.template_hash = Some(hash.to_string());
    }
}

/// Whether operation `op` is the UpdateStackSet planned as `planned` (chained or not).
fn carries(op: &StackSetOperation, planned: &str) -> bool {
    op.action == Step::UpdateStackSet.action() && names_step(&op.id, planned)
}

/// The record of an operation that ended as CloudFormation reports it.
pub fn finished(op: StackSetOperation, state: OperationState, now: Timestamp) -> StackSetOperation {
    StackSetOperation {
        status: Some(state.status.to_string()),
        reason: state.reason,
        ended_at: Some(Time(now)),
        ..op
    }
}

/// What to do after the operation in flight (if any) ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// CloudFormation matches the registration, or the planned operation already ran: the
    /// instances and children decide.
    Settle,
    /// Record, then start this operation.
    Start { step: Step, id: String },
    /// AWS refused this very operation: stay stalled with its answer until the spec, the
    /// template or the targets change (which plans another ID).
    Refused(Stall),
}

/// The next operation from the planned `step`: started unless `lastOperation` already is the
/// same operation — then the instances decide if it ran, and AWS's refusal stands if it was
/// rejected.
///
/// `id_of` names the step; the ID sent to CloudFormation also carries the last operation's ID.
/// CloudFormation treats a repeated OperationId as the earlier operation and starts nothing, so
/// a step planned again after other operations (accounts removed from a ConfigMap and added back,
/// an update of the same cancelled instances after a delete) needs an ID of its own, while a
/// retry after a crash (nothing ended in between, so the same last operation) still repeats it.
pub fn next(
    step: Option<Step>,
    id_of: impl Fn(&Step) -> String,
    last: Option<&StackSetOperation>,
) -> Next {
    let Some(step) = step else {
        return Next::Settle;
    };
    let planned = id_of(&step);
    match last {
        Some(last)
            if names_step(&last.id, &planned) && last.status.as_deref() == Some(REJECTED) =>
        {
            let message = last.reason.clone().unwrap_or_default();
            Next::Refused(rejection(&step, message))
        }
        Some(last) if names_step(&last.id, &planned) => Next::Settle,
        _ => {
            let id = chained(&planned, last.map(|l| l.id.as_str()));
            Next::Start { step, id }
        }
    }
}

/// The OperationId of step `planned` started after operation `previous`.
fn chained(planned: &str, previous: Option<&str>) -> String {
    match previous {
        Some(previous) => format!("{planned}-{}", &fingerprint(&[previous])[..8]),
        None => planned.to_string(),
    }
}

/// Whether operation ID `id` was given to step `planned` (after any previous operation; IDs
/// recorded before chaining are the step's ID alone).
fn names_step(id: &str, planned: &str) -> bool {
    id.strip_prefix(planned)
        .is_some_and(|rest| rest.is_empty() || (rest.len() == 9 && rest.starts_with('-')))
}

/// Proof that an operation is in status: [`start`] takes one, and only [`record`] makes one.
pub struct Recorded {
    step: Step,
    record: StackSetOperation,
}

impl Recorded {
    /// Private: only [`record`] (and tests) may claim that an operation is in status.
    fn new(step: Step, id: String, accounts: usize, now: Timestamp) -> Self {
        let record = StackSetOperation {
            id,
            action: step.action().into(),
            status: Some(PENDING.into()),
            reason: None,
            started_at: Some(Time(now)),
            ended_at: None,
            accounts: i32::try_from(accounts).unwrap_or(i32::MAX),
        };
        Self { step, record }
    }

    pub fn step(&self) -> &Step {
        &self.step
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn accounts(&self) -> i32 {
        self.record.accounts
    }
}

/// Writes `step` as `status.operation` (PENDING), so that a crash after this point leaves an ID
/// the next pass finds.
pub async fn record(
    pass: &mut Pass<'_>,
    step: Step,
    id: String,
    accounts: usize,
) -> Result<Recorded, Error> {
    let recorded = Recorded::new(step, id, accounts, pass.now);
    pass.next.operation = Some(recorded.record.clone());
    pass.save().await?;
    pass.current = pass.next.clone();
    Ok(recorded)
}

/// How CloudFormation answered the start of an operation.
#[derive(Debug)]
pub enum Outcome {
    /// Accepted: the operation runs.
    Started,
    /// Another operation (automatic deployment, a console user) runs on the StackSet: wait for
    /// it, never fail.
    Busy(AwsError),
    /// CloudFormation already knows this operation ID: it is polled next time.
    Duplicate(AwsError),
    /// Refused for a reason that will not go away by sending the same request again.
    Rejected(AwsError),
    /// Throttled or transient: the recorded operation is planned again with the same ID.
    Retry(AwsError),
    /// The StackSet's tags, read right before the call, do not name this registration: nothing
    /// was sent (the message says whose it is).
    NotOwned(String),
}

impl Outcome {
    /// Classifies the answer to a start.
    pub fn of(result: Result<String, AwsError>) -> Self {
        match result {
            Ok(_) => Self::Started,
            Err(e) => match e.class {
                ErrorClass::InProgress => Self::Busy(e),
                ErrorClass::AlreadyExists => Self::Duplicate(e),
                class if !class.is_retryable() => Self::Rejected(e),
                _ => Self::Retry(e),
            },
        }
    }
}

/// Starts the recorded operation, once the StackSet's tags (read now, not from status) show it is
/// this registration's. `definition` is what an UpdateStackSet sends (cleanup, which plans only
/// deletions, has none).
pub async fn start(
    pass: &Pass<'_>,
    definition: Option<&StackSetDefinition>,
    preferences: &Preferences,
    recorded: &Recorded,
) -> Outcome {
    let tagging = matches!(recorded.step, Step::UpdateStackSet);
    match pass.may_change(tagging).await {
        Ok(Ok(())) => {}
        Ok(Err(message)) => return Outcome::NotOwned(message),
        Err(e) => return Outcome::of(Err(e)),
    }
    let (stacksets, set) = (&pass.ctx.stacksets, &pass.set);
    let id = recorded.id();
    let op = |batch: &plan::Batch| InstanceOperation {
        operation_id: id.to_string(),
        targets: batch.targets.clone(),
        regions: batch.regions.clone(),
        preferences: preferences.clone(),
    };
    let result = match (&recorded.step, definition) {
        (Step::UpdateStackSet, Some(definition)) => {
            stacksets.update(set, definition, id, preferences).await
        }
        (Step::UpdateStackSet, None) => Err(AwsError::new(
            "cloudformation:UpdateStackSet",
            ErrorClass::Rejected,
            "no StackSet definition to update with",
        )),
        (Step::Create(batch), _) => stacksets.create_instances(set, &op(batch)).await,
        (
            Step::Delete {
                batch,
                retain_stacks,
            },
            _,
        ) => {
            stacksets
                .delete_instances(set, &op(batch), *retain_stacks)
                .await
        }
        (Step::Update(batch) | Step::RemediateDrift(batch), _) => {
            stacksets.update_instances(set, &op(batch)).await
        }
        (Step::Import { stack_ids, .. }, _) => {
            import::start(pass, id, stack_ids, preferences).await
        }
        (Step::DetectDrift, _) => stacksets.detect_drift(set, id, preferences).await,
    };
    Outcome::of(result)
}

/// What the answer to a start changes in status: a started operation runs (and an
/// UpdateStackSet means the StackSet holds the definition with fingerprint `hash`), another
/// operation's leaves none in flight, a rejected one becomes the last operation, `REJECTED`
/// with AWS's message, which [`next`] turns into a stall on every later pass.
pub fn after_start(
    status: &mut BulkRegistrationStatus,
    recorded: &Recorded,
    outcome: &Outcome,
    hash: &str,
    now: Timestamp,
) {
    let update = matches!(recorded.step, Step::UpdateStackSet);
    let refused = matches!(outcome, Outcome::Rejected(_));
    if refused || matches!(outcome, Outcome::Started) {
        drift::after_start(status, &recorded.record, refused, now);
    }
    match outcome {
        Outcome::Rejected(_) if matches!(recorded.step, Step::DetectDrift) => {
            status.operation = None;
        }
        Outcome::Started => {
            if update {
                status.template_hash = Some(hash.to_string());
            }
            status.operation = Some(StackSetOperation {
                status: Some(OperationStatus::Running.to_string()),
                ..recorded.record.clone()
            });
        }
        Outcome::Busy(_) | Outcome::NotOwned(_) => status.operation = None,
        // The StackSet keeps what it had (a refused UpdateStackSet changed nothing), so
        // `templateHash` stays; the rejection is remembered for the passes after this one.
        Outcome::Rejected(e) => {
            status.operation = None;
            status.last_operation = Some(StackSetOperation {
                status: Some(REJECTED.into()),
                reason: Some(aws_text(e)),
                ended_at: Some(Time(now)),
                ..recorded.record.clone()
            });
        }
        Outcome::Duplicate(_) | Outcome::Retry(_) => {}
    }
}

/// Records `step` in status, starts it, and settles under what CloudFormation answered.
pub(super) async fn begin(
    pass: &mut Pass<'_>,
    inputs: &Inputs,
    instances: &[Instance],
    step: plan::Step,
    id: String,
) -> Result<Action, Error> {
    let ctx = pass.ctx;
    let accounts = step.batch().map_or(instances.len(), plan::Batch::accounts);
    let recorded = record(pass, step, id, accounts).await?;
    let definition = Some(&inputs.definition.spec);
    let preferences = definition::preferences(pass.bulk);
    let outcome = start(pass, definition, &preferences, &recorded).await;
    let hash = &inputs.definition.hash;
    after_start(&mut pass.next, &recorded, &outcome, hash, pass.now);
    let action = recorded.step().action();
    let poll = ctx.settings.poll_interval;
    match outcome {
        Outcome::Started => {
            info!(name = %pass.bulk.name_any(), operation = %recorded.id(), action, accounts, "started StackSet operation");
            let message = format!(
                "{action} operation {} started for {accounts} account(s)",
                recorded.id()
            );
            let headline = Headline::running(action, message);
            pass.settle(inputs, instances, headline).await?;
            Ok(Action::requeue(poll))
        }
        Outcome::Busy(_) => {
            let headline = Headline::Busy {
                reason: reason::OPERATION_IN_PROGRESS,
                message: format!(
                    "another operation is running on StackSet {}; waiting for it to finish",
                    pass.set.name
                ),
            };
            pass.settle(inputs, instances, headline).await?;
            Ok(Action::requeue(poll * 2))
        }
        Outcome::Duplicate(_) => Ok(Action::requeue(poll)),
        Outcome::Rejected(e) => {
            let label = action_label(action);
            ctx.metrics.stackset_operation(label, outcome_label(false));
            let message = aws_text(&e);
            pass.publish(EventType::Warning, reason::AWS_REJECTED, &message)
                .await;
            if matches!(recorded.step(), Step::DetectDrift) {
                // A refused check is reported and waits for its next interval; nothing stalls.
                pass.settle(inputs, instances, Headline::Summary).await?;
                return Ok(Action::requeue(REJECTED_RECHECK));
            }
            let stall = rejection(recorded.step(), message);
            pass.settle(inputs, instances, Headline::Stalled(stall))
                .await?;
            Ok(Action::requeue(REJECTED_RECHECK))
        }
        // Transient: the recorded operation is polled next time; CloudFormation does not know
        // it, so it is planned again with the same ID.
        Outcome::Retry(e) => Err(e.into()),
        Outcome::NotOwned(message) => {
            let stall = Stall::stack_set(reason::STACK_SET_NOT_OWNED, message);
            pass.settle(inputs, instances, Headline::Stalled(stall))
                .await?;
            Ok(Action::requeue(super::STALLED_RECHECK))
        }
    }
}

/// The stall of a rejected operation: an UpdateStackSet leaves the StackSet without the current
/// definition.
pub fn rejection(step: &Step, message: String) -> Stall {
    if matches!(step, Step::UpdateStackSet) {
        Stall::stack_set(reason::AWS_REJECTED, message)
    } else {
        Stall::new(reason::AWS_REJECTED, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::conditions::{READY, STACK_SET_READY, STALLED};
    use crate::controller::bulk_registration::children::Verification;
    use crate::controller::bulk_registration::plan::Desired;
    use crate::controller::bulk_registration::status::{self, Facts};
    use crate::controller::conditions::Status;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn aws(code: &str, class: ErrorClass) -> AwsError {
        AwsError {
            code: Some(code.into()),
            ..AwsError::new(
                "cloudformation:UpdateStackSet",
                class,
                format!("{code} happened"),
            )
        }
    }

    fn desired() -> Desired {
        Desired {
            accounts: ["111111111111", "222222222222"].map(String::from).into(),
            regions: vec!["eu-west-1".into()],
            ..Desired::default()
        }
    }

    fn deployed() -> Vec<Instance> {
        desired()
            .accounts
            .iter()
            .map(|a| Instance {
                account: a.clone(),
                region: "eu-west-1".into(),
                status: "CURRENT".into(),
                detailed_status: Some("SUCCEEDED".into()),
                ..Instance::default()
            })
            .collect()
    }

    /// One pass up to the choice of the operation, as the driver makes it.
    fn plan_pass(
        status: &BulkRegistrationStatus,
        instances: &[Instance],
        generation: i64,
        hash: &str,
    ) -> Next {
        let current = status.template_hash.as_deref() == Some(hash);
        let step = plan::next_step(&desired(), instances, current);
        let id_of = |s: &Step| plan::operation_id("uid-1", generation, hash, s);
        next(step, id_of, status.last_operation.as_ref())
    }

    #[test]
    fn a_step_planned_again_after_other_operations_gets_an_id_of_its_own() {
        let create = Step::Create(plan::Batch {
            targets: crate::aws::stacksets::Targets {
                accounts: vec!["111111111111".into()],
                ..Default::default()
            },
            regions: vec!["eu-west-1".into()],
        });
        let id_of = |s: &Step| plan::operation_id("uid-1", 1, "hash", s);
        let op = |id: &str| StackSetOperation {
            id: id.into(),
            status: Some("SUCCEEDED".into()),
            ..StackSetOperation::default()
        };
        let start = |last: Option<&StackSetOperation>| match next(Some(create.clone()), id_of, last)
        {
            Next::Start { id, .. } => Some(id),
            _ => None,
        };
        // The first create, after an unrelated delete: the account is created.
        let first = start(Some(&op("al-delete-g1-0123456789abcdef"))).unwrap();
        // Retried after a crash (the same last operation): the same ID, which CloudFormation
        // answers with the operation already started.
        assert_eq!(
            start(Some(&op("al-delete-g1-0123456789abcdef"))),
            Some(first.clone())
        );
        // Right after itself: nothing to start, the instances decide.
        assert_eq!(start(Some(&op(&first))), None);
        // The account was removed (another delete) and added back: a new ID, or CloudFormation
        // would treat the create as the first one and deploy nothing.
        let again = start(Some(&op("al-delete-g1-fedcba9876543210"))).unwrap();
        assert_ne!(again, first);
        assert!(again.starts_with(&id_of(&create)), "{again}");
        assert!(
            again.len() <= 128
                && again
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        );
        // IDs recorded before chaining still name their step.
        assert_eq!(start(Some(&op(&id_of(&create)))), None);
    }

    /// Issue 14 (found by the crash matrix): the UpdateStackSet in flight carries its hash, so a
    /// crash before `after_start` wrote it does not leave the StackSet counted outdated.
    #[test]
    fn an_update_in_flight_carries_the_hash_its_id_names() {
        let op = |action: &str, id: &str| StackSetOperation {
            id: id.into(),
            action: action.into(),
            ..StackSetOperation::default()
        };
        let planned = "al-updatestackset-g1-abcdef";
        let cases = [
            (op("UpdateStackSet", planned), true),
            (op("UpdateStackSet", &format!("{planned}-12345678")), true),
            (op("UpdateStackSet", "al-updatestackset-g1-other"), false),
            (op("Create", planned), false),
        ];
        for (op, want) in cases {
            assert_eq!(carries(&op, planned), want, "{op:?}");
        }
    }

    #[test]
    fn answers_to_a_start_are_classified() {
        let cases = [
            (
                aws("OperationInProgressException", ErrorClass::InProgress),
                "busy",
            ),
            (
                aws(
                    "OperationIdAlreadyExistsException",
                    ErrorClass::AlreadyExists,
                ),
                "duplicate",
            ),
            (aws("ValidationError", ErrorClass::Rejected), "rejected"),
            (aws("AccessDenied", ErrorClass::AccessDenied), "rejected"),
            (aws("Throttling", ErrorClass::Throttled), "retry"),
            (aws("InternalFailure", ErrorClass::Transient), "retry"),
        ];
        for (e, want) in cases {
            let got = match Outcome::of(Err(e.clone())) {
                Outcome::Started => "started",
                Outcome::Busy(_) => "busy",
                Outcome::Duplicate(_) => "duplicate",
                Outcome::Rejected(_) => "rejected",
                Outcome::Retry(_) => "retry",
                Outcome::NotOwned(_) => "not owned",
            };
            assert_eq!(got, want, "{e}");
        }
        assert!(matches!(Outcome::of(Ok("op".into())), Outcome::Started));
    }

    #[test]
    fn a_started_update_stores_the_new_hash_and_runs() {
        let mut status = BulkRegistrationStatus {
            template_hash: Some("old".into()),
            ..BulkRegistrationStatus::default()
        };
        let recorded = Recorded::new(Step::UpdateStackSet, "al-1".into(), 2, now());
        after_start(&mut status, &recorded, &Outcome::Started, "new", now());
        assert_eq!(status.template_hash.as_deref(), Some("new"));
        let op = status.operation.unwrap();
        assert_eq!(
            (op.id.as_str(), op.status.as_deref()),
            ("al-1", Some("RUNNING"))
        );
    }

    #[test]
    fn someone_elses_operation_leaves_none_in_flight() {
        let mut status = BulkRegistrationStatus::default();
        let recorded = Recorded::new(Step::UpdateStackSet, "al-1".into(), 2, now());
        status.operation = Some(recorded.record.clone());
        let busy = Outcome::Busy(aws("OperationInProgressException", ErrorClass::InProgress));
        after_start(&mut status, &recorded, &busy, "new", now());
        assert_eq!(status.operation, None);
        assert_eq!(status.template_hash, None);
    }

    /// A rejected start stalls the registration with AWS's message on every later pass, and a
    /// rejected UpdateStackSet leaves the StackSet not ready, until a change plans a new ID.
    #[test]
    fn a_rejected_operation_stays_stalled_until_something_changes() {
        // (step that AWS rejects, instances, hash before)
        let cases = [(true, deployed(), "old"), (false, Vec::new(), "new")];
        for (update, instances, before) in cases {
            let mut status = BulkRegistrationStatus {
                template_hash: Some(before.into()),
                ..BulkRegistrationStatus::default()
            };
            // Pass 1: started and rejected.
            let Next::Start { step, id } = plan_pass(&status, &instances, 1, "new") else {
                panic!("update={update}: a start expected");
            };
            assert_eq!(matches!(step, Step::UpdateStackSet), update);
            let recorded = Recorded::new(step, id, 2, now());
            let rejected = Outcome::Rejected(aws("ValidationError", ErrorClass::Rejected));
            after_start(&mut status, &recorded, &rejected, "new", now());
            assert_eq!(
                status.template_hash.as_deref(),
                Some(before),
                "update={update}: the StackSet keeps what it had"
            );
            // Pass 2 and later: the same plan is refused, not settled.
            let next = plan_pass(&status, &instances, 1, "new");
            let Next::Refused(stall) = &next else {
                panic!("update={update}: refused expected, got {next:?}");
            };
            assert_eq!(stall.reason, reason::AWS_REJECTED);
            assert!(
                stall.message.contains("ValidationError happened"),
                "{}",
                stall.message
            );
            let observed = status::observe(&desired(), &instances);
            let verification = Verification::default();
            let facts = Facts {
                targets: 2,
                observed: &observed,
                verification: &verification,
                stack_set_current: status.template_hash.as_deref() == Some("new"),
            };
            let conds = status::conditions(&facts, &Headline::Stalled(stall.clone()));
            let find = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap();
            assert_eq!(find(STALLED).status, Status::True);
            assert_eq!(find(READY).reason, reason::AWS_REJECTED);
            let stack_set = find(STACK_SET_READY);
            if update {
                assert_eq!(
                    (stack_set.status, stack_set.reason.as_str()),
                    (Status::False, reason::AWS_REJECTED)
                );
            } else {
                assert_eq!(stack_set.status, Status::True);
            }
            // A new generation (or template, or batch) is a new operation.
            assert!(matches!(
                plan_pass(&status, &instances, 2, "new"),
                Next::Start { .. }
            ));
        }
    }

    #[test]
    fn an_operation_that_ran_is_not_started_again() {
        let mut status = BulkRegistrationStatus {
            template_hash: Some("new".into()),
            ..BulkRegistrationStatus::default()
        };
        let Next::Start { step, id } = plan_pass(&status, &[], 1, "new") else {
            panic!("a start expected");
        };
        let recorded = Recorded::new(step, id, 2, now());
        let state = OperationState {
            status: "FAILED".into(),
            reason: Some("tolerance exceeded".into()),
        };
        status.last_operation = Some(finished(recorded.record.clone(), state, now()));
        assert_eq!(plan_pass(&status, &[], 1, "new"), Next::Settle);
        let last = status.last_operation.unwrap();
        assert_eq!(last.reason.as_deref(), Some("tolerance exceeded"));
        assert_eq!(last.ended_at, Some(Time(now())));
    }
}
