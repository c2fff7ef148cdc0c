//! Phase "cleanup" (the finalizer): `deletionPolicy: Delete` removes every instance, then the
//! StackSet; `Retain` leaves AWS alone. The children go last, before the finalizer is released.
//! Cleanup needs no valid spec beyond the deletion policy and the StackSet's name. Each delete
//! call is preceded by a fresh look at the StackSet's owner tags: a StackSet that is not this
//! registration's is left in AWS (Event `StackSetNotOwned`) and the finalizer is released. A
//! registration no LinkPolicy permits any more leaves AWS alone whatever its policy says.

use std::time::Duration;

use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::definition::preferences;
use super::operation::{self, Outcome, Poll};
use super::permit::{self, Permit};
use super::plan::{self, Desired, Step};
use super::status::{self, Stall};
use super::{CHILD_LABEL, Context, Error, Halt, Pass};
use super::{management, ownership};
use crate::api::bulk_registration::{BulkDeletionPolicy, PermissionModel, event, reason};
use crate::api::{BulkRegistration, LinkedAccount};
use crate::aws::ErrorClass;

/// How long a deletion that did not finish waits before it is looked at again.
const STUCK_RECHECK: Duration = Duration::from_secs(60);

pub async fn cleanup(bulk: &BulkRegistration, ctx: &Context) -> Result<Action, Error> {
    let ns = bulk.namespace().unwrap_or_default();
    let refusal = match permit::permit(bulk, ctx).await {
        Ok(Permit::Granted(_)) => None,
        Ok(Permit::Refused(message)) => Some(message),
        // The policies cannot be evaluated (a ConfigMap of the targets is gone): retain.
        Err(Halt::Stalled(stall)) => Some(stall.message),
        Err(Halt::Failed(e)) => return Err(e),
    };
    if let Some(message) = refusal {
        if permit::touched_aws(bulk) {
            let note = format!(
                "the StackSet and its stacks stay in AWS: no LinkPolicy permits this registration ({message})"
            );
            let pass = Pass::new(bulk, ctx);
            pass.publish(EventType::Warning, event::RETAINED_NOT_PERMITTED, &note)
                .await;
        }
    } else if bulk.spec.deletion_policy == BulkDeletionPolicy::Delete {
        let mut pass = Pass::new(bulk, ctx);
        if management::delete(&pass).await? {
            return Err(Error::Waiting(
                "deleting the management account's stack".into(),
                ctx.settings.poll_interval,
            ));
        }
        if let Some(wait) = delete_in_aws(&mut pass).await? {
            return Err(Error::Waiting(
                format!("deleting StackSet {} and its instances", pass.set.name),
                wait,
            ));
        }
    } else {
        let pass = Pass::new(bulk, ctx);
        pass.publish(
            EventType::Normal,
            event::RETAINED,
            "deletionPolicy is Retain: the StackSet and its stacks stay in AWS",
        )
        .await;
    }
    // The children go before the finalizer is released (garbage collection would remove them
    // too, but only after this object is gone).
    let children: Api<LinkedAccount> = Api::namespaced(ctx.client.clone(), &ns);
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
async fn delete_in_aws(pass: &mut Pass<'_>) -> Result<Option<Duration>, Error> {
    let ctx = pass.ctx;
    let poll = Some(ctx.settings.poll_interval);
    let Some(info) = ownership::locate(pass).await? else {
        info!(name = %pass.bulk.name_any(), stack_set = %pass.set.name, "StackSet already gone");
        return Ok(None);
    };
    let set = pass.set.clone();
    let standing = ownership::standing_of(&info, &pass.owner());
    if let Err(message) = ownership::permits(&standing, &set.name, false, false) {
        left_alone(pass, &message).await;
        return Ok(None);
    }
    if let Poll::Running { .. } = operation::poll(pass).await? {
        return Ok(poll);
    }
    let instances = ctx.stacksets.instances(&set).await?;
    info!(name = %pass.bulk.name_any(), stack_set = %set.name, instances = instances.len(), "deleting");
    if instances.is_empty() {
        if let Err(message) = pass.may_change(false).await? {
            left_alone(pass, &message).await;
            return Ok(None);
        }
        return match ctx.stacksets.delete(&set).await {
            Ok(()) => {
                let note = format!("deleted StackSet {}", set.name);
                pass.publish(EventType::Normal, event::STACK_SET_DELETED, &note)
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
    let Some(step @ Step::Delete { .. }) = plan::next_step(&desired, &instances, true) else {
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
        pass.write(status::stalled(&Stall::new(reason::DELETING, message)))
            .await?;
        return Ok(Some(STUCK_RECHECK));
    }
    let accounts = step.batch().map_or(0, plan::Batch::accounts);
    let recorded = operation::record(pass, step, id, accounts).await?;
    let outcome = operation::start(pass, None, &preferences(pass.bulk), &recorded).await;
    operation::after_start(&mut pass.next, &recorded, &outcome, "", pass.now);
    match outcome {
        Outcome::Started => {
            let message = format!("deleting {accounts} stack instance(s)");
            pass.write(status::progressing(reason::DELETING, &message))
                .await?;
            Ok(poll)
        }
        Outcome::Busy(_) => {
            pass.save().await?;
            Ok(poll)
        }
        Outcome::NotOwned(message) => {
            left_alone(pass, &message).await;
            Ok(None)
        }
        Outcome::Duplicate(e) | Outcome::Rejected(e) | Outcome::Retry(e) => Err(e.into()),
    }
}

/// Says why `deletionPolicy: Delete` leaves a StackSet that is not this registration's in AWS.
async fn left_alone(pass: &Pass<'_>, message: &str) {
    info!(name = %pass.bulk.name_any(), stack_set = %pass.set.name, "not this registration's StackSet; left in AWS");
    let note = format!("{message}; deletionPolicy Delete leaves it in AWS");
    pass.publish(EventType::Warning, reason::STACK_SET_NOT_OWNED, &note)
        .await;
}
