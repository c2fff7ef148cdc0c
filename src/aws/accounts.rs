//! Account lifecycle through Organizations: create (asynchronous, not idempotent), find, move,
//! tag and close. A trait over the SDK so the MemberAccount decisions can be tested with fakes.

use std::collections::BTreeMap;

use aws_sdk_organizations::types::{IamUserAccessToBilling, Tag};
use futures::future::BoxFuture;

use super::AwsClients;
use super::error::{AwsError, ErrorClass};
pub use super::state::{AccountState, CreateAccountState};

/// What a CreateAccount request says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateRequest {
    pub id: String,
    pub state: CreateAccountState,
    pub account_id: Option<String>,
    pub failure_reason: Option<String>,
    pub account_name: Option<String>,
}

/// An account as Organizations describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountInfo {
    pub id: String,
    pub name: String,
    pub email: String,
    /// The `State`, else the older `Status`; `None` when Organizations reports neither.
    pub state: Option<AccountState>,
}

/// What CreateAccount is asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewAccount {
    pub name: String,
    pub email: String,
    pub role_name: String,
    pub billing_allowed: bool,
    pub tags: BTreeMap<String, String>,
}

pub trait Accounts: Send + Sync {
    /// Starts a CreateAccount request. Not idempotent: every call is a new request.
    fn create_account<'a>(
        &'a self,
        account: &'a NewAccount,
    ) -> BoxFuture<'a, Result<CreateRequest, AwsError>>;
    fn create_request<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<CreateRequest, AwsError>>;
    /// CreateAccount requests still in progress.
    fn requests_in_progress(&self) -> BoxFuture<'_, Result<Vec<CreateRequest>, AwsError>>;
    /// The account with this e-mail (case-insensitive), if the organization has one.
    fn account_by_email<'a>(
        &'a self,
        email: &'a str,
    ) -> BoxFuture<'a, Result<Option<AccountInfo>, AwsError>>;
    fn account<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<AccountInfo, AwsError>>;
    fn parent_of<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<String, AwsError>>;
    fn move_account<'a>(
        &'a self,
        id: &'a str,
        from: &'a str,
        to: &'a str,
    ) -> BoxFuture<'a, Result<(), AwsError>>;
    fn tags<'a>(&'a self, id: &'a str)
    -> BoxFuture<'a, Result<BTreeMap<String, String>, AwsError>>;
    fn tag<'a>(
        &'a self,
        id: &'a str,
        tags: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), AwsError>>;
    fn untag<'a>(&'a self, id: &'a str, keys: &'a [String]) -> BoxFuture<'a, Result<(), AwsError>>;
    fn close_account<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), AwsError>>;
    /// The organization's management account (DescribeOrganization): never adopted.
    fn management_account(&self) -> BoxFuture<'_, Result<String, AwsError>>;
}

/// A `ConstraintViolationException` carries its reason in a field of its own (only the typed
/// error exposes it); the reason decides the class.
macro_rules! org_error {
    ($operation:literal, $err:expr, $kind:path) => {{
        let err = $err;
        let reason = match err.as_service_error() {
            Some($kind(c)) => c.reason().map(|r| r.as_str().to_string()),
            _ => None,
        };
        AwsError::from_sdk($operation, err).with_reason(reason.as_deref())
    }};
}

/// Whether an account's e-mail is `wanted` (without case, as Organizations compares them). An
/// empty or missing address is nobody's: it never matches, not even an empty `wanted`, so an
/// object without an e-mail cannot find (and then close) an account that shows none.
pub fn same_email(found: &str, wanted: &str) -> bool {
    !found.is_empty() && !wanted.is_empty() && found.eq_ignore_ascii_case(wanted)
}

fn sdk_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder().key(k).value(v).build().map_err(|e| {
                AwsError::new(
                    "organizations:TagResource",
                    ErrorClass::Rejected,
                    e.to_string(),
                )
            })
        })
        .collect()
}

fn request(status: &aws_sdk_organizations::types::CreateAccountStatus) -> CreateRequest {
    CreateRequest {
        id: status.id().unwrap_or_default().to_string(),
        state: status
            .state()
            .map(|s| CreateAccountState::from(s.as_str()))
            .unwrap_or_default(),
        account_id: status.account_id().map(str::to_string),
        failure_reason: status.failure_reason().map(|r| r.as_str().to_string()),
        account_name: status.account_name().map(str::to_string),
    }
}

fn info(account: &aws_sdk_organizations::types::Account) -> AccountInfo {
    // Emulators and older endpoints answer `Status` only.
    let legacy = account.status().map(|s| AccountState::from(s.as_str()));
    AccountInfo {
        id: account.id().unwrap_or_default().to_string(),
        name: account.name().unwrap_or_default().to_string(),
        email: account.email().unwrap_or_default().to_string(),
        state: account
            .state()
            .map(|s| AccountState::from(s.as_str()))
            .or(legacy),
    }
}

impl Accounts for AwsClients {
    fn create_account<'a>(
        &'a self,
        account: &'a NewAccount,
    ) -> BoxFuture<'a, Result<CreateRequest, AwsError>> {
        Box::pin(async move {
            let mut call = self
                .organizations
                .create_account()
                .account_name(&account.name)
                .email(&account.email)
                .role_name(&account.role_name)
                .iam_user_access_to_billing(if account.billing_allowed {
                    IamUserAccessToBilling::Allow
                } else {
                    IamUserAccessToBilling::Deny
                });
            if !account.tags.is_empty() {
                call = call.set_tags(Some(sdk_tags(&account.tags)?));
            }
            // Never retried by the SDK: a retry after a lost answer would be a second
            // account. The controller recovers by e-mail instead.
            let answer = call
                .customize()
                .config_override(
                    aws_sdk_organizations::config::Builder::default()
                        .retry_config(aws_config::retry::RetryConfig::disabled()),
                )
                .send()
                .await
                .map_err(|e| {
                org_error!(
                    "organizations:CreateAccount",
                    e,
                    aws_sdk_organizations::operation::create_account::CreateAccountError::ConstraintViolationException
                )
            });
            let out = self.record("organizations:CreateAccount", answer)?;
            out.create_account_status().map(request).ok_or_else(|| {
                AwsError::new(
                    "organizations:CreateAccount",
                    ErrorClass::Transient,
                    "CreateAccount answered without a request",
                )
            })
        })
    }

    fn create_request<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<CreateRequest, AwsError>> {
        Box::pin(async move {
            let out = self
                .call(
                    "organizations:DescribeCreateAccountStatus",
                    self.organizations
                        .describe_create_account_status()
                        .create_account_request_id(id)
                        .send(),
                )
                .await?;
            Ok(out.create_account_status().map(request).unwrap_or_default())
        })
    }

    fn requests_in_progress(&self) -> BoxFuture<'_, Result<Vec<CreateRequest>, AwsError>> {
        Box::pin(async move {
            let mut pages = self
                .organizations
                .list_create_account_status()
                .states(aws_sdk_organizations::types::CreateAccountState::InProgress)
                .into_paginator()
                .send();
            let mut found = Vec::new();
            while let Some(page) = pages.next().await {
                let page = self.observe("organizations:ListCreateAccountStatus", page)?;
                found.extend(page.create_account_statuses().iter().map(request));
            }
            Ok(found)
        })
    }

    fn account_by_email<'a>(
        &'a self,
        email: &'a str,
    ) -> BoxFuture<'a, Result<Option<AccountInfo>, AwsError>> {
        Box::pin(async move {
            let mut pages = self.organizations.list_accounts().into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = self.observe("organizations:ListAccounts", page)?;
                if let Some(found) = page
                    .accounts()
                    .iter()
                    .find(|a| a.email().is_some_and(|e| same_email(e, email)))
                {
                    return Ok(Some(info(found)));
                }
            }
            Ok(None)
        })
    }

    fn account<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<AccountInfo, AwsError>> {
        Box::pin(async move {
            let out = self
                .call(
                    "organizations:DescribeAccount",
                    self.organizations.describe_account().account_id(id).send(),
                )
                .await?;
            Ok(out.account().map(info).unwrap_or_default())
        })
    }

    fn parent_of<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let out = self
                .call(
                    "organizations:ListParents",
                    self.organizations.list_parents().child_id(id).send(),
                )
                .await?;
            Ok(out
                .parents()
                .first()
                .and_then(|p| p.id())
                .unwrap_or_default()
                .to_string())
        })
    }

    fn move_account<'a>(
        &'a self,
        id: &'a str,
        from: &'a str,
        to: &'a str,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            self.call(
                "organizations:MoveAccount",
                self.organizations
                    .move_account()
                    .account_id(id)
                    .source_parent_id(from)
                    .destination_parent_id(to)
                    .send(),
            )
            .await?;
            Ok(())
        })
    }

    fn tags<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, AwsError>> {
        Box::pin(async move {
            let mut pages = self
                .organizations
                .list_tags_for_resource()
                .resource_id(id)
                .into_paginator()
                .send();
            let mut tags = BTreeMap::new();
            while let Some(page) = pages.next().await {
                let page = self.observe("organizations:ListTagsForResource", page)?;
                for tag in page.tags() {
                    tags.insert(tag.key().to_string(), tag.value().to_string());
                }
            }
            Ok(tags)
        })
    }

    fn tag<'a>(
        &'a self,
        id: &'a str,
        tags: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let answer = self.organizations
                .tag_resource()
                .resource_id(id)
                .set_tags(Some(sdk_tags(tags)?))
                .send()
                .await
                .map_err(|e| {
                    org_error!(
                        "organizations:TagResource",
                        e,
                        aws_sdk_organizations::operation::tag_resource::TagResourceError::ConstraintViolationException
                    )
                });
            self.record("organizations:TagResource", answer)?;
            Ok(())
        })
    }

    fn untag<'a>(&'a self, id: &'a str, keys: &'a [String]) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            self.call(
                "organizations:UntagResource",
                self.organizations
                    .untag_resource()
                    .resource_id(id)
                    .set_tag_keys(Some(keys.to_vec()))
                    .send(),
            )
            .await?;
            Ok(())
        })
    }

    fn management_account(&self) -> BoxFuture<'_, Result<String, AwsError>> {
        // One DescribeOrganization reading, shared with the management account's plain stack.
        super::management::ManagementStacks::management_account(self)
    }

    fn close_account<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let answer = self.organizations
                .close_account()
                .account_id(id)
                .send()
                .await
                .map_err(|e| {
                    org_error!(
                        "organizations:CloseAccount",
                        e,
                        aws_sdk_organizations::operation::close_account::CloseAccountError::ConstraintViolationException
                    )
                });
            self.record("organizations:CloseAccount", answer)?;
            Ok(())
        })
    }
}
