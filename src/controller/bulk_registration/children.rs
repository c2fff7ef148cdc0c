//! Phase "children": one child LinkedAccount per target account. Which children to apply,
//! whose `status.stackInstance` to write and which to delete is a pure diff ([`plan`]); so is
//! what the children say about their roles ([`verification`]). [`sync`] only carries it out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::plan::Desired;
use super::token::Token;
use super::{CHILD_LABEL, Error, Pass};
use crate::api::conditions::{ROLE_ASSUMABLE, STALLED};
use crate::api::labels;
use crate::api::linked_account::{DEFAULT_ROLE_NAME, StackInstanceRef};
use crate::api::{BulkRegistration, LinkedAccount, LinkedAccountSpec};
use crate::aws::stacksets::{DetailedStatus, Instance};
use crate::controller::conditions::{self, Status};

/// Field manager of children (spec and `status.stackInstance`), apart from the
/// LinkedAccount controller's status writes.
const CHILD_MANAGER: &str = labels::BULK_REGISTRATION_CHILD_MANAGER;

/// Child writes in flight at once: enough to hide the API server's latency when thousands of
/// children are created, few enough not to crowd out the other controllers' requests.
const CHILD_WRITES_IN_FLIGHT: usize = 16;

/// What the children say about their roles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// Children whose role is deployed and verified assumable (since the last rotation).
    pub assumable: i32,
    /// Children whose role is deployed but that are Stalled (the role cannot be assumed).
    pub stalled: i32,
    /// Children whose role is deployed and that have not verified it (since the last rotation)
    /// yet, nor stalled.
    pub pending: i32,
    /// The first stalled child and its message.
    pub example: Option<String>,
}

/// What one child needs written: its spec (server-side apply), its `status.stackInstance`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildWrite {
    pub name: String,
    pub spec: Option<Value>,
    pub status: Option<Value>,
}

/// The writes and deletions that bring the children in line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChildPlan {
    pub writes: Vec<ChildWrite>,
    /// Children of accounts no longer targeted whose instances are gone everywhere.
    pub deletes: Vec<String>,
}

/// What a pass knows about the children.
pub struct Inputs<'a> {
    pub bulk: &'a BulkRegistration,
    pub desired: &'a Desired,
    pub instances: &'a [Instance],
    /// This registration's children by account (from the shared cache).
    pub existing: &'a BTreeMap<String, Arc<LinkedAccount>>,
    pub stack_set: &'a str,
    /// The StackSet holds the current definition and no operation runs: an instance that is
    /// CURRENT carries the current token.
    pub settled: bool,
}

impl<'a> Inputs<'a> {
    /// Each account's instance in the first region (the one `RoleDeployed` reports).
    fn instance_refs(&self) -> BTreeMap<&'a str, StackInstanceRef> {
        let region = self.desired.regions.first().cloned().unwrap_or_default();
        let drift_on = self
            .bulk
            .spec
            .drift
            .as_ref()
            .is_some_and(|d| d.check_interval.is_some());
        self.instances
            .iter()
            .filter(|i| i.region == region)
            .map(|i| {
                let reference = StackInstanceRef {
                    stack_set: self.stack_set.to_string(),
                    region: i.region.clone(),
                    status: Some(i.status.to_string()),
                    detailed_status: i.detailed_status.as_ref().map(ToString::to_string),
                    reason: i.reason.clone(),
                    last_operation_id: i.last_operation_id.clone(),
                    drift_status: super::drift::reported(drift_on, &i.drift_status),
                };
                (i.account.as_str(), reference)
            })
            .collect()
    }
}

/// Name of the child LinkedAccount of `account`.
pub fn child_name(bulk: &BulkRegistration, account: &str) -> String {
    let name = bulk.name_any();
    let keep = 253usize.saturating_sub(13).min(name.len());
    format!("{}-{account}", name[..keep].trim_end_matches(['-', '.']))
}

/// Which children to apply, whose stack instance to report, which to delete.
pub fn plan(inputs: &Inputs<'_>, token: &Token) -> ChildPlan {
    let refs = inputs.instance_refs();
    ChildPlan {
        writes: writes(inputs, token, &refs).collect(),
        deletes: deletes(inputs),
    }
}

/// The writes of [`plan`], each made when it is taken: [`sync`] carries them out as they come,
/// so a pass that writes every child of a large registration (its creation, a template change)
/// holds a few manifests at a time rather than one per child.
fn writes<'i>(
    inputs: &'i Inputs<'_>,
    token: &'i Token,
    refs: &'i BTreeMap<&str, StackInstanceRef>,
) -> impl Iterator<Item = ChildWrite> + 'i {
    inputs.desired.accounts.iter().filter_map(move |account| {
        let name = child_name(inputs.bulk, account);
        let instance = refs.get(account.as_str());
        let carries_new = inputs.settled && instance.is_some_and(carries_current_definition);
        let wanted = manifest(
            inputs.bulk,
            account,
            &name,
            token.secret_for(carries_new),
            &token.key,
        );
        let child = inputs.existing.get(account);
        let spec = child.is_none_or(|c| !matches(c, &wanted)).then_some(wanted);
        let reported = child
            .and_then(|c| c.status.as_ref())
            .and_then(|s| s.stack_instance.as_ref());
        let status = instance.filter(|i| Some(*i) != reported).map(|i| {
            json!({
                "apiVersion": "accountlinker.dev/v1alpha1",
                "kind": "LinkedAccount",
                "status": {"stackInstance": i},
            })
        });
        (spec.is_some() || status.is_some()).then_some(ChildWrite { name, spec, status })
    })
}

/// Children of accounts no longer targeted whose instances are gone everywhere.
fn deletes(inputs: &Inputs<'_>) -> Vec<String> {
    let deployed: BTreeSet<&str> = inputs
        .instances
        .iter()
        .map(|i| i.account.as_str())
        .collect();
    inputs
        .existing
        .iter()
        .filter(|(account, _)| {
            !inputs.desired.accounts.contains(*account) && !deployed.contains(account.as_str())
        })
        .map(|(_, child)| child.name_any())
        .collect()
}

/// Whether an instance is CURRENT and SUCCEEDED: its stack has the StackSet's definition.
fn carries_current_definition(instance: &StackInstanceRef) -> bool {
    instance.status.as_deref() == Some("CURRENT")
        && instance.detailed_status.as_deref() == Some("SUCCEEDED")
}

/// Counts the children whose deployed role is verified assumable with the token in Secret
/// `token_secret` (a verification from before the token was `rotated`, or with the token a
/// rotation replaces, proves nothing about the new one) and those that are Stalled.
pub fn verification(
    inputs: &Inputs<'_>,
    rotated: Option<&Time>,
    token_secret: &str,
) -> Verification {
    let refs = inputs.instance_refs();
    let mut out = Verification::default();
    for account in &inputs.desired.accounts {
        let deployed = refs
            .get(account.as_str())
            .and_then(|i| i.detailed_status.as_deref())
            .map(DetailedStatus::from)
            == Some(DetailedStatus::Succeeded);
        if !deployed {
            continue;
        }
        let child = inputs.existing.get(account);
        let status = child.and_then(|c| c.status.as_ref());
        let conds = status.map(|s| s.conditions.as_slice()).unwrap_or_default();
        let on_token = child
            .and_then(|c| c.spec.external_id.as_ref())
            .is_some_and(|e| e.secret_ref.name == token_secret);
        let verified_since_rotation = on_token
            && rotated.is_none_or(|rotated| {
                status
                    .and_then(|s| s.last_verified_time.as_ref())
                    .is_some_and(|t| t.0 >= rotated.0)
            });
        if verified_since_rotation && conditions::is(conds, ROLE_ASSUMABLE, Status::True) {
            out.assumable += 1;
        } else if !conditions::is(conds, STALLED, Status::True) {
            out.pending += 1;
        } else {
            out.stalled += 1;
            if out.example.is_none() {
                let message = conditions::find(conds, STALLED)
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                let name = child_name(inputs.bulk, account);
                out.example = Some(format!("LinkedAccount {name}: {message}"));
            }
        }
    }
    out
}

/// The child of `account` as it is applied: `linkTemplate`'s labels, annotations and settings,
/// the role of the template, a reference to the token Secret `secret` (never the value).
pub fn manifest(
    bulk: &BulkRegistration,
    account: &str,
    name: &str,
    secret: &str,
    key: &str,
) -> Value {
    let link = bulk.spec.link_template.clone().unwrap_or_default();
    let mut labels = link.labels.clone();
    labels.insert(CHILD_LABEL.into(), bulk.name_any());
    let role_name = bulk
        .spec
        .template
        .builtin
        .as_ref()
        .map_or(DEFAULT_ROLE_NAME.to_string(), |b| b.role_name.clone());
    let mut spec = json!({
        "accountId": account,
        "roleName": role_name,
        "externalId": {"secretRef": {"name": secret, "key": key}},
    });
    if let Some(v) = &link.verify_interval {
        spec["verifyInterval"] = json!(v);
    }
    if let Some(s) = link.session_duration_seconds {
        spec["sessionDurationSeconds"] = json!(s);
    }
    let owner = bulk.controller_owner_ref(&());
    json!({
        "apiVersion": "accountlinker.dev/v1alpha1",
        "kind": "LinkedAccount",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": link.annotations,
            "ownerReferences": owner.map(|o| vec![o]).unwrap_or_default(),
        },
        "spec": spec,
    })
}

/// Whether an existing child already has what [`manifest`] would apply.
fn matches(existing: &LinkedAccount, wanted: &Value) -> bool {
    let Ok(spec) = serde_json::from_value::<LinkedAccountSpec>(wanted["spec"].clone()) else {
        return false;
    };
    let labels: BTreeMap<String, String> =
        serde_json::from_value(wanted["metadata"]["labels"].clone()).unwrap_or_default();
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(wanted["metadata"]["annotations"].clone()).unwrap_or_default();
    existing.spec == spec
        && labels
            .iter()
            .all(|(k, v)| existing.labels().get(k) == Some(v))
        && annotations
            .iter()
            .all(|(k, v)| existing.annotations().get(k) == Some(v))
}

/// Reads this registration's children from the cache, carries out the plan (each child's spec
/// before its status, [`CHILD_WRITES_IN_FLIGHT`] at once, each write made as it is taken, then
/// the deletions) and returns what they say.
pub async fn sync(
    pass: &Pass<'_>,
    desired: &Desired,
    instances: &[Instance],
    token: &Token,
    settled: bool,
) -> Result<Verification, Error> {
    let bulk = pass.bulk;
    let api: Api<LinkedAccount> = Api::namespaced(
        pass.ctx.client.clone(),
        &bulk.namespace().unwrap_or_default(),
    );
    let name = bulk.name_any();
    let existing: BTreeMap<String, Arc<LinkedAccount>> = pass
        .ctx
        .children
        .select(&bulk.namespace().unwrap_or_default(), |c| {
            c.labels().get(CHILD_LABEL) == Some(&name)
                && c.owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == bulk.meta().uid.as_ref())
        })
        .into_iter()
        .map(|c| (c.spec.account_id.clone(), c))
        .collect();
    let inputs = Inputs {
        bulk,
        desired,
        instances,
        existing: &existing,
        stack_set: &pass.set.name,
        settled,
    };
    let verification = verification(
        &inputs,
        pass.next.external_id_rotated_time.as_ref(),
        &token.secret_name,
    );
    let refs = inputs.instance_refs();
    futures::stream::iter(writes(&inputs, token, &refs))
        .map(|write| {
            let api = &api;
            async move {
                let params = PatchParams::apply(CHILD_MANAGER).force();
                if let Some(spec) = &write.spec {
                    api.patch(&write.name, &params, &Patch::Apply(spec)).await?;
                }
                if let Some(status) = &write.status {
                    api.patch_status(&write.name, &params, &Patch::Apply(status))
                        .await?;
                }
                Ok::<_, kube::Error>(())
            }
        })
        .buffer_unordered(CHILD_WRITES_IN_FLIGHT)
        .try_collect::<()>()
        .await?;
    crate::failpoint!("children:written");
    for name in deletes(&inputs) {
        match api.delete(&name, &DeleteParams::default()).await {
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
    }
    Ok(verification)
}

#[cfg(test)]
mod tests;
