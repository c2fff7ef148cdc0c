//! Organizations look-ups used to name accounts.

use futures::future::BoxFuture;

use super::AwsClients;
use super::error::AwsError;

/// Reads account metadata from Organizations.
pub trait AccountDirectory: Send + Sync {
    /// The account's name, or `None` when Organizations does not know the account.
    fn account_name<'a>(
        &'a self,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>>;
}

impl AccountDirectory for AwsClients {
    fn account_name<'a>(
        &'a self,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>> {
        Box::pin(async move {
            let request = self
                .organizations
                .describe_account()
                .account_id(account_id)
                .send();
            match self.call("organizations:DescribeAccount", request).await {
                Ok(out) => Ok(out.account().and_then(|a| a.name()).map(str::to_string)),
                Err(err) => {
                    if err.class == super::ErrorClass::NotFound {
                        Ok(None)
                    } else {
                        Err(err)
                    }
                }
            }
        })
    }
}

/// Who Organizations lists as delegated administrators of a service.
pub trait DelegatedAdministrators: Send + Sync {
    /// The account IDs registered for `service_principal`, all pages. AWS answers this to the
    /// management account and to delegated administrators; any other member gets AccessDenied.
    fn delegated_administrators<'a>(
        &'a self,
        service_principal: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, AwsError>>;
}

impl DelegatedAdministrators for AwsClients {
    fn delegated_administrators<'a>(
        &'a self,
        service_principal: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, AwsError>> {
        Box::pin(async move {
            let mut pages = self
                .organizations
                .list_delegated_administrators()
                .service_principal(service_principal)
                .into_paginator()
                .send();
            let mut out = Vec::new();
            while let Some(page) = pages.next().await {
                let page = self.observe("organizations:ListDelegatedAdministrators", page)?;
                out.extend(
                    page.delegated_administrators()
                        .iter()
                        .filter_map(|a| a.id().map(str::to_string)),
                );
            }
            Ok(out)
        })
    }
}
