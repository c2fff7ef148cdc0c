//! How every controller writes status: compute the next status, compare it with the current
//! one ignoring condition timestamps, apply it (server-side, as [`STATUS_MANAGER`]) only when
//! it says something new, and publish one Event per condition transition. Skipping the no-op
//! writes keeps the API server quiet at 10,000 objects and keeps Events from repeating.

use std::fmt::Debug;

use crate::controller::recorder::Recorder;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::conditions::{self, Desired};
use super::events;
use crate::api::conditions::RECONCILING;
use crate::api::labels::STATUS_MANAGER;
use crate::api::{BulkRegistrationStatus, LinkedAccountStatus, MemberAccountStatus};

/// A kind's status as the writer needs it.
pub trait ObjectStatus: Clone + PartialEq + Serialize {
    fn conditions(&self) -> &[Condition];
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    fn observed_generation_mut(&mut self) -> &mut Option<i64>;
    /// What the status writer applies: by default all of it. A field another writer owns
    /// (under its own field manager) is left out, so a forced apply never takes it over with
    /// a stale value.
    fn to_apply(&self) -> Self {
        self.clone()
    }
}

macro_rules! object_status {
    ($kind:ty $(, to_apply($status:ident) $to_apply:block)?) => {
        impl ObjectStatus for $kind {
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.conditions
            }
            fn observed_generation_mut(&mut self) -> &mut Option<i64> {
                &mut self.observed_generation
            }
            $(fn to_apply(&self) -> Self {
                let $status = self;
                $to_apply
            })?
        }
    };
}

object_status!(BulkRegistrationStatus);
object_status!(MemberAccountStatus);
// `stackInstance` belongs to the owning BulkRegistration (its own field manager).
object_status!(LinkedAccountStatus, to_apply(status) {
    Self {
        stack_instance: None,
        ..status.clone()
    }
});

/// Which condition transitions become Events, and the Event's action.
#[derive(Clone, Copy, Debug)]
pub struct Transitions {
    pub types: &'static [&'static str],
    pub action: &'static str,
    /// A kind with one object per account, thousands created at once, where Events are most
    /// of the API server's requests: one Event per status write naming every transition in it
    /// (a write usually moves two or three conditions at once), and none for the first status
    /// of a new object when it only says the object is in progress (`Reconciling=True`: a new
    /// object waiting is not news; a first status that fails or stalls still is).
    pub fleet: bool,
}

/// The status to write, or `None` when it would differ from `current` only in timestamps.
///
/// With `desired` conditions, they are merged over `next`'s own conditions (start `next` from
/// `current`), keeping `lastTransitionTime` where the status did not change, and
/// `observedGeneration` becomes `generation`. Without, `next` keeps its conditions and
/// `observedGeneration` (a transient failure says nothing new about this generation).
pub fn next<S: ObjectStatus>(
    current: &S,
    mut next: S,
    desired: Option<&[Desired]>,
    generation: Option<i64>,
    now: Timestamp,
) -> Option<S> {
    if let Some(desired) = desired {
        *next.observed_generation_mut() = generation;
        let merged = conditions::merge(next.conditions(), desired, &[], generation, now);
        *next.conditions_mut() = merged;
    }
    let without_conditions = |s: &S| {
        let mut s = s.clone();
        s.conditions_mut().clear();
        s
    };
    let same = conditions::same_ignoring_timestamps(current.conditions(), next.conditions())
        && without_conditions(current) == without_conditions(&next);
    (!same).then_some(next)
}

/// Applies `status` to `object`'s status subresource, as it is (used to record a fact, such as
/// an operation about to start, before acting on it).
pub async fn patch_status<K, S>(api: &Api<K>, object: &K, status: &S) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
    S: ObjectStatus,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status.to_apply(),
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(STATUS_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    crate::failpoint!(crate::failpoints::after_status(&K::kind(&())));
    Ok(())
}

/// Writes `next` (from [`next`]) when there is one, then publishes the Events of its transitions
/// of `transitions.types` from `current` ([`Transitions`]). Returns what was written.
pub async fn write<K, S>(
    api: &Api<K>,
    recorder: &Recorder,
    transitions: &Transitions,
    object: &K,
    current: &S,
    next: Option<S>,
) -> Result<Option<S>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
    S: ObjectStatus,
{
    let Some(next) = next else {
        return Ok(None);
    };
    patch_status(api, object, &next).await?;
    if announced(transitions, current.conditions(), next.conditions()) {
        let changed =
            conditions::transitions(current.conditions(), next.conditions(), transitions.types);
        events::publish_transitions(
            recorder,
            &object.object_ref(&()),
            &changed,
            transitions.action,
            transitions.fleet,
        )
        .await;
    }
    Ok(Some(next))
}

/// Whether the transitions of a write from `current` to `next` conditions are published: not for
/// a fleet kind's first status that only says the object is in progress ([`Transitions::fleet`]).
fn announced(transitions: &Transitions, current: &[Condition], next: &[Condition]) -> bool {
    let starting =
        current.is_empty() && conditions::is(next, RECONCILING, conditions::Status::True);
    !(transitions.fleet && starting)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::conditions::{READY, STALLED};
    use crate::controller::conditions::Status;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn ready(status: Status, message: &str) -> Vec<Desired> {
        vec![
            Desired::new(READY, status, "Verified", message),
            Desired::new(STALLED, Status::False, "Verified", ""),
        ]
    }

    /// A status as a previous pass wrote it at `at(0)`.
    fn written(desired: &[Desired], generation: i64) -> LinkedAccountStatus {
        LinkedAccountStatus {
            observed_generation: Some(generation),
            conditions: conditions::merge(&[], desired, &[], Some(generation), at(0)),
            role_arn: Some("arn:aws:iam::123456789012:role/R".into()),
            ..LinkedAccountStatus::default()
        }
    }

    /// What a pass at `at(60)` deciding `desired` for `generation` writes over `current`.
    fn decided(
        current: &LinkedAccountStatus,
        desired: &[Desired],
        generation: i64,
    ) -> LinkedAccountStatus {
        next(
            current,
            current.clone(),
            Some(desired),
            Some(generation),
            at(60),
        )
        .expect("a change")
    }

    /// A new fleet object waiting is not news; its first failure is, and so is every status of
    /// the other kinds.
    #[test]
    fn a_fleet_object_s_first_status_is_announced_unless_it_only_says_in_progress() {
        let kinds = |fleet| Transitions {
            types: &[READY, STALLED],
            action: "Verify",
            fleet,
        };
        let pending = written(
            &[
                Desired::new(READY, Status::False, "StackInstancePending", "waiting"),
                Desired::new(RECONCILING, Status::True, "StackInstancePending", "waiting"),
            ],
            1,
        );
        let failed = written(
            &[
                Desired::new(READY, Status::False, "AccessDenied", "denied"),
                Desired::new(RECONCILING, Status::False, "AccessDenied", ""),
                Desired::new(STALLED, Status::True, "AccessDenied", "denied"),
            ],
            1,
        );
        let verified = written(&ready(Status::True, "ok"), 1);
        let rows = [
            (true, &[][..], &pending.conditions, false),
            (true, &[][..], &failed.conditions, true),
            (true, &pending.conditions[..], &verified.conditions, true),
            (false, &[][..], &pending.conditions, true),
        ];
        for (fleet, current, next, expected) in rows {
            assert_eq!(
                announced(&kinds(fleet), current, next),
                expected,
                "fleet={fleet}: {:?} → {:?}",
                current.iter().map(|c| &c.reason).collect::<Vec<_>>(),
                next.iter().map(|c| &c.reason).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn only_a_change_beyond_timestamps_is_written() {
        let current = written(&ready(Status::True, "ok"), 1);
        let other_arn = LinkedAccountStatus {
            role_arn: Some("arn:aws:iam::123456789012:role/Other".into()),
            ..current.clone()
        };
        let starting = LinkedAccountStatus {
            conditions: Vec::new(),
            ..current.clone()
        };
        // (what this pass wants, generation, whether a patch results)
        type Case = (
            &'static str,
            LinkedAccountStatus,
            Option<Vec<Desired>>,
            i64,
            bool,
        );
        let table: Vec<Case> = vec![
            (
                "same conditions later",
                current.clone(),
                Some(ready(Status::True, "ok")),
                1,
                false,
            ),
            ("no decision", current.clone(), None, 2, false),
            (
                "new message",
                current.clone(),
                Some(ready(Status::True, "ok again")),
                1,
                true,
            ),
            (
                "new status",
                current.clone(),
                Some(ready(Status::False, "no")),
                1,
                true,
            ),
            (
                "new generation",
                current.clone(),
                Some(ready(Status::True, "ok")),
                2,
                true,
            ),
            ("other field", other_arn, None, 1, true),
            (
                "conditions from scratch",
                starting,
                Some(ready(Status::True, "ok")),
                1,
                false,
            ),
        ];
        for (case, next_status, desired, generation, patched) in table {
            let out = next(
                &current,
                next_status,
                desired.as_deref(),
                Some(generation),
                at(60),
            );
            assert_eq!(out.is_some(), patched, "{case}: {out:?}");
        }
    }

    #[test]
    fn transition_times_move_only_with_the_status() {
        let current = written(&ready(Status::True, "ok"), 1);
        let reworded = decided(&current, &ready(Status::True, "ok again"), 1);
        let time = |s: &LinkedAccountStatus, t| {
            conditions::find(&s.conditions, t)
                .unwrap()
                .last_transition_time
                .clone()
        };
        assert_eq!(time(&reworded, READY), Time(at(0)));
        let flipped = decided(&current, &ready(Status::False, "no"), 1);
        assert_eq!(time(&flipped, READY), Time(at(60)));
        assert_eq!(time(&flipped, STALLED), Time(at(0)));
    }

    #[test]
    fn a_decision_records_its_generation_and_no_decision_keeps_it() {
        let current = written(&ready(Status::True, "ok"), 1);
        let decided = decided(&current, &ready(Status::True, "ok"), 3);
        assert_eq!(decided.observed_generation, Some(3));
        assert!(
            decided
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
        let other = LinkedAccountStatus {
            account_name: Some("payments".into()),
            ..current.clone()
        };
        let kept = next(&current, other, None, Some(3), at(60)).unwrap();
        assert_eq!(kept.observed_generation, Some(1));
    }

    #[test]
    fn the_linked_account_writer_leaves_the_stack_instance_to_its_owner() {
        let status = LinkedAccountStatus {
            stack_instance: Some(Default::default()),
            ..LinkedAccountStatus::default()
        };
        assert_eq!(status.to_apply().stack_instance, None);
        let bulk = BulkRegistrationStatus::default();
        assert_eq!(bulk.to_apply(), bulk);
    }
}
