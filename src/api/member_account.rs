//! `MemberAccount`: an AWS account of the organization, created through Organizations or
//! adopted by its ID, placed, tagged and linked.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::bulk_registration::PARENT_ID_PATTERN;
use super::common::{DURATION_PATTERN, ROLE_NAME_PATTERN};

/// The access role Organizations creates in new accounts unless told otherwise.
pub const DEFAULT_ACCESS_ROLE_NAME: &str = "OrganizationAccountAccessRole";

/// Condition and Event reasons of MemberAccount: the contract `kubectl wait`, alerts and the
/// user guide rely on, so they live with the kind rather than with the controller.
/// docs/memberaccount.md lists every one.
pub mod reason {
    /// The account exists, is ACTIVE, and its access role is assumable (or linking is off).
    pub const READY: &str = "Ready";
    /// A CreateAccount request is in progress (`AccountCreated=Unknown`).
    pub const CREATING: &str = "Creating";
    /// The account exists (`AccountCreated=True`).
    pub const CREATED: &str = "Created";
    /// The child LinkedAccount has not verified the access role yet.
    pub const VERIFYING: &str = "Verifying";
    /// The child LinkedAccount is Stalled.
    pub const NOT_ASSUMABLE: &str = "AccessRoleNotAssumable";
    /// Organizations throttled CreateAccount.
    pub const RATE_LIMITED: &str = "RateLimited";
    /// The hub's account is not in an organization.
    pub const NOT_IN_USE: &str = "OrganizationsNotInUse";
    /// CreateAccount or CloseAccount was refused for another reason; the message has AWS's
    /// code and message. (Refusals of the calls after creation have reasons naming the step.)
    pub const AWS_REJECTED: &str = "AwsRejected";
    /// A FAILED CreateAccount request without a `FailureReason` (with one, the reason is AWS's
    /// `FailureReason` in CamelCase, e.g. `EmailAlreadyExists`).
    pub const CREATE_ACCOUNT_FAILED: &str = "CreateAccountFailed";
    /// DescribeAccount, ListParents or ListTagsForResource of the account was refused for good.
    pub const DESCRIBE_REJECTED: &str = "DescribeRejected";
    /// MoveAccount to `parentId` was refused for good (a bad `parentId`, permissions).
    pub const MOVE_REJECTED: &str = "MoveRejected";
    /// TagResource or UntagResource was refused for good (a tag policy, permissions).
    pub const TAG_REJECTED: &str = "TagRejected";
    /// A LinkedAccount with this object's name exists and is not this object's child.
    pub const LINKED_ACCOUNT_NAME_TAKEN: &str = "LinkedAccountNameTaken";
    /// `accountName` changed after creation; Organizations cannot rename through its API.
    pub const NAME_NOT_APPLIED: &str = "AccountNameNotApplied";
    /// The account is SUSPENDED, PENDING_CLOSURE or CLOSED.
    pub const NOT_ACTIVE: &str = "AccountNotActive";
    /// CloseAccount's quota is spent; the account stays.
    pub const CLOSE_QUOTA: &str = "CloseAccountQuotaExceeded";
    /// The e-mail belongs to an account this object did not create (AWS's own reason for it).
    pub const EMAIL_IN_USE: &str = "EmailAlreadyExists";
    /// No LinkPolicy selecting the namespace permits everything the object asks; the message
    /// names the field, the value and the policies (docs/linkpolicy.md).
    pub const NOT_PERMITTED: &str = "NotPermitted";

    /// Event: deletion with `Close` closed the account (PENDING_CLOSURE).
    pub const CLOSING: &str = "Closing";
    /// Event: deletion with `Retain` left the account in the organization.
    pub const RETAINED: &str = "Retained";
    /// Event: deletion with `Close` found no account provably this object's.
    pub const NOTHING_TO_CLOSE: &str = "NothingToClose";
    /// Stalled (and the Event of a deletion that closes nothing): the account in
    /// `status.accountId` is not tagged for this object and cluster; it is never moved,
    /// tagged, untagged or closed from here.
    pub const ACCOUNT_NOT_OWNED: &str = "AccountNotOwned";
    /// Event: deleted while no LinkPolicy permits it: the account stays in the organization,
    /// whatever `deletionPolicy` says.
    pub const RETAINED_NOT_PERMITTED: &str = "RetainedNotPermitted";
    /// Event: the account was moved to `parentId`.
    pub const MOVED: &str = "Moved";
    /// `AccountCreated=True` and an Event: the existing account in `spec.accountId` was
    /// tagged as this object's (no CreateAccount).
    pub const ADOPTED: &str = "Adopted";
    /// Stalled: the account in `spec.accountId` cannot be adopted (not in the organization,
    /// the management account, not ACTIVE, another e-mail, or tagged for another owner); it
    /// is not moved, tagged or linked.
    pub const ADOPTION_REFUSED: &str = "AdoptionRefused";
    /// Event: deletion with `Park` moved the account to `parkParentId` and removed the owner
    /// tags; the account stays ACTIVE.
    pub const PARKED: &str = "Parked";
    /// Event: deletion with `Close` saw the account reach SUSPENDED (closed, reinstatable for
    /// 90 days).
    pub const SUSPENDED: &str = "Suspended";
}

/// A MemberAccount creates one AWS account in the organization (exactly once), places it under
/// `parentId`, and by default links it with a child LinkedAccount for its access role.
#[expect(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) repeats keys such as type_ by design"
)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "accountlinker.dev",
    version = "v1alpha1",
    kind = "MemberAccount",
    plural = "memberaccounts",
    shortname = "macct",
    category = "accountlinker",
    namespaced,
    status = "MemberAccountStatus",
    printcolumn(
        name = "Account-Name",
        type_ = "string",
        json_path = ".spec.accountName"
    ),
    printcolumn(name = "Account", type_ = "string", json_path = ".status.accountId"),
    printcolumn(name = "Parent", type_ = "string", json_path = ".spec.parentId"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.accountId) || (has(self.email) && has(self.accountName))")
        .message("email and accountName are required unless accountId names an existing account to adopt"),
    validation = Rule::new("has(self.accountId) == has(oldSelf.accountId)")
        .message("accountId is immutable: set it when the object is created"),
    validation = Rule::new("!has(oldSelf.email) || has(self.email)")
        .message("email is immutable"),
    validation = Rule::new("(has(self.deletionPolicy) && self.deletionPolicy == 'Park') == has(self.parkParentId)")
        .message("parkParentId is required with deletionPolicy Park, and only with it"),
)]
#[serde(rename_all = "camelCase")]
pub struct MemberAccountSpec {
    /// An existing member account to adopt instead of creating one (12 digits, immutable): it
    /// must be ACTIVE in the organization, not its management account, and carry no other
    /// owner's tag. A LinkPolicy must allow it (`memberAccounts.adoption` and `accounts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9]{12}$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("accountId is immutable"))]
    pub account_id: Option<String>,

    /// The account's friendly name (1–50 characters); required unless `accountId` is set (an
    /// adopted account keeps its name). Organizations cannot rename an account through this
    /// API after creation; a later change is reported, not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 50), pattern(r"^[ -~]+$"))]
    pub account_name: Option<String>,

    /// The root user's e-mail address, unique across AWS. Immutable. Required unless
    /// `accountId` is set (then, when given, it must be the adopted account's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 6, max = 64),
        pattern(r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("email is immutable"))]
    pub email: Option<String>,

    /// The root (`r-…`) or organizational unit (`ou-…`) the account belongs under. The account
    /// is moved when it differs.
    #[schemars(pattern(PARENT_ID_PATTERN))]
    pub parent_id: String,

    /// The access role Organizations creates in the account, trusted by the management account.
    #[serde(default = "default_access_role_name")]
    #[schemars(pattern(ROLE_NAME_PATTERN))]
    pub role_name: String,

    /// Whether IAM users and roles in the account may see billing information.
    #[serde(default)]
    pub iam_user_access_to_billing: BillingAccess,

    /// Tags on the account, applied at creation and kept in sync (at most 49: the operator adds
    /// `accountlinker.dev/member-account`, naming this object, to prove the account is its own).
    /// Keys starting with `aws:` or `accountlinker.dev/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 49))]
    #[x_kube(
        validation = Rule::new("self.all(k, !k.startsWith('aws:') && !k.startsWith('accountlinker.dev/'))")
            .message("tag keys starting with aws: or accountlinker.dev/ are reserved"),
        validation = Rule::new("self.all(k, size(k) <= 128 && size(self[k]) <= 256)")
            .message("tag keys are at most 128 characters and values at most 256"),
    )]
    pub tags: BTreeMap<String, String>,

    /// What happens in AWS when this object is deleted: `Retain` (default) leaves the account;
    /// `Close` closes it with CloseAccount (reinstatable for 90 days); `Park` moves it to
    /// `parkParentId` and removes the owner tags, leaving it ACTIVE for someone else to take.
    #[serde(default)]
    pub deletion_policy: MemberDeletionPolicy,

    /// Where `deletionPolicy: Park` moves the account (an OU `ou-…` or the root `r-…`); a
    /// LinkPolicy's `memberAccounts.parentIds` must permit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(PARENT_ID_PATTERN))]
    pub park_parent_id: Option<String>,

    /// The child LinkedAccount that verifies the access role.
    #[serde(default)]
    pub link: MemberLink,
}

/// Billing visibility for IAM principals in the account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BillingAccess {
    /// IAM principals with permission may view billing.
    #[default]
    Allow,
    /// Only the root user may view billing.
    Deny,
}

/// Deletion policy of a MemberAccount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MemberDeletionPolicy {
    /// Leave the account in the organization.
    #[default]
    Retain,
    /// Close the account with CloseAccount.
    Close,
    /// Move the account to `parkParentId` and remove the owner tags; it stays ACTIVE.
    Park,
}

/// Link settings of a MemberAccount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberLink {
    /// Create a child LinkedAccount for the access role.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The child's `verifyInterval` (Go duration, at least `1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("verifyInterval must be at least 1m"))]
    pub verify_interval: Option<String>,
}

impl Default for MemberLink {
    fn default() -> Self {
        Self {
            enabled: true,
            verify_interval: None,
        }
    }
}

/// What the operator last observed about the account.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberAccountStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled` and `AccountCreated`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The CreateAccount request ID, recorded before the request is awaited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_account_request_id: Option<String>,
    /// The request's state: `IN_PROGRESS`, `SUCCEEDED` or `FAILED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_account_state: Option<String>,
    /// The new account's ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The account's current parent in the organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// The account's status in Organizations: `ACTIVE`, `SUSPENDED` or `PENDING_CLOSURE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_status: Option<String>,
    /// Name of the child LinkedAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_account: Option<String>,
    /// True when the account existed before this object and was adopted (`spec.accountId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted: Option<bool>,
}

fn default_access_role_name() -> String {
    DEFAULT_ACCESS_ROLE_NAME.to_string()
}

fn default_true() -> bool {
    true
}
