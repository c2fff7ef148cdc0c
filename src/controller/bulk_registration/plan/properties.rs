//! Property tests of the planner together with [`operation::next`](super::super::operation::next):
//! a model StackSet that behaves as CloudFormation does (one operation at a time, a repeated
//! OperationId starts nothing, instances fail, get cancelled or become INOPERABLE per account)
//! is driven through any sequence of target changes and operation outcomes. Whatever happens,
//! once targets stop changing and AWS stops failing, the plan reaches a fixed point with every
//! target deployed and nothing else left; every operation gets an ID no earlier operation had.
//!
//! One operation in flight at a time is structural (status has one `operation` slot and a pass
//! plans only when it is empty); the model therefore starts at most one per pass and lets it end
//! before the next pass.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::super::operation::{Next, next};
use super::super::status::Standing;
use super::{Desired, Step, next_step, operation_id};
use crate::api::bulk_registration::StackSetOperation;
use crate::aws::stacksets::{DetailedStatus, Instance, InstanceStatus};

const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];

/// How one account fares in one operation.
#[derive(Clone, Copy, Debug)]
enum Fate {
    Succeeds,
    /// Its own stack fails.
    Fails,
    /// Left out because the operation's failure tolerance was exceeded.
    Cancelled,
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![6 => Just(Fate::Succeeds), 2 => Just(Fate::Fails), 1 => Just(Fate::Cancelled)]
}

/// One round: maybe new targets (a bitmask over the account pool), then the fates of the
/// accounts in the next operation.
#[derive(Clone, Debug)]
struct Round {
    targets: Option<u16>,
    fates: Vec<Fate>,
}

fn round() -> impl Strategy<Value = Round> {
    (
        prop::option::weighted(0.4, any::<u16>()),
        prop::collection::vec(fate(), 10),
    )
        .prop_map(|(targets, fates)| Round { targets, fates })
}

fn account(n: usize) -> String {
    format!("{:012}", 100_000_000_000u64 + n as u64)
}

fn desired(mask: u16, regions: usize) -> Desired {
    Desired {
        accounts: (0..10)
            .filter(|n| mask & (1 << n) != 0)
            .map(account)
            .collect(),
        regions: REGIONS[..regions].iter().map(|r| r.to_string()).collect(),
        ..Desired::default()
    }
}

/// CloudFormation, as far as the planner can tell.
#[derive(Default)]
struct StackSet {
    instances: BTreeMap<(String, String), (InstanceStatus, DetailedStatus)>,
    operation_ids: BTreeSet<String>,
}

impl StackSet {
    fn list(&self) -> Vec<Instance> {
        self.instances
            .iter()
            .map(|((account, region), (status, detailed))| Instance {
                account: account.clone(),
                region: region.clone(),
                status: status.clone(),
                detailed_status: Some(detailed.clone()),
                ..Instance::default()
            })
            .collect()
    }

    /// Runs an operation to its end; `false` when an instance failed.
    fn run(&mut self, step: &Step, fate_of: impl Fn(&str) -> Fate) -> bool {
        let landed = |fate: Fate| match fate {
            Fate::Succeeds => (InstanceStatus::Current, DetailedStatus::Succeeded),
            Fate::Fails => (InstanceStatus::Outdated, DetailedStatus::Failed),
            Fate::Cancelled => (InstanceStatus::Outdated, DetailedStatus::Cancelled),
        };
        let mut ok = true;
        let pairs: Vec<(String, String)> = match step.batch() {
            Some(batch) => batch
                .targets
                .accounts
                .iter()
                .flat_map(|a| batch.regions.iter().map(|r| (a.clone(), r.clone())))
                .collect(),
            None => self.instances.keys().cloned().collect(),
        };
        for (account, region) in pairs {
            let fate = fate_of(&account);
            ok &= !matches!(fate, Fate::Fails);
            let key = (account, region);
            match step {
                Step::Delete { retain_stacks, .. } => {
                    if *retain_stacks || !matches!(fate, Fate::Fails) {
                        self.instances.remove(&key);
                    } else {
                        self.instances.insert(
                            key,
                            (InstanceStatus::Inoperable, DetailedStatus::Inoperable),
                        );
                    }
                }
                Step::UpdateStackSet | Step::Update(_) | Step::RemediateDrift(_) => {
                    // Updates skip INOPERABLE instances.
                    if let Some(current) = self.instances.get_mut(&key)
                        && current.0 != InstanceStatus::Inoperable
                    {
                        *current = landed(fate);
                    }
                }
                Step::Create(_) | Step::Import { .. } => {
                    self.instances.insert(key, landed(fate));
                }
                // A drift check deploys nothing.
                Step::DetectDrift => {}
            }
        }
        ok
    }
}

/// The registration's side: what status remembers between passes.
struct Registration {
    template_current: bool,
    last: Option<StackSetOperation>,
}

/// One reconcile pass; `true` when it settled (nothing to start).
fn pass(
    set: &mut StackSet,
    reg: &mut Registration,
    want: &Desired,
    fate_of: impl Fn(&str) -> Fate,
) -> Result<bool, TestCaseError> {
    let step = next_step(want, &set.list(), reg.template_current);
    let id_of = |s: &Step| operation_id("uid-1", 1, "hash", s);
    match next(step, id_of, reg.last.as_ref()) {
        Next::Settle => Ok(true),
        Next::Refused(_) => Err(TestCaseError::fail("no operation is ever rejected here")),
        Next::Start { step, id } => {
            // Deterministic: planning again from the same state names the same operation.
            let again = next_step(want, &set.list(), reg.template_current);
            prop_assert_eq!(again.as_ref(), Some(&step));
            // CloudFormation would treat a repeated ID as the earlier operation and start
            // nothing: every operation needs an ID of its own.
            prop_assert!(
                set.operation_ids.insert(id.clone()),
                "operation ID {id} repeated for {step:?}"
            );
            let ok = set.run(&step, fate_of);
            if step == Step::UpdateStackSet {
                reg.template_current = true;
            }
            reg.last = Some(StackSetOperation {
                id,
                action: step.action().into(),
                status: Some(if ok { "SUCCEEDED" } else { "FAILED" }.into()),
                ..StackSetOperation::default()
            });
            Ok(false)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_history_of_target_changes_and_failures_converges(
        start in any::<u16>(),
        regions in 1usize..=2,
        template_current in any::<bool>(),
        rounds in prop::collection::vec(round(), 0..25),
    ) {
        let mut set = StackSet::default();
        let mut reg = Registration { template_current, last: None };
        let mut want = desired(start, regions);
        for round in &rounds {
            if let Some(mask) = round.targets {
                want = desired(mask, regions);
            }
            let fates = round.fates.clone();
            pass(&mut set, &mut reg, &want, |a| {
                fates[a[a.len() - 1..].parse::<usize>().unwrap_or(0)]
            })?;
        }
        // Targets stop changing and AWS stops failing: a fixed point within a few operations.
        let mut settled = false;
        for _ in 0..8 {
            if pass(&mut set, &mut reg, &want, |_| Fate::Succeeds)? {
                settled = true;
                break;
            }
        }
        prop_assert!(settled, "no fixed point: {:?}", set.instances);
        let wanted: BTreeSet<(String, String)> = want
            .accounts
            .iter()
            .flat_map(|a| want.regions.iter().map(move |r| (a.clone(), r.clone())))
            .collect();
        let deployed: BTreeSet<(String, String)> = set.instances.keys().cloned().collect();
        prop_assert_eq!(&deployed, &wanted, "missing or left-over instances");
        // Nothing waits for an operation that never comes: a target that is not current is
        // reported failed (its own stack failed, it was cancelled by the very update that
        // settled it, or a failed delete left it INOPERABLE: a human's turn, docs say how), so
        // the registration is Stalled, never Reconciling for ever.
        for instance in set.list() {
            let standing = super::super::status::standing(&instance);
            prop_assert!(
                standing != Standing::Outdated,
                "{} {} is {:?}/{:?}, waiting for an operation the plan will not start",
                instance.account,
                instance.region,
                instance.status,
                instance.detailed_status
            );
        }
    }
}
