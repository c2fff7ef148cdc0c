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

/// Most account names kept from listings; past it the oldest half goes.
const MAX_SEEN_NAMES: usize = 50_000;

/// Account names the operator already read in a listing of Organizations (a registration's walk
/// of its OUs, ⌈N / 20⌉ calls): a LinkedAccount of one of those accounts is named from here
/// instead of one DescribeAccount per account. The name comes from Organizations either way,
/// never from anything a user can write.
/// Clones share the names.
#[derive(Clone, Debug, Default)]
pub struct SeenNames(std::sync::Arc<std::sync::Mutex<SeenNamesInner>>);

#[derive(Debug, Default)]
struct SeenNamesInner {
    names: std::collections::HashMap<String, String>,
    order: std::collections::VecDeque<String>,
}

impl SeenNames {
    /// Keeps `name` of `account`, forgetting the oldest half when [`MAX_SEEN_NAMES`] are kept.
    pub fn record(&self, account: &str, name: &str) {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if inner
            .names
            .insert(account.to_string(), name.to_string())
            .is_none()
        {
            inner.order.push_back(account.to_string());
        }
        if inner.names.len() > MAX_SEEN_NAMES {
            for _ in 0..MAX_SEEN_NAMES / 2 {
                if let Some(old) = inner.order.pop_front() {
                    inner.names.remove(&old);
                }
            }
        }
    }

    pub fn get(&self, account: &str) -> Option<String> {
        let inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        inner.names.get(account).cloned()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AccountDirectory for AwsClients {
    fn account_name<'a>(
        &'a self,
        account_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AwsError>> {
        Box::pin(async move {
            if let Some(name) = self.seen_names.get(account_id) {
                return Ok(Some(name));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_names_are_kept_up_to_a_bound() {
        let seen = SeenNames::default();
        seen.record("111111111111", "payments");
        seen.record("111111111111", "payments-prod");
        assert_eq!(seen.get("111111111111").as_deref(), Some("payments-prod"));
        assert_eq!(seen.get("222222222222"), None);
        for n in 0..=MAX_SEEN_NAMES {
            seen.record(&format!("{n:012}"), "x");
        }
        assert!(seen.len() <= MAX_SEEN_NAMES, "{}", seen.len());
        // The newest stay.
        assert!(seen.get(&format!("{MAX_SEEN_NAMES:012}")).is_some());
    }
}
