//! The fake's StackSets: operations change instances when they start.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::{FakeAws, FakeStackSet, error, now};
use crate::aws::stacksets::TemplateBody;
use crate::aws::stacksets::{
    CallAs, DetailedStatus, DriftStatus, Instance, InstanceOperation, InstanceStatus,
    OperationState, OperationStatus, Preferences, StackSetDefinition, StackSetInfo, StackSetRef,
    StackSetStatus,
};
use crate::aws::{AwsError, ErrorClass, StackSets, TemplateParameter, TemplateSummaries};

/// The work of an instance operation, applied when it starts.
enum Change {
    Deploy,
    Remove,
}

fn start(
    fake: &FakeAws,
    operation: &'static str,
    set: &StackSetRef,
    op: &InstanceOperation,
    change: Option<Change>,
) -> Result<String, AwsError> {
    let mut s = fake.state();
    s.enter(operation)?;
    let hold = s.hold_operations;
    let failing = s.failing_accounts.clone();
    let accounts: Vec<String> = if op.targets.organizational_units.is_empty() {
        op.targets.accounts.clone()
    } else {
        let mut under: Vec<(String, String)> = Vec::new();
        for ou in &op.targets.organizational_units {
            under.extend(s.under(ou).into_iter().map(|a| (a, ou.clone())));
        }
        under
            .into_iter()
            .filter(|(a, _)| match op.targets.intersect {
                Some(true) => op.targets.accounts.contains(a),
                Some(false) => !op.targets.accounts.contains(a),
                None => true,
            })
            .map(|(a, _)| a)
            .collect()
    };
    let target = s.set(operation, &set.name)?;
    if let Some((_, action)) = target.operations.get(&op.operation_id) {
        // A repeated OperationId starts nothing new.
        if action == operation {
            return Ok(op.operation_id.clone());
        }
        let message = format!("The operation ID {} already exists", op.operation_id);
        let class = ErrorClass::AlreadyExists;
        return Err(error(
            operation,
            class,
            "OperationIdAlreadyExistsException",
            message,
        ));
    }
    refuse_while_busy(operation, set, target)?;
    let keys: Vec<(String, String)> = match change {
        // UpdateStackSet touches every instance.
        None => target.instances.keys().cloned().collect(),
        Some(_) => accounts
            .iter()
            .flat_map(|a| op.regions.iter().map(move |r| (a.clone(), r.clone())))
            .collect(),
    };
    for (account, region) in keys {
        if matches!(change, Some(Change::Remove)) {
            target.instances.remove(&(account, region));
            continue;
        }
        let instance = target
            .instances
            .entry((account.clone(), region.clone()))
            .or_insert_with(|| Instance {
                account: account.clone(),
                region: region.clone(),
                ..Instance::default()
            });
        instance.last_operation_id = Some(op.operation_id.clone());
        (instance.status, instance.detailed_status, instance.reason) = match failing.get(&account) {
            _ if hold => (
                InstanceStatus::Outdated,
                Some(DetailedStatus::Running),
                None,
            ),
            Some(reason) => (
                InstanceStatus::Outdated,
                Some(DetailedStatus::Failed),
                Some(reason.clone()),
            ),
            None => (
                InstanceStatus::Current,
                Some(DetailedStatus::Succeeded),
                None,
            ),
        };
    }
    let status = if hold {
        OperationStatus::Running
    } else if accounts.iter().any(|a| failing.contains_key(a)) {
        OperationStatus::Failed
    } else {
        OperationStatus::Succeeded
    };
    let state = OperationState {
        status,
        reason: None,
    };
    target
        .operations
        .insert(op.operation_id.clone(), (state, operation.to_string()));
    Ok(op.operation_id.clone())
}

/// One operation at a time: OperationInProgressException while another one runs.
fn refuse_while_busy(
    operation: &'static str,
    set: &StackSetRef,
    target: &FakeStackSet,
) -> Result<(), AwsError> {
    if target.operations.values().any(|(o, _)| !o.finished()) {
        let message = format!("Another Operation on StackSet {} is in progress", set.name);
        let class = ErrorClass::InProgress;
        return Err(error(
            operation,
            class,
            "OperationInProgressException",
            message,
        ));
    }
    Ok(())
}

impl StackSets for FakeAws {
    fn trusted_access(&self, _call_as: CallAs) -> BoxFuture<'_, Result<bool, AwsError>> {
        let mut s = self.state();
        now(s
            .enter("cloudformation:DescribeOrganizationsAccess")
            .map(|()| s.trusted_access))
    }

    fn describe<'a>(
        &'a self,
        set: &'a StackSetRef,
    ) -> BoxFuture<'a, Result<Option<StackSetInfo>, AwsError>> {
        let mut s = self.state();
        now(s.enter("cloudformation:DescribeStackSet").map(|()| {
            s.stack_sets.get(&set.name).map(|f| StackSetInfo {
                id: f.id.clone(),
                status: StackSetStatus::Active,
                description: f.definition.description.clone(),
                tags: f.definition.tags.iter().cloned().collect(),
            })
        }))
    }

    fn create<'a>(
        &'a self,
        set: &'a StackSetRef,
        definition: &'a StackSetDefinition,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        let mut s = self.state();
        now(s.enter("cloudformation:CreateStackSet").map(|()| {
            let id = format!("{}:{}", set.name, s.next_id);
            let entry = s.stack_sets.entry(set.name.clone());
            let created = entry.or_insert_with(|| FakeStackSet {
                id,
                definition: definition.clone(),
                instances: BTreeMap::new(),
                operations: BTreeMap::new(),
            });
            created.id.clone()
        }))
    }

    fn update<'a>(
        &'a self,
        set: &'a StackSetRef,
        definition: &'a StackSetDefinition,
        operation_id: &'a str,
        preferences: &'a Preferences,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        let op = InstanceOperation {
            operation_id: operation_id.to_string(),
            targets: Default::default(),
            regions: Vec::new(),
            preferences: preferences.clone(),
        };
        let started = start(self, "cloudformation:UpdateStackSet", set, &op, None);
        if started.is_ok()
            && let Some(target) = self.state().stack_sets.get_mut(&set.name)
        {
            // Without tags, UpdateStackSet leaves the StackSet's tags as they are.
            let tags = std::mem::take(&mut target.definition.tags);
            target.definition = definition.clone();
            if target.definition.tags.is_empty() {
                target.definition.tags = tags;
            }
        }
        now(started)
    }

    fn delete<'a>(&'a self, set: &'a StackSetRef) -> BoxFuture<'a, Result<(), AwsError>> {
        let mut s = self.state();
        let result = s.enter("cloudformation:DeleteStackSet").and_then(|()| {
            match s.stack_sets.get(&set.name) {
                Some(f) if !f.instances.is_empty() => Err(error(
                    "cloudformation:DeleteStackSet",
                    ErrorClass::Rejected,
                    "StackSetNotEmptyException",
                    format!("StackSet {} still has instances", set.name),
                )),
                _ => {
                    s.stack_sets.remove(&set.name);
                    Ok(())
                }
            }
        });
        now(result)
    }

    fn instances<'a>(
        &'a self,
        set: &'a StackSetRef,
    ) -> BoxFuture<'a, Result<Vec<Instance>, AwsError>> {
        let mut s = self.state();
        let op = "cloudformation:ListStackInstances";
        let result = s.enter(op).and_then(|()| s.set(op, &set.name));
        now(result.map(|f| f.instances.values().cloned().collect()))
    }

    fn create_instances<'a>(
        &'a self,
        set: &'a StackSetRef,
        op: &'a InstanceOperation,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        let operation = "cloudformation:CreateStackInstances";
        now(start(self, operation, set, op, Some(Change::Deploy)))
    }

    fn update_instances<'a>(
        &'a self,
        set: &'a StackSetRef,
        op: &'a InstanceOperation,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        let operation = "cloudformation:UpdateStackInstances";
        now(start(self, operation, set, op, Some(Change::Deploy)))
    }

    fn delete_instances<'a>(
        &'a self,
        set: &'a StackSetRef,
        op: &'a InstanceOperation,
        _retain_stacks: bool,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        let operation = "cloudformation:DeleteStackInstances";
        now(start(self, operation, set, op, Some(Change::Remove)))
    }

    fn operation<'a>(
        &'a self,
        set: &'a StackSetRef,
        operation_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<OperationState>, AwsError>> {
        let mut s = self.state();
        let op = "cloudformation:DescribeStackSetOperation";
        let result = s.enter(op).and_then(|()| s.set(op, &set.name));
        now(result.map(|f| f.operations.get(operation_id).map(|(o, _)| o.clone())))
    }

    fn detect_drift<'a>(
        &'a self,
        set: &'a StackSetRef,
        operation_id: &'a str,
        _preferences: &'a Preferences,
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        let op = "cloudformation:DetectStackSetDrift";
        let mut s = self.state();
        let result = s.enter(op).and_then(|()| {
            let hold = s.hold_operations;
            let target = s.set(op, &set.name)?;
            refuse_while_busy(op, set, target)?;
            // Drift detection deploys nothing: instances keep their status and last operation.
            for instance in target.instances.values_mut() {
                instance.drift_status = DriftStatus::InSync;
            }
            let status = if hold {
                OperationStatus::Running
            } else {
                OperationStatus::Succeeded
            };
            let state = OperationState {
                status,
                reason: None,
            };
            target
                .operations
                .insert(operation_id.to_string(), (state, op.to_string()));
            Ok(operation_id.to_string())
        });
        now(result)
    }
}

impl TemplateSummaries for FakeAws {
    fn template_parameters<'a>(
        &'a self,
        template: &'a TemplateBody,
    ) -> BoxFuture<'a, Result<Vec<TemplateParameter>, AwsError>> {
        let mut s = self.state();
        let op = "cloudformation:GetTemplateSummary";
        let invalid = |message: String| error(op, ErrorClass::Rejected, "ValidationError", message);
        let result = s.enter(op).and_then(|()| {
            let body = match template {
                TemplateBody::Body(body) => body.clone(),
                TemplateBody::Url(url) => s
                    .template_objects
                    .get(url)
                    .cloned()
                    .ok_or_else(|| invalid(format!("S3 error: no object at {url}")))?,
            };
            let document: serde_json::Value = serde_saphyr::from_str(&body)
                .map_err(|_| invalid("Template format error".into()))?;
            let declared = document["Parameters"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            Ok(declared
                .into_iter()
                .map(|(name, declaration)| TemplateParameter {
                    name,
                    no_echo: declaration["NoEcho"] == true || declaration["NoEcho"] == "true",
                })
                .collect())
        });
        now(result)
    }
}
