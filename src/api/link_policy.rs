//! `LinkPolicy`: what the objects in some namespaces may ask of AWS.
//!
//! The operator holds organization-wide power and acts for whoever may create objects in a
//! watched namespace. A cluster administrator writes LinkPolicies (cluster-scoped, so a
//! namespace's author cannot grant itself rights) to say, per namespace, which accounts, role
//! names, templates, trust, managed policies, StackSet names and MemberAccount rights are
//! allowed. An object is permitted when at least one policy selecting its namespace permits
//! everything it asks; with `--tenancy=enforced` (the default) a namespace no policy selects
//! may do nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::bulk_registration::PARENT_ID_PATTERN;

/// An account ID, or `*` for every account of the organization.
pub const ACCOUNT_ID_OR_ANY_PATTERN: &str = "^([0-9]{12}|\\*)$";
/// A role-name pattern: IAM role-name characters and `*` wildcards.
pub const ROLE_NAME_GLOB_PATTERN: &str = r"^[\w+=,.@*-]{1,64}$";

/// A LinkPolicy grants the objects in the namespaces it selects the right to reach some AWS
/// accounts with some roles, templates and trust. Policies only add rights: an object is
/// permitted when one policy selecting its namespace permits all it asks for.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "accountlinker.dev",
    version = "v1alpha1",
    kind = "LinkPolicy",
    plural = "linkpolicies",
    shortname = "lpol",
    category = "accountlinker",
    printcolumn(name = "Namespaces", type_ = "string", json_path = ".spec.namespaces"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.namespaceSelector) || (has(self.namespaces) && size(self.namespaces) > 0)")
        .message("select namespaces with namespaceSelector, namespaces, or both"),
)]
#[serde(rename_all = "camelCase")]
pub struct LinkPolicySpec {
    /// Namespaces selected by their labels. An empty selector (`{}`) selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Namespaces selected by name, in addition to `namespaceSelector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        inner(length(min = 1, max = 63), pattern("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")),
        length(max = 1000)
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub namespaces: Vec<String>,

    /// The AWS accounts the selected namespaces may link (LinkedAccount `accountId`) or deploy
    /// to (BulkRegistration targets). Empty: none.
    #[serde(default)]
    pub accounts: AccountScope,

    /// IAM role names the objects may assume (LinkedAccount), deploy (the built-in template's
    /// `roleName`) or have Organizations create (MemberAccount `roleName`); `*` matches any
    /// run of characters. Defaults to the operator's default role, `AccountLinkerAccess`.
    #[serde(default = "default_role_names")]
    #[schemars(inner(pattern(ROLE_NAME_GLOB_PATTERN)), length(max = 100))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub role_names: Vec<String>,

    /// What BulkRegistrations may do. Absent: this policy permits no BulkRegistration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_registrations: Option<BulkRegistrationRights>,

    /// What MemberAccounts may do. Absent: this policy permits no MemberAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_accounts: Option<MemberAccountRights>,
}

/// A set of AWS accounts: listed by ID, or every account under an organizational unit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountScope {
    /// Account IDs; `*` is every account in the organization (and lets BulkRegistrations
    /// target any OU or the root).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(ACCOUNT_ID_OR_ANY_PATTERN)), length(max = 10000))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub ids: Vec<String>,

    /// Organizational units (`ou-…`), nested OUs included, or the root (`r-…`, the whole
    /// organization). A BulkRegistration may target these OUs and the OUs nested in them; the
    /// root is a permitted target only when listed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(PARENT_ID_PATTERN)), length(max = 1000))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub organizational_unit_ids: Vec<String>,
}

/// Where a BulkRegistration's template may come from.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum TemplateSourceKind {
    /// `template.builtin`: the operator's least-privilege role template.
    Builtin,
    /// `template.configMapRef`: any template body, deployed with CAPABILITY_NAMED_IAM.
    ConfigMap,
    /// `template.url`: any template in S3, deployed with CAPABILITY_NAMED_IAM.
    Url,
}

/// The rights of BulkRegistrations in the selected namespaces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkRegistrationRights {
    /// Template sources allowed. Defaults to `[Builtin]`: a ConfigMap or URL template can
    /// create any IAM resource in every target, so grant them only to trusted namespaces.
    #[serde(default = "default_template_sources")]
    #[schemars(length(max = 3))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub template_sources: Vec<TemplateSourceKind>,

    /// Principals the built-in template may trust besides the operator's own role: account
    /// IDs or IAM role ARNs (`template.builtin.trustedAccountId`), or `*` for any. Empty: only
    /// the operator's role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        inner(pattern(r"^(\*|[0-9]{12}|arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/([\w+=,.@-]+/)*[\w+=,.@-]{1,64})$")),
        length(max = 100)
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub trusted_principals: Vec<String>,

    /// Managed policy ARNs the built-in template may attach (`*` matches any run of
    /// characters). Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 2048)), length(max = 100))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub managed_policy_arns: Vec<String>,

    /// When set, every built-in role must carry exactly this permissions boundary
    /// (`template.builtin.permissionsBoundaryArn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        pattern(r"^arn:aws(-[a-z]+)*:iam::(aws|[0-9]{12}):policy/.+$"),
        length(max = 2048)
    )]
    pub permissions_boundary_arn: Option<String>,

    /// Most target accounts of one BulkRegistration, after OUs and lists are resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_targets: Option<i32>,

    /// Prefixes a `stackSet.name` must start with. Empty: the name must be left to the
    /// operator, which derives a unique one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern("^[a-zA-Z][a-zA-Z0-9-]{0,127}$")), length(max = 100))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub stack_set_name_prefixes: Vec<String>,

    /// Whether `stackSet.adopt` may take over an existing StackSet that carries no owner tag
    /// of this cluster. Adoption tags it as this registration's.
    #[serde(default)]
    pub stack_set_adoption: bool,

    /// Names of existing per-account stacks that `import.stackName` may take into a StackSet
    /// (`*` matches any run of characters). Importing takes over a stack someone created in each
    /// target account. Empty: no import.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(min = 1, max = 128)), length(max = 100))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub import_stack_names: Vec<String>,

    /// Whether `targets.includeManagementAccount` may deploy the role to the organization's
    /// management account, the most powerful account there is. An explicit right: no account
    /// list, `*`, OU or root covers it.
    #[serde(default)]
    pub management_account: bool,
}

impl Default for BulkRegistrationRights {
    fn default() -> Self {
        Self {
            template_sources: default_template_sources(),
            trusted_principals: Vec::new(),
            managed_policy_arns: Vec::new(),
            permissions_boundary_arn: None,
            max_targets: None,
            stack_set_name_prefixes: Vec::new(),
            stack_set_adoption: false,
            import_stack_names: Vec::new(),
            management_account: false,
        }
    }
}

/// The rights of MemberAccounts in the selected namespaces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberAccountRights {
    /// Where new accounts may be placed: OUs (nested OUs included) or the root (`r-…`).
    /// Empty: nowhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(pattern(PARENT_ID_PATTERN)), length(max = 1000))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub parent_ids: Vec<String>,

    /// E-mail domains the root e-mail may use (`example.com` permits `x@example.com`, not
    /// `x@sub.example.com`). Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        inner(pattern(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+$")),
        length(max = 100)
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub email_domains: Vec<String>,

    /// Most MemberAccounts per namespace; the oldest objects are permitted first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_accounts: Option<i32>,

    /// Whether `deletionPolicy: Close` is permitted (CloseAccount on deletion), for created and
    /// adopted accounts alike.
    #[serde(default)]
    pub allow_close: bool,

    /// Whether `spec.accountId` may adopt an existing member account: moving, tagging, linking
    /// (and with `allowClose`, closing) an account someone else made. The account must also
    /// be in this policy's `accounts` (IDs or OUs). Off by default. `parentIds` also bounds
    /// `parkParentId` (deletion with `Park`), for created and adopted accounts alike.
    #[serde(default)]
    pub adoption: bool,
}

fn default_role_names() -> Vec<String> {
    vec![super::linked_account::DEFAULT_ROLE_NAME.to_string()]
}

fn default_template_sources() -> Vec<TemplateSourceKind> {
    vec![TemplateSourceKind::Builtin]
}
