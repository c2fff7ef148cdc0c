//! Phase "status", the pure part: how the instances stand, the summary counts and the condition
//! tree of a registration, from what the instances and the children say and what the pass
//! decided before.

use std::collections::BTreeMap;

use super::children::Verification;
use super::plan::Desired;
use crate::api::bulk_registration::{InstanceFailure, Summary, reason};
use crate::api::conditions::{INSTANCES_READY, READY, RECONCILING, STACK_SET_READY, STALLED};
use crate::aws::stacksets::{DetailedStatus, Instance, InstanceStatus};
use crate::controller::conditions::{Desired as Cond, Status};

/// Why a registration needs a human before it goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    pub reason: &'static str,
    pub message: String,
    /// The StackSet itself is affected: `StackSetReady=False` with the same reason.
    pub stack_set: bool,
}

impl Stall {
    /// A stall of the registration as a whole (bad input, AWS refusing an instance operation).
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            stack_set: false,
        }
    }

    /// A stall that keeps the StackSet from having the current definition.
    pub fn stack_set(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            stack_set: true,
            ..Self::new(reason, message)
        }
    }
}

/// What decides `Ready`, `Reconciling` and `Stalled`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Headline {
    /// Nothing in flight: the instances and the children decide.
    Summary,
    /// An operation is in flight (ours or someone else's): the StackSet is pending.
    Busy {
        reason: &'static str,
        message: String,
    },
    /// Needs a human.
    Stalled(Stall),
}

impl Headline {
    /// The headline while operation `action` of this registration runs: a drift check deploys
    /// nothing, so the instances and children keep deciding (a Ready registration stays Ready
    /// through its periodic checks); any other operation is work in flight.
    pub fn running(action: &str, message: String) -> Self {
        match action {
            "DetectDrift" => Self::Summary,
            _ => Self::Busy {
                reason: reason::OPERATION_RUNNING,
                message,
            },
        }
    }
}

/// What the conditions are computed from.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub targets: i32,
    pub observed: &'a Observed,
    pub verification: &'a Verification,
    /// `status.templateHash` is the fingerprint of the current definition.
    pub stack_set_current: bool,
}

/// Failures listed in status.
pub const MAX_FAILURES: usize = 50;

/// How one target account's instances stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Every region CURRENT and SUCCEEDED.
    Current,
    /// Not created yet, or pending, running or left out of an operation.
    Outdated,
    /// FAILED, CANCELLED, INOPERABLE or otherwise not deployable.
    Failed,
}

/// Classifies one instance.
pub fn standing(instance: &Instance) -> Standing {
    use DetailedStatus::{Pending, Running, Succeeded};
    match (&instance.status, &instance.detailed_status) {
        (InstanceStatus::Current, Some(Succeeded) | None) => Standing::Current,
        (_, Some(Pending | Running)) => Standing::Outdated,
        (InstanceStatus::Outdated, Some(Succeeded)) => Standing::Outdated,
        _ => Standing::Failed,
    }
}

/// What the instances say about the registration's targets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub current: i32,
    pub outdated: i32,
    pub failed: i32,
    /// The first [`MAX_FAILURES`] failed instances.
    pub failures: Vec<InstanceFailure>,
    /// Total failed instances (may exceed the list).
    pub failed_instances: usize,
}

/// Counts target accounts by standing (an account is as good as its worst region) and lists
/// failures.
pub fn observe(desired: &Desired, instances: &[Instance]) -> Observed {
    let mut worst: BTreeMap<&str, Standing> = desired
        .accounts
        .iter()
        .map(|a| (a.as_str(), Standing::Current))
        .collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut observed = Observed::default();
    for instance in instances {
        let Some(slot) = worst.get_mut(instance.account.as_str()) else {
            continue;
        };
        if !desired.regions.contains(&instance.region) {
            continue;
        }
        *seen.entry(instance.account.as_str()).or_default() += 1;
        let s = standing(instance);
        if s == Standing::Failed {
            observed.failed_instances += 1;
            if observed.failures.len() < MAX_FAILURES {
                observed.failures.push(InstanceFailure {
                    account: instance.account.clone(),
                    region: instance.region.clone(),
                    detailed_status: instance
                        .detailed_status
                        .as_ref()
                        .map_or_else(|| instance.status.to_string(), ToString::to_string),
                    reason: instance.reason.clone(),
                });
            }
        }
        *slot = match (*slot, s) {
            (Standing::Failed, _) | (_, Standing::Failed) => Standing::Failed,
            (Standing::Outdated, _) | (_, Standing::Outdated) => Standing::Outdated,
            _ => Standing::Current,
        };
    }
    for (account, standing) in &worst {
        let complete = seen.get(account).copied().unwrap_or(0) >= desired.regions.len();
        match standing {
            Standing::Failed => observed.failed += 1,
            Standing::Current if complete => observed.current += 1,
            _ => observed.outdated += 1,
        }
    }
    observed
}

/// Ready, Stalled and Reconciling for a stall, and StackSetReady when the StackSet is
/// affected. The other conditions keep what they said.
pub fn stalled(stall: &Stall) -> Vec<Cond> {
    let (reason, message) = (stall.reason, stall.message.as_str());
    let mut out = vec![
        Cond::new(READY, Status::False, reason, message),
        Cond::new(STALLED, Status::True, reason, message),
        Cond::new(RECONCILING, Status::False, reason, ""),
    ];
    if stall.stack_set {
        out.push(Cond::new(STACK_SET_READY, Status::False, reason, message));
    }
    out
}

/// Ready, Reconciling and Stalled while work is in flight.
pub fn progressing(reason: &str, message: &str) -> Vec<Cond> {
    vec![
        Cond::new(READY, Status::False, reason, message),
        Cond::new(RECONCILING, Status::True, reason, message),
        Cond::new(STALLED, Status::False, reason, ""),
    ]
}

/// The summary counts of `status.summary`.
pub fn summary(desired: &Desired, observed: &Observed, verification: &Verification) -> Summary {
    Summary {
        targets: i32::try_from(desired.accounts.len()).unwrap_or(i32::MAX),
        current: observed.current,
        outdated: observed.outdated,
        failed: observed.failed,
        assumable: verification.assumable,
        drifted: None,
    }
}

/// Every condition of a registration: the headline, StackSetReady and InstancesReady. Without
/// a headline, failed instances stall, missing ones are in progress, roles that cannot be
/// assumed stall (naming one child), roles not verified yet are in progress, and otherwise the
/// registration is Ready.
pub fn conditions(facts: &Facts<'_>, headline: &Headline) -> Vec<Cond> {
    let Facts {
        targets,
        observed,
        verification,
        stack_set_current,
    } = *facts;
    let failed = format!(
        "{} of {targets} account(s) failed to deploy; see status.failures",
        observed.failed
    );
    let pending = format!(
        "{} of {targets} account(s) not deployed yet",
        observed.outdated
    );
    let mut out = match headline {
        Headline::Busy { reason, message } => progressing(reason, message),
        Headline::Stalled(stall) => stalled(stall),
        Headline::Summary if observed.failed > 0 => {
            stalled(&Stall::new(reason::INSTANCES_FAILED, failed.clone()))
        }
        Headline::Summary if observed.outdated > 0 => {
            progressing(reason::INSTANCES_PENDING, &pending)
        }
        Headline::Summary if verification.assumable < targets && verification.stalled > 0 => {
            stalled(&Stall::new(
                reason::NOT_ASSUMABLE,
                format!(
                    "{} of {targets} role(s) cannot be assumed; {}",
                    verification.stalled,
                    verification.example.clone().unwrap_or_default()
                ),
            ))
        }
        Headline::Summary if verification.assumable < targets => progressing(
            reason::VERIFYING,
            &format!(
                "{} of {targets} role(s) verified assumable",
                verification.assumable
            ),
        ),
        Headline::Summary => vec![
            Cond::new(
                READY,
                Status::True,
                reason::READY,
                format!("all {targets} account(s) deployed and assumable"),
            ),
            Cond::new(RECONCILING, Status::False, reason::READY, ""),
            Cond::new(STALLED, Status::False, reason::READY, ""),
        ],
    };
    let busy = matches!(headline, Headline::Busy { .. });
    if !out.iter().any(|c| c.type_ == STACK_SET_READY) {
        out.push(if stack_set_current && !busy {
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
        });
    }
    out.push(if observed.failed > 0 {
        Cond::new(
            INSTANCES_READY,
            Status::False,
            reason::INSTANCES_FAILED,
            failed,
        )
    } else if observed.outdated > 0 {
        Cond::new(
            INSTANCES_READY,
            Status::False,
            reason::INSTANCES_PENDING,
            pending,
        )
    } else {
        Cond::new(
            INSTANCES_READY,
            Status::True,
            reason::INSTANCES_CURRENT,
            format!("all {targets} account(s) deployed"),
        )
    });
    out
}

/// Whether the conditions say Ready.
pub fn is_ready(conditions: &[Cond]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == Status::True)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (type, status, reason) of every condition, in order.
    fn shape(conds: &[Cond]) -> Vec<(&'static str, Status, String)> {
        conds
            .iter()
            .map(|c| (c.type_, c.status, c.reason.clone()))
            .collect()
    }

    fn find<'a>(conds: &'a [Cond], type_: &str) -> &'a Cond {
        conds.iter().find(|c| c.type_ == type_).unwrap()
    }

    fn observed(current: i32, outdated: i32, failed: i32) -> Observed {
        Observed {
            current,
            outdated,
            failed,
            ..Observed::default()
        }
    }

    fn verified(assumable: i32, stalled: i32) -> Verification {
        Verification {
            assumable,
            stalled,
            example: (stalled > 0).then(|| "LinkedAccount w-1: denied".to_string()),
            ..Verification::default()
        }
    }

    /// Every row: instances (current, outdated, failed), children (assumable, stalled),
    /// headline → Ready/Reconciling/Stalled reason and which of them is True, StackSetReady,
    /// InstancesReady.
    #[test]
    fn the_condition_tree() {
        let busy = Headline::Busy {
            reason: reason::OPERATION_RUNNING,
            message: "running".into(),
        };
        let rejected = Headline::Stalled(Stall::new(reason::AWS_REJECTED, "no"));
        let rejected_update = Headline::Stalled(Stall::stack_set(reason::AWS_REJECTED, "no"));
        let s = Headline::Summary;
        use Status::{False as F, True as T, Unknown as U};
        type Row<'a> = (
            (i32, i32, i32),
            (i32, i32),
            &'a Headline,
            bool,
            (&'a str, &'a str),
            Cond2<'a>,
            Cond2<'a>,
        );
        type Cond2<'a> = (Status, &'a str);
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ((4, 0, 0), (4, 0), &s, true, (reason::READY, "Ready"), (T, reason::STACK_SET_CURRENT), (T, reason::INSTANCES_CURRENT)),
            ((4, 0, 0), (3, 0), &s, true, (reason::VERIFYING, RECONCILING), (T, reason::STACK_SET_CURRENT), (T, reason::INSTANCES_CURRENT)),
            ((4, 0, 0), (3, 1), &s, true, (reason::NOT_ASSUMABLE, STALLED), (T, reason::STACK_SET_CURRENT), (T, reason::INSTANCES_CURRENT)),
            ((2, 2, 0), (2, 0), &s, true, (reason::INSTANCES_PENDING, RECONCILING), (T, reason::STACK_SET_CURRENT), (F, reason::INSTANCES_PENDING)),
            ((2, 1, 1), (2, 1), &s, true, (reason::INSTANCES_FAILED, STALLED), (T, reason::STACK_SET_CURRENT), (F, reason::INSTANCES_FAILED)),
            ((0, 4, 0), (0, 0), &busy, true, (reason::OPERATION_RUNNING, RECONCILING), (U, reason::STACK_SET_PENDING), (F, reason::INSTANCES_PENDING)),
            ((4, 0, 0), (4, 0), &busy, true, (reason::OPERATION_RUNNING, RECONCILING), (U, reason::STACK_SET_PENDING), (T, reason::INSTANCES_CURRENT)),
            ((4, 0, 0), (4, 0), &s, false, (reason::READY, "Ready"), (U, reason::STACK_SET_PENDING), (T, reason::INSTANCES_CURRENT)),
            ((0, 4, 0), (0, 0), &rejected, true, (reason::AWS_REJECTED, STALLED), (T, reason::STACK_SET_CURRENT), (F, reason::INSTANCES_PENDING)),
            ((4, 0, 0), (4, 0), &rejected_update, false, (reason::AWS_REJECTED, STALLED), (F, reason::AWS_REJECTED), (T, reason::INSTANCES_CURRENT)),
        ];
        for (i, ((c, o, f), (a, st), headline, current, (why, which), stack_set, instances)) in
            rows.into_iter().enumerate()
        {
            let observed = observed(c, o, f);
            let verification = verified(a, st);
            let facts = Facts {
                targets: 4,
                observed: &observed,
                verification: &verification,
                stack_set_current: current,
            };
            let conds = conditions(&facts, headline);
            assert_eq!(find(&conds, READY).reason, why, "row {i}");
            for type_ in [READY, RECONCILING, STALLED] {
                let want = if type_ == which { T } else { F };
                assert_eq!(find(&conds, type_).status, want, "row {i}: {type_}");
            }
            let ss = find(&conds, STACK_SET_READY);
            assert_eq!((ss.status, ss.reason.as_str()), stack_set, "row {i}");
            let inst = find(&conds, INSTANCES_READY);
            assert_eq!((inst.status, inst.reason.as_str()), instances, "row {i}");
            assert_eq!(is_ready(&conds), which == "Ready", "row {i}");
            assert_eq!(conds.len(), 5, "row {i}: {:?}", shape(&conds));
        }
    }

    #[test]
    fn a_stalled_child_is_named_and_counts_are_in_the_messages() {
        let observed = observed(4, 0, 0);
        let verification = verified(2, 2);
        let facts = Facts {
            targets: 4,
            observed: &observed,
            verification: &verification,
            stack_set_current: true,
        };
        let conds = conditions(&facts, &Headline::Summary);
        assert_eq!(
            find(&conds, STALLED).message,
            "2 of 4 role(s) cannot be assumed; LinkedAccount w-1: denied"
        );
        assert_eq!(
            find(&conds, INSTANCES_READY).message,
            "all 4 account(s) deployed"
        );
    }

    #[test]
    fn observation_counts_accounts_and_lists_failures() {
        let account = |n: u64| format!("{:012}", 100_000_000_000 + n);
        let instance = |n: u64, status: &str, detailed: &str| Instance {
            account: account(n),
            region: "eu-west-1".into(),
            status: status.into(),
            detailed_status: Some(detailed.into()),
            reason: (detailed == "FAILED").then(|| "boom".to_string()),
            ..Instance::default()
        };
        let desired = Desired {
            accounts: (0..60).map(account).collect(),
            regions: vec!["eu-west-1".into()],
            ..Desired::default()
        };
        let mut instances: Vec<Instance> =
            (0..55).map(|n| instance(n, "OUTDATED", "FAILED")).collect();
        instances.push(instance(55, "OUTDATED", "RUNNING"));
        // 56..59 deployed, 59 without an instance yet.
        instances.extend((56..59).map(|n| instance(n, "CURRENT", "SUCCEEDED")));
        // An instance outside the targets is ignored.
        instances.push(Instance {
            account: "999999999999".into(),
            ..instance(0, "CURRENT", "SUCCEEDED")
        });
        let seen = observe(&desired, &instances);
        assert_eq!((seen.current, seen.outdated, seen.failed), (3, 2, 55));
        assert_eq!(seen.failures.len(), MAX_FAILURES);
        assert_eq!(seen.failed_instances, 55);
        assert_eq!(seen.failures[0].reason.as_deref(), Some("boom"));
    }

    #[test]
    fn a_stall_without_the_stack_set_leaves_its_condition_alone() {
        assert_eq!(
            shape(&stalled(&Stall::new(reason::TOKEN_SECRET_NOT_FOUND, "m"))),
            vec![
                (
                    READY,
                    Status::False,
                    reason::TOKEN_SECRET_NOT_FOUND.to_string()
                ),
                (
                    STALLED,
                    Status::True,
                    reason::TOKEN_SECRET_NOT_FOUND.to_string()
                ),
                (
                    RECONCILING,
                    Status::False,
                    reason::TOKEN_SECRET_NOT_FOUND.to_string()
                ),
            ]
        );
        let with = stalled(&Stall::stack_set(reason::TRUSTED_ACCESS_DISABLED, "m"));
        assert_eq!(find(&with, STACK_SET_READY).status, Status::False);
    }
}
