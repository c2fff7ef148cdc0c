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
        serde_json::from_value(manifest(&b, account, &name, TOKEN_SECRET, "externalId")).unwrap();
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
