//! Where a BulkRegistration's CloudFormation template comes from, and its parameters.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::api::common::{ACCOUNT_ID_PATTERN, ConfigMapKeyRef, ROLE_NAME_PATTERN};

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

fn default_builtin_role_name() -> String {
    crate::api::linked_account::DEFAULT_ROLE_NAME.to_string()
}

fn default_max_session_duration() -> i32 {
    3600
}
