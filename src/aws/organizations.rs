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
