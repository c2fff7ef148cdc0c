//! Kubernetes Events about the controllers' objects.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};
use tracing::warn;

use super::conditions::Transition;
use super::recorder::Recorder;
use crate::api::conditions::READY;

/// Publishes one Event (its note cut to 1,000 characters). A failure is logged and otherwise
/// ignored: Events are for people, never a reason to fail a reconcile. Returns whether it was
/// published.
pub async fn publish(
    recorder: &Recorder,
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
    action: &str,
) -> bool {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    match recorder.publish(&event, regarding).await {
        Ok(()) => true,
        Err(err) => {
            warn!(name = regarding.name.as_deref().unwrap_or_default(), namespace = regarding.namespace.as_deref().unwrap_or_default(), error = %err, "cannot publish event");
            false
        }
    }
}

/// One Event per condition transition, or one for all of them (`together`).
pub async fn publish_transitions(
    recorder: &Recorder,
    regarding: &ObjectReference,
    transitions: &[Transition],
    action: &str,
    together: bool,
) {
    let combined;
    let events = match together.then(|| combine(transitions)).flatten() {
        Some(one) => {
            combined = [one];
            &combined[..]
        }
        None => transitions,
    };
    for t in events {
        let type_ = if t.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        if publish(recorder, regarding, type_, &t.reason, &t.note, action).await {
            tracing::info!(name = regarding.name.as_deref().unwrap_or_default(), namespace = regarding.namespace.as_deref().unwrap_or_default(), condition = %t.type_, status = %t.status, reason = %t.reason, "condition changed");
        }
    }
}

/// The transitions of one write as one Event: a warning when any is one, with the reason of
/// the first warning (else of `Ready`, else of the first), and every transition in the note, in
/// order. `None` when there is nothing to combine.
fn combine(transitions: &[Transition]) -> Option<Transition> {
    let [first, ..] = transitions else {
        return None;
    };
    if transitions.len() == 1 {
        return Some(first.clone());
    }
    let lead = transitions
        .iter()
        .find(|t| t.warning)
        .or_else(|| transitions.iter().find(|t| t.type_ == READY))
        .unwrap_or(first);
    Some(Transition {
        type_: transitions
            .iter()
            .map(|t| t.type_.as_str())
            .collect::<Vec<_>>()
            .join(","),
        warning: transitions.iter().any(|t| t.warning),
        note: transitions
            .iter()
            .map(|t| t.note.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        ..lead.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition(type_: &str, status: &str, reason: &str, warning: bool) -> Transition {
        Transition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            warning,
            note: format!("{type_}={status}: because"),
        }
    }

    #[test]
    fn one_event_names_every_transition_and_leads_with_the_one_that_matters() {
        let assumable = transition("RoleAssumable", "True", "Verified", false);
        let ready = transition("Ready", "True", "Verified", false);
        let denied = transition("RoleAssumable", "False", "AccessDenied", true);
        let not_ready = transition("Ready", "False", "AccessDenied", true);
        let pending = transition("RoleAssumable", "Unknown", "StackInstancePending", false);
        let waiting = transition("Ready", "False", "StackInstancePending", true);
        assert!(combine(&[]).is_none());
        let alone = combine(std::slice::from_ref(&ready)).unwrap();
        assert_eq!(
            (alone.type_, alone.note),
            (ready.type_.clone(), ready.note.clone())
        );
        type Row<'a> = (&'a [&'a Transition], &'a str, &'a str, bool);
        let rows: [Row; 3] = [
            (
                &[&assumable, &ready],
                "Verified",
                "RoleAssumable,Ready",
                false,
            ),
            (
                &[&denied, &not_ready],
                "AccessDenied",
                "RoleAssumable,Ready",
                true,
            ),
            (
                &[&pending, &waiting],
                "StackInstancePending",
                "RoleAssumable,Ready",
                true,
            ),
        ];
        for (given, reason, types, warning) in rows {
            let given: Vec<Transition> = given.iter().map(|t| (*t).clone()).collect();
            let one = combine(&given).unwrap();
            assert_eq!(
                (one.reason.as_str(), one.type_.as_str(), one.warning),
                (reason, types, warning)
            );
            for t in &given {
                assert!(one.note.contains(&t.note), "{} in {}", t.note, one.note);
            }
        }
        let ready_leads = combine(&[
            transition("RoleDeployed", "True", "StackInstanceCurrent", false),
            ready.clone(),
        ])
        .unwrap();
        assert_eq!(ready_leads.reason, "Verified");
    }
}
