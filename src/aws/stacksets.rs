//! CloudFormation StackSets in the operator's terms: a StackSet, its instances and its
//! operations. Every call carries `CallAs`, and every operation a caller-chosen `OperationId`
//! (CloudFormation's idempotency token), so a retried call never starts a second operation.

use aws_sdk_cloudformation::types::{
    AccountFilterType, AutoDeployment, CallAs as SdkCallAs, Capability, ConcurrencyMode,
    DeploymentTargets, ManagedExecution, OrganizationStatus, Parameter, PermissionModels,
    RegionConcurrencyType, StackSetOperationPreferences,
};
use std::collections::BTreeMap;

use aws_sdk_cloudformation::types::Tag;
use futures::future::BoxFuture;

use super::AwsClients;
use super::error::{AwsError, ErrorClass};
pub use super::state::{
    DetailedStatus, DriftStatus, InstanceStatus, OperationStatus, StackSetStatus,
};

/// Whether the hub acts as the management account or as a delegated administrator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CallAs {
    #[default]
    Management,
    DelegatedAdmin,
}

impl CallAs {
    pub(super) fn sdk(self) -> SdkCallAs {
        match self {
            Self::Management => SdkCallAs::SelfValue,
            Self::DelegatedAdmin => SdkCallAs::DelegatedAdmin,
        }
    }
}

/// A StackSet addressed by name, as whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackSetRef {
    pub name: String,
    pub call_as: CallAs,
}

/// Where the template comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateBody {
    Body(String),
    Url(String),
}

/// How a StackSet deploys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permissions {
    ServiceManaged {
        auto_deployment: Option<(bool, bool)>,
    },
    SelfManaged {
        administration_role_arn: Option<String>,
        execution_role_name: Option<String>,
    },
}

/// Everything a StackSet is created or updated with.
#[derive(Clone, PartialEq, Eq)]
pub struct StackSetDefinition {
    pub template: TemplateBody,
    /// Parameter name and value pairs (the StackSet defaults). Values are never printed: one
    /// is the ExternalId, and templates may mark others `NoEcho`.
    pub parameters: Vec<(String, String)>,
    pub permissions: Permissions,
    pub managed_execution: bool,
    pub description: String,
    /// Owner tags, sent on CreateStackSet and every UpdateStackSet (never empty there: an
    /// empty list would remove the StackSet's tags).
    pub tags: Vec<(String, String)>,
}

impl std::fmt::Debug for StackSetDefinition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parameters: Vec<String> = self
            .parameters
            .iter()
            .map(|(name, _)| format!("{name}=<redacted>"))
            .collect();
        f.debug_struct("StackSetDefinition")
            .field("template", &self.template)
            .field("parameters", &parameters)
            .field("permissions", &self.permissions)
            .field("managed_execution", &self.managed_execution)
            .field("description", &self.description)
            .field("tags", &self.tags)
            .finish()
    }
}

/// What DescribeStackSet reports that the controller uses: the tags and description prove
/// (or disprove) who owns the StackSet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackSetInfo {
    pub id: String,
    pub status: StackSetStatus,
    pub description: String,
    pub tags: BTreeMap<String, String>,
}

/// One stack instance from ListStackInstances.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Instance {
    pub account: String,
    pub region: String,
    pub status: InstanceStatus,
    /// `None` when CloudFormation reports no detail.
    pub detailed_status: Option<DetailedStatus>,
    pub reason: Option<String>,
    /// The OU it was deployed through (service-managed StackSets).
    pub organizational_unit: Option<String>,
    pub last_operation_id: Option<String>,
    /// What the last DetectStackSetDrift found (empty `Other` when AWS reports nothing).
    pub drift_status: DriftStatus,
}

/// Which accounts an instance operation covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// Accounts (self-managed: the targets; service-managed: filter on the OUs).
    pub accounts: Vec<String>,
    /// OUs or roots (service-managed only).
    pub organizational_units: Vec<String>,
    /// With OUs: `Some(true)` keeps only `accounts` (INTERSECTION), `Some(false)` leaves them
    /// out (DIFFERENCE), `None` takes every account under the OUs.
    pub intersect: Option<bool>,
}

/// Operation preferences, in CloudFormation's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preferences {
    pub max_concurrent_count: Option<i32>,
    pub max_concurrent_percentage: Option<i32>,
    pub failure_tolerance_count: Option<i32>,
    pub failure_tolerance_percentage: Option<i32>,
    pub parallel_regions: bool,
    pub region_order: Vec<String>,
    pub soft_failure_tolerance: bool,
}

/// A stack instance operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceOperation {
    pub operation_id: String,
    pub targets: Targets,
    pub regions: Vec<String>,
    pub preferences: Preferences,
}

/// An operation's state from DescribeStackSetOperation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationState {
    pub status: OperationStatus,
    pub reason: Option<String>,
}

impl OperationState {
    /// Whether the operation has finished, one way or another.
    pub fn finished(&self) -> bool {
        self.status.finished()
    }
}

/// StackSet calls. Absent resources are answers (`None`, `Ok(())`), not errors.
pub trait StackSets: Send + Sync {
    /// Whether trusted access between StackSets and Organizations is enabled.
    fn trusted_access(&self, call_as: CallAs) -> BoxFuture<'_, Result<bool, AwsError>>;
    fn describe<'a>(
        &'a self,
        set: &'a StackSetRef,
    ) -> BoxFuture<'a, Result<Option<StackSetInfo>, AwsError>>;
    /// Creates the StackSet; one that already exists under the name counts as created.
    fn create<'a>(
        &'a self,
        set: &'a StackSetRef,
        definition: &'a StackSetDefinition,
    ) -> BoxFuture<'a, Result<String, AwsError>>;
    /// Updates template, parameters and settings: an operation over every instance.
    fn update<'a>(
        &'a self,
        set: &'a StackSetRef,
        definition: &'a StackSetDefinition,
        operation_id: &'a str,
        preferences: &'a Preferences,
    ) -> BoxFuture<'a, Result<String, AwsError>>;
    /// Deletes the StackSet; an absent one counts as deleted.
    fn delete<'a>(&'a self, set: &'a StackSetRef) -> BoxFuture<'a, Result<(), AwsError>>;
    /// Every instance, all pages.
    fn instances<'a>(
        &'a self,
        set: &'a StackSetRef,
    ) -> BoxFuture<'a, Result<Vec<Instance>, AwsError>>;
    fn create_instances<'a>(
        &'a self,
        set: &'a StackSetRef,
        op: &'a InstanceOperation,
    ) -> BoxFuture<'a, Result<String, AwsError>>;
    fn update_instances<'a>(
        &'a self,
        set: &'a StackSetRef,
        op: &'a InstanceOperation,
    ) -> BoxFuture<'a, Result<String, AwsError>>;
    fn delete_instances<'a>(
        &'a self,
        set: &'a StackSetRef,
        op: &'a InstanceOperation,
        retain_stacks: bool,
    ) -> BoxFuture<'a, Result<String, AwsError>>;
    /// `None` when CloudFormation does not know the operation (it was never started).
    fn operation<'a>(
        &'a self,
        set: &'a StackSetRef,
        operation_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<OperationState>, AwsError>>;
    /// DetectStackSetDrift: an operation like the others (one at a time); its findings show
    /// in each instance's `drift_status` once it ended.
    fn detect_drift<'a>(
        &'a self,
        set: &'a StackSetRef,
        operation_id: &'a str,
        preferences: &'a Preferences,
    ) -> BoxFuture<'a, Result<String, AwsError>>;
}

/// Sets template, parameters and permission settings on a Create- or UpdateStackSet call (two
/// builder types with the same setters).
macro_rules! with_definition {
    ($call:expr, $definition:expr) => {{
        let definition: &StackSetDefinition = $definition;
        let call = $call
            .description(&definition.description)
            .set_parameters(Some(parameters(definition)))
            .set_tags(tags(definition))
            .capabilities(Capability::CapabilityNamedIam)
            .managed_execution(
                ManagedExecution::builder()
                    .active(definition.managed_execution)
                    .build(),
            );
        let call = match &definition.template {
            TemplateBody::Body(body) => call.template_body(body),
            TemplateBody::Url(url) => call.template_url(url),
        };
        match &definition.permissions {
            Permissions::ServiceManaged { auto_deployment } => {
                let (enabled, retain) = auto_deployment.unwrap_or((false, false));
                let mut auto = AutoDeployment::builder().enabled(enabled);
                if enabled {
                    auto = auto.retain_stacks_on_account_removal(retain);
                }
                call.permission_model(PermissionModels::ServiceManaged)
                    .auto_deployment(auto.build())
            }
            Permissions::SelfManaged {
                administration_role_arn,
                execution_role_name,
            } => call
                .permission_model(PermissionModels::SelfManaged)
                .set_administration_role_arn(administration_role_arn.clone())
                .set_execution_role_name(execution_role_name.clone()),
        }
    }};
}

/// Sets accounts (self-managed) or deployment targets (service-managed) on an instance call.
macro_rules! with_targets {
    ($call:expr, $op:expr) => {{
        let op: &InstanceOperation = $op;
        if op.targets.organizational_units.is_empty() {
            $call.set_accounts(Some(op.targets.accounts.clone()))
        } else {
            $call.deployment_targets(deployment_targets(&op.targets))
        }
    }};
}

fn parameters(definition: &StackSetDefinition) -> Vec<Parameter> {
    sdk_parameters(&definition.parameters)
}

/// Name and value pairs as CloudFormation parameters (StackSets and plain stacks alike).
pub(super) fn sdk_parameters(pairs: &[(String, String)]) -> Vec<Parameter> {
    pairs
        .iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect()
}

/// Key and value pairs as CloudFormation tags.
pub(super) fn sdk_tags(pairs: &[(String, String)]) -> Vec<Tag> {
    pairs
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Tags as CloudFormation returned them (a StackSet's, a stack's), by key.
pub(super) fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    let text = |v: Option<&str>| v.unwrap_or_default().to_string();
    tags.iter()
        .map(|t| (text(t.key()), text(t.value())))
        .collect()
}

/// The owner tags, or `None` (leave the StackSet's tags as they are) when there are none.
fn tags(definition: &StackSetDefinition) -> Option<Vec<Tag>> {
    let tags = sdk_tags(&definition.tags);
    (!tags.is_empty()).then_some(tags)
}

fn deployment_targets(targets: &Targets) -> DeploymentTargets {
    let mut builder = DeploymentTargets::builder();
    if !targets.organizational_units.is_empty() {
        builder = builder.set_organizational_unit_ids(Some(targets.organizational_units.clone()));
        match targets.intersect {
            Some(true) => {
                builder = builder
                    .set_accounts(Some(targets.accounts.clone()))
                    .account_filter_type(AccountFilterType::Intersection);
            }
            Some(false) if !targets.accounts.is_empty() => {
                builder = builder
                    .set_accounts(Some(targets.accounts.clone()))
                    .account_filter_type(AccountFilterType::Difference);
            }
            _ => {}
        }
    } else {
        builder = builder.set_accounts(Some(targets.accounts.clone()));
    }
    builder.build()
}

pub(super) fn preferences(p: &Preferences) -> StackSetOperationPreferences {
    StackSetOperationPreferences::builder()
        .set_max_concurrent_count(p.max_concurrent_count)
        .set_max_concurrent_percentage(p.max_concurrent_percentage)
        .set_failure_tolerance_count(p.failure_tolerance_count)
        .set_failure_tolerance_percentage(p.failure_tolerance_percentage)
        .set_region_order((!p.region_order.is_empty()).then(|| p.region_order.clone()))
        .region_concurrency_type(if p.parallel_regions {
            RegionConcurrencyType::Parallel
        } else {
            RegionConcurrencyType::Sequential
        })
        .concurrency_mode(if p.soft_failure_tolerance {
            ConcurrencyMode::SoftFailureTolerance
        } else {
            ConcurrencyMode::StrictFailureTolerance
        })
        .build()
}

fn not_found_is_none<T>(result: Result<T, AwsError>) -> Result<Option<T>, AwsError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.class == ErrorClass::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl StackSets for AwsClients {
    fn trusted_access(&self, call_as: CallAs) -> BoxFuture<'_, Result<bool, AwsError>> {
        Box::pin(async move {
            let out = self
                .call(
                    "cloudformation:DescribeOrganizationsAccess",
                    self.cloudformation
                        .describe_organizations_access()
                        .call_as(call_as.sdk())
                        .send(),
                )
                .await?;
            Ok(out.status() == Some(&OrganizationStatus::Enabled))
        })
    }

    fn describe<'a>(
        &'a self,
        set: &'a StackSetRef,
    ) -> BoxFuture<'a, Result<Option<StackSetInfo>, AwsError>> {
        Box::pin(async move {
            let result = self
                .call(
                    "cloudformation:DescribeStackSet",
                    self.cloudformation
                        .describe_stack_set()
                        .stack_set_name(&set.name)
                        .call_as(set.call_as.sdk())
                        .send(),
                )
                .await;
            Ok(not_found_is_none(result)?.and_then(|out| {
                let ss = out.stack_set()?;
                // A deleted StackSet is reported by ID for a while; by name it is gone.
                let status = StackSetStatus::from(ss.status()?.as_str());
                (status != StackSetStatus::Deleted).then(|| StackSetInfo {
                    id: ss.stack_set_id().unwrap_or_default().to_string(),
                    status,
                    description: ss.description().unwrap_or_default().to_string(),
                    tags: tag_map(ss.tags()),
                })
            }))
        })
    }

    fn create<'a>(
        &'a self,
        set: &'a StackSetRef,
        definition: &'a StackSetDefinition,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let call = self
                .cloudformation
                .create_stack_set()
                .stack_set_name(&set.name)
                .call_as(set.call_as.sdk());
            let call = with_definition!(call, definition);
            // `NameAlreadyExistsException` is the caller's to judge: whose StackSet holds the
            // name decides whether it is this registration's lost create or someone else's.
            let out = self
                .call("cloudformation:CreateStackSet", call.send())
                .await?;
            Ok(out.stack_set_id().unwrap_or_default().to_string())
        })
    }

    fn update<'a>(
        &'a self,
        set: &'a StackSetRef,
        definition: &'a StackSetDefinition,
        operation_id: &'a str,
        prefs: &'a Preferences,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let call = self
                .cloudformation
                .update_stack_set()
                .stack_set_name(&set.name)
                .call_as(set.call_as.sdk())
                .operation_id(operation_id)
                .operation_preferences(preferences(prefs));
            let call = with_definition!(call, definition);
            let out = self
                .call("cloudformation:UpdateStackSet", call.send())
                .await?;
            Ok(out.operation_id().unwrap_or(operation_id).to_string())
        })
    }

    fn delete<'a>(&'a self, set: &'a StackSetRef) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let result = self
                .call(
                    "cloudformation:DeleteStackSet",
                    self.cloudformation
                        .delete_stack_set()
                        .stack_set_name(&set.name)
                        .call_as(set.call_as.sdk())
                        .send(),
                )
                .await;
            not_found_is_none(result).map(|_| ())
        })
    }

    fn instances<'a>(
        &'a self,
        set: &'a StackSetRef,
    ) -> BoxFuture<'a, Result<Vec<Instance>, AwsError>> {
        Box::pin(async move {
            let mut pages = self
                .cloudformation
                .list_stack_instances()
                .stack_set_name(&set.name)
                .call_as(set.call_as.sdk())
                .into_paginator()
                .send();
            let mut out = Vec::new();
            while let Some(page) = pages.next().await {
                let page = self.observe("cloudformation:ListStackInstances", page)?;
                for s in page.summaries() {
                    out.push(Instance {
                        account: s.account().unwrap_or_default().to_string(),
                        region: s.region().unwrap_or_default().to_string(),
                        status: s
                            .status()
                            .map(|x| InstanceStatus::from(x.as_str()))
                            .unwrap_or_default(),
                        detailed_status: s
                            .stack_instance_status()
                            .and_then(|c| c.detailed_status())
                            .map(|x| DetailedStatus::from(x.as_str())),
                        reason: s.status_reason().map(str::to_string),
                        organizational_unit: s.organizational_unit_id().map(str::to_string),
                        last_operation_id: s.last_operation_id().map(str::to_string),
                        drift_status: s
                            .drift_status()
                            .map(|x| DriftStatus::from(x.as_str()))
                            .unwrap_or_default(),
                    });
                }
            }
            Ok(out)
        })
    }

    fn create_instances<'a>(
        &'a self,
        set: &'a StackSetRef,
        op: &'a InstanceOperation,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let call = self
                .cloudformation
                .create_stack_instances()
                .stack_set_name(&set.name)
                .call_as(set.call_as.sdk())
                .operation_id(&op.operation_id)
                .set_regions(Some(op.regions.clone()))
                .operation_preferences(preferences(&op.preferences));
            let call = with_targets!(call, op);
            let out = self
                .call("cloudformation:CreateStackInstances", call.send())
                .await?;
            Ok(out.operation_id().unwrap_or(&op.operation_id).to_string())
        })
    }

    fn update_instances<'a>(
        &'a self,
        set: &'a StackSetRef,
        op: &'a InstanceOperation,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let call = self
                .cloudformation
                .update_stack_instances()
                .stack_set_name(&set.name)
                .call_as(set.call_as.sdk())
                .operation_id(&op.operation_id)
                .set_regions(Some(op.regions.clone()))
                .operation_preferences(preferences(&op.preferences));
            let call = with_targets!(call, op);
            let out = self
                .call("cloudformation:UpdateStackInstances", call.send())
                .await?;
            Ok(out.operation_id().unwrap_or(&op.operation_id).to_string())
        })
    }

    fn delete_instances<'a>(
        &'a self,
        set: &'a StackSetRef,
        op: &'a InstanceOperation,
        retain_stacks: bool,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let call = self
                .cloudformation
                .delete_stack_instances()
                .stack_set_name(&set.name)
                .call_as(set.call_as.sdk())
                .operation_id(&op.operation_id)
                .retain_stacks(retain_stacks)
                .set_regions(Some(op.regions.clone()))
                .operation_preferences(preferences(&op.preferences));
            let call = with_targets!(call, op);
            let out = self
                .call("cloudformation:DeleteStackInstances", call.send())
                .await?;
            Ok(out.operation_id().unwrap_or(&op.operation_id).to_string())
        })
    }

    fn operation<'a>(
        &'a self,
        set: &'a StackSetRef,
        operation_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<OperationState>, AwsError>> {
        Box::pin(async move {
            let result = self
                .call(
                    "cloudformation:DescribeStackSetOperation",
                    self.cloudformation
                        .describe_stack_set_operation()
                        .stack_set_name(&set.name)
                        .call_as(set.call_as.sdk())
                        .operation_id(operation_id)
                        .send(),
                )
                .await;
            Ok(not_found_is_none(result)?.and_then(|out| {
                let op = out.stack_set_operation()?;
                Some(OperationState {
                    status: OperationStatus::from(op.status()?.as_str()),
                    reason: op.status_reason().map(str::to_string),
                })
            }))
        })
    }

    fn detect_drift<'a>(
        &'a self,
        set: &'a StackSetRef,
        operation_id: &'a str,
        preferences: &'a Preferences,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        Box::pin(async move {
            let call = self
                .cloudformation
                .detect_stack_set_drift()
                .stack_set_name(&set.name)
                .call_as(set.call_as.sdk())
                .operation_id(operation_id)
                .operation_preferences(self::preferences(preferences));
            let out = self
                .call("cloudformation:DetectStackSetDrift", call.send())
                .await?;
            Ok(out.operation_id().unwrap_or(operation_id).to_string())
        })
    }
}
