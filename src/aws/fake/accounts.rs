//! The fake's Organizations accounts: CreateAccount completes later, CloseAccount has a quota.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::{FakeAccount, FakeAws, ROOT, State, error, now};
use crate::aws::accounts::{
    AccountInfo, AccountState, CreateAccountState, CreateRequest, NewAccount,
};
use crate::aws::{Accounts, AwsError, ErrorClass};

/// Makes the account a request asked for (or fails the request when the e-mail is taken).
pub(super) fn complete(s: &mut State, request: &str) {
    let Some((mut req, new)) = s.requests.get(request).cloned() else {
        return;
    };
    let taken = s
        .accounts
        .values()
        .any(|a| a.info.email.eq_ignore_ascii_case(&new.email));
    if taken {
        req.state = CreateAccountState::Failed;
        req.failure_reason = Some("EMAIL_ALREADY_EXISTS".into());
    } else {
        let id = s.new_id();
        s.accounts.insert(
            id.clone(),
            FakeAccount {
                info: AccountInfo {
                    id: id.clone(),
                    name: new.name.clone(),
                    email: new.email.clone(),
                    state: Some(AccountState::Active),
                },
                parent: ROOT.into(),
                tags: new.tags.clone(),
            },
        );
        req.state = CreateAccountState::Succeeded;
        req.account_id = Some(id);
    }
    s.requests.insert(request.to_string(), (req, new));
}

fn account_not_found(operation: &'static str, id: &str) -> AwsError {
    let message = format!("account {id} not found");
    error(
        operation,
        ErrorClass::NotFound,
        "AccountNotFoundException",
        message,
    )
}

/// Runs `f` on the account, or answers AccountNotFoundException.
fn with_account<'a, T: Send + 'a>(
    fake: &FakeAws,
    operation: &'static str,
    id: &str,
    f: impl FnOnce(&mut FakeAccount) -> Result<T, AwsError>,
) -> BoxFuture<'a, Result<T, AwsError>> {
    let mut s = fake.state();
    let result = s.enter(operation).and_then(|()| {
        s.accounts
            .get_mut(id)
            .ok_or_else(|| account_not_found(operation, id))
            .and_then(f)
    });
    now(result)
}

impl Accounts for FakeAws {
    fn create_account<'a>(
        &'a self,
        account: &'a NewAccount,
    ) -> BoxFuture<'a, Result<CreateRequest, AwsError>> {
        let mut s = self.state();
        if let Err(e) = s.enter("organizations:CreateAccount") {
            return now(Err(e));
        }
        let id = format!("car-{}", s.new_id());
        let request = CreateRequest {
            id: id.clone(),
            state: CreateAccountState::InProgress,
            account_id: None,
            failure_reason: None,
            account_name: Some(account.name.clone()),
        };
        s.requests
            .insert(id.clone(), (request.clone(), account.clone()));
        if !s.hold_creations {
            complete(&mut s, &id);
        }
        // CreateAccount answers before the request completes.
        now(Ok(request))
    }

    fn create_request<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<CreateRequest, AwsError>> {
        let mut s = self.state();
        let op = "organizations:DescribeCreateAccountStatus";
        now(s.enter(op).and_then(|()| {
            s.requests.get(id).map(|(r, _)| r.clone()).ok_or_else(|| {
                let class = ErrorClass::NotFound;
                let code = "CreateAccountStatusNotFoundException";
                error(op, class, code, format!("request {id} not found"))
            })
        }))
    }

    fn requests_in_progress(&self) -> BoxFuture<'_, Result<Vec<CreateRequest>, AwsError>> {
        let mut s = self.state();
        now(s.enter("organizations:ListCreateAccountStatus").map(|()| {
            s.requests
                .values()
                .map(|(r, _)| r)
                .filter(|r| r.state == CreateAccountState::InProgress)
                .cloned()
                .collect()
        }))
    }

    fn account_by_email<'a>(
        &'a self,
        email: &'a str,
    ) -> BoxFuture<'a, Result<Option<AccountInfo>, AwsError>> {
        let mut s = self.state();
        now(s.enter("organizations:ListAccounts").map(|()| {
            s.accounts
                .values()
                .find(|a| crate::aws::accounts::same_email(&a.info.email, email))
                .map(|a| a.info.clone())
        }))
    }

    fn account<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<AccountInfo, AwsError>> {
        with_account(self, "organizations:DescribeAccount", id, |a| {
            Ok(a.info.clone())
        })
    }

    fn parent_of<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<String, AwsError>> {
        with_account(self, "organizations:ListParents", id, |a| {
            Ok(a.parent.clone())
        })
    }

    fn move_account<'a>(
        &'a self,
        id: &'a str,
        from: &'a str,
        to: &'a str,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        let op = "organizations:MoveAccount";
        with_account(self, op, id, |a| {
            if a.parent != from {
                let class = ErrorClass::NotFound;
                let code = "SourceParentNotFoundException";
                return Err(error(op, class, code, format!("{id} is not under {from}")));
            }
            a.parent = to.to_string();
            Ok(())
        })
    }

    fn tags<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, AwsError>> {
        with_account(self, "organizations:ListTagsForResource", id, |a| {
            Ok(a.tags.clone())
        })
    }

    fn tag<'a>(
        &'a self,
        id: &'a str,
        tags: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        with_account(self, "organizations:TagResource", id, |a| {
            a.tags.extend(tags.clone());
            Ok(())
        })
    }

    fn untag<'a>(&'a self, id: &'a str, keys: &'a [String]) -> BoxFuture<'a, Result<(), AwsError>> {
        with_account(self, "organizations:UntagResource", id, |a| {
            a.tags.retain(|k, _| !keys.contains(k));
            Ok(())
        })
    }

    fn management_account(&self) -> BoxFuture<'_, Result<String, AwsError>> {
        let mut s = self.state();
        let result = s
            .enter("organizations:DescribeOrganization")
            .map(|()| s.management_account.clone());
        now(result)
    }

    fn close_account<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), AwsError>> {
        let op = "organizations:CloseAccount";
        let mut s = self.state();
        let result = s.enter(op).and_then(|()| {
            let quota = s.close_quota;
            let account = s
                .accounts
                .get_mut(id)
                .ok_or_else(|| account_not_found(op, id))?;
            if account.info.state != Some(AccountState::Active) {
                let (class, code) = (ErrorClass::AlreadyClosed, "AccountAlreadyClosedException");
                return Err(error(op, class, code, "already closed".into()));
            }
            if quota == Some(0) {
                let code = "ConstraintViolationException";
                let err = error(op, ErrorClass::Rejected, code, "quota used up".into());
                return Err(err.with_reason(Some("CLOSE_ACCOUNT_QUOTA_EXCEEDED")));
            }
            account.info.state = Some(AccountState::PendingClosure);
            s.close_quota = quota.map(|q| q - 1);
            Ok(())
        });
        now(result)
    }
}
