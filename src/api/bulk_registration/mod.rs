//! `BulkRegistration`: one CloudFormation StackSet that deploys the hub's role to many accounts.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{DURATION_PATTERN, ROLE_NAME_PATTERN, SecretKeyRef};

mod brownfield;
mod drift;
mod reasons;
mod status;
mod targets;
mod template;

pub use brownfield::StackImport;
pub use drift::{DriftCheck, DriftRemediation, DriftSpec};
pub use reasons::{event, reason};
pub use status::{
    BulkRegistrationStatus, InstanceFailure, RotationPhase, StackSetOperation, Summary,
};
pub use targets::{
    AccountsSource, AutoDeployment, ConcurrencyMode, OperationPreferences, RegionConcurrency,
    Targets,
};
pub use template::{BuiltinTemplate, Parameter, TemplateSource};

/// An Organizations root (`r-…`) or organizational unit (`ou-…`) ID.
pub const PARENT_ID_PATTERN: &str = "^(r-[0-9a-z]{4,32}|ou-[0-9a-z]{4,32}-[a-z0-9]{8,32})$";
/// An AWS region name such as `eu-west-1` or `us-gov-west-1`.
pub const REGION_PATTERN: &str = "^[a-z]{2}(-[a-z]+)+-[0-9]+$";

/// A BulkRegistration deploys the hub's IAM role into many accounts through one StackSet and
/// owns one LinkedAccount per target account, which verifies that the deployed role can be
/// assumed.
#[expect(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) repeats keys such as type_ by design"
)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "accountlinker.dev",
    version = "v1alpha1",
    kind = "BulkRegistration",
    plural = "bulkregistrations",
    shortname = "bulkreg",
    category = "accountlinker",
    namespaced,
    status = "BulkRegistrationStatus",
    printcolumn(
        name = "StackSet",
        type_ = "string",
        json_path = ".status.stackSetName"
    ),
    printcolumn(
        name = "Targets",
        type_ = "integer",
        json_path = ".status.summary.targets"
    ),
    printcolumn(
        name = "Current",
        type_ = "integer",
        json_path = ".status.summary.current"
    ),
    printcolumn(
        name = "Assumable",
        type_ = "integer",
        json_path = ".status.summary.assumable"
    ),
    printcolumn(
        name = "Failed",
        type_ = "integer",
        json_path = ".status.summary.failed"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("self.stackSet.permissionModel == 'ServiceManaged' || !has(self.autoDeployment)")
        .message("autoDeployment applies to ServiceManaged StackSets only"),
    validation = Rule::new("self.stackSet.permissionModel == 'ServiceManaged' || !has(self.targets.organizationalUnitIds) || size(self.targets.organizationalUnitIds) == 0")
        .message("targets.organizationalUnitIds needs a ServiceManaged StackSet; SelfManaged StackSets target accounts"),
    validation = Rule::new("!has(self.template.builtin) || !has(self.regions) || size(self.regions) <= 1")
        .message("the builtin template creates a named IAM role, which is global: deploy it to one region per account (set at most one region)"),
    validation = Rule::new("!has(self.import) || self.stackSet.permissionModel == 'SelfManaged'")
        .message("import applies to SelfManaged StackSets only: the stacks are found through the execution role"),
)]
#[serde(rename_all = "camelCase")]
pub struct BulkRegistrationSpec {
    /// The StackSet this registration manages.
    pub stack_set: StackSetSpec,

    /// The CloudFormation template deployed to every target: exactly one of `builtin`,
    /// `configMapRef` or `url`. Defaults to `builtin` with its defaults, so the smallest
    /// registration deploys the least-privilege role without asking for it.
    #[serde(default)]
    pub template: TemplateSource,

    /// Template parameters. The registration token is passed as the `ExternalId` parameter and
    /// must not be set here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[x_kube(validation = Rule::new("self.all(p, p.name != 'ExternalId')").message("the ExternalId parameter is managed by the operator"))]
    #[schemars(length(max = 200))]
    pub parameters: Vec<Parameter>,

    /// The accounts to deploy to.
    pub targets: Targets,

    /// Regions to deploy to. Defaults to the operator's region when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(REGION_PATTERN)), length(max = 40))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub regions: Vec<String>,

    /// Automatic deployment to accounts that later join a target OU (ServiceManaged only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_deployment: Option<AutoDeployment>,

    /// How CloudFormation spreads each operation across accounts and regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_preferences: Option<OperationPreferences>,

    /// The registration token: one ExternalId shared by every account of this registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<RegistrationToken>,

    /// Existing per-account stacks to import into the StackSet (SelfManaged only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<StackImport>,

    /// Labels, annotations and verification settings copied to each child LinkedAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_template: Option<LinkTemplate>,

    /// What happens in AWS when this object is deleted: `Retain` (default) leaves the StackSet
    /// and its stacks in AWS, so a GitOps prune cannot remove a fleet's roles by accident;
    /// `Delete` removes every stack instance and then the StackSet. Removing an account from
    /// `targets` removes its stack instance under either policy.
    #[serde(default)]
    pub deletion_policy: BulkDeletionPolicy,

    /// Drift detection of the deployed roles (off by default): see docs/bulkregistration.md,
    /// "Drift detection".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftSpec>,
}

/// StackSet identity and permission model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.name) == has(oldSelf.name)").message("stackSet.name is immutable"),
    validation = Rule::new("self.permissionModel == 'SelfManaged' || (!has(self.administrationRoleArn) && !has(self.executionRoleName))")
        .message("administrationRoleArn and executionRoleName apply to SelfManaged StackSets only"),
    validation = Rule::new("self.permissionModel == 'ServiceManaged' || self.callAs == 'Self'")
        .message("a delegated administrator can only use ServiceManaged StackSets"),
)]
pub struct StackSetSpec {
    /// StackSet name. Defaults to `account-linker-<namespace>-<name>-<hash>`, the hash over the
    /// cluster identity, namespace and name (unique per object and cluster). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern("^[a-zA-Z][a-zA-Z0-9-]{0,127}$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("stackSet.name is immutable"))]
    pub name: Option<String>,

    /// `ServiceManaged` (Organizations deploys through trusted access) or `SelfManaged`
    /// (an administration role assumes an execution role in each target). Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("stackSet.permissionModel is immutable"))]
    pub permission_model: PermissionModel,

    /// `Self` when the hub is the management account, `DelegatedAdmin` when it is a delegated
    /// administrator for StackSets. Sent on every StackSet call.
    #[serde(default)]
    pub call_as: CallAs,

    /// SelfManaged only: the administration role. Defaults to
    /// `arn:aws:iam::<hub>:role/AWSCloudFormationStackSetAdministrationRole`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(
        r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/([\w+=,.@-]+/)*[\w+=,.@-]{1,64}$"
    ))]
    pub administration_role_arn: Option<String>,

    /// SelfManaged only: the execution role in each target. Defaults to
    /// `AWSCloudFormationStackSetExecutionRole`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(ROLE_NAME_PATTERN))]
    pub execution_role_name: Option<String>,

    /// Let CloudFormation run non-conflicting operations concurrently and queue the others.
    #[serde(default)]
    pub managed_execution: bool,

    /// Take over an existing StackSet named `name` that carries no owner tag of this cluster,
    /// and tag it as this registration's. Needs a LinkPolicy with `stackSetAdoption: true`.
    /// Without it, a StackSet the operator did not create is reported (`StackSetNotOwned`),
    /// never updated, shrunk or deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
}

/// StackSet permission model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PermissionModel {
    /// Deploy through Organizations trusted access (SERVICE_MANAGED).
    ServiceManaged,
    /// Deploy with an administration role and per-account execution roles (SELF_MANAGED).
    SelfManaged,
}

/// Which identity the hub acts as on StackSet calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CallAs {
    /// The management account (CallAs=SELF).
    #[default]
    #[serde(rename = "Self")]
    SelfAccount,
    /// A delegated administrator (CallAs=DELEGATED_ADMIN).
    DelegatedAdmin,
}

/// The registration token (ExternalId) of a BulkRegistration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.secretRef) && has(self.rotateEvery))")
    .message("rotateEvery applies to generated tokens only; rotate a referenced Secret by changing it"))]
pub struct RegistrationToken {
    /// Use this Secret key instead of a generated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Rotate the generated token this often (Go duration, at least `1h`): the StackSet is
    /// updated, then every child verifies again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1h')").message("rotateEvery must be at least 1h"))]
    pub rotate_every: Option<String>,
}

/// What each child LinkedAccount inherits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkTemplate {
    /// Labels added to every child: at most 64, keys up to 316 characters, values up to 63.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::common::label_map_schema")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to every child: at most 64, keys up to 316 characters, values up to 4096.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::common::annotation_map_schema")]
    pub annotations: BTreeMap<String, String>,
    /// The children's `verifyInterval` (Go duration, at least `1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("verifyInterval must be at least 1m"))]
    pub verify_interval: Option<String>,
    /// The children's `sessionDurationSeconds` (900–43200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 900, max = 43200))]
    pub session_duration_seconds: Option<i32>,
}

/// Deletion policy of a BulkRegistration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BulkDeletionPolicy {
    /// Delete every stack instance, then the StackSet.
    Delete,
    /// Leave the StackSet and its stacks in AWS.
    #[default]
    Retain,
}
