//! The organization's management account, where no StackSet deploys: who it is
//! (DescribeOrganization), and plain CloudFormation stacks in the hub's own account and region,
//! which is the management account when the hub is.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::types::Capability;
use futures::future::BoxFuture;

use super::AwsClients;
use super::error::{AwsError, ErrorClass};
use super::stacksets::{TemplateBody, sdk_parameters, sdk_tags, tag_map};

/// A plain stack as DescribeStacks reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlainStack {
    pub id: String,
    pub status: String,
    pub reason: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// What a plain stack is created or updated with.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainStackSpec<'a> {
    pub name: &'a str,
    pub template: &'a TemplateBody,
    /// Values are never printed (one is the ExternalId).
    pub parameters: &'a [(String, String)],
    /// Sent on create and every update (an update without tags would keep the old ones).
    pub tags: &'a [(String, String)],
}

/// The management account and plain stacks in the hub's account.
pub trait ManagementStacks: Send + Sync {
    /// The organization's management account (DescribeOrganization's MasterAccountId).
    fn management_account(&self) -> BoxFuture<'_, Result<String, AwsError>>;
    /// The live stack named `name`, or `None`.
    fn describe_stack<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PlainStack>, AwsError>>;
    /// Creates the stack; `token` makes a retried create the same request.
    fn create_stack<'a>(
        &'a self,
        spec: &'a PlainStackSpec<'a>,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), AwsError>>;
    /// Updates the stack; "no updates are to be performed" counts as done.
    fn update_stack<'a>(
        &'a self,
        spec: &'a PlainStackSpec<'a>,
    ) -> BoxFuture<'a, Result<(), AwsError>>;
    /// Deletes the stack; an absent one counts as deleted.
    fn delete_stack<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), AwsError>>;
}

/// Whether a DescribeStacks or UpdateStack failure means "absent" / "nothing to do".
fn says(err: &AwsError, text: &str) -> bool {
    err.code.as_deref() == Some("ValidationError") && err.message.contains(text)
}

impl ManagementStacks for AwsClients {
    fn management_account(&self) -> BoxFuture<'_, Result<String, AwsError>> {
        Box::pin(async move {
            let out = self
                .call(
                    "organizations:DescribeOrganization",
                    self.organizations.describe_organization().send(),
                )
                .await?;
            Ok(out
                .organization()
                .and_then(|o| o.master_account_id())
                .unwrap_or_default()
                .to_string())
        })
    }

    fn describe_stack<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PlainStack>, AwsError>> {
        Box::pin(async move {
            let request = self
                .cloudformation
                .describe_stacks()
                .stack_name(name)
                .send();
            match self.call("cloudformation:DescribeStacks", request).await {
                Ok(out) => Ok(out.stacks().first().and_then(|s| {
                    let status = s.stack_status().map(|x| x.as_str().to_string())?;
                    (status != "DELETE_COMPLETE").then(|| PlainStack {
                        id: s.stack_id().unwrap_or_default().to_string(),
                        status,
                        reason: s.stack_status_reason().map(str::to_string),
                        tags: tag_map(s.tags()),
                    })
                })),
                Err(e) if e.class == ErrorClass::NotFound || says(&e, "does not exist") => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn create_stack<'a>(
        &'a self,
        spec: &'a PlainStackSpec<'a>,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let call = self
                .cloudformation
                .create_stack()
                .stack_name(spec.name)
                .set_parameters(Some(sdk_parameters(spec.parameters)))
                .set_tags(Some(sdk_tags(spec.tags)))
                .capabilities(Capability::CapabilityNamedIam)
                .client_request_token(token);
            let call = match spec.template {
                TemplateBody::Body(body) => call.template_body(body),
                TemplateBody::Url(url) => call.template_url(url),
            };
            match self.call("cloudformation:CreateStack", call.send()).await {
                Ok(_) => Ok(()),
                Err(e) if e.class == ErrorClass::AlreadyExists => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn update_stack<'a>(
        &'a self,
        spec: &'a PlainStackSpec<'a>,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let call = self
                .cloudformation
                .update_stack()
                .stack_name(spec.name)
                .set_parameters(Some(sdk_parameters(spec.parameters)))
                .set_tags(Some(sdk_tags(spec.tags)))
                .capabilities(Capability::CapabilityNamedIam);
            let call = match spec.template {
                TemplateBody::Body(body) => call.template_body(body),
                TemplateBody::Url(url) => call.template_url(url),
            };
            match self.call("cloudformation:UpdateStack", call.send()).await {
                Ok(_) => Ok(()),
                Err(e) if says(&e, "No updates are to be performed") => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn delete_stack<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let request = self.cloudformation.delete_stack().stack_name(name).send();
            match self.call("cloudformation:DeleteStack", request).await {
                Ok(_) => Ok(()),
                Err(e) if e.class == ErrorClass::NotFound || says(&e, "does not exist") => Ok(()),
                Err(e) => Err(e),
            }
        })
    }
}
