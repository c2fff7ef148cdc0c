//! Existing per-account stacks, in the operator's terms: finding the stack a console wizard
//! left in a target account, and importing such stacks into a StackSet.
//!
//! The hub cannot read stacks in other accounts, and a stack's ID (which ImportStacksToStackSet
//! takes) ends in a random suffix, so it cannot be derived from the name. The one identity a
//! self-managed StackSet already relies on in every target is its execution role; the
//! AWS-provided execution-role template trusts the administrator account, so the hub assumes that
//! role and calls DescribeStacks by name there: two calls per account, made only for accounts
//! that have no stack instance yet.

use aws_sdk_cloudformation::config::{Credentials, Region};
use aws_sdk_sts::config::IdentityCache;
use futures::future::BoxFuture;

use super::AwsClients;
use super::error::{AwsError, ErrorClass};
use super::stacksets::{Preferences, StackSetRef, preferences};

/// ImportStacksToStackSet takes at most this many stack IDs inline.
pub const MAX_IMPORT_PER_CALL: usize = 10;

/// Where to look for an existing stack, and as whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackLookup {
    pub account: String,
    pub region: String,
    /// The role the hub assumes in `account` to read its stacks.
    pub role_arn: String,
    pub stack_name: String,
    /// The STS session name (CloudTrail shows it in the target account).
    pub session_name: String,
}

/// A stack that exists, as DescribeStacks reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundStack {
    pub id: String,
    pub status: String,
}

impl FoundStack {
    /// Whether the stack is settled and alive, so it can be imported (not deleted, not in the
    /// middle of an update, not failed on create).
    pub fn importable(&self) -> bool {
        matches!(
            self.status.as_str(),
            "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "UPDATE_ROLLBACK_COMPLETE" | "IMPORT_COMPLETE"
        )
    }
}

/// One ImportStacksToStackSet call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportOperation {
    pub operation_id: String,
    /// At most [`MAX_IMPORT_PER_CALL`].
    pub stack_ids: Vec<String>,
    pub preferences: Preferences,
}

/// Existing stacks: found in target accounts, imported into StackSets.
pub trait StackImports: Send + Sync {
    /// The stack named in the lookup, or `None` when the account has none by that name.
    fn find_stack<'a>(
        &'a self,
        lookup: &'a StackLookup,
    ) -> BoxFuture<'a, Result<Option<FoundStack>, AwsError>>;

    /// Starts one import operation; its ID, like every StackSet operation's, is idempotent.
    fn import_stacks<'a>(
        &'a self,
        set: &'a StackSetRef,
        op: &'a ImportOperation,
    ) -> BoxFuture<'a, Result<String, AwsError>>;
}

/// Whether a DescribeStacks failure says the stack does not exist (CloudFormation answers a
/// ValidationError, "Stack with id X does not exist").
fn is_absent(err: &AwsError) -> bool {
    err.class == ErrorClass::NotFound
        || (err.code.as_deref() == Some("ValidationError")
            && err.message.contains("does not exist"))
}

impl StackImports for AwsClients {
    fn find_stack<'a>(
        &'a self,
        lookup: &'a StackLookup,
    ) -> BoxFuture<'a, Result<Option<FoundStack>, AwsError>> {
        Box::pin(async move {
            let assumed = self
                .call(
                    "sts:AssumeRole",
                    self.sts
                        .assume_role()
                        .role_arn(&lookup.role_arn)
                        .role_session_name(&lookup.session_name)
                        .duration_seconds(900)
                        .send(),
                )
                .await?;
            let creds = assumed.credentials().ok_or_else(|| {
                AwsError::new(
                    "sts:AssumeRole",
                    ErrorClass::Transient,
                    "response carried no credentials",
                )
            })?;
            // The hub's CloudFormation client in the target's region with the session's
            // credentials (no shared identity cache: one entry per session would pile up).
            let session = aws_sdk_cloudformation::Client::from_conf(
                self.cloudformation
                    .config()
                    .to_builder()
                    .region(Region::new(lookup.region.clone()))
                    .identity_cache(IdentityCache::no_cache())
                    .credentials_provider(Credentials::new(
                        creds.access_key_id(),
                        creds.secret_access_key(),
                        Some(creds.session_token().to_string()),
                        None,
                        "account-linker-stack-lookup",
                    ))
                    .build(),
            );
            let described = self
                .call(
                    "cloudformation:DescribeStacks",
                    session
                        .describe_stacks()
                        .stack_name(&lookup.stack_name)
                        .send(),
                )
                .await;
            match described {
                Ok(out) => Ok(out.stacks().first().map(|s| FoundStack {
                    id: s.stack_id().unwrap_or_default().to_string(),
                    status: s
                        .stack_status()
                        .map(|x| x.as_str().to_string())
                        .unwrap_or_default(),
                })),
                Err(err) if is_absent(&err) => Ok(None),
                Err(err) => Err(err),
            }
        })
    }

    fn import_stacks<'a>(
        &'a self,
        set: &'a StackSetRef,
        op: &'a ImportOperation,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let call = self
                .cloudformation
                .import_stacks_to_stack_set()
                .stack_set_name(&set.name)
                .call_as(set.call_as.sdk())
                .operation_id(&op.operation_id)
                .set_stack_ids(Some(op.stack_ids.clone()))
                .operation_preferences(preferences(&op.preferences));
            let out = self
                .call("cloudformation:ImportStacksToStackSet", call.send())
                .await?;
            Ok(out.operation_id().unwrap_or(&op.operation_id).to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_settled_live_stacks_are_importable() {
        let cases = [
            ("CREATE_COMPLETE", true),
            ("UPDATE_COMPLETE", true),
            ("UPDATE_ROLLBACK_COMPLETE", true),
            ("IMPORT_COMPLETE", true),
            ("CREATE_IN_PROGRESS", false),
            ("ROLLBACK_COMPLETE", false),
            ("DELETE_COMPLETE", false),
            ("UPDATE_IN_PROGRESS", false),
        ];
        for (status, want) in cases {
            let stack = FoundStack {
                id: "arn".into(),
                status: status.into(),
            };
            assert_eq!(stack.importable(), want, "{status}");
        }
    }

    #[test]
    fn a_validation_error_saying_does_not_exist_is_absence() {
        let err = |code: &str, message: &str| AwsError {
            code: Some(code.into()),
            ..AwsError::new(
                "cloudformation:DescribeStacks",
                ErrorClass::Rejected,
                message,
            )
        };
        assert!(is_absent(&err(
            "ValidationError",
            "Stack with id linker does not exist"
        )));
        assert!(!is_absent(&err("ValidationError", "bad name")));
        assert!(!is_absent(&err("AccessDenied", "does not exist")));
    }
}
