//! Tenancy against the real API server and the strict emulator, with the operator enforcing
//! LinkPolicies (its default): the attacks of a namespace's author are refused with
//! `NotPermitted` and not a single AWS request, a namespace no policy selects may do nothing
//! while permitted namespaces keep working, and a policy added, narrowed, widened and removed
//! while objects are Ready is followed both ways — a narrowed object stops acting, and its
//! deletion leaves AWS as it was.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, RwLock};

use account_linker::api::{BulkRegistration, LinkedAccount, MemberAccount};
use support::{
    Conditions, Context, HUB_ACCOUNT, Operator, Share, Turn, apply_policy, create, delete_policy,
    gone, has, message, unique, wait_condition, wait_for,
};

/// Tests that count the emulator's requests run alone.
static LOCK: RwLock<()> = RwLock::const_new(());
static SETUP: OnceCell<()> = OnceCell::const_new();

const FLAGS: &[&str] = &[
    "--stackset-poll-interval",
    "500ms",
    "--bulk-resync-interval",
    "3s",
    "--account-poll-interval",
    "500ms",
];
const EXTERNAL_ID: &str = "tenancy-external-id-0001";
const FOREIGN: &str = "999999999999";
const REASON: &str = "NotPermitted";

/// The organization, trusted access for StackSets and short StackSet operations, once.
async fn setup(ctx: &Context) {
    ctx.once(&SETUP, async |ctx: &Context| {
        ctx.prepare_stack_sets(json!({"base_seconds": 0.5, "seconds_per_wave": 0.2}))
            .await;
    })
    .await;
}

/// Every request the emulator answered since the last reset, by `service:Operation`.
async fn requests(ctx: &Context) -> BTreeMap<String, u64> {
    let counts = ctx.emulator.get("/requests").await["counts"].clone();
    serde_json::from_value::<BTreeMap<String, u64>>(counts)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The ExternalId Secret `name` (labelled for the operator to read).
async fn external_id_secret(ctx: &Context, name: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": {"accountlinker.dev/external-id": "true"}},
        "stringData": {"externalId": EXTERNAL_ID},
    }))
    .unwrap();
    ctx.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret");
}

fn link_spec(account: &str) -> Value {
    json!({"accountId": account, "externalId": {"secretRef": {"name": "xid", "key": "externalId"}}})
}

fn registration(targets: Value, template: Value) -> Value {
    json!({
        "stackSet": {"permissionModel": "ServiceManaged"},
        "template": template,
        "targets": targets,
        "regions": ["us-east-1"],
        "deletionPolicy": "Delete",
    })
}

/// Waits until `name` is refused, and returns the refusal's message (or fails with the
/// operator's log).
async fn refused<K>(ctx: &Context, operator: &Operator, name: &str) -> String
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Conditions
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api = ctx.api::<K>();
    let react = ctx.budget().await.react();
    let wait = wait_condition(&api, name, "Stalled", "True", Some(REASON), react * 2);
    let Ok(obj) = tokio::time::timeout(react, wait).await else {
        let obj = api.get(name).await.ok();
        panic!(
            "{name} not refused within {react:?}: {obj:?}\noperator log:\n{}",
            operator.log()
        );
    };
    assert!(has(&obj, "Ready", "False", Some(REASON)), "{name}: {obj:?}");
    message(&obj, "Ready").to_string()
}

/// Waits until `name` is Ready (any generation: a policy change does not change it), or fails
/// with the operator's log.
async fn ready<K>(api: &Api<K>, operator: &Operator, name: &str, timeout: Duration) -> K
where
    K: kube::Resource + Conditions + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let wait = wait_condition(api, name, "Ready", "True", None, timeout * 2);
    let Ok(obj) = tokio::time::timeout(timeout, wait).await else {
        let obj = api.get(name).await.ok();
        panic!(
            "{name} not Ready within {timeout:?}: {obj:?}\noperator log:\n{}",
            operator.log()
        );
    };
    obj
}

/// Sets an annotation on `name`, which makes the operator reconcile it.
async fn touch<K>(api: &Api<K>, name: &str, value: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"tenancy-test/touch": value}}})),
    )
    .await
    .expect("annotate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalations_are_refused_without_a_single_aws_request() {
    let _turn = Turn::take(&LOCK, Share::Exclusive).await;
    let ctx = Context::without_policy("ten-escalate").await;
    setup(&ctx).await;
    let ns = ctx.ns.name.clone();
    let account = ctx.aws.member_account("ten").await;
    let outside = ctx.aws.member_account("ten-outside").await;
    let root = ctx.aws.root().await;
    let ou = ctx.aws.create_ou(&unique("ten-ou"), None).await;
    // What a platform team grants one team: one account, the built-in template with the
    // operator's own trust, MemberAccounts under one OU with the company's domain.
    apply_policy(
        &ctx.client,
        &ns,
        json!({
            "namespaces": [ns],
            "accounts": {"ids": [account]},
            "roleNames": ["AccountLinkerAccess", "OrganizationAccountAccessRole"],
            "bulkRegistrations": {},
            "memberAccounts": {"parentIds": [ou], "emailDomains": ["example.com"]},
        }),
    )
    .await;
    let operator = ctx.operator(FLAGS);
    external_id_secret(&ctx, "xid").await;

    // The operator is up once it refuses a link to an account outside the policy.
    let links = ctx.api::<LinkedAccount>();
    create(&links, "outside", link_spec(&outside)).await;
    let text = refused::<LinkedAccount>(&ctx, &operator, "outside").await;
    assert!(
        text.contains(&format!(
            "spec.accountId={outside} is not permitted: LinkPolicy {ns}"
        )),
        "{text}"
    );

    ctx.emulator.reset_counts().await;
    touch(&links, "outside", "1").await;
    let bulks = ctx.api::<BulkRegistration>();
    let builtin = |extra: Value| json!({"builtin": extra});
    let attacks = [
        (
            "foreign-trust",
            registration(json!({"accounts": [account]}), builtin(json!({"trustedAccountId": FOREIGN}))),
            format!("spec.template.builtin.trustedAccountId={FOREIGN} is not permitted: LinkPolicy {ns} allows trustedPrincipals []"),
        ),
        (
            "administrator",
            registration(
                json!({"accounts": [account]}),
                builtin(json!({"managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]})),
            ),
            "spec.template.builtin.managedPolicyArns=arn:aws:iam::aws:policy/AdministratorAccess is not permitted".to_string(),
        ),
        (
            "configmap-template",
            registration(
                json!({"accounts": [account]}),
                json!({"configMapRef": {"name": "template", "key": "template.yaml"}}),
            ),
            format!("spec.template.configMapRef is not permitted: LinkPolicy {ns} allows templateSources [Builtin]"),
        ),
        (
            "whole-organization",
            registration(json!({"organizationalUnitIds": [root]}), builtin(json!({}))),
            format!("spec.targets.organizationalUnitIds={root} is not permitted"),
        ),
    ];
    for (name, spec, _) in &attacks {
        create(&bulks, name, spec.clone()).await;
    }
    let members = ctx.api::<MemberAccount>();
    let under_root = format!("{}@example.com", unique("ten-root"));
    let foreign_domain = format!("{}@attacker.test", unique("ten-mail"));
    create(
        &members,
        "under-root",
        json!({"accountName": "under-root", "email": under_root, "parentId": root}),
    )
    .await;
    create(
        &members,
        "foreign-domain",
        json!({"accountName": "foreign-domain", "email": foreign_domain, "parentId": ou}),
    )
    .await;

    for (name, _, expected) in &attacks {
        let text = refused::<BulkRegistration>(&ctx, &operator, name).await;
        assert!(
            text.contains(expected.as_str()),
            "{name}: {text}\nlacks: {expected}"
        );
    }
    let text = refused::<MemberAccount>(&ctx, &operator, "under-root").await;
    assert!(
        text.contains(&format!(
            "spec.parentId={root} is not permitted: LinkPolicy {ns} allows parentIds [{ou}]"
        )),
        "{text}"
    );
    let text = refused::<MemberAccount>(&ctx, &operator, "foreign-domain").await;
    assert!(
        text.contains("spec.email domain attacker.test is not permitted"),
        "{text}"
    );

    // Let any reconcile in flight finish (the registrations' resync is 3 s), then count.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let seen = requests(&ctx).await;
    assert!(
        seen.is_empty(),
        "refused objects made AWS requests: {seen:?}\n{}",
        operator.log()
    );
    assert_eq!(ctx.emulator.create_calls(&under_root).await, 0);
    assert_eq!(ctx.emulator.create_calls(&foreign_domain).await, 0);
    for (name, _, _) in &attacks {
        let bulk = bulks.get(name).await.unwrap();
        let stack_set = bulk
            .status
            .and_then(|s| s.stack_set_name)
            .unwrap_or_default();
        assert!(
            !ctx.aws.stack_set_exists(&stack_set).await,
            "{name} created {stack_set}"
        );
    }

    // Refused objects go without touching AWS: nothing to retain, nothing to report.
    ctx.emulator.reset_counts().await;
    for (name, _, _) in &attacks {
        bulks.delete(name, &DeleteParams::default()).await.unwrap();
    }
    members
        .delete("under-root", &DeleteParams::default())
        .await
        .unwrap();
    let budget = ctx.budget().await;
    for (name, _, _) in &attacks {
        gone(&bulks, name, budget.react()).await;
        assert!(
            !ctx.event_reasons(name)
                .await
                .contains(&"RetainedNotPermitted".to_string())
        );
    }
    gone(&members, "under-root", budget.react()).await;
    let seen = requests(&ctx).await;
    assert!(
        seen.is_empty(),
        "deleting refused objects made AWS requests: {seen:?}"
    );

    delete_policy(&ctx.client, &ns).await;
    drop(operator);
    ctx.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_no_policy_selects_may_do_nothing_while_others_work() {
    let _turn = Turn::take(&LOCK, Share::Shared).await;
    let unselected = Context::without_policy("ten-none").await;
    setup(&unselected).await;
    let permitted = Context::new("ten-ok").await;
    let account = permitted.aws.member_account("ten").await;
    permitted
        .aws
        .put_role(&account, EXTERNAL_ID, HUB_ACCOUNT)
        .await;
    let mut flags = vec!["--watch-namespace", permitted.ns.name.as_str()];
    flags.extend_from_slice(FLAGS);
    let operator = Operator::start(&unselected.env, &unselected.ns.name, &flags);
    for ctx in [&unselected, &permitted] {
        external_id_secret(ctx, "xid").await;
        create(&ctx.api::<LinkedAccount>(), "link", link_spec(&account)).await;
    }
    let text = refused::<LinkedAccount>(&unselected, &operator, "link").await;
    assert_eq!(
        text,
        format!("no LinkPolicy selects namespace {}", unselected.ns.name)
    );
    let budget = permitted.budget().await;
    ready(
        &permitted.api::<LinkedAccount>(),
        &operator,
        "link",
        budget.react(),
    )
    .await;
    // Still refused: the permitted namespace's policy selects only its own namespace.
    let link = unselected.api::<LinkedAccount>().get("link").await.unwrap();
    assert!(has(&link, "Ready", "False", Some(REASON)), "{link:?}");
    assert!(link.status.unwrap().verified_identity.is_none());

    drop(operator);
    unselected.cleanup().await;
    permitted.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_are_followed_both_ways_and_a_refused_deletion_retains() {
    let _turn = Turn::take(&LOCK, Share::Exclusive).await;
    let ctx = Context::without_policy("ten-change").await;
    setup(&ctx).await;
    let ns = ctx.ns.name.clone();
    let budget = ctx.budget().await;
    let linked = ctx.aws.member_account("ten").await;
    ctx.aws.put_role(&linked, EXTERNAL_ID, HUB_ACCOUNT).await;
    let target = ctx.aws.member_account("ten-target").await;
    let ou = ctx.aws.create_ou(&unique("ten-ou"), None).await;
    let operator = ctx.operator(FLAGS);
    external_id_secret(&ctx, "xid").await;
    let (links, bulks, members) = (
        ctx.api::<LinkedAccount>(),
        ctx.api::<BulkRegistration>(),
        ctx.api::<MemberAccount>(),
    );
    let email = format!("{}@example.com", unique("ten-member"));
    create(&links, "link", link_spec(&linked)).await;
    create(
        &bulks,
        "fleet",
        registration(json!({"accounts": [target]}), json!({"builtin": {}})),
    )
    .await;
    create(
        &members,
        "member",
        json!({"accountName": "ten-member", "email": email, "parentId": ou,
               "deletionPolicy": "Close", "link": {"enabled": false}}),
    )
    .await;

    // No policy yet: nothing happens.
    let nobody = format!("no LinkPolicy selects namespace {ns}");
    assert_eq!(
        refused::<LinkedAccount>(&ctx, &operator, "link").await,
        nobody
    );
    assert_eq!(
        refused::<BulkRegistration>(&ctx, &operator, "fleet").await,
        nobody
    );
    assert_eq!(
        refused::<MemberAccount>(&ctx, &operator, "member").await,
        nobody
    );
    assert_eq!(ctx.emulator.create_calls(&email).await, 0);

    // Added: everything proceeds to Ready.
    let wide = json!({
        "namespaces": [ns],
        "accounts": {"ids": ["*"]},
        "bulkRegistrations": {},
        "roleNames": ["AccountLinkerAccess", "OrganizationAccountAccessRole"],
        "memberAccounts": {"parentIds": [ou], "emailDomains": ["example.com"], "allowClose": true},
    });
    apply_policy(&ctx.client, &ns, wide.clone()).await;
    ready(&links, &operator, "link", budget.react()).await;
    let fleet = ready(
        &bulks,
        &operator,
        "fleet",
        budget.registration_ready(1, 1, 2),
    )
    .await;
    let stack_set = fleet
        .status
        .and_then(|s| s.stack_set_name)
        .expect("StackSet name");
    let member = ready(&members, &operator, "member", budget.member_ready()).await;
    let account = member
        .status
        .and_then(|s| s.account_id)
        .expect("account ID");

    // Narrowed to another account and no MemberAccounts: all three stop, and stay stopped
    // without a single AWS request when they are reconciled again.
    let narrow =
        json!({"namespaces": [ns], "accounts": {"ids": [FOREIGN]}, "bulkRegistrations": {}});
    apply_policy(&ctx.client, &ns, narrow.clone()).await;
    let text = refused::<LinkedAccount>(&ctx, &operator, "link").await;
    assert!(
        text.contains(&format!("spec.accountId={linked} is not permitted")),
        "{text}"
    );
    let text = refused::<BulkRegistration>(&ctx, &operator, "fleet").await;
    assert!(
        text.contains(&format!("spec.targets.accounts={target} is not permitted")),
        "{text}"
    );
    let text = refused::<MemberAccount>(&ctx, &operator, "member").await;
    assert!(text.contains("has no memberAccounts rights"), "{text}");
    ctx.emulator.reset_counts().await;
    touch(&links, "link", "1").await;
    touch(&bulks, "fleet", "1").await;
    touch(&members, "member", "1").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let seen = requests(&ctx).await;
    assert!(
        seen.is_empty(),
        "refused objects made AWS requests: {seen:?}"
    );

    // Widened again: back to Ready.
    apply_policy(&ctx.client, &ns, wide).await;
    ready(&links, &operator, "link", budget.react()).await;
    ready(
        &bulks,
        &operator,
        "fleet",
        budget.registration_ready(1, 1, 1),
    )
    .await;
    ready(&members, &operator, "member", budget.member_ready()).await;

    // Narrowed again, then deleted: the StackSet and the account stay as they were.
    apply_policy(&ctx.client, &ns, narrow).await;
    refused::<BulkRegistration>(&ctx, &operator, "fleet").await;
    refused::<MemberAccount>(&ctx, &operator, "member").await;
    bulks
        .delete("fleet", &DeleteParams::default())
        .await
        .unwrap();
    members
        .delete("member", &DeleteParams::default())
        .await
        .unwrap();
    gone(&bulks, "fleet", budget.react()).await;
    gone(&members, "member", budget.react()).await;
    for name in ["fleet", "member"] {
        let reasons = ctx.event_reasons(name).await;
        assert!(
            reasons.contains(&"RetainedNotPermitted".to_string()),
            "{name}: {reasons:?}"
        );
    }
    assert!(
        ctx.aws.stack_set_exists(&stack_set).await,
        "the StackSet was deleted"
    );
    let ops = ctx.emulator.operations(&stack_set).await;
    assert!(
        ops.iter().all(|op| op["action"] != "DELETE"),
        "instances were deleted: {ops:?}"
    );
    assert_eq!(ctx.aws.describe_account(&account).await.status, "ACTIVE");

    // Removed: nothing selects the namespace any more.
    delete_policy(&ctx.client, &ns).await;
    let link = wait_for(
        &links,
        "link",
        "refused by no policy",
        budget.react(),
        |l| message(l, "Ready") == nobody,
    )
    .await;
    assert!(has(&link, "Stalled", "True", Some(REASON)));

    drop(operator);
    ctx.cleanup().await;
}

/// A MemberAccount's new account joins a permitted OU moments after the gate read that OU (here
/// for a link to an account already there); its child link is refused at first (the cache has
/// not seen the new account) and permitted on the next look, about a minute later — not after
/// ten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_account_in_a_permitted_ou_is_linked_within_minutes() {
    let _turn = Turn::take(&LOCK, Share::Shared).await;
    let ctx = Context::without_policy("ten-member").await;
    setup(&ctx).await;
    let ns = ctx.ns.name.clone();
    let ou = ctx.aws.create_ou(&unique("ten-ou"), None).await;
    apply_policy(
        &ctx.client,
        &ns,
        json!({
            "namespaces": [ns],
            "accounts": {"organizationalUnitIds": [ou]},
            "roleNames": ["OrganizationAccountAccessRole"],
            "memberAccounts": {"parentIds": [ou], "emailDomains": ["example.com"]},
        }),
    )
    .await;
    let operator = ctx.operator(FLAGS);
    // A link to an account already in the OU: permitted, and the gate has read the OU.
    let existing = ctx
        .aws
        .create_accounts(&unique("ten-in-ou"), 1, Some(&ou))
        .await
        .remove(0);
    let links = ctx.api::<LinkedAccount>();
    create(
        &links,
        "existing",
        json!({"accountId": existing, "roleName": "OrganizationAccountAccessRole"}),
    )
    .await;
    let link = wait_for(
        &links,
        "existing",
        "a condition",
        Duration::from_secs(60),
        |l: &LinkedAccount| l.status.as_ref().is_some_and(|s| !s.conditions.is_empty()),
    )
    .await;
    assert!(!has(&link, "Ready", "False", Some(REASON)), "{link:?}");

    let members = ctx.api::<MemberAccount>();
    let email = format!("{}@example.com", unique("ten-member"));
    create(
        &members,
        "new",
        json!({"accountName": "ten-member", "email": email, "parentId": ou}),
    )
    .await;
    // Created, moved, and its access role verified by the child: two OU reads a minute apart
    // plus creation fit well inside three minutes.
    let member = ready(&members, &operator, "new", Duration::from_secs(180)).await;
    let account = member.status.unwrap().account_id.expect("account id");
    assert_eq!(ctx.aws.describe_account(&account).await.parent_id, ou);

    drop(operator);
    ctx.cleanup().await;
}
