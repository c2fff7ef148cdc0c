//! What an object asks of AWS, in the terms a LinkPolicy speaks: one small struct per kind,
//! built from the spec alone (never from status, which the operator writes and anyone with
//! status access could change).

use std::collections::BTreeSet;

use crate::api::link_policy::TemplateSourceKind;
use crate::api::linked_account::DEFAULT_ROLE_NAME;
use crate::api::member_account::MemberDeletionPolicy;
use crate::api::{BulkRegistration, LinkedAccount, MemberAccount};

/// One object's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    Link(LinkAsk),
    Bulk(BulkAsk),
    Member(MemberAsk),
}

/// A LinkedAccount: the account and the role the hub assumes there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkAsk {
    pub account_id: String,
    /// The role's name (a `roleArn`'s path is not part of it).
    pub role_name: String,
    /// How the spec says it, for messages: `spec.roleName=…` or `spec.roleArn=…`.
    pub role_field: String,
}

/// A BulkRegistration: its template, trust, policies, targets and StackSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkAsk {
    pub template: TemplateSourceKind,
    /// The built-in template's settings (`None` for ConfigMap and URL templates).
    pub builtin: Option<BuiltinAsk>,
    /// `targets.accounts` minus `targets.exclude`.
    pub accounts: BTreeSet<String>,
    /// `targets.organizationalUnitIds`: OUs and the root.
    pub units: Vec<String>,
    /// Whether `targets.accountsFrom` lists accounts that only a read of ConfigMaps reveals.
    pub lists: bool,
    /// `stackSet.name` when given (a derived name is always the registration's own).
    pub stack_set_name: Option<String>,
    pub adopt: bool,
    /// `import.stackName`: existing stacks to take over.
    pub import_stack_name: Option<String>,
    /// `targets.includeManagementAccount`.
    pub management_account: bool,
}

/// The built-in template's settings that widen what the deployed role can do or who may use it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuiltinAsk {
    pub role_name: String,
    pub trusted_account_id: Option<String>,
    pub managed_policy_arns: Vec<String>,
    pub permissions_boundary_arn: Option<String>,
}

/// A MemberAccount: where the account goes, its root e-mail, its access role, Close, the
/// account it adopts and where Park leaves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAsk {
    pub parent_id: String,
    /// `None` for an adopted account that names no e-mail (nothing is created with it).
    pub email: Option<String>,
    pub role_name: String,
    pub close: bool,
    /// `spec.accountId`: an existing account to adopt.
    pub adopt: Option<String>,
    /// `spec.parkParentId`: where deletion with `Park` moves the account.
    pub park_parent_id: Option<String>,
}

impl LinkAsk {
    pub fn of(link: &LinkedAccount) -> Self {
        let spec = &link.spec;
        let (role_name, role_field) = match (&spec.role_arn, &spec.role_name) {
            (Some(arn), _) => (
                arn.rsplit('/').next().unwrap_or(arn).to_string(),
                format!("spec.roleArn={arn}"),
            ),
            (None, Some(name)) => (name.clone(), format!("spec.roleName={name}")),
            (None, None) => (
                DEFAULT_ROLE_NAME.to_string(),
                format!("spec.roleName={DEFAULT_ROLE_NAME} (the default)"),
            ),
        };
        Self {
            account_id: spec.account_id.clone(),
            role_name,
            role_field,
        }
    }
}

impl BulkAsk {
    pub fn of(bulk: &BulkRegistration) -> Self {
        let spec = &bulk.spec;
        let template = &spec.template;
        let (kind, builtin) = if template.config_map_ref.is_some() {
            (TemplateSourceKind::ConfigMap, None)
        } else if template.url.is_some() {
            (TemplateSourceKind::Url, None)
        } else {
            let b = template.builtin.clone().unwrap_or_default();
            let settings = BuiltinAsk {
                role_name: b.role_name,
                trusted_account_id: b.trusted_account_id,
                managed_policy_arns: b.managed_policy_arns,
                permissions_boundary_arn: b.permissions_boundary_arn,
            };
            (TemplateSourceKind::Builtin, Some(settings))
        };
        let targets = &spec.targets;
        let accounts = targets
            .accounts
            .iter()
            .filter(|a| !targets.exclude.contains(a))
            .cloned()
            .collect();
        Self {
            template: kind,
            builtin,
            accounts,
            units: targets.organizational_unit_ids.clone(),
            lists: !targets.accounts_from.is_empty(),
            stack_set_name: spec.stack_set.name.clone(),
            adopt: spec.stack_set.adopt,
            import_stack_name: spec.import.as_ref().map(|i| i.stack_name.clone()),
            management_account: targets.include_management_account,
        }
    }
}

impl MemberAsk {
    pub fn of(member: &MemberAccount) -> Self {
        let spec = &member.spec;
        Self {
            parent_id: spec.parent_id.clone(),
            email: spec.email.clone(),
            role_name: spec.role_name.clone(),
            close: spec.deletion_policy == MemberDeletionPolicy::Close,
            adopt: spec.account_id.clone(),
            park_parent_id: spec
                .park_parent_id
                .clone()
                .filter(|_| spec.deletion_policy == MemberDeletionPolicy::Park),
        }
    }
}

impl Ask {
    /// The request of any of the three kinds.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Link(_) => "LinkedAccount",
            Self::Bulk(_) => "BulkRegistration",
            Self::Member(_) => "MemberAccount",
        }
    }
}
