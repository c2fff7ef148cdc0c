//! Plain CloudFormation stacks in member accounts, as an account's own administrator (a console
//! wizard) creates them: through `OrganizationAccountAccessRole`, which trusts the management
//! account the tests run as.

use std::collections::BTreeMap;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_cloudformation::types::{Capability, Parameter};
use aws_sdk_sts::config::Credentials;

use super::TestEnv;

/// The role Organizations creates in every new account, trusting the management account.
const ADMIN_ROLE: &str = "OrganizationAccountAccessRole";

fn fail(what: &str, err: impl std::error::Error) -> ! {
    panic!("{what}: {}", aws_sdk_sts::error::DisplayErrorContext(err))
}

/// CloudFormation inside member accounts. Create one per test.
pub struct MemberStacks {
    config: aws_config::SdkConfig,
}

impl MemberStacks {
    pub async fn new(env: &TestEnv) -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(env.var("AWS_REGION").to_string()))
            .endpoint_url(env.var("AWS_ENDPOINT_URL"))
            .credentials_provider(Credentials::new(
                env.var("AWS_ACCESS_KEY_ID"),
                env.var("AWS_SECRET_ACCESS_KEY"),
                None,
                None,
                "account-linker-tests",
            ))
            .load()
            .await;
        Self { config }
    }

    /// CloudFormation acting in `account` (its administrator's session).
    async fn in_account(&self, account: &str) -> aws_sdk_cloudformation::Client {
        let sts = aws_sdk_sts::Client::new(&self.config);
        let out = sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/{ADMIN_ROLE}"))
            .role_session_name("console-wizard")
            .send()
            .await
            .unwrap_or_else(|e| fail("AssumeRole", e));
        let c = out.credentials().expect("credentials");
        let config = aws_sdk_cloudformation::config::Builder::from(&self.config)
            .credentials_provider(Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_string()),
                None,
                "console-wizard",
            ))
            .build();
        aws_sdk_cloudformation::Client::from_conf(config)
    }

    /// Creates stack `name` from `template` in `account` with parameter `ExternalId`; its ID.
    pub async fn create(
        &self,
        account: &str,
        name: &str,
        template: &str,
        external_id: &str,
    ) -> String {
        let out = self
            .in_account(account)
            .await
            .create_stack()
            .stack_name(name)
            .template_body(template)
            .parameters(
                Parameter::builder()
                    .parameter_key("ExternalId")
                    .parameter_value(external_id)
                    .build(),
            )
            .capabilities(Capability::CapabilityNamedIam)
            .send()
            .await
            .unwrap_or_else(|e| fail("CreateStack", e));
        out.stack_id().expect("stack id").to_string()
    }

    /// The IDs of the live stacks in `account`.
    pub async fn ids(&self, account: &str) -> Vec<String> {
        let out = self
            .in_account(account)
            .await
            .describe_stacks()
            .send()
            .await
            .unwrap_or_else(|e| fail("DescribeStacks", e));
        out.stacks()
            .iter()
            .filter(|s| {
                s.stack_status()
                    .is_some_and(|st| st.as_str() != "DELETE_COMPLETE")
            })
            .filter_map(|s| s.stack_id().map(str::to_string))
            .collect()
    }

    /// Stack `name` in the hub's own account: its status and tags, or `None`.
    pub async fn in_hub(&self, name: &str) -> Option<(String, BTreeMap<String, String>)> {
        let out = aws_sdk_cloudformation::Client::new(&self.config)
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .ok()?;
        let stack = out.stacks().first()?;
        let status = stack.stack_status()?.as_str().to_string();
        if status == "DELETE_COMPLETE" {
            return None;
        }
        let tags = stack
            .tags()
            .iter()
            .map(|t| {
                let text = |v: Option<&str>| v.unwrap_or_default().to_string();
                (text(t.key()), text(t.value()))
            })
            .collect();
        Some((status, tags))
    }
}

/// A plain template of the access role trusting the hub with the stack's `ExternalId`
/// parameter, as an administrator deploys it by hand (stacks to import into a StackSet).
pub fn access_role_template() -> String {
    serde_json::json!({
        "Parameters": {"ExternalId": {"Type": "String", "NoEcho": true}},
        "Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": super::ACCESS_ROLE,
            "MaxSessionDuration": 3600,
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{}:root", super::HUB_ACCOUNT)},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}
            }]}
        }}}
    })
    .to_string()
}
