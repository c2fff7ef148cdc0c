//! Crash points: places where a test build (feature `failpoints`) can be told to die on the
//! spot, so the crash matrix (tests/chaos_crash.rs) can prove that a crash right after any AWS
//! side effect or status write leaves a state the next process completes. A process that dies
//! here is like one that was SIGKILLed: nothing after the side effect runs, no destructor, no
//! status write, no graceful shutdown (a panic would only end one tokio task).
//!
//! `ACCOUNT_LINKER_FAILPOINTS` arms points: a comma-separated list of `point` (die on its first
//! hit) or `point@N` (die on its Nth hit in this process). Release builds have no points: the
//! [`failpoint!`](crate::failpoint) macro expands to nothing without the feature.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::api::bulk_registration::RotationPhase;

/// The environment variable that arms points.
pub const ENV: &str = "ACCOUNT_LINKER_FAILPOINTS";

/// AWS calls that change something, named as the adapters count them: each is a point hit
/// right after AWS accepted the call, before the caller could record the answer.
pub const AWS_SIDE_EFFECTS: &[&str] = &[
    "cloudformation:CreateStackSet",
    "cloudformation:UpdateStackSet",
    "cloudformation:DeleteStackSet",
    "cloudformation:CreateStackInstances",
    "cloudformation:UpdateStackInstances",
    "cloudformation:DeleteStackInstances",
    "cloudformation:DetectStackSetDrift",
    "cloudformation:ImportStacksToStackSet",
    "cloudformation:CreateStack",
    "cloudformation:UpdateStack",
    "cloudformation:DeleteStack",
    "organizations:CreateAccount",
    "organizations:MoveAccount",
    "organizations:TagResource",
    "organizations:UntagResource",
    "organizations:CloseAccount",
];

/// Status writes, one point per kind: hit right after the API server stored the status.
pub const STATUS_WRITES: &[&str] = &[
    "status:BulkRegistration",
    "status:LinkedAccount",
    "status:MemberAccount",
];

/// Kubernetes side effects and rotation steps that are not status writes.
pub const STEPS: &[&str] = &[
    // A registration's children (spec and stackInstance status) written.
    "children:written",
    // A LinkedAccount's generated ExternalId Secret created, before status names it.
    "link:secret-created",
    // A registration token Secret created (the first one, or a rotation's next one).
    "token:secret-created",
    // A replaced token Secret deleted, before status stops listing it.
    "token:secret-retired",
    // A rotation's status written as it moves from overlapping to narrowing.
    "rotation:Narrowing",
    // A rotation's status written as it ends.
    "rotation:done",
];

/// Every point this build has.
pub fn points() -> impl Iterator<Item = &'static str> {
    AWS_SIDE_EFFECTS
        .iter()
        .chain(STATUS_WRITES)
        .chain(STEPS)
        .copied()
}

/// The point after the AWS call `operation` (`service:Operation`), when it succeeded and
/// changes something.
pub fn after_call(operation: &str, ok: bool) -> Option<&'static str> {
    AWS_SIDE_EFFECTS
        .iter()
        .find(|p| ok && **p == operation)
        .copied()
}

/// The point after a status write of `kind`.
pub fn after_status(kind: &str) -> Option<&'static str> {
    STATUS_WRITES
        .iter()
        .find(|p| p.strip_prefix("status:") == Some(kind))
        .copied()
}

/// The point after a registration's status was written with its rotation moving `from` one
/// phase `to` the next: narrowing, or done.
pub fn after_rotation(
    from: Option<RotationPhase>,
    to: Option<RotationPhase>,
) -> Option<&'static str> {
    match (from, to) {
        (Some(RotationPhase::Overlap), Some(RotationPhase::Narrowing)) => {
            Some("rotation:Narrowing")
        }
        (Some(_), None) => Some("rotation:done"),
        _ => None,
    }
}

/// One armed point: its name and the hit it dies on.
#[derive(Debug)]
struct Armed {
    point: String,
    on_hit: u32,
    hits: AtomicU32,
}

/// Parses [`ENV`]'s value. Unknown points are refused, so a typo in a test does not silently
/// arm nothing.
fn parse(value: &str) -> Result<Vec<Armed>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let (point, on_hit) = match entry.rsplit_once('@') {
                Some((point, n)) => (
                    point,
                    n.parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("{entry}: the hit after @ is a number from 1"))?,
                ),
                None => (entry, 1),
            };
            if !points().any(|p| p == point) {
                return Err(format!("{point}: no such failpoint"));
            }
            Ok(Armed {
                point: point.to_string(),
                on_hit,
                hits: AtomicU32::new(0),
            })
        })
        .collect()
}

fn armed() -> &'static [Armed] {
    static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();
    ARMED.get_or_init(|| {
        let value = std::env::var(ENV).unwrap_or_default();
        parse(&value).unwrap_or_else(|e| {
            eprintln!("{ENV}: {e}");
            std::process::exit(2)
        })
    })
}

/// Whether this hit of `point` is the one `armed` dies on (counting it).
fn due(armed: &[Armed], point: &str) -> bool {
    armed
        .iter()
        .filter(|a| a.point == point)
        .any(|a| a.hits.fetch_add(1, Ordering::SeqCst) + 1 == a.on_hit)
}

/// Passes `point` (`None`: no point here): the process aborts when it is armed for this hit.
pub fn hit<'a>(point: impl Into<Option<&'a str>>) {
    let Some(point) = point.into() else {
        return;
    };
    debug_assert!(points().any(|p| p == point), "{point} is not in points()");
    if due(armed(), point) {
        eprintln!("FAILPOINT {point}: the process dies here");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_arm_a_point_on_its_first_or_nth_hit() {
        let armed = parse(" status:MemberAccount , cloudformation:UpdateStackSet@2").unwrap();
        assert_eq!(
            armed
                .iter()
                .map(|a| (a.point.as_str(), a.on_hit))
                .collect::<Vec<_>>(),
            [
                ("status:MemberAccount", 1),
                ("cloudformation:UpdateStackSet", 2)
            ]
        );
        assert!(parse("").unwrap().is_empty());
        for bad in [
            "cloudformation:CreateStackSets",
            "status:MemberAccount@0",
            "status:MemberAccount@x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_point_dies_on_the_hit_it_is_armed_for_only() {
        let armed = parse("token:secret-created@3,rotation:done").unwrap();
        let hits: Vec<bool> = (0..4)
            .map(|_| due(&armed, "token:secret-created"))
            .collect();
        assert_eq!(hits, [false, false, true, false]);
        assert!(!due(&armed, "rotation:Narrowing"));
        assert!(due(&armed, "rotation:done"));
    }

    #[test]
    fn only_successful_side_effects_and_known_kinds_are_points() {
        let cases = [
            ("cloudformation:CreateStackInstances", true, true),
            ("cloudformation:CreateStackInstances", false, false),
            ("cloudformation:ListStackInstances", true, false),
            ("organizations:CloseAccount", true, true),
            ("sts:AssumeRole", true, false),
        ];
        for (operation, ok, point) in cases {
            assert_eq!(after_call(operation, ok).is_some(), point, "{operation}");
        }
        assert_eq!(after_status("MemberAccount"), Some("status:MemberAccount"));
        assert_eq!(after_status("Secret"), None);
        let (overlap, narrowing) = (Some(RotationPhase::Overlap), Some(RotationPhase::Narrowing));
        let rotations = [
            (None, overlap, None),
            (overlap, overlap, None),
            (overlap, narrowing, Some("rotation:Narrowing")),
            (narrowing, narrowing, None),
            (narrowing, None, Some("rotation:done")),
            (overlap, None, Some("rotation:done")),
            (None, None, None),
        ];
        for (from, to, point) in rotations {
            assert_eq!(after_rotation(from, to), point, "{from:?} -> {to:?}");
        }
    }

    /// The feature is off unless asked for: a plain `cargo build --release` has no points.
    #[test]
    fn no_build_has_points_by_default() {
        let manifest = include_str!("../Cargo.toml");
        let features = manifest
            .split("[features]")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .unwrap_or_default();
        let default = features
            .lines()
            .find(|l| l.trim_start().starts_with("default"))
            .unwrap_or_default();
        assert!(!default.contains("failpoints"), "{default}");
    }

    /// A new AWS call that changes something, or a new named point in the controllers,
    /// is a point of this module (and so, through tests/chaos_crash.rs, a row of the matrix).
    #[test]
    fn every_side_effect_and_every_named_point_is_listed() {
        let adapters = [
            include_str!("aws/stacksets.rs"),
            include_str!("aws/accounts.rs"),
            include_str!("aws/management.rs"),
            include_str!("aws/stacks.rs"),
            include_str!("aws/org_units.rs"),
            include_str!("aws/organizations.rs"),
        ];
        let changing = [
            "Create", "Update", "Delete", "Import", "Move", "Tag", "Untag", "Close", "Detect",
            "Register", "Enable", "Activate", "Put",
        ];
        let operations: Vec<&str> = adapters
            .iter()
            .flat_map(|source| source.split('"'))
            .filter(|s| {
                s.split_once(':').is_some_and(|(service, op)| {
                    ["cloudformation", "organizations"].contains(&service)
                        && op.chars().all(|c| c.is_ascii_alphabetic())
                        && changing.iter().any(|verb| op.starts_with(verb))
                })
            })
            .collect();
        assert!(operations.len() > 10, "{operations:?}");
        for op in operations {
            assert!(AWS_SIDE_EFFECTS.contains(&op), "{op} has no failpoint");
        }
        let mut sources = Vec::new();
        let mut folders = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    sources.push(std::fs::read_to_string(path).unwrap());
                }
            }
        }
        let named: Vec<String> = sources
            .iter()
            .flat_map(|source| source.split("failpoint!(\"").skip(1))
            .filter_map(|rest| rest.split('"').next().map(String::from))
            .collect();
        assert!(named.len() >= 3, "{named:?}");
        for point in named {
            assert!(points().any(|p| p == point), "{point} is not in points()");
        }
    }
}
