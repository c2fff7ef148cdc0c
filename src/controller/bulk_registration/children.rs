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
    let mut out = ChildPlan::default();
    for account in &inputs.desired.accounts {
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
        if spec.is_some() || status.is_some() {
            out.writes.push(ChildWrite { name, spec, status });
        }
    }
    let deployed: BTreeSet<&str> = inputs
        .instances
        .iter()
        .map(|i| i.account.as_str())
        .collect();
    out.deletes = inputs
        .existing
        .iter()
        .filter(|(account, _)| {
            !inputs.desired.accounts.contains(*account) && !deployed.contains(account.as_str())
        })
        .map(|(_, child)| child.name_any())
        .collect();
    out
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

/// Reads this registration's children from the cache, applies the plan (each child's spec before its status,
/// [`CHILD_WRITES_IN_FLIGHT`] at once, then the deletions) and returns what they say.
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
    let ChildPlan { writes, deletes } = plan(&inputs, token);
    let verification = verification(
        &inputs,
        pass.next.external_id_rotated_time.as_ref(),
        &token.secret_name,
    );
    futures::stream::iter(writes)
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
    for name in deletes {
        match api.delete(&name, &DeleteParams::default()).await {
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
    }
    Ok(verification)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::api::LinkedAccountStatus;
    use crate::controller::external_id::ExternalId;

    const SET: &str = "account-linker-platform-w";
    const TOKEN_SECRET: &str = "w-registration-token";

    fn bulk() -> BulkRegistration {
        let mut b = BulkRegistration::new(
            "w",
            serde_json::from_value(json!({
                "stackSet": {"permissionModel": "SelfManaged"},
                "template": {"builtin": {}},
                "targets": {"accounts": ["111111111111"]},
                "linkTemplate": {"labels": {"team": "a"}, "verifyInterval": "10m", "sessionDurationSeconds": 1800},
            }))
            .unwrap(),
        );
        b.metadata.namespace = Some("platform".into());
        b.metadata.uid = Some("uid-1".into());
        b
    }

    fn token() -> Token {
        Token {
            value: ExternalId::new("v-secret-value"),
            secret_name: "w-registration-token".into(),
            replaced: None,
            key: "externalId".into(),
            rotated: None,
            previous: None,
        }
    }

    fn desired(accounts: &[&str]) -> Desired {
        Desired {
            accounts: accounts.iter().map(|a| a.to_string()).collect(),
            regions: vec!["eu-west-1".into()],
            ..Desired::default()
        }
    }

    fn instance(account: &str, detailed: &str) -> Instance {
        Instance {
            account: account.into(),
            region: "eu-west-1".into(),
            status: if detailed == "SUCCEEDED" {
                "CURRENT"
            } else {
                "OUTDATED"
            }
            .into(),
            detailed_status: Some(detailed.into()),
            ..Instance::default()
        }
    }

    fn inputs<'a>(
        bulk: &'a BulkRegistration,
        desired: &'a Desired,
        instances: &'a [Instance],
        existing: &'a BTreeMap<String, Arc<LinkedAccount>>,
    ) -> Inputs<'a> {
        Inputs {
            bulk,
            desired,
            instances,
            existing,
            stack_set: SET,
            settled: true,
        }
    }

    fn time(seconds: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + seconds).unwrap())
    }

    /// A child as the API server returns it: applied, reporting `instance`, with conditions
    /// `(type, status)` and a verification at `verified`.
    fn child(
        account: &str,
        instance: Option<&Instance>,
        conds: &[(&str, &str)],
        verified: Option<i64>,
    ) -> LinkedAccount {
        let b = bulk();
        let name = child_name(&b, account);
        let mut c: LinkedAccount =
            serde_json::from_value(manifest(&b, account, &name, TOKEN_SECRET, "externalId"))
                .unwrap();
        let inputs_desired = desired(&[account]);
        let instances: Vec<Instance> = instance.into_iter().cloned().collect();
        let existing = BTreeMap::new();
        let refs = inputs(&b, &inputs_desired, &instances, &existing).instance_refs();
        c.status = Some(LinkedAccountStatus {
            stack_instance: refs.get(account).cloned(),
            last_verified_time: verified.map(time),
            conditions: conds
                .iter()
                .map(|(t, s)| Condition {
                    type_: t.to_string(),
                    status: s.to_string(),
                    reason: "R".into(),
                    message: format!("{t} is {s}"),
                    observed_generation: None,
                    last_transition_time: time(0),
                })
                .collect(),
            ..LinkedAccountStatus::default()
        });
        c
    }

    fn existing(children: Vec<LinkedAccount>) -> BTreeMap<String, Arc<LinkedAccount>> {
        children
            .into_iter()
            .map(|c| (c.spec.account_id.clone(), Arc::new(c)))
            .collect()
    }

    #[test]
    fn children_inherit_the_link_template_and_the_token_reference() {
        let b = bulk();
        let c = manifest(
            &b,
            "111111111111",
            "w-111111111111",
            TOKEN_SECRET,
            "externalId",
        );
        assert_eq!(c["metadata"]["labels"]["team"], "a");
        assert_eq!(c["metadata"]["labels"][CHILD_LABEL], "w");
        assert_eq!(c["spec"]["verifyInterval"], "10m");
        assert_eq!(c["spec"]["sessionDurationSeconds"], 1800);
        assert_eq!(
            c["spec"]["externalId"]["secretRef"]["name"],
            "w-registration-token"
        );
        assert_eq!(c["spec"]["roleName"], "AccountLinkerAccess");
        assert!(
            !c.to_string().contains("v-secret-value"),
            "the token value never appears in a child"
        );
    }

    #[test]
    fn child_names_fit_and_carry_the_account() {
        assert_eq!(child_name(&bulk(), "111111111111"), "w-111111111111");
        let mut long = bulk();
        long.metadata.name = Some("a".repeat(253));
        let name = child_name(&long, "111111111111");
        assert!(name.len() <= 253 && name.ends_with("-111111111111"));
    }

    /// Which children get their spec applied, their stack instance written, or deleted.
    #[test]
    fn the_child_write_diff() {
        let ok = |a: &str| instance(a, "SUCCEEDED");
        let running = |a: &str| instance(a, "RUNNING");
        let (a, b, c, d) = (
            "111111111111",
            "222222222222",
            "333333333333",
            "444444444444",
        );
        // (targets, instances, existing children) → (spec applied, status written, deleted)
        type Row<'a> = (Vec<&'a str>, Vec<Instance>, Vec<LinkedAccount>, Want<'a>);
        type Want<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>);
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            // New accounts: the spec, no instance to report yet.
            (vec![a, b], vec![], vec![], (vec![a, b], vec![], vec![])),
            // Deployed, child up to date and reporting it: nothing.
            (vec![a], vec![ok(a)], vec![child(a, Some(&ok(a)), &[], None)], (vec![], vec![], vec![])),
            // The instance moved on: only the status.
            (vec![a], vec![ok(a)], vec![child(a, Some(&running(a)), &[], None)], (vec![], vec![a], vec![])),
            // A new child whose instance exists: both.
            (vec![a], vec![running(a)], vec![], (vec![a], vec![a], vec![])),
            // Left the targets, instance still there: kept until the instance is gone.
            (vec![a], vec![ok(a), ok(c)], vec![child(a, Some(&ok(a)), &[], None), child(c, Some(&ok(c)), &[], None)], (vec![], vec![], vec![])),
            // Left the targets, instance gone: deleted.
            (vec![a], vec![ok(a)], vec![child(a, Some(&ok(a)), &[], None), child(d, None, &[], None)], (vec![], vec![], vec!["w-444444444444"])),
        ];
        for (i, (targets, instances, children, (specs, statuses, deletes))) in
            rows.into_iter().enumerate()
        {
            let b = bulk();
            let desired = desired(&targets);
            let existing = existing(children);
            let planned = plan(&inputs(&b, &desired, &instances, &existing), &token());
            let named = |f: fn(&ChildWrite) -> bool| -> Vec<String> {
                planned
                    .writes
                    .iter()
                    .filter(|w| f(w))
                    .map(|w| w.name.clone())
                    .collect()
            };
            let names = |accounts: &[&str]| -> Vec<String> {
                accounts.iter().map(|a| child_name(&b, a)).collect()
            };
            assert_eq!(named(|w| w.spec.is_some()), names(&specs), "row {i}: specs");
            assert_eq!(
                named(|w| w.status.is_some()),
                names(&statuses),
                "row {i}: status"
            );
            assert_eq!(planned.deletes, deletes, "row {i}: deletes");
        }
    }

    /// Which children count as assumable or stalled.
    #[test]
    fn assumable_and_stalled_counts() {
        let a = "111111111111";
        let ok = instance(a, "SUCCEEDED");
        let failed = instance(a, "FAILED");
        let assumable = [("RoleAssumable", "True")];
        let stalled = [("RoleAssumable", "False"), ("Stalled", "True")];
        // (instance, child conditions, last verified, rotated) → (assumable, stalled)
        type Row<'a> = (
            Option<&'a Instance>,
            &'a [(&'a str, &'a str)],
            Option<i64>,
            Option<i64>,
            (i32, i32),
        );
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            (Some(&ok), &assumable, Some(10), None, (1, 0)),
            (Some(&ok), &assumable, Some(10), Some(5), (1, 0)),
            // Verified before the token rotated: not yet.
            (Some(&ok), &assumable, Some(10), Some(20), (0, 0)),
            (Some(&ok), &assumable, None, Some(20), (0, 0)),
            (Some(&ok), &stalled, Some(10), None, (0, 1)),
            // Not deployed: neither, whatever the child says.
            (Some(&failed), &assumable, Some(10), None, (0, 0)),
            (Some(&failed), &stalled, Some(10), None, (0, 0)),
            (None, &assumable, Some(10), None, (0, 0)),
            (Some(&ok), &[], None, None, (0, 0)),
        ];
        for (i, (inst, conds, verified, rotated, want)) in rows.into_iter().enumerate() {
            let b = bulk();
            let desired = desired(&[a]);
            let instances: Vec<Instance> = inst.into_iter().cloned().collect();
            let existing = existing(vec![child(a, inst, conds, verified)]);
            let v = verification(
                &inputs(&b, &desired, &instances, &existing),
                rotated.map(time).as_ref(),
                TOKEN_SECRET,
            );
            assert_eq!((v.assumable, v.stalled), want, "row {i}");
            if want.1 > 0 {
                assert_eq!(
                    v.example.as_deref(),
                    Some("LinkedAccount w-111111111111: Stalled is True")
                );
            }
        }
    }

    #[test]
    fn during_an_overlap_a_child_moves_to_the_new_token_once_its_instance_carries_it() {
        let b = bulk();
        let a = "111111111111";
        let rotating = Token {
            previous: Some(crate::controller::bulk_registration::token::Previous {
                value: ExternalId::new("old-value"),
                secret_name: TOKEN_SECRET.into(),
            }),
            secret_name: "w-registration-token-0123456789".into(),
            ..token()
        };
        let unmoved = existing(vec![child(a, None, &[], None)]);
        let secret_of = |planned: &ChildPlan| {
            planned.writes.iter().find_map(|w| {
                w.spec
                    .as_ref()
                    .map(|s| s["spec"]["externalId"]["secretRef"]["name"].clone())
            })
        };
        let desired = desired(&[a]);
        // (instance, settled) → the Secret the child is moved to (None: it keeps the old one)
        let rows = [
            (
                instance(a, "SUCCEEDED"),
                true,
                Some(json!("w-registration-token-0123456789")),
            ),
            // The update that adds the new token still runs, or has not reached this account.
            (instance(a, "SUCCEEDED"), false, None),
            (instance(a, "RUNNING"), true, None),
            // Its own stack failed: it still trusts only the old token.
            (instance(a, "FAILED"), true, None),
        ];
        for (i, (inst, settled, want)) in rows.into_iter().enumerate() {
            let instances = vec![inst];
            let mut inputs = inputs(&b, &desired, &instances, &unmoved);
            inputs.settled = settled;
            assert_eq!(secret_of(&plan(&inputs, &rotating)), want, "row {i}");
        }
        // A child still on the replaced token has not verified with the new one: pending,
        // whatever it says; once moved and verified after the rotation, it counts.
        let instances = vec![instance(a, "SUCCEEDED")];
        let on_old = existing(vec![child(
            a,
            Some(&instances[0]),
            &[("RoleAssumable", "True")],
            Some(20),
        )]);
        let v = verification(
            &inputs(&b, &desired, &instances, &on_old),
            Some(&time(10)),
            &rotating.secret_name,
        );
        assert_eq!((v.assumable, v.pending), (0, 1));
        let v = verification(
            &inputs(&b, &desired, &instances, &on_old),
            Some(&time(10)),
            TOKEN_SECRET,
        );
        assert_eq!((v.assumable, v.pending), (1, 0));
    }
}
