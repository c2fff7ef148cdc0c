//! The pure planner of the BulkRegistration controller: from the desired accounts and the
//! instances CloudFormation lists, the one next operation that closes most of the gap (how the
//! instances stand is in [`super::status`]).
//!
//! Operations are batched by kind — one create for every missing account, one delete for every
//! removed one — so N accounts cost O(1) operations whatever N is. Operation IDs are derived
//! from the object, its generation, the template fingerprint and the batch: a crash and a retry
//! plan the same ID, and CloudFormation treats a repeated ID as the same operation.

use std::collections::{BTreeMap, BTreeSet};

use crate::aws::stacksets::{DetailedStatus, Instance, InstanceStatus, Targets};

use super::template::fingerprint;

/// CreateStackInstances takes at most this many OUs per call.
pub const MAX_OUS_PER_CALL: usize = 50;

/// What the registration wants deployed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// Target accounts after resolving lists, ConfigMaps and OUs, minus exclusions.
    pub accounts: BTreeSet<String>,
    /// Service-managed only: the target OU (or root) each account is deployed through.
    /// Accounts absent here are deployed through `root`.
    pub via: BTreeMap<String, String>,
    /// Regions, in order.
    pub regions: Vec<String>,
    /// Service-managed StackSets target OUs; self-managed ones target accounts.
    pub service_managed: bool,
    /// The organization's root, for service-managed targets named by account.
    pub root: Option<String>,
}

/// The next StackSet operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Give the StackSet the current template, parameters and settings (updates every
    /// instance).
    UpdateStackSet,
    /// Create instances.
    Create(Batch),
    /// Delete instances; `retain_stacks` for INOPERABLE ones, which a plain delete skips.
    Delete { batch: Batch, retain_stacks: bool },
    /// Bring outdated instances to the StackSet's current template: those an operation
    /// cancelled (failure tolerance exceeded) or skipped, never ones that failed themselves.
    Update(Batch),
    /// Take existing stacks into the StackSet (ImportStacksToStackSet, see [`super::import`]).
    Import {
        batch: Batch,
        stack_ids: Vec<String>,
    },
    /// DetectStackSetDrift over every instance (planned by [`super::drift`], never while
    /// another operation runs).
    DetectDrift,
    /// Redeploy the instances a drift check found DRIFTED (UpdateStackInstances).
    RemediateDrift(Batch),
}

impl Step {
    /// The status `action` of this step.
    pub fn action(&self) -> &'static str {
        match self {
            Self::UpdateStackSet => "UpdateStackSet",
            Self::Create(_) => "Create",
            Self::Delete { .. } => "Delete",
            Self::Update(_) => "Update",
            Self::Import { .. } => "Import",
            Self::DetectDrift => "DetectDrift",
            Self::RemediateDrift(_) => "RemediateDrift",
        }
    }

    /// Accounts the operation covers (`None`: every instance).
    pub fn batch(&self) -> Option<&Batch> {
        match self {
            Self::UpdateStackSet | Self::DetectDrift => None,
            Self::Create(batch)
            | Self::Delete { batch, .. }
            | Self::Update(batch)
            | Self::Import { batch, .. }
            | Self::RemediateDrift(batch) => Some(batch),
        }
    }
}

/// Accounts and regions of one instance operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub targets: Targets,
    pub regions: Vec<String>,
}

impl Batch {
    /// How many accounts the batch covers.
    pub fn accounts(&self) -> usize {
        self.targets.accounts.len()
    }
}

/// The next step, or `None` when CloudFormation already matches the registration.
pub fn next_step(
    desired: &Desired,
    instances: &[Instance],
    template_current: bool,
) -> Option<Step> {
    if !template_current {
        return Some(Step::UpdateStackSet);
    }
    let existing: BTreeSet<(&str, &str)> = instances
        .iter()
        .map(|i| (i.account.as_str(), i.region.as_str()))
        .collect();
    let missing: Vec<(&str, &str)> = desired
        .accounts
        .iter()
        .flat_map(|a| {
            desired
                .regions
                .iter()
                .map(move |r| (a.as_str(), r.as_str()))
        })
        .filter(|pair| !existing.contains(pair))
        .collect();
    if let Some((accounts, regions)) = group(&missing, &desired.regions) {
        return Some(Step::Create(batch(desired, accounts, regions, |a| {
            desired.via.get(a).cloned()
        })));
    }
    let wanted =
        |i: &Instance| desired.accounts.contains(&i.account) && desired.regions.contains(&i.region);
    let extra: Vec<&Instance> = instances.iter().filter(|i| !wanted(i)).collect();
    for retain_stacks in [false, true] {
        let pairs: Vec<(&str, &str)> = extra
            .iter()
            .filter(|i| (i.status == InstanceStatus::Inoperable) == retain_stacks)
            .map(|i| (i.account.as_str(), i.region.as_str()))
            .collect();
        let instance_regions: Vec<String> = unique(pairs.iter().map(|(_, r)| r.to_string()));
        if let Some((accounts, regions)) = group(&pairs, &instance_regions) {
            let through: BTreeMap<&str, Option<String>> = extra
                .iter()
                .map(|i| (i.account.as_str(), i.organizational_unit.clone()))
                .collect();
            let batch = batch(desired, accounts, regions, |a| {
                through.get(a).cloned().flatten()
            });
            return Some(Step::Delete {
                batch,
                retain_stacks,
            });
        }
    }
    let stale: Vec<(&str, &str)> = instances
        .iter()
        .filter(|i| wanted(i) && needs_update(i))
        .map(|i| (i.account.as_str(), i.region.as_str()))
        .collect();
    update_batch(desired, instances, &stale).map(Step::Update)
}

/// One update of existing instances `pairs` (account, region): the largest group that shares
/// regions, through the OU each instance was deployed through.
pub fn update_batch(
    desired: &Desired,
    instances: &[Instance],
    pairs: &[(&str, &str)],
) -> Option<Batch> {
    let regions: Vec<String> = unique(pairs.iter().map(|(_, r)| r.to_string()));
    let (accounts, regions) = group(pairs, &regions)?;
    let through: BTreeMap<&str, Option<String>> = instances
        .iter()
        .map(|i| (i.account.as_str(), i.organizational_unit.clone()))
        .collect();
    Some(batch(desired, accounts, regions, |a| {
        through
            .get(a)
            .cloned()
            .flatten()
            .or_else(|| desired.via.get(a).cloned())
    }))
}

/// An instance left behind by an operation rather than failed by its own stack: cancelled
/// when failure tolerance was exceeded, skipped, or outdated although its last operation
/// succeeded; or imported and not yet given the StackSet's parameters (the token).
fn needs_update(instance: &Instance) -> bool {
    super::import::awaits_parameters(instance)
        || instance.status == InstanceStatus::Outdated
            && matches!(
                instance.detailed_status,
                Some(
                    DetailedStatus::Cancelled
                        | DetailedStatus::SkippedSuspendedAccount
                        | DetailedStatus::Succeeded
                )
            )
}

/// The largest group of accounts that share their missing regions: accounts missing
/// everywhere go in one batch with every region; otherwise the first region's accounts.
fn group(pairs: &[(&str, &str)], regions: &[String]) -> Option<(Vec<String>, Vec<String>)> {
    if pairs.is_empty() {
        return None;
    }
    let mut by_account: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (a, r) in pairs {
        by_account.entry(a).or_default().insert(r);
    }
    let everywhere: Vec<String> = by_account
        .iter()
        .filter(|(_, rs)| rs.len() == regions.len())
        .map(|(a, _)| a.to_string())
        .collect();
    if !everywhere.is_empty() {
        return Some((everywhere, regions.to_vec()));
    }
    let region = regions
        .iter()
        .find(|r| pairs.iter().any(|(_, pr)| pr == r))?
        .clone();
    let accounts = by_account
        .iter()
        .filter(|(_, rs)| rs.contains(region.as_str()))
        .map(|(a, _)| a.to_string())
        .collect();
    Some((accounts, vec![region]))
}

/// Targets for `accounts`: the accounts themselves (self-managed), or their OUs filtered down
/// to exactly these accounts (service-managed), at most [`MAX_OUS_PER_CALL`] OUs per call.
fn batch(
    desired: &Desired,
    accounts: Vec<String>,
    regions: Vec<String>,
    ou_of: impl Fn(&str) -> Option<String>,
) -> Batch {
    if !desired.service_managed {
        return Batch {
            targets: Targets {
                accounts,
                ..Targets::default()
            },
            regions,
        };
    }
    let mut by_ou: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for account in accounts {
        let ou = ou_of(&account)
            .or_else(|| desired.root.clone())
            .unwrap_or_default();
        by_ou.entry(ou).or_default().push(account);
    }
    let chosen: Vec<(String, Vec<String>)> = by_ou.into_iter().take(MAX_OUS_PER_CALL).collect();
    Batch {
        targets: Targets {
            organizational_units: chosen.iter().map(|(ou, _)| ou.clone()).collect(),
            accounts: chosen.into_iter().flat_map(|(_, a)| a).collect(),
            intersect: Some(true),
        },
        regions,
    }
}

fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    items.filter(|i| seen.insert(i.clone())).collect()
}

/// The deterministic OperationId of `step` (CloudFormation allows `[a-zA-Z0-9-]`, 128 chars).
pub fn operation_id(uid: &str, generation: i64, template_hash: &str, step: &Step) -> String {
    let mut parts: Vec<String> = vec![
        uid.to_string(),
        generation.to_string(),
        template_hash.to_string(),
        step.action().to_string(),
    ];
    if let Step::Delete { retain_stacks, .. } = step {
        parts.push(retain_stacks.to_string());
    }
    if let Step::Import { stack_ids, .. } = step {
        parts.push(stack_ids.join(","));
    }
    if let Some(batch) = step.batch() {
        parts.push(batch.regions.join(","));
        parts.push(batch.targets.organizational_units.join(","));
        parts.push(batch.targets.accounts.join(","));
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    format!(
        "al-{}-g{generation}-{}",
        step.action().to_ascii_lowercase(),
        fingerprint(&refs)
    )
}

/// The bounded metric label of an operation's action.
pub fn action_label(action: &str) -> &'static str {
    match action {
        "Create" => "create",
        "Delete" => "delete",
        "UpdateStackSet" => "update_stack_set",
        "Import" => "import",
        "DetectDrift" => "detect_drift",
        "RemediateDrift" => "remediate_drift",
        _ => "update",
    }
}

/// The bounded metric label of an operation's end.
pub fn outcome_label(ok: bool) -> &'static str {
    if ok { "succeeded" } else { "failed" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(account: &str, region: &str, status: &str, detailed: &str) -> Instance {
        Instance {
            account: account.into(),
            region: region.into(),
            status: status.into(),
            detailed_status: (!detailed.is_empty()).then(|| detailed.into()),
            ..Instance::default()
        }
    }

    fn accounts(range: std::ops::Range<u64>) -> BTreeSet<String> {
        range
            .map(|n| format!("{:012}", 100_000_000_000 + n))
            .collect()
    }

    fn self_managed(range: std::ops::Range<u64>) -> Desired {
        Desired {
            accounts: accounts(range),
            regions: vec!["eu-west-1".into()],
            ..Desired::default()
        }
    }

    fn current(desired: &Desired) -> Vec<Instance> {
        desired
            .accounts
            .iter()
            .map(|a| instance(a, "eu-west-1", "CURRENT", "SUCCEEDED"))
            .collect()
    }

    #[test]
    fn thousands_of_new_accounts_are_one_create() {
        let desired = self_managed(0..2000);
        let Some(Step::Create(batch)) = next_step(&desired, &[], true) else {
            panic!("expected a create");
        };
        assert_eq!(batch.accounts(), 2000);
        assert_eq!(batch.regions, ["eu-west-1"]);
        assert!(batch.targets.organizational_units.is_empty());
    }

    #[test]
    fn a_template_change_comes_first_and_is_one_update() {
        let desired = self_managed(0..10);
        assert_eq!(next_step(&desired, &[], false), Some(Step::UpdateStackSet));
        assert_eq!(
            next_step(&desired, &current(&desired), false),
            Some(Step::UpdateStackSet)
        );
    }

    #[test]
    fn cancelled_instances_are_one_update_and_failed_ones_are_left_alone() {
        let desired = self_managed(0..100);
        let mut instances = current(&desired);
        for i in &mut instances[..5] {
            i.status = "OUTDATED".into();
            i.detailed_status = Some("FAILED".into());
        }
        assert_eq!(
            next_step(&desired, &instances, true),
            None,
            "failed: not retried"
        );
        for i in &mut instances[40..70] {
            i.status = "OUTDATED".into();
            i.detailed_status = Some("CANCELLED".into());
        }
        let Some(Step::Update(batch)) = next_step(&desired, &instances, true) else {
            panic!("expected an update");
        };
        assert_eq!(batch.targets.accounts, Vec::from_iter(accounts(40..70)));
        assert_eq!(batch.regions, ["eu-west-1"]);
        for i in &mut instances[40..70] {
            i.detailed_status = Some("RUNNING".into());
        }
        assert_eq!(next_step(&desired, &instances, true), None, "in flight");
    }

    #[test]
    fn added_accounts_are_created_alone_and_existing_ones_untouched() {
        let before = self_managed(0..200);
        let after = self_managed(0..210);
        let Some(Step::Create(batch)) = next_step(&after, &current(&before), true) else {
            panic!("expected a create");
        };
        assert_eq!(batch.targets.accounts, Vec::from_iter(accounts(200..210)));
    }

    #[test]
    fn removed_accounts_are_one_delete_and_inoperable_ones_retain_stacks() {
        let before = self_managed(0..200);
        let after = self_managed(10..200);
        let mut instances = current(&before);
        instances[0].status = "INOPERABLE".into();
        instances[0].detailed_status = Some("INOPERABLE".into());
        let Some(Step::Delete {
            batch,
            retain_stacks: false,
        }) = next_step(&after, &instances, true)
        else {
            panic!("expected a delete");
        };
        assert_eq!(batch.accounts(), 9);
        let remaining: Vec<Instance> = instances
            .iter()
            .filter(|i| !batch.targets.accounts.contains(&i.account))
            .cloned()
            .collect();
        let Some(Step::Delete {
            batch,
            retain_stacks: true,
        }) = next_step(&after, &remaining, true)
        else {
            panic!("expected a retaining delete");
        };
        assert_eq!(
            batch.targets.accounts,
            [format!("{:012}", 100_000_000_000u64)]
        );
    }

    #[test]
    fn creates_come_before_deletes_and_nothing_is_left_when_done() {
        let before = self_managed(0..5);
        let after = self_managed(3..8);
        assert!(matches!(
            next_step(&after, &current(&before), true),
            Some(Step::Create(_))
        ));
        let both = self_managed(0..8);
        assert!(matches!(
            next_step(&after, &current(&both), true),
            Some(Step::Delete { .. })
        ));
        assert_eq!(next_step(&after, &current(&after), true), None);
    }

    #[test]
    fn failed_instances_are_not_recreated() {
        let desired = self_managed(0..3);
        let mut instances = current(&desired);
        instances[1].status = "OUTDATED".into();
        instances[1].detailed_status = Some("FAILED".into());
        assert_eq!(next_step(&desired, &instances, true), None);
    }

    #[test]
    fn service_managed_targets_are_ous_filtered_to_the_accounts() {
        let mut desired = self_managed(0..4);
        desired.service_managed = true;
        desired.root = Some("r-abcd".into());
        let ids: Vec<String> = desired.accounts.iter().cloned().collect();
        desired
            .via
            .insert(ids[0].clone(), "ou-abcd-11111111".into());
        desired
            .via
            .insert(ids[1].clone(), "ou-abcd-11111111".into());
        desired
            .via
            .insert(ids[2].clone(), "ou-abcd-22222222".into());
        let Some(Step::Create(batch)) = next_step(&desired, &[], true) else {
            panic!("expected a create");
        };
        assert_eq!(
            batch.targets.organizational_units,
            ["ou-abcd-11111111", "ou-abcd-22222222", "r-abcd"]
        );
        assert_eq!(batch.targets.accounts.len(), 4);
        assert_eq!(batch.targets.intersect, Some(true));
    }

    #[test]
    fn at_most_fifty_ous_per_call() {
        let mut desired = self_managed(0..120);
        desired.service_managed = true;
        for (n, a) in desired.accounts.clone().iter().enumerate() {
            desired.via.insert(a.clone(), format!("ou-abcd-{n:08}"));
        }
        let Some(Step::Create(batch)) = next_step(&desired, &[], true) else {
            panic!("expected a create");
        };
        assert_eq!(batch.targets.organizational_units.len(), MAX_OUS_PER_CALL);
        assert_eq!(batch.accounts(), MAX_OUS_PER_CALL);
    }

    #[test]
    fn a_new_region_is_a_create_for_that_region_only() {
        let before = self_managed(0..3);
        let mut after = before.clone();
        after.regions.push("us-east-1".into());
        let Some(Step::Create(batch)) = next_step(&after, &current(&before), true) else {
            panic!("expected a create");
        };
        assert_eq!(batch.regions, ["us-east-1"]);
        assert_eq!(batch.accounts(), 3);
    }

    #[test]
    fn operation_ids_are_deterministic_and_distinct() {
        let desired = self_managed(0..10);
        let step = next_step(&desired, &[], true).unwrap();
        let a = operation_id("uid-1", 3, "hash", &step);
        assert_eq!(a, operation_id("uid-1", 3, "hash", &step));
        assert!(a.starts_with("al-create-g3-"), "{a}");
        assert!(a.len() <= 128 && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert_ne!(a, operation_id("uid-1", 4, "hash", &step));
        assert_ne!(a, operation_id("uid-2", 3, "hash", &step));
        assert_ne!(a, operation_id("uid-1", 3, "other", &step));
        let other = next_step(&self_managed(0..11), &[], true).unwrap();
        assert_ne!(a, operation_id("uid-1", 3, "hash", &other));
    }
}

#[cfg(test)]
mod properties;
