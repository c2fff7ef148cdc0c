//! Which accounts a BulkRegistration deploys to, and how StackSet operations roll out.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PARENT_ID_PATTERN, REGION_PATTERN};
use crate::api::common::{ACCOUNT_ID_PATTERN, ConfigMapKeyRef};

/// The accounts a BulkRegistration deploys to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.accounts) && size(self.accounts) > 0) || (has(self.accountsFrom) && size(self.accountsFrom) > 0) || (has(self.organizationalUnitIds) && size(self.organizationalUnitIds) > 0)")
    .message("targets needs at least one of accounts, accountsFrom or organizationalUnitIds"))]
pub struct Targets {
    /// Account IDs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(ACCOUNT_ID_PATTERN)), length(max = 10000))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub accounts: Vec<String>,
    /// ConfigMap keys holding account IDs as CSV (first column), comma- or newline-separated
    /// lists. A malformed line is reported with its line number.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub accounts_from: Vec<AccountsSource>,
    /// Organizational units (`ou-…`) or the root (`r-…`); nested OUs are included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(PARENT_ID_PATTERN)), length(max = 1000))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub organizational_unit_ids: Vec<String>,
    /// Account IDs never deployed to, whatever the other fields say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(ACCOUNT_ID_PATTERN)), length(max = 10000))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub exclude: Vec<String>,
    /// Also deploy the role to the organization's management account, which no StackSet
    /// deploys to (a ServiceManaged one never does): with a plain stack there, created with the
    /// hub's credentials (so the hub must be the management account), owned by this
    /// registration's tags and tracked like an instance, with a child LinkedAccount. Needs a
    /// LinkPolicy with `bulkRegistrations.managementAccount: true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_management_account: bool,
}

/// A source of account IDs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountsSource {
    /// The ConfigMap key to read.
    pub config_map_ref: ConfigMapKeyRef,
}

/// Automatic deployment settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoDeployment {
    /// Deploy to accounts that join a target OU later, and remove instances when they leave.
    #[serde(default)]
    pub enabled: bool,
    /// Keep the stacks (but drop the instances) when an account leaves a target OU.
    #[serde(default)]
    pub retain_stacks_on_account_removal: bool,
}

/// CloudFormation operation preferences. They do not apply to automatic deployments.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.maxConcurrentCount) && has(self.maxConcurrentPercentage))")
        .message("set maxConcurrentCount or maxConcurrentPercentage, not both"),
    validation = Rule::new("!(has(self.failureToleranceCount) && has(self.failureTolerancePercentage))")
        .message("set failureToleranceCount or failureTolerancePercentage, not both"),
)]
pub struct OperationPreferences {
    /// Most accounts per region handled at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent_count: Option<i32>,
    /// Most accounts per region handled at once, as a percentage (1–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_concurrent_percentage: Option<i32>,
    /// Failures per region tolerated before CloudFormation stops the operation there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub failure_tolerance_count: Option<i32>,
    /// Failures per region tolerated, as a percentage (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub failure_tolerance_percentage: Option<i32>,
    /// `Sequential` (default) or `Parallel` deployment across regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_concurrency_type: Option<RegionConcurrency>,
    /// Order in which regions are handled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(REGION_PATTERN), length(max = 32)), length(max = 50))]
    pub region_order: Vec<String>,
    /// `StrictFailureTolerance` (default: concurrency is lowered to tolerance + 1) or
    /// `SoftFailureTolerance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_mode: Option<ConcurrencyMode>,
}

/// Region concurrency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RegionConcurrency {
    /// One region at a time.
    Sequential,
    /// All regions at once.
    Parallel,
}

/// Failure-tolerance concurrency mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyMode {
    /// Concurrency never exceeds failure tolerance + 1.
    StrictFailureTolerance,
    /// Concurrency follows maxConcurrent, regardless of failures.
    SoftFailureTolerance,
}
