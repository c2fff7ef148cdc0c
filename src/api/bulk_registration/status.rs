//! What a BulkRegistration reports about its StackSet and instances.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the operator last observed about the StackSet and its instances.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkRegistrationStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`, `StackSetReady` and `InstancesReady`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Name of the StackSet (from spec or derived): a record, not an authority; the StackSet's
    /// owner tags in AWS decide whether it is this registration's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_set_name: Option<String>,
    /// The StackSet's ID in CloudFormation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_set_id: Option<String>,
    /// Hash of the template body and parameters last applied to the StackSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_hash: Option<String>,
    /// Name of the Secret holding the registration token. The value never appears in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id_secret: Option<String>,
    /// When the registration token was last generated or rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id_rotated_time: Option<Time>,
    /// Generated token Secrets a rotation replaced: deleted once the StackSet carries the new
    /// token and every deployed child has verified with it (or is Stalled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_id_retired_secrets: Vec<String>,
    /// Where a rotation of the registration token stands while the replaced token is still
    /// listed in `externalIdRetiredSecrets`; absent when no rotation is under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id_rotation: Option<RotationPhase>,
    /// The StackSet operation in flight, recorded before it is awaited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<StackSetOperation>,
    /// The last finished StackSet operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<StackSetOperation>,
    /// Counts over the target accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// The first 50 failed stack instances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<InstanceFailure>,
    /// The last `accountlinker.dev/verify-requested-at` value handled: a new value re-reads the
    /// targets (OU membership past its cache) and the stack instances at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_verify_request: Option<String>,
    /// The last `accountlinker.dev/rotate-requested-at` value handled: a new value rotates a
    /// generated registration token once, recorded with the new token's Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_rotate_request: Option<String>,
    /// The last drift check (`spec.drift`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drift_check: Option<super::DriftCheck>,
}

/// A StackSet operation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackSetOperation {
    /// The deterministic operation ID sent to CloudFormation.
    pub id: String,
    /// `Create`, `Update`, `Delete` or `UpdateStackSet`.
    pub action: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `STOPPING`, `STOPPED` or `QUEUED` as CloudFormation
    /// reports it, or `REJECTED` when AWS refused to start the operation (see `reason`): the
    /// same operation is not sent again until the spec, the template or the targets change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Why the operation failed or was rejected, as AWS said it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the operation was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the operation ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,
    /// How many accounts the operation covers.
    #[serde(default)]
    pub accounts: i32,
}

/// Counts over the target accounts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Target accounts after resolving OUs, ConfigMaps and exclusions.
    pub targets: i32,
    /// Instances that are CURRENT and SUCCEEDED.
    pub current: i32,
    /// Instances that are OUTDATED (pending, running or left out of an operation).
    pub outdated: i32,
    /// Instances that FAILED, were CANCELLED or are INOPERABLE.
    pub failed: i32,
    /// Children whose role was verified assumable.
    pub assumable: i32,
    /// Instances the last drift check found DRIFTED (changed by hand); `spec.drift` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drifted: Option<i32>,
}

/// A failed stack instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceFailure {
    /// Account ID.
    pub account: String,
    /// Region.
    pub region: String,
    /// CloudFormation's detailed status, e.g. `FAILED`.
    pub detailed_status: String,
    /// CloudFormation's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A rotation of the registration token, in the order it happens. The built-in template trusts
/// two tokens (`ExternalId` and `PreviousExternalId`), so no link breaks while the fleet moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RotationPhase {
    /// The StackSet trusts the new token and the replaced one; each child moves to the new
    /// token once its instance carries both, and verifies with it.
    Overlap,
    /// Every deployed child verified with the new token: the StackSet drops the replaced one,
    /// whose Secret is deleted once that update is done. (A custom template, which need not
    /// declare `PreviousExternalId`, starts here: a cut-over.)
    Narrowing,
}
