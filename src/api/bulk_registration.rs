//! `BulkRegistration`: one CloudFormation StackSet that deploys the hub's role to many accounts.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    ACCOUNT_ID_PATTERN, ConfigMapKeyRef, DURATION_PATTERN, ROLE_NAME_PATTERN, SecretKeyRef,
};

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

    /// Labels, annotations and verification settings copied to each child LinkedAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_template: Option<LinkTemplate>,

    /// What happens in AWS when this object is deleted: `Retain` (default) leaves the StackSet
    /// and its stacks in AWS, so a GitOps prune cannot remove a fleet's roles by accident;
    /// `Delete` removes every stack instance and then the StackSet. Removing an account from
    /// `targets` removes its stack instance under either policy.
    #[serde(default)]
    pub deletion_policy: BulkDeletionPolicy,
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

/// Where the template comes from: exactly one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.builtin), has(self.configMapRef), has(self.url)].filter(x, x).size() == 1")
    .message("set exactly one of template.builtin, template.configMapRef and template.url"))]
pub struct TemplateSource {
    /// The operator's versioned least-privilege role template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinTemplate>,
    /// A ConfigMap key holding a custom template body (YAML or JSON). The template must
    /// declare `ExternalId` with `NoEcho: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
    /// An `https://` URL of a template stored in S3, naming the object version
    /// (`?versionId=…`): the template hash covers the URL, so only a new version (a new URL)
    /// reaches the StackSet, and a new upload under an old URL cannot change what new accounts
    /// get. The template must declare `ExternalId` with `NoEcho: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern("^https://[^\\s]+$"), length(max = 1024))]
    #[x_kube(validation = Rule::new("self.matches('[?&]versionId=[^&#]+')").message("template.url must name an S3 object version (?versionId=...): the template hash covers the URL, not the object, so an unversioned URL would let a new upload change what accounts get without updating the StackSet"))]
    pub url: Option<String>,
}

/// The built-in template with its defaults: what a registration that names no template gets.
impl Default for TemplateSource {
    fn default() -> Self {
        Self {
            builtin: Some(BuiltinTemplate::default()),
            config_map_ref: None,
            url: None,
        }
    }
}

/// Settings of the built-in role template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuiltinTemplate {
    /// Name of the IAM role created in each account.
    #[serde(default = "default_builtin_role_name")]
    #[schemars(pattern(ROLE_NAME_PATTERN))]
    pub role_name: String,
    /// An account whose root the role trusts instead of the operator's own role (a LinkPolicy
    /// must permit it). Unset, the role trusts exactly the operator's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(ACCOUNT_ID_PATTERN))]
    pub trusted_account_id: Option<String>,
    /// Managed policies attached to the role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        inner(pattern(r"^arn:aws(-[a-z]+)*:iam::(aws|[0-9]{12}):policy/.+$")),
        length(max = 20)
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub managed_policy_arns: Vec<String>,
    /// Actions explicitly denied by an inline policy on the role, e.g. `iam:CreateUser`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        inner(pattern(r"^[a-zA-Z0-9-]+:[a-zA-Z0-9*?]+$|^\*$")),
        length(max = 100)
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub deny_actions: Vec<String>,
    /// The permissions boundary set on the role, when a LinkPolicy requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        pattern(r"^arn:aws(-[a-z]+)*:iam::(aws|[0-9]{12}):policy/.+$"),
        length(max = 2048)
    )]
    pub permissions_boundary_arn: Option<String>,
    /// The role's MaxSessionDuration in seconds (3600 to 43200).
    #[serde(default = "default_max_session_duration")]
    #[schemars(range(min = 3600, max = 43200))]
    pub max_session_duration: i32,
}

/// The same values the API server fills in for `builtin: {}`.
impl Default for BuiltinTemplate {
    fn default() -> Self {
        Self {
            role_name: default_builtin_role_name(),
            trusted_account_id: None,
            managed_policy_arns: Vec::new(),
            deny_actions: Vec::new(),
            permissions_boundary_arn: None,
            max_session_duration: default_max_session_duration(),
        }
    }
}

/// A template parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Parameter {
    /// Parameter name as declared by the template.
    #[schemars(pattern("^[a-zA-Z0-9]{1,255}$"))]
    pub name: String,
    /// Parameter value.
    #[schemars(length(max = 4096))]
    pub value: String,
}

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

fn default_builtin_role_name() -> String {
    super::linked_account::DEFAULT_ROLE_NAME.to_string()
}

fn default_max_session_duration() -> i32 {
    3600
}

/// Condition reasons of BulkRegistration: part of the API, because `kubectl wait`, alerts and
/// GitOps health checks match on them. docs/bulkregistration.md lists every one.
pub mod reason {
    /// Ready: every target account is deployed and its role verified assumable.
    pub const READY: &str = "Ready";
    /// StackSetReady=True: the StackSet has the current template and settings.
    pub const STACK_SET_CURRENT: &str = "StackSetCurrent";
    /// StackSetReady=Unknown: an operation is in flight or the template is not applied yet.
    pub const STACK_SET_PENDING: &str = "StackSetPending";
    /// Stalled: ServiceManaged needs trusted access between StackSets and Organizations.
    pub const TRUSTED_ACCESS_DISABLED: &str = "TrustedAccessDisabled";
    /// Stalled: AWS refused a call; the message is AWS's.
    pub const AWS_REJECTED: &str = "AwsRejected";
    /// Reconciling: an operation of this registration is running.
    pub const OPERATION_RUNNING: &str = "OperationRunning";
    /// Reconciling: someone else's operation runs on the StackSet.
    pub const OPERATION_IN_PROGRESS: &str = "OperationInProgress";
    /// InstancesReady=True: every target account has a current, succeeded instance.
    pub const INSTANCES_CURRENT: &str = "InstancesCurrent";
    /// InstancesReady=False, Reconciling: instances are missing or being deployed.
    pub const INSTANCES_PENDING: &str = "InstancesPending";
    /// InstancesReady=False, Stalled: instances failed; see `status.failures`.
    pub const INSTANCES_FAILED: &str = "InstancesFailed";
    /// Reconciling: roles are deployed, not all verified assumable yet.
    pub const VERIFYING: &str = "Verifying";
    /// Stalled: a deployed role cannot be assumed (the message names a child).
    pub const NOT_ASSUMABLE: &str = "RolesNotAssumable";
    /// Reconciling or Stalled while `deletionPolicy: Delete` removes instances and StackSet.
    pub const DELETING: &str = "Deleting";
    /// Stalled: a `targets.accountsFrom` ConfigMap is missing or has malformed lines.
    pub const INVALID_ACCOUNT_LIST: &str = "InvalidAccountList";
    /// Stalled: the `template.configMapRef` ConfigMap does not exist.
    pub const TEMPLATE_CONFIG_MAP_NOT_FOUND: &str = "TemplateConfigMapNotFound";
    /// Stalled: the `template.configMapRef` ConfigMap has no such key.
    pub const TEMPLATE_KEY_NOT_FOUND: &str = "TemplateKeyNotFound";
    /// Stalled: the `externalId.secretRef` Secret does not exist.
    pub const TOKEN_SECRET_NOT_FOUND: &str = "TokenSecretNotFound";
    /// Stalled: the `externalId.secretRef` Secret lacks the `accountlinker.dev/external-id=true`
    /// label, so it is not read.
    pub const SECRET_NOT_LABELLED: &str = "SecretNotLabelled";
    /// Stalled: the token Secret has no such key, or its value is not a valid ExternalId.
    pub const TOKEN_KEY_NOT_FOUND: &str = "TokenKeyNotFound";
    /// Stalled: a Secret named like the generated token exists and is not this registration's.
    pub const TOKEN_SECRET_CONFLICT: &str = "TokenSecretConflict";
    /// Stalled: a ConfigMap or URL template does not declare `ExternalId` with `NoEcho: true`
    /// (GetTemplateSummary); no StackSet call is made with it.
    pub const EXTERNAL_ID_NOT_NO_ECHO: &str = "ExternalIdNotNoEcho";
    /// Stalled: `template.url` names no S3 object version (admitted before that was required).
    pub const TEMPLATE_URL_NOT_VERSIONED: &str = "TemplateUrlNotVersioned";
    /// Stalled: the targets resolve to more accounts than `--max-targets`.
    pub const TOO_MANY_TARGETS: &str = "TooManyTargets";
    /// Stalled: the StackSet exists and its tags do not name this registration (another
    /// cluster, another object, or none and no adoption asked for); nothing is changed.
    pub const STACK_SET_NOT_OWNED: &str = "StackSetNotOwned";
    /// Stalled: no LinkPolicy selecting the namespace permits everything the registration
    /// asks; the message names the field, the value and the policies (docs/linkpolicy.md).
    pub const NOT_PERMITTED: &str = "NotPermitted";
}

/// Event reasons of BulkRegistration, besides condition transitions (which carry the
/// condition's reason).
pub mod event {
    /// The StackSet was created.
    pub const STACK_SET_CREATED: &str = "StackSetCreated";
    /// An operation of this registration ended SUCCEEDED.
    pub const OPERATION_SUCCEEDED: &str = "OperationSucceeded";
    /// An operation of this registration ended FAILED or STOPPED.
    pub const OPERATION_FAILED: &str = "OperationFailed";
    /// `deletionPolicy: Delete` removed the StackSet.
    pub const STACK_SET_DELETED: &str = "StackSetDeleted";
    /// `deletionPolicy: Retain` left the StackSet and its stacks in AWS.
    pub const RETAINED: &str = "Retained";
    /// Deleted while no LinkPolicy permits it: the StackSet and its stacks stay in AWS,
    /// whatever `deletionPolicy` says.
    pub const RETAINED_NOT_PERMITTED: &str = "RetainedNotPermitted";
}
