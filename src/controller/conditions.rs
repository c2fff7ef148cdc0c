//! Condition bookkeeping shared by every controller.
//!
//! Controllers describe the conditions they want; [`merge`] keeps `lastTransitionTime` of
//! conditions whose status did not change, so timestamps move only on real transitions, and
//! [`same_ignoring_timestamps`] lets the status writer skip patches that would change nothing
//! but time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A condition status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }

    pub fn from_bool(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// A condition as a controller wants it, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: Status,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: Status,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The conditions to write: `desired` in order, each keeping its previous
/// `lastTransitionTime` when its status is unchanged. Conditions of other types that `existing`
/// has are kept unless `owned` lists their type (then they are dropped).
pub fn merge(
    existing: &[Condition],
    desired: &[Desired],
    owned: &[&str],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = desired
        .iter()
        .map(|d| {
            let previous = existing.iter().find(|c| c.type_ == d.type_);
            let last_transition_time = match previous {
                Some(p) if p.status == d.status.as_str() => p.last_transition_time.clone(),
                _ => Time(now),
            };
            Condition {
                type_: d.type_.to_string(),
                status: d.status.as_str().to_string(),
                reason: d.reason.clone(),
                message: truncate(&d.message, 32_768),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect();
    for c in existing {
        let wanted = desired.iter().any(|d| d.type_ == c.type_);
        if !wanted && !owned.contains(&c.type_.as_str()) {
            out.push(c.clone());
        }
    }
    out
}

/// Whether two condition lists say the same thing, ignoring `lastTransitionTime`.
pub fn same_ignoring_timestamps(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().all(|x| {
            b.iter().any(|y| {
                x.type_ == y.type_
                    && x.status == y.status
                    && x.reason == y.reason
                    && x.message == y.message
                    && x.observed_generation == y.observed_generation
            })
        })
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether a condition of this type is present with this status.
pub fn is(conditions: &[Condition], type_: &str, status: Status) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == status.as_str())
}

/// A condition transition worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub type_: String,
    pub status: String,
    pub reason: String,
    /// `Stalled=True`, or any other condition turning `False`.
    pub warning: bool,
    /// `<Type>=<Status>: <message>`.
    pub note: String,
}

/// The transitions from `before` to `after` among `types`, in that order: a condition whose
/// status or reason changed. `Stalled` appearing as `False` says nothing a reader needs.
pub fn transitions(before: &[Condition], after: &[Condition], types: &[&str]) -> Vec<Transition> {
    let mut out = Vec::new();
    for type_ in types {
        let Some(new) = find(after, type_) else {
            continue;
        };
        let old = find(before, type_);
        if old.is_some_and(|o| o.status == new.status && o.reason == new.reason) {
            continue;
        }
        let stalled = *type_ == crate::api::conditions::STALLED;
        let healthy = if stalled {
            new.status != "True"
        } else {
            new.status != "False"
        };
        if stalled && old.is_none() && healthy {
            continue;
        }
        out.push(Transition {
            type_: new.type_.clone(),
            status: new.status.clone(),
            reason: new.reason.clone(),
            warning: !healthy,
            note: format!("{type_}={}: {}", new.status, new.message),
        });
    }
    out
}

fn truncate(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_string();
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn listed(items: &[(&'static str, Status, &str)]) -> Vec<Condition> {
        let desired: Vec<Desired> = items
            .iter()
            .map(|(t, s, r)| Desired::new(t, *s, *r, "msg"))
            .collect();
        merge(&[], &desired, &[], Some(1), at(0))
    }

    #[test]
    fn transitions_are_changes_of_status_or_reason_and_unhealthy_ones_warn() {
        let before = listed(&[
            ("Ready", Status::False, "Verifying"),
            ("Stalled", Status::False, "Verifying"),
        ]);
        let after = listed(&[
            ("Ready", Status::False, "AccessDenied"),
            ("Stalled", Status::True, "AccessDenied"),
        ]);
        let t = transitions(&before, &after, &["Ready", "Stalled"]);
        assert_eq!(
            t.iter()
                .map(|t| (t.type_.as_str(), t.reason.as_str(), t.warning))
                .collect::<Vec<_>>(),
            [
                ("Ready", "AccessDenied", true),
                ("Stalled", "AccessDenied", true)
            ]
        );
        assert_eq!(t[0].note, "Ready=False: msg");
        assert!(transitions(&after, &after, &["Ready", "Stalled"]).is_empty());
        // A first Stalled=False is not news; a first Ready=True is.
        let fresh = listed(&[
            ("Ready", Status::True, "Verified"),
            ("Stalled", Status::False, "Verified"),
        ]);
        let t = transitions(&[], &fresh, &["Ready", "Stalled"]);
        assert_eq!(t.len(), 1);
        assert!(!t[0].warning);
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let first = merge(
            &[],
            &[Desired::new(
                "Ready",
                Status::False,
                "Verifying",
                "checking",
            )],
            &[],
            Some(1),
            at(0),
        );
        let same_status = merge(
            &first,
            &[Desired::new(
                "Ready",
                Status::False,
                "AccessDenied",
                "denied",
            )],
            &[],
            Some(1),
            at(10),
        );
        assert_eq!(same_status[0].last_transition_time, Time(at(0)));
        assert_eq!(same_status[0].reason, "AccessDenied");
        let flipped = merge(
            &same_status,
            &[Desired::new("Ready", Status::True, "Verified", "ok")],
            &[],
            Some(1),
            at(20),
        );
        assert_eq!(flipped[0].last_transition_time, Time(at(20)));
    }

    #[test]
    fn foreign_conditions_survive_and_owned_ones_are_dropped() {
        let existing = merge(
            &[],
            &[
                Desired::new("RoleDeployed", Status::True, "Succeeded", ""),
                Desired::new("Stalled", Status::True, "AccessDenied", ""),
            ],
            &[],
            Some(1),
            at(0),
        );
        let out = merge(
            &existing,
            &[Desired::new("Ready", Status::True, "Verified", "")],
            &["Stalled"],
            Some(1),
            at(5),
        );
        let types: Vec<_> = out.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "RoleDeployed"]);
    }

    #[test]
    fn equality_ignores_only_timestamps() {
        let d = [Desired::new("Ready", Status::True, "Verified", "ok")];
        let a = merge(&[], &d, &[], Some(1), at(0));
        let b = merge(&[], &d, &[], Some(1), at(99));
        assert!(same_ignoring_timestamps(&a, &b));
        let c = merge(&[], &d, &[], Some(2), at(0));
        assert!(!same_ignoring_timestamps(&a, &c));
    }
}

#[cfg(test)]
mod properties;
