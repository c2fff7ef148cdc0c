//! What an AWS administrator does by hand, against the emulator: the organization, OUs and
//! member accounts (through the SDK clients the operator itself uses), trusted access for
//! StackSets, and roles in member accounts (through the emulator's control API, which spares
//! the tests an IAM client).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_organizations::types::CreateAccountState;
use aws_sdk_sts::config::Credentials;
use serde_json::Value;

use super::{Budget, Emulator, TestEnv};

/// The emulator's hub: the management account the operator runs as.
pub const HUB_ACCOUNT: &str = "123456789012";
/// The role LinkedAccounts assume unless told otherwise.
pub const ACCESS_ROLE: &str = "AccountLinkerAccess";
/// The role a SelfManaged StackSet needs in each target account.
pub const EXECUTION_ROLE: &str = "AWSCloudFormationStackSetExecutionRole";

/// An account as Organizations describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub email: String,
    pub status: String,
    pub parent_id: String,
    pub tags: BTreeMap<String, String>,
}

/// The administrator's AWS clients. Create one per test (their connections belong to the
/// tokio runtime of the test that made them).
#[derive(Clone)]
pub struct AwsAdmin {
    organizations: aws_sdk_organizations::Client,
    cloudformation: aws_sdk_cloudformation::Client,
    sts: aws_sdk_sts::Client,
    emulator: Emulator,
}

fn fail(what: &str, err: impl std::error::Error) -> ! {
    panic!("{what}: {}", aws_sdk_sts::error::DisplayErrorContext(err))
}

impl AwsAdmin {
    pub async fn new(env: &TestEnv, emulator: Emulator) -> Self {
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
        Self {
            organizations: aws_sdk_organizations::Client::new(&config),
            cloudformation: aws_sdk_cloudformation::Client::new(&config),
            sts: aws_sdk_sts::Client::new(&config),
            emulator,
        }
    }

    // --- Organizations ------------------------------------------------------------------

    /// Creates the organization unless there is one; returns its root's ID.
    pub async fn ensure_org(&self) -> String {
        if let Err(err) = self
            .organizations
            .create_organization()
            .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
            .send()
            .await
        {
            let already = err
                .as_service_error()
                .is_some_and(|e| e.is_already_in_organization_exception());
            if !already {
                fail("CreateOrganization", err);
            }
        }
        self.root().await
    }

    pub async fn root(&self) -> String {
        let roots = self
            .organizations
            .list_roots()
            .send()
            .await
            .unwrap_or_else(|e| fail("ListRoots", e));
        roots.roots()[0].id().expect("root id").to_string()
    }

    /// A new OU named `name` under `parent` (the root if none); returns its ID.
    pub async fn create_ou(&self, name: &str, parent: Option<&str>) -> String {
        let parent = match parent {
            Some(p) => p.to_string(),
            None => self.root().await,
        };
        let out = self
            .organizations
            .create_organizational_unit()
            .parent_id(parent)
            .name(name)
            .send()
            .await
            .unwrap_or_else(|e| fail("CreateOrganizationalUnit", e));
        out.organizational_unit()
            .and_then(|ou| ou.id())
            .expect("OU id")
            .to_string()
    }

    /// A new account in the organization (made if there is none yet), named `<prefix>-<pid>-<n>`.
    pub async fn member_account(&self, prefix: &str) -> String {
        self.ensure_org().await;
        let name = super::unique(prefix);
        self.create_account(&name, &format!("{name}@example.com"))
            .await
    }

    /// A new account named `name` with `email` (unique: names and e-mails of the tests are), in
    /// the root; waits until it exists and returns its ID.
    pub async fn create_account(&self, name: &str, email: &str) -> String {
        let mut ids = self
            .create_accounts_named(&[(name.to_string(), email.to_string())])
            .await;
        ids.remove(0)
    }

    /// `count` new accounts `<prefix>-<n>` (e-mails `<prefix>-<n>@example.com`), moved into
    /// `parent` when given; their IDs in order.
    pub async fn create_accounts(
        &self,
        prefix: &str,
        count: usize,
        parent: Option<&str>,
    ) -> Vec<String> {
        let named: Vec<(String, String)> = (0..count)
            .map(|n| {
                let name = format!("{prefix}-{n}");
                let email = format!("{name}@example.com");
                (name, email)
            })
            .collect();
        let ids = self.create_accounts_named(&named).await;
        if let Some(parent) = parent {
            let root = self.root().await;
            for id in &ids {
                self.organizations
                    .move_account()
                    .account_id(id)
                    .source_parent_id(&root)
                    .destination_parent_id(parent)
                    .send()
                    .await
                    .unwrap_or_else(|e| fail("MoveAccount", e));
            }
        }
        ids
    }

    /// Sends every CreateAccount first, then waits for the requests (they run concurrently in
    /// the emulator, as in AWS).
    async fn create_accounts_named(&self, named: &[(String, String)]) -> Vec<String> {
        let mut requests = Vec::with_capacity(named.len());
        for (name, email) in named {
            let out = self
                .organizations
                .create_account()
                .account_name(name)
                .email(email)
                .send()
                .await
                .unwrap_or_else(|e| fail("CreateAccount", e));
            requests.push(out.create_account_status().cloned().expect("status"));
        }
        let deadline =
            tokio::time::Instant::now() + Budget::read(&self.emulator).await.account_created();
        let mut ids = Vec::with_capacity(requests.len());
        for mut request in requests {
            while request.state() == Some(&CreateAccountState::InProgress) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "CreateAccount still in progress: {request:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                let id = request.id().expect("request id").to_string();
                request = self
                    .organizations
                    .describe_create_account_status()
                    .create_account_request_id(id)
                    .send()
                    .await
                    .unwrap_or_else(|e| fail("DescribeCreateAccountStatus", e))
                    .create_account_status()
                    .cloned()
                    .expect("status");
            }
            assert_eq!(
                request.state(),
                Some(&CreateAccountState::Succeeded),
                "CreateAccount: {request:?}"
            );
            ids.push(request.account_id().expect("account id").to_string());
        }
        ids
    }

    pub async fn describe_account(&self, account: &str) -> Account {
        let described = self
            .organizations
            .describe_account()
            .account_id(account)
            .send()
            .await
            .unwrap_or_else(|e| fail("DescribeAccount", e));
        let a = described.account().expect("account");
        let tags = self
            .organizations
            .list_tags_for_resource()
            .resource_id(account)
            .send()
            .await
            .unwrap_or_else(|e| fail("ListTagsForResource", e));
        let parents = self
            .organizations
            .list_parents()
            .child_id(account)
            .send()
            .await
            .unwrap_or_else(|e| fail("ListParents", e));
        Account {
            id: a.id().unwrap_or_default().to_string(),
            name: a.name().unwrap_or_default().to_string(),
            email: a.email().unwrap_or_default().to_string(),
            status: a
                .status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            parent_id: parents.parents()[0].id().unwrap_or_default().to_string(),
            tags: tags
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
        }
    }

    pub async fn tag_account(&self, account: &str, key: &str, value: &str) {
        let tag = aws_sdk_organizations::types::Tag::builder()
            .key(key)
            .value(value)
            .build()
            .expect("tag");
        self.organizations
            .tag_resource()
            .resource_id(account)
            .tags(tag)
            .send()
            .await
            .unwrap_or_else(|e| fail("TagResource", e));
    }

    /// The account with this e-mail, if any.
    pub async fn account_by_email(&self, email: &str) -> Option<String> {
        let pages = self
            .organizations
            .list_accounts()
            .into_paginator()
            .send()
            .try_collect()
            .await
            .unwrap_or_else(|e| fail("ListAccounts", e));
        pages
            .iter()
            .flat_map(|page| page.accounts())
            .find(|a| a.email().is_some_and(|e| e.eq_ignore_ascii_case(email)))
            .and_then(|a| a.id().map(str::to_string))
    }

    // --- CloudFormation -----------------------------------------------------------------

    /// Turns trusted access between StackSets and Organizations on or off.
    pub async fn set_trusted_access(&self, on: bool) {
        if on {
            self.cloudformation
                .activate_organizations_access()
                .send()
                .await
                .unwrap_or_else(|e| fail("ActivateOrganizationsAccess", e));
        } else {
            self.cloudformation
                .deactivate_organizations_access()
                .send()
                .await
                .unwrap_or_else(|e| fail("DeactivateOrganizationsAccess", e));
        }
    }

    pub async fn stack_set_exists(&self, name: &str) -> bool {
        match self
            .cloudformation
            .describe_stack_set()
            .stack_set_name(name)
            .send()
            .await
        {
            Ok(out) => out
                .stack_set()
                .and_then(|s| s.status())
                .is_some_and(|s| *s != aws_sdk_cloudformation::types::StackSetStatus::Deleted),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_stack_set_not_found_exception()) =>
            {
                false
            }
            Err(err) => fail("DescribeStackSet", err),
        }
    }

    /// Creates a SELF_MANAGED StackSet as something other than this cluster's operator would:
    /// with `tags` and `description`, deploying a role named `role` (needs the execution role in
    /// the target), and with a stack instance in `account` when given; returns once that
    /// instance's operation has finished.
    pub async fn stack_set_made_elsewhere(
        &self,
        name: &str,
        tags: &[(&str, &str)],
        description: &str,
        account: Option<&str>,
    ) {
        use aws_sdk_cloudformation::types::{Capability, Tag};
        let template = serde_json::json!({
            "Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {
                "RoleName": format!("made-elsewhere-{}", name.len()),
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Action": "sts:AssumeRole",
                    "Principal": {"AWS": format!("arn:aws:iam::{HUB_ACCOUNT}:root")}}]}}}}
        });
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
            .collect();
        self.cloudformation
            .create_stack_set()
            .stack_set_name(name)
            .description(description)
            .template_body(template.to_string())
            .capabilities(Capability::CapabilityNamedIam)
            .set_tags((!tags.is_empty()).then_some(tags))
            .send()
            .await
            .unwrap_or_else(|e| fail("CreateStackSet", e));
        let Some(account) = account else { return };
        self.cloudformation
            .create_stack_instances()
            .stack_set_name(name)
            .accounts(account)
            .regions("us-east-1")
            .operation_id("made-elsewhere")
            .send()
            .await
            .unwrap_or_else(|e| fail("CreateStackInstances", e));
        for _ in 0..600 {
            let done = self.emulator.operations(name).await;
            if done.iter().all(|op| op["status"] == "SUCCEEDED") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the stack instance of {name} was not deployed");
    }

    /// The tags of StackSet `name`.
    pub async fn stack_set_tags(&self, name: &str) -> BTreeMap<String, String> {
        let described = self
            .cloudformation
            .describe_stack_set()
            .stack_set_name(name)
            .send()
            .await
            .unwrap_or_else(|e| fail("DescribeStackSet", e));
        described
            .stack_set()
            .map(|s| s.tags())
            .unwrap_or_default()
            .iter()
            .map(|t| {
                let text = |v: Option<&str>| v.unwrap_or_default().to_string();
                (text(t.key()), text(t.value()))
            })
            .collect()
    }

    /// The stack instances of StackSet `name` as CloudFormation lists them: (account, region,
    /// status), sorted; empty when the StackSet does not exist.
    pub async fn stack_instances(&self, name: &str) -> Vec<(String, String, String)> {
        let pages = self
            .cloudformation
            .list_stack_instances()
            .stack_set_name(name)
            .into_paginator()
            .send()
            .try_collect()
            .await;
        let Ok(pages) = pages else {
            return Vec::new();
        };
        let text = |v: Option<&str>| v.unwrap_or_default().to_string();
        let mut out: Vec<(String, String, String)> = pages
            .iter()
            .flat_map(|page| page.summaries())
            .map(|i| {
                (
                    text(i.account()),
                    text(i.region()),
                    text(i.status().map(|s| s.as_str())),
                )
            })
            .collect();
        out.sort();
        out
    }

    // --- IAM and STS ----------------------------------------------------------------------

    /// Deploys the access role in `account`, trusting `trust_account` with `external_id`.
    pub async fn put_role(&self, account: &str, external_id: &str, trust_account: &str) {
        self.emulator
            .put_role(account, ACCESS_ROLE, trust_account, Some(external_id))
            .await;
    }

    /// The self-managed StackSet execution role, trusting the hub.
    pub async fn put_execution_role(&self, account: &str) {
        self.emulator
            .put_role(account, EXECUTION_ROLE, HUB_ACCOUNT, None)
            .await;
    }

    /// The access role of `account`: `{"exists", "max_session_duration", "trust_policy", …}`.
    pub async fn access_role(&self, account: &str) -> Value {
        self.emulator.role(account, ACCESS_ROLE).await
    }

    pub async fn delete_role(&self, account: &str) {
        self.emulator.delete_role(account, ACCESS_ROLE).await;
    }

    /// Creates the role `name` in the hub account (trusting the hub) and assumes it: the
    /// credentials (access key, secret key, session token) of an operator that runs as that
    /// role, as with IRSA or EKS Pod Identity.
    pub async fn assume_hub_role(&self, name: &str) -> (String, String, String) {
        self.emulator
            .put_role(HUB_ACCOUNT, name, HUB_ACCOUNT, None)
            .await;
        self.operator_credentials(&format!("arn:aws:iam::{HUB_ACCOUNT}:role/{name}"))
            .await
    }

    /// An hour's session of `role_arn` for an operator process.
    async fn operator_credentials(&self, role_arn: &str) -> (String, String, String) {
        let out = self
            .sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name("operator")
            .duration_seconds(3600)
            .send()
            .await
            .unwrap_or_else(|e| fail("AssumeRole", e));
        let c = out.credentials().expect("credentials");
        (
            c.access_key_id().to_string(),
            c.secret_access_key().to_string(),
            c.session_token().to_string(),
        )
    }

    /// Credentials (access key, secret key, session token) inside member `account`, through
    /// its OrganizationAccountAccessRole: an operator that runs in a delegated-administrator
    /// account.
    pub async fn credentials_in(&self, account: &str) -> (String, String, String) {
        self.operator_credentials(&format!(
            "arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
        ))
        .await
    }

    /// Registers `account` as a delegated administrator for StackSets (from the management
    /// account).
    pub async fn register_stack_sets_admin(&self, account: &str) {
        self.organizations
            .register_delegated_administrator()
            .account_id(account)
            .service_principal("member.org.stacksets.cloudformation.amazonaws.com")
            .send()
            .await
            .unwrap_or_else(|e| fail("RegisterDelegatedAdministrator", e));
    }

    /// Assumes the access role of `account` as the hub, as the operator would.
    pub async fn assume_access_role(&self, account: &str, external_id: &str) {
        self.sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/{ACCESS_ROLE}"))
            .role_session_name("account-linker-tests")
            .external_id(external_id)
            .send()
            .await
            .unwrap_or_else(|e| fail("AssumeRole", e));
    }
}
