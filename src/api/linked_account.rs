//! `LinkedAccount`: one AWS account linked to the hub identity.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{ACCOUNT_ID_PATTERN, DURATION_PATTERN, ROLE_NAME_PATTERN, SecretKeyRef};

/// The role name used when neither `roleName` nor `roleArn` is set.
pub const DEFAULT_ROLE_NAME: &str = "AccountLinkerAccess";
/// The default `sessionDurationSeconds`.
pub const DEFAULT_SESSION_DURATION_SECONDS: i32 = 900;

/// Condition reasons of LinkedAccount. Alerts, dashboards and `kubectl wait` match on them, so
/// they are API: documented in docs/linkedaccount.md and never renamed.
pub mod reason {
    pub const VERIFIED: &str = "Verified";
    pub const VERIFYING: &str = "Verifying";
    pub const SUSPENDED: &str = "Suspended";
    pub const ACCESS_DENIED: &str = "AccessDenied";
    pub const REGION_DISABLED: &str = "RegionDisabled";
    pub const EXPIRED_TOKEN: &str = "ExpiredToken";
    pub const INVALID_IDENTITY_TOKEN: &str = "InvalidIdentityToken";
    pub const ACCOUNT_MISMATCH: &str = "AccountMismatch";
    pub const AWS_REJECTED: &str = "AwsRejected";
    pub const EXTERNAL_ID_SECRET_NOT_FOUND: &str = "ExternalIdSecretNotFound";
    pub const EXTERNAL_ID_KEY_NOT_FOUND: &str = "ExternalIdKeyNotFound";
    pub const INVALID_EXTERNAL_ID: &str = "InvalidExternalId";
    pub const SECRET_NOT_LABELLED: &str = "SecretNotLabelled";
    pub const STACK_INSTANCE_SUCCEEDED: &str = "StackInstanceSucceeded";
    pub const STACK_INSTANCE_PENDING: &str = "StackInstancePending";
    pub const STACK_INSTANCE_FAILED: &str = "StackInstanceFailed";
    /// RoleDeployed=True: the role is deployed and was verified; its stack instance is being
    /// updated (a template change, a token rotation). Ready stays as verification left it.
    pub const STACK_INSTANCE_UPDATING: &str = "StackInstanceUpdating";
    /// No LinkPolicy selecting the namespace permits the account or role (docs/linkpolicy.md).
    pub const NOT_PERMITTED: &str = "NotPermitted";
    /// RoleInSync=True: the last drift check found the role as the template deploys it.
    pub const IN_SYNC: &str = "InSync";
    /// RoleInSync=False: the last drift check found the role changed by hand.
    pub const DRIFTED: &str = "Drifted";
    /// RoleInSync=Unknown: the last drift check could not compare the role.
    pub const DRIFT_UNKNOWN: &str = "DriftUnknown";
}

/// A LinkedAccount declares that the hub identity must be able to assume a role in one AWS
/// account. The operator proves it with STS AssumeRole (guarded by an ExternalId) followed by
/// GetCallerIdentity, and keeps re-proving it every `verifyInterval`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "accountlinker.dev",
    version = "v1alpha1",
    kind = "LinkedAccount",
    plural = "linkedaccounts",
    shortname = "lacct",
    category = "accountlinker",
    namespaced,
    status = "LinkedAccountStatus",
    selectable = ".spec.accountId",
    printcolumn(name = "Account", type_ = "string", json_path = ".spec.accountId"),
    printcolumn(name = "Role", type_ = "string", json_path = ".status.roleArn"),
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Reason", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#),
    printcolumn(name = "Last-Verified", type_ = "date", json_path = ".status.lastVerifiedTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("!has(self.spec.roleName) || !has(self.spec.roleArn)")
        .message("set either spec.roleName or spec.roleArn, not both")
        .field_path(".spec"),
    validation = Rule::new("!has(self.spec.roleArn) || self.spec.roleArn.split(':')[4] == self.spec.accountId")
        .message("spec.roleArn must name a role in spec.accountId")
        .field_path(".spec.roleArn"),
)]
#[serde(rename_all = "camelCase")]
pub struct LinkedAccountSpec {
    /// The 12-digit ID of the AWS account to link. Immutable: link another account with another
    /// LinkedAccount.
    #[schemars(pattern(ACCOUNT_ID_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("accountId is immutable"))]
    pub account_id: String,

    /// Name of the IAM role in the account that the hub assumes. Defaults to
    /// `AccountLinkerAccess` when `roleArn` is not set either. Mutually exclusive with `roleArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(ROLE_NAME_PATTERN))]
    pub role_name: Option<String>,

    /// Full ARN of the role to assume, for roles with a path. Must name a role in `accountId`.
    /// Mutually exclusive with `roleName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        pattern(r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/([\w+=,.@-]+/)*[\w+=,.@-]{1,64}$"),
        length(max = 2048)
    )]
    pub role_arn: Option<String>,

    /// Where the ExternalId that guards the role's trust policy comes from. When absent the
    /// operator generates a random one into a Secret it owns and names that Secret in
    /// `status.externalIdSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<ExternalIdSource>,

    /// Lifetime of the verification session in seconds: 900 to 43200, and at most the role's
    /// MaxSessionDuration.
    #[serde(default = "default_session_duration")]
    #[schemars(range(min = 900, max = 43200))]
    pub session_duration_seconds: i32,

    /// How often the role is verified again, as a Go duration (`30m`, `1h`); at least `1m`.
    /// Defaults to the operator's `--default-verify-interval` (30m unless configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("verifyInterval must be at least 1m"))]
    pub verify_interval: Option<String>,

    /// Human-friendly name. When absent the operator reports the Organizations account name if
    /// the hub may read it, otherwise the account ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub display_name: Option<String>,

    /// Stop verifying without deleting anything. Conditions say the link is suspended.
    #[serde(default)]
    pub suspend: bool,
}

/// The source of an ExternalId.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalIdSource {
    /// A key of a Secret, in this namespace, that holds the ExternalId (2 to 1224 characters of
    /// `[\w+=,.@:/-]`).
    pub secret_ref: SecretKeyRef,
}

/// What the operator last observed about the link.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkedAccountStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Reconciling`, `Stalled`, `RoleAssumable` and, when a BulkRegistration deploys
    /// the role, `RoleDeployed`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The ARN of the role the operator assumes, resolved from `roleName` or `roleArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,

    /// The assumed-role ARN GetCallerIdentity returned at the last successful verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_identity: Option<String>,

    /// When AWS last answered a verification of the role, successfully or not. Transient
    /// failures (throttling, outages, timeouts) leave it as it is: its age says how long the
    /// conditions have gone unconfirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_time: Option<Time>,

    /// The account's display name: `spec.displayName`, the Organizations account name, or the
    /// account ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,

    /// Name of the Secret holding the ExternalId (the referenced one, or the one the operator
    /// generated). The value itself never appears in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id_secret: Option<String>,

    /// The stack instance that deploys the role, when a BulkRegistration manages this link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_instance: Option<StackInstanceRef>,

    /// The last `accountlinker.dev/verify-requested-at` value handled: a new value verifies at
    /// once, whatever `verifyInterval` says; the same value again does nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_verify_request: Option<String>,
}

/// A CloudFormation stack instance as last listed by the owning BulkRegistration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackInstanceRef {
    /// Name of the StackSet.
    pub stack_set: String,
    /// Region of the instance.
    pub region: String,
    /// Instance status: `CURRENT`, `OUTDATED` or `INOPERABLE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Detailed status: `PENDING`, `RUNNING`, `SUCCEEDED`, `FAILED`, `CANCELLED`, `INOPERABLE`,
    /// `SKIPPED_SUSPENDED_ACCOUNT` or `FAILED_IMPORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detailed_status: Option<String>,
    /// The reason CloudFormation gave for the status, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The last StackSet operation that touched the instance; a new one makes the link verify
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation_id: Option<String>,
    /// What the last drift check of the registration found for this instance: `DRIFTED`,
    /// `IN_SYNC` or `UNKNOWN` (absent when drift detection is off or nothing was checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_status: Option<String>,
}

fn default_session_duration() -> i32 {
    DEFAULT_SESSION_DURATION_SECONDS
}
