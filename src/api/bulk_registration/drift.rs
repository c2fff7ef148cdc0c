//! Drift detection of a BulkRegistration: how often CloudFormation compares the deployed roles
//! with the template, and what is done about a role changed by hand.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::common::DURATION_PATTERN;

/// Drift detection: off unless `checkInterval` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftSpec {
    /// How often DetectStackSetDrift runs (Go duration, at least `10m`): each check is a
    /// StackSet operation, and no other operation of the registration can start while it
    /// runs. Absent: no drift detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('10m')").message("drift.checkInterval must be at least 10m"))]
    pub check_interval: Option<String>,
    /// What a check that finds drifted roles does: `None` (default) reports them; `Update`
    /// redeploys exactly the drifted instances with one UpdateStackInstances (the template the
    /// registration already deploys, after the StackSet's owner tags are checked again).
    #[serde(default)]
    pub remediation: DriftRemediation,
}

/// What is done about drifted instances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DriftRemediation {
    /// Report only: `RoleInSync=False` on the child, `summary.drifted`, an Event.
    #[default]
    None,
    /// Redeploy the drifted instances (one UpdateStackInstances per check that found drift).
    Update,
}

/// The last drift check (DetectStackSetDrift) of the StackSet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftCheck {
    /// The check's deterministic operation ID (one per registration and check interval).
    pub operation_id: String,
    /// When the check was recorded and started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the check ended (absent while it runs); the next one is due `checkInterval` later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Target accounts whose instance the check found DRIFTED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drifted: Option<i32>,
    /// The UpdateStackInstances that redeployed the drifted instances (`remediation: Update`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation_operation_id: Option<String>,
}
