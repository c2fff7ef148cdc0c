//! CloudFormation GetTemplateSummary: what a template declares, read without deploying it.
//! The BulkRegistration controller asks it about custom templates (a ConfigMap body or an S3
//! URL) before a StackSet is created or updated with them. A trait of its own, beside
//! [`super::StackSets`], because it reads templates, not StackSets.

use futures::future::BoxFuture;

use super::AwsClients;
use super::error::AwsError;
use super::stacksets::TemplateBody;

/// A parameter a template declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateParameter {
    pub name: String,
    /// CloudFormation masks the value wherever it shows parameters.
    pub no_echo: bool,
}

/// Reads templates without deploying them.
pub trait TemplateSummaries: Send + Sync {
    /// The parameters `template` declares (GetTemplateSummary with TemplateBody or
    /// TemplateURL). A template CloudFormation cannot read is a rejected call.
    fn template_parameters<'a>(
        &'a self,
        template: &'a TemplateBody,
    ) -> BoxFuture<'a, Result<Vec<TemplateParameter>, AwsError>>;
}

impl TemplateSummaries for AwsClients {
    fn template_parameters<'a>(
        &'a self,
        template: &'a TemplateBody,
    ) -> BoxFuture<'a, Result<Vec<TemplateParameter>, AwsError>> {
        Box::pin(async move {
            let call = self.cloudformation.get_template_summary();
            let call = match template {
                TemplateBody::Body(body) => call.template_body(body),
                TemplateBody::Url(url) => call.template_url(url),
            };
            let out = self
                .call("cloudformation:GetTemplateSummary", call.send())
                .await?;
            Ok(out
                .parameters()
                .iter()
                .map(|p| TemplateParameter {
                    name: p.parameter_key().unwrap_or_default().to_string(),
                    no_echo: p.no_echo().unwrap_or(false),
                })
                .collect())
        })
    }
}
