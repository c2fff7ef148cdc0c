//! Kubernetes Events about the controllers' objects.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};
use tracing::warn;

use super::conditions::Transition;
use super::recorder::Recorder;

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

/// One Event per condition transition.
pub async fn publish_transitions(
    recorder: &Recorder,
    regarding: &ObjectReference,
    transitions: &[Transition],
    action: &str,
) {
    for t in transitions {
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
