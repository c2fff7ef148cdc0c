//! Phase "targets": which accounts a BulkRegistration targets. Listed accounts, ConfigMap lists
//! and OU members (nested OUs resolved through Organizations when something can have changed
//! them, see [`walk`]), minus exclusions.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Resource;
use kube::api::Api;

use super::memo::{Memo, Want};
use super::plan::Desired;
use super::requests;
use crate::account_list;
use crate::api::BulkRegistration;
use crate::api::bulk_registration::{PermissionModel, reason};
use crate::aws::{AwsError, OrgUnits};

/// Why the targets cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    /// Needs a human: a missing ConfigMap or a malformed line, named in the message.
    #[error("{message}")]
    Invalid {
        reason: &'static str,
        message: String,
    },
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// ConfigMaps whose problems a message shows; the rest are counted.
const MAX_REPORTED_SOURCES: usize = 5;

/// Resolves every target source. The malformed lines of all ConfigMaps are reported at once (the
/// first [`account_list::MAX_REPORTED_LINES`] of each, of the first [`MAX_REPORTED_SOURCES`]
/// ConfigMaps, with counts of the rest). More than `max_targets` accounts are refused.
pub async fn resolve(
    bulk: &BulkRegistration,
    config_maps: &Api<ConfigMap>,
    org: &dyn OrgUnits,
    walks: &Walks,
    default_region: &str,
    max_targets: usize,
) -> Result<Desired, TargetsError> {
    let targets = &bulk.spec.targets;
    let service_managed = bulk.spec.stack_set.permission_model == PermissionModel::ServiceManaged;
    let mut accounts: BTreeSet<String> = targets.accounts.iter().cloned().collect();
    let mut problems = Vec::new();
    for source in &targets.accounts_from {
        let reference = &source.config_map_ref;
        let Some(cm) = config_maps.get_opt(&reference.name).await? else {
            problems.push(format!("ConfigMap {:?} not found", reference.name));
            continue;
        };
        let Some(text) = cm.data.as_ref().and_then(|d| d.get(&reference.key)) else {
            problems.push(format!(
                "ConfigMap {:?} has no key {:?}",
                reference.name, reference.key
            ));
            continue;
        };
        match account_list::parse(text) {
            Ok(entries) => accounts.extend(entries.into_iter().map(|e| e.account)),
            Err(errors) => problems.push(format!(
                "ConfigMap {:?} key {:?}: {}",
                reference.name,
                reference.key,
                account_list::capped(&errors, account_list::MAX_REPORTED_LINES)
            )),
        }
    }
    if !problems.is_empty() {
        return Err(TargetsError::Invalid {
            reason: reason::INVALID_ACCOUNT_LIST,
            message: account_list::capped(&problems, MAX_REPORTED_SOURCES),
        });
    }
    let mut via = Default::default();
    if !targets.organizational_unit_ids.is_empty() {
        via = walk(bulk, org, walks).await?;
        accounts.extend(via.keys().cloned());
    }
    for excluded in &targets.exclude {
        accounts.remove(excluded);
    }
    within_bound(accounts.len(), max_targets)?;
    let explicit = accounts.iter().any(|a| !via.contains_key(a));
    let root = if service_managed && explicit {
        Some(org.root().await?)
    } else {
        None
    };
    let regions = if bulk.spec.regions.is_empty() {
        vec![default_region.to_string()]
    } else {
        bulk.spec.regions.clone()
    };
    Ok(Desired {
        accounts,
        via,
        regions,
        service_managed,
        root,
    })
}

/// What a walk of a registration's OUs found: each account with the listed OU it sits under.
pub type Walks = Memo<BTreeMap<String, String>>;

/// The accounts under the registration's OUs: walked again for a new generation, a
/// verification request, or once the resync interval passed ([`super::memo`]); otherwise the
/// last walk.
async fn walk(
    bulk: &BulkRegistration,
    org: &dyn OrgUnits,
    walks: &Walks,
) -> Result<BTreeMap<String, String>, AwsError> {
    let uid = bulk.meta().uid.clone().unwrap_or_default();
    let key = format!("{:?}", bulk.meta().generation);
    let current = bulk.status.clone().unwrap_or_default();
    let want = match requests::verify(bulk, &current) {
        Some(_) => Want::Fresh,
        None => Want::Settled,
    };
    if let Some(walked) = walks.get(&uid, &key, want) {
        return Ok((*walked).clone());
    }
    let units = &bulk.spec.targets.organizational_unit_ids;
    let walked = org.accounts_under(units).await?;
    Ok((*walks.put(&uid, &key, walked)).clone())
}

/// Refuses more than `max` target accounts, before anything is deployed: a registration that
/// resolves to a whole organization by mistake, or beyond what one StackSet should carry, waits
/// for a human.
pub fn within_bound(count: usize, max: usize) -> Result<(), TargetsError> {
    if count <= max {
        return Ok(());
    }
    Err(TargetsError::Invalid {
        reason: reason::TOO_MANY_TARGETS,
        message: format!(
            "the targets resolve to {count} accounts; this operator deploys at most {max} per BulkRegistration (--max-targets): split the registration, narrow its targets or raise the limit"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_over_the_bound_are_refused_with_the_numbers() {
        assert!(within_bound(0, 1).is_ok());
        assert!(within_bound(10_000, 10_000).is_ok());
        let Err(TargetsError::Invalid { reason, message }) = within_bound(10_001, 10_000) else {
            panic!("refused expected");
        };
        assert_eq!(reason, reason::TOO_MANY_TARGETS);
        assert!(message.contains("10001 accounts"), "{message}");
        assert!(message.contains("at most 10000"), "{message}");
        assert!(message.contains("--max-targets"), "{message}");
    }
}
