//! Organizations structure: which accounts sit under a set of OUs (nested OUs included), and
//! everything under one OU (what a LinkPolicy listing it covers).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use aws_sdk_organizations::types::{AccountStatus, ChildType};
use futures::future::BoxFuture;

use super::AwsClients;
use super::error::AwsError;

/// Reads the OU tree.
pub trait OrgUnits: Send + Sync {
    /// Active accounts under `parents` (OUs or roots, walked down through nested OUs), each
    /// with the listed parent it was found under. The management account is left out: it is
    /// never a target of a service-managed StackSet.
    fn accounts_under<'a>(
        &'a self,
        parents: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, AwsError>>;

    /// The organization's root ID.
    fn root(&self) -> BoxFuture<'_, Result<String, AwsError>>;

    /// Every OU and account under `unit`, nested OUs included, whatever their state.
    fn subtree<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<BTreeSet<String>, AwsError>>;
}

/// What one walk down from an OU or root found.
#[derive(Default)]
struct Walked {
    units: Vec<String>,
    /// Each account, with whether it is active.
    accounts: Vec<(String, bool)>,
}

impl AwsClients {
    /// Walks down from `top` through nested OUs (ListChildren, ListAccountsForParent).
    async fn walk(&self, top: &str) -> Result<Walked, AwsError> {
        let org = &self.organizations;
        let mut walked = Walked::default();
        let mut queue = VecDeque::from([top.to_string()]);
        while let Some(parent) = queue.pop_front() {
            let mut children = org
                .list_children()
                .parent_id(&parent)
                .child_type(ChildType::OrganizationalUnit)
                .into_paginator()
                .send();
            while let Some(page) = children.next().await {
                let page = self.observe("organizations:ListChildren", page)?;
                for unit in page.children().iter().filter_map(|c| c.id()) {
                    queue.push_back(unit.to_string());
                    walked.units.push(unit.to_string());
                }
            }
            let mut accounts = org
                .list_accounts_for_parent()
                .parent_id(&parent)
                .into_paginator()
                .send();
            while let Some(page) = accounts.next().await {
                let page = self.observe("organizations:ListAccountsForParent", page)?;
                for account in page.accounts() {
                    let Some(id) = account.id() else { continue };
                    if let Some(name) = account.name() {
                        self.seen_names.record(id, name);
                    }
                    let active = account.status().is_none_or(|s| *s == AccountStatus::Active);
                    walked.accounts.push((id.to_string(), active));
                }
            }
        }
        Ok(walked)
    }
}

impl OrgUnits for AwsClients {
    fn root(&self) -> BoxFuture<'_, Result<String, AwsError>> {
        Box::pin(async move {
            let out = self
                .call(
                    "organizations:ListRoots",
                    self.organizations.list_roots().send(),
                )
                .await?;
            out.roots()
                .iter()
                .find_map(|r| r.id().map(str::to_string))
                .ok_or_else(|| {
                    AwsError::new(
                        "organizations:ListRoots",
                        super::ErrorClass::NotFound,
                        "the organization has no root",
                    )
                })
        })
    }

    fn accounts_under<'a>(
        &'a self,
        parents: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, AwsError>> {
        Box::pin(async move {
            let org = &self.organizations;
            let management = self
                .call(
                    "organizations:DescribeOrganization",
                    org.describe_organization().send(),
                )
                .await?
                .organization()
                .and_then(|o| o.master_account_id())
                .map(str::to_string);
            let mut found = BTreeMap::new();
            for top in parents {
                for (id, active) in self.walk(top).await?.accounts {
                    if active && management.as_deref() != Some(id.as_str()) {
                        found.entry(id).or_insert_with(|| top.clone());
                    }
                }
            }
            Ok(found)
        })
    }

    fn subtree<'a>(&'a self, unit: &'a str) -> BoxFuture<'a, Result<BTreeSet<String>, AwsError>> {
        Box::pin(async move {
            let walked = self.walk(unit).await?;
            let accounts = walked.accounts.into_iter().map(|(id, _)| id);
            Ok(walked.units.into_iter().chain(accounts).collect())
        })
    }
}
