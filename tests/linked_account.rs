//! The LinkedAccount controller end to end: the real operator binary against a real API server
//! and the strict AWS emulator. Each test has its own namespace, member account and operator
//! process; tests that inject faults into the shared emulator run alone.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::RwLock;

use account_linker::api::LinkedAccount;
use account_linker::api::labels::{
    EXTERNAL_ID_LABEL, EXTERNAL_ID_LABEL_VALUE, LINKED_ACCOUNT_FINALIZER,
};
use support::{
    Context, HUB_ACCOUNT, Operator, condition, create, eventually, gone, message, wait_condition,
};

/// Fault injection changes the shared emulator: such tests take this lock for writing.
static FAULTS: RwLock<()> = RwLock::const_new(());

const GRACE: Duration = Duration::from_secs(3);
const GRACE_FLAG: &str = "3s";

async fn external_id_secret(ctx: &Context, name: &str, value: &str) {
    secret_with_key(ctx, name, "externalId", value).await;
}

/// A Secret the operator may read by reference (labelled `accountlinker.dev/external-id=true`).
async fn secret_with_key(ctx: &Context, name: &str, key: &str, value: &str) {
    create_secret(ctx, name, key, value, true).await;
}

async fn create_secret(ctx: &Context, name: &str, key: &str, value: &str, labelled: bool) {
    let labels = labelled.then(|| {
        BTreeMap::from([(
            EXTERNAL_ID_LABEL.to_string(),
            EXTERNAL_ID_LABEL_VALUE.to_string(),
        )])
    });
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels,
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            key.to_string(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Default::default()
    };
    ctx.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
}

/// Bumps the generation, which makes the operator verify again at once.
async fn touch(links: &Api<LinkedAccount>, name: &str, display: &str) {
    links
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"displayName": display}})),
        )
        .await
        .expect("patch");
}

/// A member account whose role trusts the hub with an ExternalId, a Secret holding that
/// ExternalId, an operator watching a fresh namespace, and a LinkedAccount using the Secret.
struct Fixture {
    ctx: Context,
    links: Api<LinkedAccount>,
    account: String,
    operator: Operator,
}

impl Fixture {
    async fn start(
        prefix: &str,
        name: &str,
        external_id: &str,
        extra_spec: serde_json::Value,
        operator_args: &[&str],
    ) -> Self {
        let ctx = Context::new(prefix).await;
        let account = ctx.aws.member_account("la").await;
        ctx.aws.put_role(&account, external_id, HUB_ACCOUNT).await;
        external_id_secret(&ctx, "xid", external_id).await;
        let operator = ctx.operator(operator_args);
        let mut spec = json!({
            "accountId": account,
            "externalId": {"secretRef": {"name": "xid", "key": "externalId"}},
        });
        for (k, v) in extra_spec.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        let links = ctx.api::<LinkedAccount>();
        create(&links, name, spec).await;
        Self {
            ctx,
            links,
            account,
            operator,
        }
    }
}

#[tokio::test]
async fn the_right_external_id_makes_the_link_ready_and_kubectl_wait_works() {
    let _shared = FAULTS.read().await;
    let f = Fixture::start(
        "la-ready",
        "ready",
        "correct-external-id-0001",
        json!({}),
        &["--leader-elect=false", "--access-denied-grace", GRACE_FLAG],
    )
    .await;
    let budget = f.ctx.budget().await;

    let mut wait = f.ctx.env.kubectl();
    wait.args([
        "wait",
        "--for=condition=Ready",
        "lacct/ready",
        "-n",
        &f.ctx.ns.name,
        &format!("--timeout={}s", budget.react().as_secs()),
    ]);
    support::run_ok(wait, None);

    let link = f.links.get("ready").await.unwrap();
    let status = link.status.clone().unwrap();
    assert_eq!(
        condition(&link, "RoleAssumable"),
        Some(("True", "Verified"))
    );
    assert_eq!(condition(&link, "Reconciling").map(|c| c.0), Some("False"));
    assert_eq!(condition(&link, "Stalled").map(|c| c.0), Some("False"));
    let account = &f.account;
    assert_eq!(
        status.role_arn.as_deref(),
        Some(format!("arn:aws:iam::{account}:role/AccountLinkerAccess").as_str())
    );
    assert!(status.verified_identity.unwrap().starts_with(&format!(
        "arn:aws:sts::{account}:assumed-role/AccountLinkerAccess/"
    )));
    assert_eq!(status.external_id_secret.as_deref(), Some("xid"));
    assert_eq!(status.observed_generation, link.metadata.generation);
    assert!(status.last_verified_time.is_some());
    // The hub is the management account, so Organizations names the account.
    assert!(status.account_name.unwrap().starts_with("la-"));
    // The ExternalId never appears in status.
    assert!(
        !serde_json::to_string(&link.status)
            .unwrap()
            .contains("correct-external-id")
    );
    f.ctx.cleanup().await;
}

#[tokio::test]
async fn refusals_are_classified_and_stall_after_the_grace_period() {
    let _shared = FAULTS.read().await;
    let ctx = Context::new("la-denied").await;
    let wrong_id = ctx.aws.member_account("la").await;
    ctx.aws
        .put_role(&wrong_id, "the-real-external-id", HUB_ACCOUNT)
        .await;
    let missing_role = ctx.aws.member_account("la").await;
    let other_trust = ctx.aws.member_account("la").await;
    ctx.aws
        .put_role(&other_trust, "shared-external-id", "999999999999")
        .await;
    external_id_secret(&ctx, "wrong", "not-the-real-external-id").await;
    external_id_secret(&ctx, "shared", "shared-external-id").await;
    let _op = ctx.operator(&["--leader-elect=false", "--access-denied-grace", GRACE_FLAG]);
    let links = ctx.api::<LinkedAccount>();
    let secret = |name: &str| json!({"secretRef": {"name": name, "key": "externalId"}});
    for (name, account, secret_name) in [
        ("wrong-id", &wrong_id, "wrong"),
        ("missing-role", &missing_role, "shared"),
        ("other-trust", &other_trust, "shared"),
    ] {
        create(
            &links,
            name,
            json!({"accountId": account, "externalId": secret(secret_name)}),
        )
        .await;
    }

    let budget = ctx.budget().await;
    for name in ["wrong-id", "missing-role", "other-trust"] {
        let link = wait_condition(
            &links,
            name,
            "RoleAssumable",
            "False",
            Some("AccessDenied"),
            budget.react(),
        )
        .await;
        assert_ne!(condition(&link, "Ready").map(|c| c.0), Some("True"));
        let link = wait_condition(
            &links,
            name,
            "Stalled",
            "True",
            Some("AccessDenied"),
            budget.stall_after(GRACE),
        )
        .await;
        assert_eq!(
            condition(&link, "Reconciling").map(|c| c.0),
            Some("False"),
            "{name}"
        );
        assert_eq!(
            condition(&link, "Ready"),
            Some(("False", "AccessDenied")),
            "{name}"
        );
    }
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_generated_external_id_is_owned_stable_across_restarts_and_collected_on_delete() {
    let _shared = FAULTS.read().await;
    let ctx = Context::new("la-generated").await;
    let budget = ctx.budget().await;
    let account = ctx.aws.member_account("la").await;
    let mut op = ctx.operator(&["--leader-elect=false", "--access-denied-grace", "60s"]);
    let links = ctx.api::<LinkedAccount>();
    let secrets = ctx.api::<Secret>();
    create(&links, "gen", json!({"accountId": account})).await;

    let secret_name = eventually(budget.react(), "generated secret in status", || async {
        links.get("gen").await.ok()?.status?.external_id_secret
    })
    .await;
    let secret = secrets
        .get(&secret_name)
        .await
        .expect("generated secret exists");
    assert_eq!(secret.immutable, Some(true), "nobody rewrites the value");
    let value = String::from_utf8(secret.data.unwrap()["externalId"].0.clone()).unwrap();
    assert!(value.len() >= 32 && value.chars().all(|c| c.is_ascii_alphanumeric()));
    let owner = &secret.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("LinkedAccount", Some(true))
    );

    // The administrator deploys the role with the generated ExternalId.
    ctx.aws.put_role(&account, &value, HUB_ACCOUNT).await;
    let ready = wait_condition(&links, "gen", "Ready", "True", None, budget.react()).await;
    assert!(
        !op.log().contains(&value),
        "the ExternalId leaked into the operator's log"
    );

    // A restart keeps the Secret and the status.
    op.kill();
    let _op = ctx.operator(&["--leader-elect=false"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = links.get("gen").await.unwrap();
    assert_eq!(condition(&after, "Ready"), Some(("True", "Verified")));
    assert_eq!(
        after.status.as_ref().unwrap().last_verified_time,
        ready.status.as_ref().unwrap().last_verified_time,
        "a restart verified again although nothing was due"
    );
    let all = secrets.list(&Default::default()).await.unwrap();
    assert_eq!(
        all.items
            .iter()
            .filter(|s| s
                .metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("gen")))
            .count(),
        1
    );
    let again = secrets.get(&secret_name).await.unwrap();
    assert_eq!(
        String::from_utf8(again.data.unwrap()["externalId"].0.clone()).unwrap(),
        value
    );

    // Deletion completes promptly, and the generated Secret is garbage-collected.
    links.delete("gen", &DeleteParams::default()).await.unwrap();
    gone(&links, "gen", budget.react()).await;
    gone(&secrets, &secret_name, budget.react()).await;
    ctx.cleanup().await;
}

/// A LinkedAccount owns nothing outside the cluster: it carries no finalizer, so it (and its
/// namespace) can be deleted while the operator is down, and the finalizer earlier versions put
/// on it is taken off, from live and deleting objects alike.
#[tokio::test]
async fn a_link_has_no_finalizer_and_goes_while_the_operator_is_down() {
    let _shared = FAULTS.read().await;
    let ctx = Context::new("la-finalizer").await;
    let budget = ctx.budget().await;
    let account = ctx.aws.member_account("la").await;
    ctx.aws
        .put_role(&account, "finalizer-external-id", HUB_ACCOUNT)
        .await;
    secret_with_key(&ctx, "fin-id", "externalId", "finalizer-external-id").await;
    let links = ctx.api::<LinkedAccount>();
    let spec = json!({"accountId": account, "externalId": {"secretRef": {"name": "fin-id", "key": "externalId"}}});
    let with_retired = |name: &str| {
        let mut link = support::object::<LinkedAccount>(name, spec.clone());
        link.metadata.finalizers = Some(vec![LINKED_ACCOUNT_FINALIZER.to_string()]);
        link
    };
    let finalizers = |link: &LinkedAccount| link.metadata.finalizers.clone().unwrap_or_default();

    let mut op = ctx.operator(&["--leader-elect=false"]);
    create(&links, "plain", spec.clone()).await;
    let ready = wait_condition(&links, "plain", "Ready", "True", None, budget.react()).await;
    assert_eq!(finalizers(&ready), Vec::<String>::new());
    links
        .create(&PostParams::default(), &with_retired("legacy"))
        .await
        .unwrap();
    eventually(budget.react(), "the retired finalizer removed", || async {
        finalizers(&links.get("legacy").await.ok()?)
            .is_empty()
            .then_some(())
    })
    .await;

    // The operator is down: deletion does not wait for it.
    op.kill();
    links
        .delete("plain", &DeleteParams::default())
        .await
        .unwrap();
    gone(&links, "plain", Duration::from_secs(5)).await;

    // An object of an earlier version, deleted while the operator is down, waits for it (its
    // finalizer says so) and goes once the operator is back.
    links
        .create(&PostParams::default(), &with_retired("old"))
        .await
        .unwrap();
    links.delete("old", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = links.get("old").await.expect("held by its finalizer");
    assert!(waiting.metadata.deletion_timestamp.is_some());
    let _op = ctx.operator(&["--leader-elect=false"]);
    gone(&links, "old", budget.react()).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_missing_secret_or_key_is_named_and_fixing_it_recovers() {
    let _shared = FAULTS.read().await;
    let ctx = Context::new("la-secret").await;
    let budget = ctx.budget().await;
    let account = ctx.aws.member_account("la").await;
    ctx.aws
        .put_role(&account, "secret-recovery-id", HUB_ACCOUNT)
        .await;
    let _op = ctx.operator(&["--leader-elect=false"]);
    let links = ctx.api::<LinkedAccount>();
    create(&links, "s", json!({
        "accountId": account, "externalId": {"secretRef": {"name": "later", "key": "externalId"}},
    }))
    .await;
    let link = wait_condition(
        &links,
        "s",
        "Stalled",
        "True",
        Some("ExternalIdSecretNotFound"),
        budget.react(),
    )
    .await;
    let ready = message(&link, "Ready");
    assert!(ready.contains("Secret later"), "{ready}");

    // The Secret appears, but with another key (the operator looks again within a minute).
    secret_with_key(&ctx, "later", "other", "secret-recovery-id").await;
    let link = wait_condition(
        &links,
        "s",
        "Stalled",
        "True",
        Some("ExternalIdKeyNotFound"),
        budget.next_verification(Duration::from_secs(60)),
    )
    .await;
    let ready = message(&link, "Ready");
    assert!(ready.contains("has no key externalId"), "{ready}");

    // Fixed: the link recovers.
    ctx.api::<Secret>()
        .patch(
            "later",
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {"externalId": "secret-recovery-id"}})),
        )
        .await
        .unwrap();
    wait_condition(
        &links,
        "s",
        "Ready",
        "True",
        None,
        budget.next_verification(Duration::from_secs(60)),
    )
    .await;
    ctx.cleanup().await;
}

/// A Secret without the `accountlinker.dev/external-id=true` label is never read: the link
/// stalls naming the fix, and no AssumeRole is made, until the label is added.
#[tokio::test]
async fn an_unlabelled_secret_is_refused_without_an_aws_call_until_labelled() {
    // Counts AssumeRole calls on the shared emulator: run alone.
    let _exclusive = FAULTS.write().await;
    let ctx = Context::new("la-unlabelled").await;
    let budget = ctx.budget().await;
    let account = ctx.aws.member_account("la").await;
    ctx.aws
        .put_role(&account, "unlabelled-secret-id", HUB_ACCOUNT)
        .await;
    create_secret(&ctx, "plain", "externalId", "unlabelled-secret-id", false).await;
    let _op = ctx.operator(&["--leader-elect=false"]);
    let links = ctx.api::<LinkedAccount>();
    let assume_before = ctx.emulator.count("sts:AssumeRole").await;
    create(&links, "u", json!({
        "accountId": account, "externalId": {"secretRef": {"name": "plain", "key": "externalId"}},
    }))
    .await;
    let link = wait_condition(
        &links,
        "u",
        "Stalled",
        "True",
        Some("SecretNotLabelled"),
        budget.react(),
    )
    .await;
    assert_eq!(
        condition(&link, "Ready"),
        Some(("False", "SecretNotLabelled"))
    );
    let ready = message(&link, "Ready");
    assert!(ready.contains("Secret plain"), "{ready}");
    assert!(
        ready.contains("kubectl label secret plain accountlinker.dev/external-id=true"),
        "{ready}"
    );
    assert!(!ready.contains("unlabelled-secret-id"), "{ready}");
    assert!(link.status.unwrap().last_verified_time.is_none());
    // Give a wrongly started verification time to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ctx.emulator.count("sts:AssumeRole").await,
        assume_before,
        "an unlabelled Secret's value reached STS"
    );

    // Labelled: the link verifies (the operator looks again within a minute).
    ctx.api::<Secret>()
        .patch(
            "plain",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"metadata": {"labels": {EXTERNAL_ID_LABEL: EXTERNAL_ID_LABEL_VALUE}}}),
            ),
        )
        .await
        .unwrap();
    wait_condition(
        &links,
        "u",
        "Ready",
        "True",
        None,
        budget.next_verification(Duration::from_secs(60)),
    )
    .await;
    assert!(ctx.emulator.count("sts:AssumeRole").await > assume_before);
    ctx.cleanup().await;
}

#[tokio::test]
async fn suspend_stops_verification_and_says_so() {
    let _shared = FAULTS.read().await;
    let ctx = Context::new("la-suspend").await;
    let _op = ctx.operator(&["--leader-elect=false"]);
    let links = ctx.api::<LinkedAccount>();
    create(
        &links,
        "paused",
        json!({"accountId": HUB_ACCOUNT, "suspend": true}),
    )
    .await;
    let link = wait_condition(
        &links,
        "paused",
        "Stalled",
        "True",
        Some("Suspended"),
        ctx.budget().await.react(),
    )
    .await;
    assert_eq!(condition(&link, "Ready"), Some(("False", "Suspended")));
    assert!(
        link.status.unwrap().last_verified_time.is_none(),
        "a suspended link was verified"
    );
    ctx.cleanup().await;
}

/// Between verifications nothing is written: the object's resourceVersion stays put.
#[tokio::test]
async fn steady_state_writes_nothing_between_verifications() {
    // Counts AssumeRole calls on the shared emulator: run alone.
    let _exclusive = FAULTS.write().await;
    let f = Fixture::start(
        "la-steady",
        "steady",
        "steady-state-id-01",
        json!({"verifyInterval": "10m"}),
        &["--leader-elect=false"],
    )
    .await;
    let budget = f.ctx.budget().await;
    let ready = wait_condition(&f.links, "steady", "Ready", "True", None, budget.react()).await;
    let before = ready.metadata.resource_version.clone();
    let assume_before = f.ctx.emulator.count("sts:AssumeRole").await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let after = f.links.get("steady").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, before,
        "the operator wrote while nothing changed"
    );
    assert_eq!(
        f.ctx.emulator.count("sts:AssumeRole").await,
        assume_before,
        "verified before the interval elapsed"
    );
    f.ctx.cleanup().await;
}

#[tokio::test]
async fn a_deleted_role_fails_the_next_verification_and_a_recreated_one_recovers() {
    let _shared = FAULTS.read().await;
    let f = Fixture::start(
        "la-deleted",
        "d",
        "deleted-role-id-01",
        json!({"verifyInterval": "1m"}),
        &["--leader-elect=false", "--access-denied-grace", "120s"],
    )
    .await;
    let budget = f.ctx.budget().await;
    wait_condition(&f.links, "d", "Ready", "True", None, budget.react()).await;
    f.ctx.aws.delete_role(&f.account).await;
    // The next scheduled verification (1m ± 10 %) notices.
    wait_condition(
        &f.links,
        "d",
        "RoleAssumable",
        "False",
        Some("AccessDenied"),
        budget.next_verification(Duration::from_secs(60)),
    )
    .await;
    f.ctx
        .aws
        .put_role(&f.account, "deleted-role-id-01", HUB_ACCOUNT)
        .await;
    wait_condition(&f.links, "d", "Ready", "True", None, budget.react()).await;
    f.ctx.cleanup().await;
}

#[tokio::test]
async fn throttling_never_flaps_ready_and_backs_off() {
    let _exclusive = FAULTS.write().await;
    let f = Fixture::start(
        "la-throttle",
        "t",
        "throttle-test-id-01",
        json!({}),
        &["--leader-elect=false"],
    )
    .await;
    let (ctx, links) = (&f.ctx, &f.links);
    let budget = ctx.budget().await;
    let ready = wait_condition(links, "t", "Ready", "True", None, budget.react()).await;
    let verified_at = ready.status.as_ref().unwrap().last_verified_time.clone();

    // One token, spent at once by the administrator's own AssumeRole: from then on every
    // AssumeRole is throttled.
    let throttled_at = std::time::Instant::now();
    ctx.emulator
        .put(
            "/throttle",
            json!({"sts:AssumeRole": {"rate": 0.001, "burst": 1}}),
        )
        .await;
    ctx.aws
        .assume_access_role(&f.account, "throttle-test-id-01")
        .await;
    ctx.emulator.reset_counts().await;
    touch(links, "t", "throttled").await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let link = links.get("t").await.unwrap();
        assert_eq!(
            condition(&link, "Ready"),
            Some(("True", "Verified")),
            "Ready flapped on throttling"
        );
    }
    let attempts = ctx.emulator.throttled("sts:AssumeRole").await;
    // Backoff doubles from 2 s (±20 %), and each verification may make up to two SDK
    // attempts: a handful of calls in the ~10 s window (11 was seen once), where a reconcile
    // loop without backoff would make hundreds.
    assert!(
        (1..=16).contains(&attempts),
        "{attempts} throttled AssumeRole calls in 10 s"
    );

    ctx.emulator.delete("/throttle").await;
    let recovered = eventually(
        budget.retry_after(throttled_at.elapsed()),
        "verified after throttling ended",
        || async {
            let link = links.get("t").await.ok()?;
            let status = link.status.clone()?;
            (status.last_verified_time != verified_at
                && status.observed_generation == link.metadata.generation)
                .then_some(link)
        },
    )
    .await;
    assert_eq!(condition(&recovered, "Ready"), Some(("True", "Verified")));
    f.ctx.cleanup().await;
}

#[tokio::test]
async fn an_outage_changes_nothing_and_verification_recovers() {
    let _exclusive = FAULTS.write().await;
    let mut f = Fixture::start(
        "la-outage",
        "o",
        "outage-test-id-01",
        json!({}),
        &["--leader-elect=false"],
    )
    .await;
    let budget = f.ctx.budget().await;
    let outage = Duration::from_secs(8);
    let ready = wait_condition(&f.links, "o", "Ready", "True", None, budget.react()).await;
    let conditions_before = ready.status.as_ref().unwrap().conditions.clone();

    f.ctx
        .emulator
        .post(
            "/outage",
            json!({"seconds": outage.as_secs(), "mode": "error"}),
        )
        .await;
    touch(&f.links, "o", "during-outage").await;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let link = f.links.get("o").await.unwrap();
        assert_eq!(
            link.status.as_ref().unwrap().conditions,
            conditions_before,
            "conditions changed during the outage"
        );
    }
    assert!(
        f.operator.is_running(),
        "the operator crashed during the outage:\n{}",
        f.operator.log()
    );
    let links = &f.links;
    let recovered = eventually(
        budget.retry_after(outage),
        "verified after the outage",
        || async {
            let link = links.get("o").await.ok()?;
            (link.status.as_ref()?.observed_generation == link.metadata.generation).then_some(link)
        },
    )
    .await;
    assert_eq!(condition(&recovered, "Ready"), Some(("True", "Verified")));
    f.ctx.cleanup().await;
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let _shared = FAULTS.read().await;
    let ctx = Context::new("la-leader").await;
    let budget = ctx.budget().await;
    let lease_duration = Duration::from_secs(leader_lease_seconds());
    let account = ctx.aws.member_account("la").await;
    ctx.aws
        .put_role(&account, "leader-test-id-001", HUB_ACCOUNT)
        .await;
    external_id_secret(&ctx, "xid", "leader-test-id-001").await;
    let mut first = ctx.operator(&["--leader-identity", "first"]);
    let leases = ctx.api::<Lease>();
    let links = ctx.api::<LinkedAccount>();
    let holds = |who: &'static str| {
        let leases = leases.clone();
        async move {
            let holder = leases
                .get_opt("account-linker")
                .await
                .ok()??
                .spec?
                .holder_identity;
            (holder.as_deref() == Some(who)).then_some(())
        }
    };
    eventually(budget.react(), "first holds the lease", || holds("first")).await;
    let mut second = ctx.operator(&["--leader-identity", "second"]);
    let spec = json!({
        "accountId": account, "externalId": {"secretRef": {"name": "xid", "key": "externalId"}},
    });
    create(&links, "l1", spec.clone()).await;
    wait_condition(&links, "l1", "Ready", "True", None, budget.react()).await;
    assert!(
        holds("first").await.is_some(),
        "first still holds the lease"
    );
    assert!(
        !second.log().contains("condition changed"),
        "the standby reconciled:\n{}",
        second.log()
    );

    // The leader dies without releasing the lease; the standby takes over within its duration.
    first.kill();
    eventually(
        lease_duration + budget.react(),
        "second holds the lease",
        || holds("second"),
    )
    .await;
    create(&links, "l2", spec).await;
    wait_condition(&links, "l2", "Ready", "True", None, budget.react()).await;

    // A graceful stop (SIGTERM) releases the lease: a standby takes over well within the
    // lease duration.
    let _third = ctx.operator(&["--leader-identity", "third"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopped_at = std::time::Instant::now();
    assert!(
        second.terminate(Duration::from_secs(35)),
        "the leader did not exit on SIGTERM:\n{}",
        second.log()
    );
    assert!(
        second.log().contains("released the leader lease"),
        "{}",
        second.log()
    );
    eventually(lease_duration, "third holds the lease", || holds("third")).await;
    assert!(
        stopped_at.elapsed() < lease_duration,
        "takeover after a graceful stop took {:?}",
        stopped_at.elapsed()
    );
    ctx.cleanup().await;
}

fn leader_lease_seconds() -> u64 {
    account_linker::runtime::leader::LEASE_DURATION_SECONDS
}
