//! Ownership lives in AWS: the real operator against a real API server and the strict emulator,
//! attacked the ways status and names used to allow. StackSets and accounts another cluster or
//! another object made (created here directly in the emulator, tagged as they would tag them)
//! are reported and never changed; derived StackSet names no longer collide; a forged
//! `status.accountId` closes, moves and untags nothing; a StackSet of an earlier release stays
//! its registration's.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, RwLock};

use account_linker::api::labels::{
    BULK_REGISTRATION_TAG, CLUSTER_TAG, NAMESPACE_TAG, OWNER_TAG, UID_TAG, derived_stack_set_name,
};
use account_linker::api::{BulkRegistration, MemberAccount};
use support::{
    Context, Running, Share, Turn, create, gone, has, message, unique, wait_condition, wait_ready,
};

static SETUP: OnceCell<()> = OnceCell::const_new();
static LOCK: RwLock<()> = RwLock::const_new(());

/// Fast polling and resync, so that "nothing happened" is observed over several passes.
const FLAGS: &[&str] = &[
    "--stackset-poll-interval",
    "500ms",
    "--bulk-resync-interval",
    "2s",
    "--account-poll-interval",
    "500ms",
    "--leader-elect=false",
];
/// The cluster identity of the "other cluster" whose resources share the emulator.
const OTHER_CLUSTER: &str = "staging-cluster";

/// The organization, trusted access and short operation and creation latencies.
async fn setup(ctx: &Context) {
    ctx.prepare_stack_sets(json!({"base_seconds": 0.3, "seconds_per_wave": 0.1}))
        .await;
    ctx.emulator
        .put("/organizations", json!({"create_seconds": 1}))
        .await;
}

async fn fixture(prefix: &str) -> Running {
    Running::start(prefix, FLAGS, (&LOCK, Share::Shared), (&SETUP, setup)).await
}

/// This cluster's identity as the operator defaults it: the UID of `kube-system`.
async fn cluster_id(ctx: &Context) -> String {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let kube_system = namespaces.get("kube-system").await.expect("kube-system");
    kube_system.metadata.uid.expect("uid")
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A SelfManaged registration of one account with the built-in template under `role`.
fn self_managed(account: &str, role: &str) -> Value {
    json!({
        "stackSet": {"permissionModel": "SelfManaged"},
        "template": {"builtin": {"roleName": role}},
        "targets": {"accounts": [account]},
        "regions": ["us-east-1"],
    })
}

/// Accounts under a new OU, each with the StackSet execution role.
async fn accounts(ctx: &Context, count: usize) -> (String, Vec<String>) {
    let ou = ctx.aws.create_ou(&unique("own-ou"), None).await;
    let accounts = ctx
        .aws
        .create_accounts(&unique("own"), count, Some(&ou))
        .await;
    for account in &accounts {
        ctx.aws.put_execution_role(account).await;
    }
    (ou, accounts)
}

/// How many operations the emulator ran on StackSet `name`.
async fn operations(ctx: &Context, name: &str) -> Vec<String> {
    ctx.emulator
        .operations(name)
        .await
        .iter()
        .map(|op| op["action"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn wait_reason<K>(api: &Api<K>, name: &str, reason: &str, timeout: Duration) -> K
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + support::Conditions,
{
    wait_condition(api, name, "Stalled", "True", Some(reason), timeout).await
}

#[tokio::test(flavor = "multi_thread")]
async fn registrations_whose_old_derived_names_collide_get_stack_sets_of_their_own() {
    let _turn = Turn::take(&LOCK, Share::Shared).await;
    let ctx = Context::new("own-names").await;
    ctx.once(&SETUP, setup).await;
    // `<ns>`/`a-x` and `<ns>-a`/`x` were both `account-linker-<ns>-a-x`.
    let first = ctx.ns.name.clone();
    let second = format!("{first}-a");
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": second}})).unwrap();
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("second namespace");
    // The operator enforces tenancy: the second namespace gets a policy too.
    let root = ctx.aws.ensure_org().await;
    support::apply_policy(&ctx.client, &second, support::permissive(&second, &root)).await;
    let mut flags = FLAGS.to_vec();
    flags.extend(["--watch-namespace", second.as_str()]);
    let mut operator = ctx.operator(&flags);
    let budget = ctx.budget().await;
    let (_, targets) = accounts(&ctx, 2).await;

    let in_first: Api<BulkRegistration> = Api::namespaced(ctx.client.clone(), &first);
    let in_second: Api<BulkRegistration> = Api::namespaced(ctx.client.clone(), &second);
    create(&in_first, "a-x", self_managed(&targets[0], "FirstAccess")).await;
    create(&in_second, "x", self_managed(&targets[1], "SecondAccess")).await;
    let ready = budget.registration_ready(1, 1, 1);
    let a = wait_ready(&in_first, "a-x", ready).await;
    let b = wait_ready(&in_second, "x", ready).await;

    let cluster = cluster_id(&ctx).await;
    let name_of = |bulk: &BulkRegistration| {
        bulk.status
            .as_ref()
            .and_then(|s| s.stack_set_name.clone())
            .expect("stackSetName")
    };
    let (a_set, b_set) = (name_of(&a), name_of(&b));
    assert_ne!(a_set, b_set);
    assert_eq!(a_set, derived_stack_set_name(&cluster, &first, "a-x"));
    assert_eq!(b_set, derived_stack_set_name(&cluster, &second, "x"));
    let old = format!("account-linker-{first}-a-x");
    assert!(!ctx.aws.stack_set_exists(&old).await, "no {old}");
    for (set, namespace, name) in [(&a_set, &first, "a-x"), (&b_set, &second, "x")] {
        let written = ctx.aws.stack_set_tags(set).await;
        assert_eq!(written[CLUSTER_TAG], cluster, "{set}");
        assert_eq!(&written[NAMESPACE_TAG], namespace, "{set}");
        assert_eq!(written[BULK_REGISTRATION_TAG], name, "{set}");
        assert_eq!(operations(&ctx, set).await, ["CREATE"], "{set}");
    }

    operator.terminate(Duration::from_secs(10));
    support::delete_policy(&ctx.client, &second).await;
    let _ = namespaces.delete(&second, &DeleteParams::default()).await;
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stack_set_the_operator_did_not_create_is_left_alone_unless_adopted() {
    let f = fixture("own-foreign").await;
    let (_, targets) = accounts(&f, 2).await;
    // Made by hand: no owner tags, an instance in an account the registrations do not target.
    let set = unique("handmade");
    f.aws
        .stack_set_made_elsewhere(&set, &[], "made by hand", Some(&targets[0]))
        .await;
    let before = operations(&f, &set).await;
    assert_eq!(before, ["CREATE"]);
    let bulks: Api<BulkRegistration> = f.api();

    let mut spec = self_managed(&targets[1], "IntruderAccess");
    spec["stackSet"]["name"] = json!(set);
    spec["deletionPolicy"] = json!("Delete");
    create(&bulks, "intruder", spec.clone()).await;
    let stalled = wait_reason(&bulks, "intruder", "StackSetNotOwned", f.budget.react()).await;
    let text = message(&stalled, "Ready");
    assert!(text.contains("carries no owner tag"), "{text}");
    assert!(has(
        &stalled,
        "StackSetReady",
        "False",
        Some("StackSetNotOwned")
    ));
    // Several resyncs later: no UpdateStackSet, no instance created or removed, no tag.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(operations(&f, &set).await, before);
    assert!(f.aws.stack_set_tags(&set).await.is_empty());

    // Deletion with `Delete` leaves it in AWS and says so.
    bulks
        .delete("intruder", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&bulks, "intruder", f.budget.react()).await;
    assert!(f.aws.stack_set_exists(&set).await, "left in AWS");
    assert_eq!(operations(&f, &set).await, before);
    let reasons = f.event_reasons("intruder").await;
    assert!(
        reasons.iter().any(|r| r == "StackSetNotOwned"),
        "{reasons:?}"
    );

    // Asked to adopt it: the first call is the UpdateStackSet that tags it; then the
    // registration manages it (its target added, the other instance removed).
    spec["stackSet"]["adopt"] = json!(true);
    create(&bulks, "adopter", spec).await;
    wait_ready(&bulks, "adopter", f.budget.registration_ready(1, 1, 3)).await;
    let written = f.aws.stack_set_tags(&set).await;
    assert_eq!(written[NAMESPACE_TAG], f.ns.name);
    assert_eq!(written[BULK_REGISTRATION_TAG], "adopter");
    assert_eq!(written[CLUSTER_TAG], cluster_id(&f).await);
    assert_eq!(
        operations(&f, &set).await,
        ["CREATE", "UPDATE", "CREATE", "DELETE"]
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn what_another_cluster_made_for_the_same_names_is_never_touched() {
    let f = fixture("own-twin").await;
    let (ou, targets) = accounts(&f, 2).await;
    let ns = f.ns.name.clone();
    // The other cluster's operator made these for its own `<ns>/twin`: same namespace and
    // names, its cluster identity.
    let set = unique("twin");
    let theirs = [
        (CLUSTER_TAG, OTHER_CLUSTER),
        (NAMESPACE_TAG, ns.as_str()),
        (BULK_REGISTRATION_TAG, "twin"),
        (UID_TAG, "0d9e4c1a-their-uid"),
    ];
    let description = format!("account-linker BulkRegistration {ns}/twin");
    f.aws
        .stack_set_made_elsewhere(&set, &theirs, &description, Some(&targets[0]))
        .await;
    let email = format!("{}@example.com", unique("twin"));
    let account = f.aws.create_account("twin", &email).await;
    let owner = format!("{ns}/twin");
    f.aws.tag_account(&account, OWNER_TAG, &owner).await;
    f.aws
        .tag_account(&account, CLUSTER_TAG, OTHER_CLUSTER)
        .await;
    let account_before = f.aws.describe_account(&account).await;
    let calls = f.emulator.create_calls(&email).await;

    // This cluster's objects of the same names, asking for everything: adoption, Close.
    let bulks: Api<BulkRegistration> = f.api();
    let mut spec = self_managed(&targets[1], "TwinAccess");
    spec["stackSet"]["name"] = json!(set);
    spec["stackSet"]["adopt"] = json!(true);
    spec["deletionPolicy"] = json!("Delete");
    create(&bulks, "twin", spec).await;
    let members: Api<MemberAccount> = f.api();
    create(
        &members,
        "twin",
        json!({"accountName": "twin", "email": email, "parentId": ou,
               "deletionPolicy": "Close", "link": {"enabled": false}}),
    )
    .await;

    let stalled = wait_reason(&bulks, "twin", "StackSetNotOwned", f.budget.react()).await;
    let text = message(&stalled, "Ready");
    assert!(text.contains("another cluster"), "{text}");
    assert!(text.contains(OTHER_CLUSTER), "{text}");
    let m = wait_reason(&members, "twin", "EmailAlreadyExists", f.budget.react()).await;
    assert!(message(&m, "Ready").contains(&account));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(operations(&f, &set).await, ["CREATE"]);
    assert_eq!(f.aws.stack_set_tags(&set).await, tags(&theirs));
    assert_eq!(f.aws.describe_account(&account).await, account_before);
    assert_eq!(f.emulator.create_calls(&email).await, calls);

    bulks
        .delete("twin", &DeleteParams::default())
        .await
        .expect("delete BulkRegistration");
    members
        .delete("twin", &DeleteParams::default())
        .await
        .expect("delete MemberAccount");
    gone(&bulks, "twin", f.budget.react()).await;
    gone(&members, "twin", f.budget.react()).await;
    assert!(f.aws.stack_set_exists(&set).await);
    assert_eq!(operations(&f, &set).await, ["CREATE"]);
    assert_eq!(f.aws.describe_account(&account).await, account_before);
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_account_id_closes_moves_and_untags_nothing() {
    let mut f = fixture("own-forged").await;
    let ou = f.aws.create_ou(&unique("own-ou"), None).await;
    // Another MemberAccount's account in this cluster, under the root.
    let cluster = cluster_id(&f).await;
    let victim_email = format!("{}@example.com", unique("victim"));
    let victim = f.aws.create_account("victim", &victim_email).await;
    f.aws
        .tag_account(&victim, OWNER_TAG, "other-team/victim")
        .await;
    f.aws.tag_account(&victim, CLUSTER_TAG, &cluster).await;
    let victim_before = f.aws.describe_account(&victim).await;

    let members: Api<MemberAccount> = f.api();
    let email = format!("{}@example.com", unique("mine"));
    create(
        &members,
        "mine",
        json!({"accountName": "mine", "email": email, "parentId": ou,
               "tags": {"team": "mine"}, "deletionPolicy": "Close", "link": {"enabled": false}}),
    )
    .await;
    wait_ready(&members, "mine", f.budget.member_ready()).await;

    // Whoever may write status points it at the victim while no operator runs.
    f.operator.terminate(Duration::from_secs(10));
    members
        .patch_status(
            "mine",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"accountId": victim}})),
        )
        .await
        .expect("forge status.accountId");
    f.operator = f.ctx.operator(FLAGS);

    let m = wait_reason(&members, "mine", "AccountNotOwned", f.budget.react()).await;
    let text = message(&m, "Ready");
    assert!(text.contains(&victim), "{text}");
    assert!(text.contains("other-team/victim"), "{text}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(f.aws.describe_account(&victim).await, victim_before);

    members
        .delete("mine", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&members, "mine", f.budget.react()).await;
    assert_eq!(
        f.aws.describe_account(&victim).await,
        victim_before,
        "not closed, moved, tagged or untagged"
    );
    let reasons = f.event_reasons("mine").await;
    assert!(
        reasons.iter().any(|r| r == "AccountNotOwned"),
        "{reasons:?}"
    );
    assert!(!reasons.iter().any(|r| r == "Closing"), "{reasons:?}");
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stack_set_of_an_earlier_release_stays_its_registration_s_and_is_tagged_by_its_next_update()
 {
    let mut f = fixture("own-legacy").await;
    let (_, targets) = accounts(&f, 1).await;
    let ns = f.ns.name.clone();
    // An earlier release derived `account-linker-<ns>-<name>`, described the StackSet with the
    // object's namespace and name, tagged nothing, and recorded the name in status.
    let legacy = format!("account-linker-{ns}-fleet");
    let description = format!("account-linker BulkRegistration {ns}/fleet");
    f.aws
        .stack_set_made_elsewhere(&legacy, &[], &description, Some(&targets[0]))
        .await;
    // A StackSet another registration's status could point at: not this one's description.
    let victim = format!("account-linker-{ns}-victim");
    f.aws
        .stack_set_made_elsewhere(&victim, &[], "account-linker BulkRegistration x/y", None)
        .await;

    f.operator.terminate(Duration::from_secs(10));
    let bulks: Api<BulkRegistration> = f.api();
    for (name, recorded, role) in [
        ("fleet", &legacy, "FleetAccess"),
        ("forged", &victim, "ForgedAccess"),
    ] {
        create(&bulks, name, self_managed(&targets[0], role)).await;
        bulks
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"stackSetName": recorded}})),
            )
            .await
            .expect("record the StackSet name");
    }
    f.operator = f.ctx.operator(FLAGS);

    let fleet = wait_ready(&bulks, "fleet", f.budget.registration_ready(1, 1, 1)).await;
    let status = fleet.status.expect("status");
    assert_eq!(status.stack_set_name.as_deref(), Some(legacy.as_str()));
    let written = f.aws.stack_set_tags(&legacy).await;
    assert_eq!(written[BULK_REGISTRATION_TAG], "fleet");
    assert_eq!(operations(&f, &legacy).await, ["CREATE", "UPDATE"]);
    let cluster = cluster_id(&f).await;
    let derived = derived_stack_set_name(&cluster, &ns, "fleet");
    assert!(
        !f.aws.stack_set_exists(&derived).await,
        "no second StackSet"
    );

    // The forged name proves nothing: that registration uses its own derived StackSet.
    let forged = |b: &BulkRegistration| {
        b.status.as_ref().and_then(|s| s.stack_set_name.clone())
            == Some(derived_stack_set_name(&cluster, &ns, "forged"))
    };
    support::wait_for(
        &bulks,
        "forged",
        "its derived StackSet",
        f.budget.react(),
        forged,
    )
    .await;
    assert!(operations(&f, &victim).await.is_empty());
    assert!(f.aws.stack_set_tags(&victim).await.is_empty());
    f.cleanup().await;
}
