//! Phase "targets": which accounts a BulkRegistration targets. Listed accounts, ConfigMap lists
//! and OU members (nested OUs resolved through Organizations once per reconcile), minus
//! exclusions.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use super::plan::Desired;
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

/// Resolves every target source. All malformed lines of all ConfigMaps are reported at once.
pub async fn resolve(
    bulk: &BulkRegistration,
    config_maps: &Api<ConfigMap>,
    org: &dyn OrgUnits,
    default_region: &str,
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
            Err(errors) => {
                let shown: Vec<String> = errors.iter().take(10).map(ToString::to_string).collect();
                let more = errors.len().saturating_sub(10);
                problems.push(format!(
                    "ConfigMap {:?} key {:?}: {}{}",
                    reference.name,
                    reference.key,
                    shown.join("; "),
                    if more > 0 {
                        format!(" (and {more} more)")
                    } else {
                        String::new()
                    }
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(TargetsError::Invalid {
            reason: reason::INVALID_ACCOUNT_LIST,
            message: problems.join("; "),
        });
    }
    let mut via = Default::default();
    if !targets.organizational_unit_ids.is_empty() {
        via = org.accounts_under(&targets.organizational_unit_ids).await?;
        accounts.extend(via.keys().cloned());
    }
    for excluded in &targets.exclude {
        accounts.remove(excluded);
    }
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
