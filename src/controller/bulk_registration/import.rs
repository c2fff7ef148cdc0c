//! Import of existing per-account stacks (`spec.import.stackName`): which target accounts
//! already have the stack, and the import operations that take those stacks into the StackSet
//! before anything is created, so no account gets a second role (or fails on the existing
//! role's name).
//!
//! Only accounts without a stack instance are looked at, through the StackSet execution role
//! ([`crate::aws::stacks`]); answers are kept per registration and generation, so a migration
//! costs two calls per account once. Planning is pure: found stacks are imported first, at most
//! [`MAX_IMPORT_PER_CALL`] per operation (AWS's inline limit), in account order so the batch —
//! and with it the operation ID — is the same on every pass; then the accounts without the stack
//! are created as usual; an account whose stack could not be looked at is neither imported nor
//! created, and is reported. An imported instance keeps the stack's old parameters (its own
//! token) until one UpdateStackInstances gives it the StackSet's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::{Resource, ResourceExt};

use super::plan::{self, Batch, Desired, Step};
use super::{Error, Pass, aws_text};
use crate::api::bulk_registration::InstanceFailure;
use crate::aws::AwsError;
use crate::aws::stacks::{ImportOperation, MAX_IMPORT_PER_CALL, StackLookup};
use crate::aws::stacksets::{DetailedStatus, Instance, InstanceStatus, Preferences, Targets};

/// Every import operation's ID starts so (see [`plan::operation_id`]).
pub const OPERATION_PREFIX: &str = "al-import-";
/// `status.failures[].detailedStatus` of an account whose stack could not be looked at.
pub const LOOKUP_FAILED: &str = "LOOKUP_FAILED";
/// The execution role of a self-managed StackSet when the spec names none.
pub const DEFAULT_EXECUTION_ROLE: &str = "AWSCloudFormationStackSetExecutionRole";
/// How long a failed look-up stands before the account is looked at again.
const LOOK_AGAIN: Duration = Duration::from_secs(300);
/// Look-ups in flight at once.
const CONCURRENT_LOOKUPS: usize = 8;

/// An account and region.
pub type Pair = (String, String);

/// What a look-up found in one account and region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A live stack by that name: its ID.
    Found(String),
    /// No stack by that name: the account gets a new instance.
    Absent,
    /// The stack could not be looked at, or cannot be imported as it stands: why.
    Unreadable(String),
}

/// The look-ups of one pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lookups(pub BTreeMap<Pair, Lookup>);

/// Whether `instance` was imported and has not had an operation since: it still carries the
/// stack's own parameters (the old per-account token), so it is updated once.
pub fn awaits_parameters(instance: &Instance) -> bool {
    instance
        .last_operation_id
        .as_deref()
        .is_some_and(|id| id.starts_with(OPERATION_PREFIX))
        && instance.status == InstanceStatus::Current
        && matches!(
            instance.detailed_status,
            None | Some(DetailedStatus::Succeeded)
        )
}

/// The account/region pairs the registration wants that have no instance yet.
pub fn missing(desired: &Desired, instances: &[Instance]) -> Vec<Pair> {
    let existing: BTreeSet<(&str, &str)> = instances
        .iter()
        .map(|i| (i.account.as_str(), i.region.as_str()))
        .collect();
    desired
        .accounts
        .iter()
        .flat_map(|a| desired.regions.iter().map(move |r| (a.clone(), r.clone())))
        .filter(|(a, r)| !existing.contains(&(a.as_str(), r.as_str())))
        .collect()
}

/// The next operation with imports in the picture: the StackSet's template first, then every
/// found stack (ten per operation), then what [`plan::next_step`] plans for the accounts whose
/// stacks could be looked at.
pub fn next_step(
    desired: &Desired,
    instances: &[Instance],
    template_current: bool,
    lookups: &Lookups,
) -> Option<Step> {
    if !template_current || lookups.0.is_empty() {
        return plan::next_step(desired, instances, template_current);
    }
    let open: BTreeSet<Pair> = missing(desired, instances).into_iter().collect();
    let found: Vec<(&Pair, &String)> = lookups
        .0
        .iter()
        .filter(|(pair, _)| open.contains(*pair))
        .filter_map(|(pair, lookup)| match lookup {
            Lookup::Found(id) => Some((pair, id)),
            _ => None,
        })
        .take(MAX_IMPORT_PER_CALL)
        .collect();
    if !found.is_empty() {
        let mut accounts: Vec<String> = found.iter().map(|((a, _), _)| a.clone()).collect();
        accounts.dedup();
        let regions: BTreeSet<String> = found.iter().map(|((_, r), _)| r.clone()).collect();
        return Some(Step::Import {
            batch: Batch {
                targets: Targets {
                    accounts,
                    ..Targets::default()
                },
                regions: regions.into_iter().collect(),
            },
            stack_ids: found.into_iter().map(|(_, id)| id.clone()).collect(),
        });
    }
    let deployed: BTreeSet<&str> = instances.iter().map(|i| i.account.as_str()).collect();
    let blocked: BTreeSet<&str> = lookups
        .0
        .iter()
        .filter(|((a, _), l)| matches!(l, Lookup::Unreadable(_)) && !deployed.contains(a.as_str()))
        .map(|((a, _), _)| a.as_str())
        .collect();
    if blocked.is_empty() {
        return plan::next_step(desired, instances, true);
    }
    let mut readable = desired.clone();
    readable.accounts.retain(|a| !blocked.contains(a.as_str()));
    plan::next_step(&readable, instances, true)
}

/// The accounts whose stacks could not be looked at, as `status.failures` lists them.
pub fn failures(lookups: &Lookups) -> Vec<InstanceFailure> {
    lookups
        .0
        .iter()
        .filter_map(|((account, region), lookup)| match lookup {
            Lookup::Unreadable(why) => Some(InstanceFailure {
                account: account.clone(),
                region: region.clone(),
                detailed_status: LOOKUP_FAILED.into(),
                reason: Some(why.clone()),
            }),
            _ => None,
        })
        .collect()
}

/// One registration's look-ups, with when each was made.
type Remembered = (i64, BTreeMap<Pair, (Lookup, Instant)>);

/// Look-ups kept per registration (UID) for one generation.
#[derive(Default)]
pub struct Cache(Mutex<HashMap<String, Remembered>>);

impl Cache {
    fn known(&self, uid: &str, generation: i64, now: Instant) -> BTreeMap<Pair, Lookup> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(uid) {
            Some((g, entries)) if *g == generation => entries
                .iter()
                .filter(|(_, (l, at))| {
                    !matches!(l, Lookup::Unreadable(_)) || now.duration_since(*at) < LOOK_AGAIN
                })
                .map(|(p, (l, _))| (p.clone(), l.clone()))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    fn remember(&self, uid: &str, generation: i64, found: &[(Pair, Lookup)], now: Instant) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = map.entry(uid.to_string()).or_default();
        if entry.0 != generation {
            *entry = (generation, BTreeMap::new());
        }
        for (pair, lookup) in found {
            entry.1.insert(pair.clone(), (lookup.clone(), now));
        }
    }
}

/// Starts one import operation (ImportStacksToStackSet) of `stack_ids` with ID `id`.
pub(super) async fn start(
    pass: &Pass<'_>,
    id: &str,
    stack_ids: &[String],
    preferences: &Preferences,
) -> Result<String, AwsError> {
    let op = ImportOperation {
        operation_id: id.to_string(),
        stack_ids: stack_ids.to_vec(),
        preferences: preferences.clone(),
    };
    pass.ctx.imports.import_stacks(&pass.set, &op).await
}

/// Looks for the stack to import in every wanted account and region without an instance
/// (nothing when the registration imports nothing).
pub(super) async fn look_up(
    pass: &Pass<'_>,
    desired: &Desired,
    instances: &[Instance],
) -> Result<Lookups, Error> {
    let (bulk, ctx) = (pass.bulk, pass.ctx);
    let Some(import) = &bulk.spec.import else {
        return Ok(Lookups::default());
    };
    let pairs = missing(desired, instances);
    if pairs.is_empty() {
        return Ok(Lookups::default());
    }
    let uid = bulk.meta().uid.clone().unwrap_or_default();
    let generation = bulk.meta().generation.unwrap_or_default();
    let now = Instant::now();
    let mut known = ctx.import_lookups.known(&uid, generation, now);
    let role = bulk
        .spec
        .stack_set
        .execution_role_name
        .as_deref()
        .unwrap_or(DEFAULT_EXECUTION_ROLE);
    let session_name =
        crate::aws::sts::session_name(&bulk.namespace().unwrap_or_default(), &bulk.name_any());
    let partition = &ctx.settings.partition;
    let asks: Vec<StackLookup> = pairs
        .iter()
        .filter(|p| !known.contains_key(*p))
        .map(|(account, region)| StackLookup {
            account: account.clone(),
            region: region.clone(),
            role_arn: format!("arn:{partition}:iam::{account}:role/{role}"),
            stack_name: import.stack_name.clone(),
            session_name: session_name.clone(),
        })
        .collect();
    let answers: Vec<(Pair, Result<Lookup, Error>)> = futures::stream::iter(asks)
        .map(|ask| async move {
            let pair = (ask.account.clone(), ask.region.clone());
            let lookup = match ctx.imports.find_stack(&ask).await {
                Ok(Some(stack)) if stack.importable() => Ok(Lookup::Found(stack.id)),
                Ok(Some(stack)) => Ok(Lookup::Unreadable(format!(
                    "stack {} is {}: only a settled stack can be imported",
                    ask.stack_name, stack.status
                ))),
                Ok(None) => Ok(Lookup::Absent),
                Err(e) if e.class.is_retryable() => Err(e.into()),
                Err(e) => Ok(Lookup::Unreadable(format!(
                    "looking for stack {} as {}: {}",
                    ask.stack_name,
                    ask.role_arn,
                    aws_text(&e)
                ))),
            };
            (pair, lookup)
        })
        .buffer_unordered(CONCURRENT_LOOKUPS)
        .collect()
        .await;
    let mut fresh = Vec::new();
    for (pair, lookup) in answers {
        fresh.push((pair, lookup?));
    }
    ctx.import_lookups.remember(&uid, generation, &fresh, now);
    known.extend(fresh);
    Ok(Lookups(
        pairs
            .into_iter()
            .filter_map(|p| known.remove(&p).map(|l| (p, l)))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(n: u64) -> String {
        format!("{:012}", 100_000_000_000 + n)
    }

    fn desired(n: u64) -> Desired {
        Desired {
            accounts: (0..n).map(account).collect(),
            regions: vec!["eu-west-1".into()],
            ..Desired::default()
        }
    }

    fn stack_id(a: &str) -> String {
        format!("arn:aws:cloudformation:eu-west-1:{a}:stack/linker/{a}")
    }

    /// Accounts 0..found have the stack, the rest not.
    fn lookups(n: u64, found: u64) -> Lookups {
        Lookups(
            (0..n)
                .map(|i| {
                    let a = account(i);
                    let l = if i < found {
                        Lookup::Found(stack_id(&a))
                    } else {
                        Lookup::Absent
                    };
                    ((a, "eu-west-1".to_string()), l)
                })
                .collect(),
        )
    }

    fn instance(a: &str, status: &str, detailed: &str, last: &str) -> Instance {
        Instance {
            account: a.into(),
            region: "eu-west-1".into(),
            status: status.into(),
            detailed_status: Some(detailed.into()),
            last_operation_id: Some(last.into()),
            ..Instance::default()
        }
    }

    /// Twelve accounts with the stack and three without: two imports of ten and two, then one
    /// create of three, then one update of the twelve imported, then nothing.
    #[test]
    fn an_estate_is_imported_ten_at_a_time_then_the_rest_created() {
        let (want, found) = (desired(15), lookups(15, 12));
        let Some(Step::Import { batch, stack_ids }) = next_step(&want, &[], true, &found) else {
            panic!("an import first");
        };
        assert_eq!(stack_ids.len(), MAX_IMPORT_PER_CALL);
        assert_eq!(
            batch.targets.accounts,
            (0..10).map(account).collect::<Vec<_>>()
        );
        assert_eq!(stack_ids[0], stack_id(&account(0)));
        assert_eq!(batch.regions, ["eu-west-1"]);
        let mut instances: Vec<Instance> = (0..10)
            .map(|i| instance(&account(i), "CURRENT", "SUCCEEDED", "al-import-g1-a"))
            .collect();
        let Some(Step::Import { batch, .. }) = next_step(&want, &instances, true, &found) else {
            panic!("a second import");
        };
        assert_eq!(batch.targets.accounts, [account(10), account(11)]);
        instances.extend(
            (10..12).map(|i| instance(&account(i), "CURRENT", "SUCCEEDED", "al-import-g1-b")),
        );
        let Some(Step::Create(batch)) = next_step(&want, &instances, true, &found) else {
            panic!("then a create");
        };
        assert_eq!(
            batch.targets.accounts,
            (12..15).map(account).collect::<Vec<_>>()
        );
        instances.extend(
            (12..15).map(|i| instance(&account(i), "CURRENT", "SUCCEEDED", "al-create-g1-c")),
        );
        let Some(Step::Update(batch)) = next_step(&want, &instances, true, &Lookups::default())
        else {
            panic!("then one update of the imported instances");
        };
        assert_eq!(
            batch.targets.accounts,
            (0..12).map(account).collect::<Vec<_>>()
        );
        for i in &mut instances[..12] {
            i.last_operation_id = Some("al-update-g1-d".into());
        }
        assert_eq!(
            next_step(&want, &instances, true, &Lookups::default()),
            None
        );
    }

    #[test]
    fn import_ids_are_deterministic_and_name_the_stacks() {
        let (want, found) = (desired(3), lookups(3, 3));
        let step = next_step(&want, &[], true, &found).unwrap();
        let id = plan::operation_id("uid", 2, "hash", &step);
        assert!(id.starts_with(OPERATION_PREFIX), "{id}");
        assert_eq!(id, plan::operation_id("uid", 2, "hash", &step));
        let mut other = lookups(3, 3);
        other.0.insert(
            (account(2), "eu-west-1".into()),
            Lookup::Found("arn:aws:cloudformation:eu-west-1:x:stack/linker/recreated".into()),
        );
        let recreated = next_step(&want, &[], true, &other).unwrap();
        assert_ne!(id, plan::operation_id("uid", 2, "hash", &recreated));
    }

    #[test]
    fn a_failed_import_is_neither_retried_nor_updated() {
        let want = desired(2);
        let instances = vec![
            instance(&account(0), "OUTDATED", "FAILED_IMPORT", "al-import-g1-a"),
            instance(&account(1), "CURRENT", "SUCCEEDED", "al-update-g1-b"),
        ];
        assert_eq!(
            next_step(&want, &instances, true, &Lookups::default()),
            None
        );
    }

    #[test]
    fn an_unreadable_account_is_not_created_and_is_reported() {
        let want = desired(3);
        let mut found = lookups(3, 0);
        found.0.insert(
            (account(1), "eu-west-1".into()),
            Lookup::Unreadable("AccessDenied".into()),
        );
        let Some(Step::Create(batch)) = next_step(&want, &[], true, &found) else {
            panic!("a create");
        };
        assert_eq!(batch.targets.accounts, [account(0), account(2)]);
        let reported = failures(&found);
        assert_eq!(reported.len(), 1);
        assert_eq!(
            (
                reported[0].account.as_str(),
                reported[0].detailed_status.as_str()
            ),
            (account(1).as_str(), LOOKUP_FAILED)
        );
    }

    #[test]
    fn the_template_comes_before_any_import() {
        let (want, found) = (desired(2), lookups(2, 2));
        assert_eq!(
            next_step(&want, &[], false, &found),
            Some(Step::UpdateStackSet)
        );
    }

    #[test]
    fn missing_pairs_are_those_without_an_instance() {
        let want = desired(3);
        let instances = vec![instance(&account(1), "CURRENT", "SUCCEEDED", "x")];
        assert_eq!(
            missing(&want, &instances),
            [
                (account(0), "eu-west-1".to_string()),
                (account(2), "eu-west-1".to_string())
            ]
        );
    }

    #[test]
    fn failed_lookups_are_looked_at_again_later_and_answers_per_generation() {
        let cache = Cache::default();
        let t0 = Instant::now();
        let pair = (account(0), "eu-west-1".to_string());
        let other = (account(1), "eu-west-1".to_string());
        let answers = [
            (pair.clone(), Lookup::Unreadable("denied".into())),
            (other.clone(), Lookup::Absent),
        ];
        cache.remember("uid", 1, &answers, t0);
        assert_eq!(cache.known("uid", 1, t0).len(), 2);
        let later = cache.known("uid", 1, t0 + LOOK_AGAIN);
        assert_eq!(later.keys().collect::<Vec<_>>(), [&other]);
        assert!(cache.known("uid", 2, t0).is_empty());
    }
}
