//! The LinkedAccount controller end to end: the real operator binary against a real API server
//! and the strict AWS emulator. Each test has its own namespace, member account and operator
//! process; tests that inject faults into the shared emulator run alone.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::RwLock;

use account_linker::api::LinkedAccount;
use support::{Operator, TestEnv, TestNamespace, aws_admin, emulator, eventually, gone};

/// Fault injection changes the shared emulator: such tests take this lock for writing.
static FAULTS: RwLock<()> = RwLock::const_new(());
static ACCOUNT_SEQ: AtomicU32 = AtomicU32::new(0);

const GRACE: &str = "3s";

/// A member account in the emulator's organization, created the way an administrator would.
fn member_account(env: &TestEnv) -> String {
    aws_admin(env, &["ensure-org"]);
    let n = ACCOUNT_SEQ.fetch_add(1, Ordering::Relaxed);
    let name = format!("la-{}-{n}", std::process::id());
    let email = format!("{name}@example.com");
    aws_admin(env, &["create-account", "--name", &name, "--email", &email])["accountId"]
        .as_str()
        .expect("account id")
        .to_string()
}

fn put_role(env: &TestEnv, account: &str, external_id: &str, trust_account: &str) {
    aws_admin(
        env,
        &[
            "put-role",
            "--account",
            account,
            "--external-id",
            external_id,
            "--trust-account",
            trust_account,
        ],
    );
}

async fn external_id_secret(client: &Client, ns: &str, name: &str, value: &str) {
    secret_with_key(client, ns, name, "externalId", value).await;
}

async fn secret_with_key(client: &Client, ns: &str, name: &str, key: &str, value: &str) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            key.to_string(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
}

async fn create_link(client: &Client, ns: &str, name: &str, spec: serde_json::Value) {
    let link: LinkedAccount = serde_json::from_value(json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "LinkedAccount",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("valid LinkedAccount");
    Api::<LinkedAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &link)
        .await
        .expect("create LinkedAccount");
}

/// The message of the Ready condition.
fn ready_message(link: &LinkedAccount) -> String {
    link.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

fn condition<'a>(link: &'a LinkedAccount, type_: &str) -> Option<(&'a str, &'a str)> {
    link.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
}

/// Waits until condition `type_` has `status` (and `reason`, when given).
async fn wait_condition(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
    timeout: Duration,
) -> LinkedAccount {
    let api: Api<LinkedAccount> = Api::namespaced(client.clone(), ns);
    eventually(
        timeout,
        &format!("{name}: {type_}={status} {reason:?}"),
        || {
            let api = api.clone();
            async move {
                let link = api.get_opt(name).await.ok()??;
                let (s, r) = condition(&link, type_)?;
                (s == status && reason.is_none_or(|want| want == r)).then_some(link)
            }
        },
    )
    .await
}

fn counts(env: &TestEnv, key: &str) -> u64 {
    emulator(env, "GET", "/requests", None)["counts"][key]
        .as_u64()
        .unwrap_or(0)
}

/// Bumps the generation, which makes the operator verify again at once.
async fn touch(client: &Client, ns: &str, name: &str, display: &str) {
    Api::<LinkedAccount>::namespaced(client.clone(), ns)
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
    env: TestEnv,
    client: Client,
    ns: TestNamespace,
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
        let env = support::env();
        let client = env.client().await;
        let ns = TestNamespace::create(&client, prefix).await;
        let account = member_account(&env);
        put_role(&env, &account, external_id, "123456789012");
        external_id_secret(&client, &ns.name, "xid", external_id).await;
        let operator = Operator::start(&env, &ns.name, operator_args);
        let mut spec = json!({
            "accountId": account,
            "externalId": {"secretRef": {"name": "xid", "key": "externalId"}},
        });
        for (k, v) in extra_spec.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        create_link(&client, &ns.name, name, spec).await;
        Self {
            env,
            client,
            ns,
            account,
            operator,
        }
    }
}

#[tokio::test]
async fn the_right_external_id_makes_the_link_ready_and_kubectl_wait_works() {
    let _shared = FAULTS.read().await;
    let Fixture {
        env,
        client,
        ns,
        account,
        operator: _op,
    } = Fixture::start(
        "la-ready",
        "ready",
        "correct-external-id-0001",
        json!({}),
        &["--leader-elect=false", "--access-denied-grace", GRACE],
    )
    .await;

    let out = env
        .kubectl()
        .args([
            "wait",
            "--for=condition=Ready",
            "lacct/ready",
            "-n",
            &ns.name,
            "--timeout=60s",
        ])
        .output()
        .expect("kubectl wait");
    assert!(
        out.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let link = Api::<LinkedAccount>::namespaced(client.clone(), &ns.name)
        .get("ready")
        .await
        .unwrap();
    let status = link.status.clone().unwrap();
    assert_eq!(
        condition(&link, "RoleAssumable"),
        Some(("True", "Verified"))
    );
    assert_eq!(condition(&link, "Reconciling").map(|c| c.0), Some("False"));
    assert_eq!(condition(&link, "Stalled").map(|c| c.0), Some("False"));
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
    ns.cleanup().await;
}

#[tokio::test]
async fn refusals_are_classified_and_stall_after_the_grace_period() {
    let _shared = FAULTS.read().await;
    let env = support::env();
    let client = env.client().await;
    let ns = TestNamespace::create(&client, "la-denied").await;
    let wrong_id = member_account(&env);
    put_role(&env, &wrong_id, "the-real-external-id", "123456789012");
    let missing_role = member_account(&env);
    let other_trust = member_account(&env);
    put_role(&env, &other_trust, "shared-external-id", "999999999999");
    external_id_secret(&client, &ns.name, "wrong", "not-the-real-external-id").await;
    external_id_secret(&client, &ns.name, "shared", "shared-external-id").await;
    let _op = Operator::start(
        &env,
        &ns.name,
        &["--leader-elect=false", "--access-denied-grace", GRACE],
    );
    let secret = |name: &str| json!({"secretRef": {"name": name, "key": "externalId"}});
    create_link(
        &client,
        &ns.name,
        "wrong-id",
        json!({"accountId": wrong_id, "externalId": secret("wrong")}),
    )
    .await;
    create_link(
        &client,
        &ns.name,
        "missing-role",
        json!({"accountId": missing_role, "externalId": secret("shared")}),
    )
    .await;
    create_link(
        &client,
        &ns.name,
        "other-trust",
        json!({"accountId": other_trust, "externalId": secret("shared")}),
    )
    .await;

    for name in ["wrong-id", "missing-role", "other-trust"] {
        let link = wait_condition(
            &client,
            &ns.name,
            name,
            "RoleAssumable",
            "False",
            Some("AccessDenied"),
            Duration::from_secs(30),
        )
        .await;
        assert_ne!(condition(&link, "Ready").map(|c| c.0), Some("True"));
        let link = wait_condition(
            &client,
            &ns.name,
            name,
            "Stalled",
            "True",
            Some("AccessDenied"),
            Duration::from_secs(30),
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
    ns.cleanup().await;
}

#[tokio::test]
async fn a_generated_external_id_is_owned_stable_across_restarts_and_collected_on_delete() {
    let _shared = FAULTS.read().await;
    let env = support::env();
    let client = env.client().await;
    let ns = TestNamespace::create(&client, "la-generated").await;
    let account = member_account(&env);
    let mut op = Operator::start(
        &env,
        &ns.name,
        &["--leader-elect=false", "--access-denied-grace", "60s"],
    );
    create_link(&client, &ns.name, "gen", json!({"accountId": account})).await;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let links: Api<LinkedAccount> = Api::namespaced(client.clone(), &ns.name);
    let secret_name = eventually(
        Duration::from_secs(30),
        "generated secret in status",
        || {
            let links = links.clone();
            async move { links.get("gen").await.ok()?.status?.external_id_secret }
        },
    )
    .await;
    let secret = secrets
        .get(&secret_name)
        .await
        .expect("generated secret exists");
    let value = String::from_utf8(secret.data.unwrap()["externalId"].0.clone()).unwrap();
    assert!(value.len() >= 32 && value.chars().all(|c| c.is_ascii_alphanumeric()));
    let owner = &secret.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("LinkedAccount", Some(true))
    );

    // The administrator deploys the role with the generated ExternalId.
    put_role(&env, &account, &value, "123456789012");
    let ready = wait_condition(
        &client,
        &ns.name,
        "gen",
        "Ready",
        "True",
        None,
        Duration::from_secs(60),
    )
    .await;
    assert!(
        !op.log().contains(&value),
        "the ExternalId leaked into the operator's log"
    );

    // A restart keeps the Secret and the status.
    op.kill();
    let _op = Operator::start(&env, &ns.name, &["--leader-elect=false"]);
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

    // Deletion completes promptly, and the Secret is garbage-collected.
    links.delete("gen", &DeleteParams::default()).await.unwrap();
    gone(&links, "gen", Duration::from_secs(15)).await;
    // The generated Secret is garbage-collected.
    gone(&secrets, &secret_name, Duration::from_secs(30)).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn a_missing_secret_or_key_is_named_and_fixing_it_recovers() {
    let _shared = FAULTS.read().await;
    let env = support::env();
    let client = env.client().await;
    let ns = TestNamespace::create(&client, "la-secret").await;
    let account = member_account(&env);
    put_role(&env, &account, "secret-recovery-id", "123456789012");
    let _op = Operator::start(&env, &ns.name, &["--leader-elect=false"]);
    create_link(&client, &ns.name, "s", json!({
        "accountId": account, "externalId": {"secretRef": {"name": "later", "key": "externalId"}},
    })).await;
    let link = wait_condition(
        &client,
        &ns.name,
        "s",
        "Stalled",
        "True",
        Some("ExternalIdSecretNotFound"),
        Duration::from_secs(30),
    )
    .await;
    let ready = ready_message(&link);
    assert!(ready.contains("Secret later"), "{ready}");

    // The Secret appears, but with another key.
    secret_with_key(&client, &ns.name, "later", "other", "secret-recovery-id").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let link = wait_condition(
        &client,
        &ns.name,
        "s",
        "Stalled",
        "True",
        Some("ExternalIdKeyNotFound"),
        Duration::from_secs(90),
    )
    .await;
    let ready = ready_message(&link);
    assert!(ready.contains("has no key externalId"), "{ready}");

    // Fixed: the link recovers.
    secrets
        .patch(
            "later",
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {"externalId": "secret-recovery-id"}})),
        )
        .await
        .unwrap();
    wait_condition(
        &client,
        &ns.name,
        "s",
        "Ready",
        "True",
        None,
        Duration::from_secs(90),
    )
    .await;
    ns.cleanup().await;
}

#[tokio::test]
async fn suspend_stops_verification_and_says_so() {
    let _shared = FAULTS.read().await;
    let env = support::env();
    let client = env.client().await;
    let ns = TestNamespace::create(&client, "la-suspend").await;
    let _op = Operator::start(&env, &ns.name, &["--leader-elect=false"]);
    create_link(
        &client,
        &ns.name,
        "paused",
        json!({"accountId": "123456789012", "suspend": true}),
    )
    .await;
    let link = wait_condition(
        &client,
        &ns.name,
        "paused",
        "Stalled",
        "True",
        Some("Suspended"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(condition(&link, "Ready"), Some(("False", "Suspended")));
    assert!(
        link.status.unwrap().last_verified_time.is_none(),
        "a suspended link was verified"
    );
    ns.cleanup().await;
}

/// Between verifications nothing is written: the object's resourceVersion stays put.
#[tokio::test]
async fn steady_state_writes_nothing_between_verifications() {
    // Counts AssumeRole calls on the shared emulator: run alone.
    let _exclusive = FAULTS.write().await;
    let Fixture {
        env,
        client,
        ns,
        account: _,
        operator: _op,
    } = Fixture::start(
        "la-steady",
        "steady",
        "steady-state-id-01",
        json!({"verifyInterval": "10m"}),
        &["--leader-elect=false"],
    )
    .await;
    let ready = wait_condition(
        &client,
        &ns.name,
        "steady",
        "Ready",
        "True",
        None,
        Duration::from_secs(60),
    )
    .await;
    let before = ready.metadata.resource_version.clone();
    let assume_before = counts(&env, "sts:AssumeRole");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let after = Api::<LinkedAccount>::namespaced(client.clone(), &ns.name)
        .get("steady")
        .await
        .unwrap();
    assert_eq!(
        after.metadata.resource_version, before,
        "the operator wrote while nothing changed"
    );
    assert_eq!(
        counts(&env, "sts:AssumeRole"),
        assume_before,
        "verified before the interval elapsed"
    );
    ns.cleanup().await;
}

#[tokio::test]
async fn a_deleted_role_fails_the_next_verification_and_a_recreated_one_recovers() {
    let _shared = FAULTS.read().await;
    let Fixture {
        env,
        client,
        ns,
        account,
        operator: _op,
    } = Fixture::start(
        "la-deleted",
        "d",
        "deleted-role-id-01",
        json!({"verifyInterval": "1m"}),
        &["--leader-elect=false", "--access-denied-grace", "120s"],
    )
    .await;
    wait_condition(
        &client,
        &ns.name,
        "d",
        "Ready",
        "True",
        None,
        Duration::from_secs(60),
    )
    .await;
    aws_admin(&env, &["delete-role", "--account", &account]);
    // The next scheduled verification (1m ± 10 %) notices.
    wait_condition(
        &client,
        &ns.name,
        "d",
        "RoleAssumable",
        "False",
        Some("AccessDenied"),
        Duration::from_secs(100),
    )
    .await;
    put_role(&env, &account, "deleted-role-id-01", "123456789012");
    wait_condition(
        &client,
        &ns.name,
        "d",
        "Ready",
        "True",
        None,
        Duration::from_secs(60),
    )
    .await;
    ns.cleanup().await;
}

#[tokio::test]
async fn throttling_never_flaps_ready_and_backs_off() {
    let _exclusive = FAULTS.write().await;
    let Fixture {
        env,
        client,
        ns,
        account,
        operator: _op,
    } = Fixture::start(
        "la-throttle",
        "t",
        "throttle-test-id-01",
        json!({}),
        &["--leader-elect=false"],
    )
    .await;
    let ready = wait_condition(
        &client,
        &ns.name,
        "t",
        "Ready",
        "True",
        None,
        Duration::from_secs(60),
    )
    .await;
    let verified_at = ready.status.as_ref().unwrap().last_verified_time.clone();

    // One token, spent at once by the administrator's own AssumeRole: from then on every
    // AssumeRole is throttled.
    emulator(
        &env,
        "PUT",
        "/throttle",
        Some(json!({"sts:AssumeRole": {"rate": 0.001, "burst": 1}})),
    );
    put_role(&env, &account, "throttle-test-id-01", "123456789012");
    emulator(&env, "DELETE", "/requests", None);
    touch(&client, &ns.name, "t", "throttled").await;
    let api: Api<LinkedAccount> = Api::namespaced(client.clone(), &ns.name);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let link = api.get("t").await.unwrap();
        assert_eq!(
            condition(&link, "Ready"),
            Some(("True", "Verified")),
            "Ready flapped on throttling"
        );
    }
    let attempts =
        emulator(&env, "GET", "/requests", None)["outcomes"]["sts:AssumeRole"]["throttled"]
            .as_u64()
            .unwrap_or(0);
    // Backoff doubles from 2 s (±20 %), and each verification may make up to two SDK
    // attempts: a handful of calls in the ~10 s window (11 was seen once), where a reconcile
    // loop without backoff would make hundreds.
    assert!(
        (1..=16).contains(&attempts),
        "{attempts} throttled AssumeRole calls in 10 s"
    );

    emulator(&env, "DELETE", "/throttle", None);
    let recovered = eventually(
        Duration::from_secs(60),
        "verified after throttling ended",
        || {
            let api = api.clone();
            let verified_at = verified_at.clone();
            async move {
                let link = api.get("t").await.ok()?;
                let status = link.status.clone()?;
                (status.last_verified_time != verified_at
                    && status.observed_generation == link.metadata.generation)
                    .then_some(link)
            }
        },
    )
    .await;
    assert_eq!(condition(&recovered, "Ready"), Some(("True", "Verified")));
    ns.cleanup().await;
}

#[tokio::test]
async fn an_outage_changes_nothing_and_verification_recovers() {
    let _exclusive = FAULTS.write().await;
    let Fixture {
        env,
        client,
        ns,
        account: _,
        operator: mut op,
    } = Fixture::start(
        "la-outage",
        "o",
        "outage-test-id-01",
        json!({}),
        &["--leader-elect=false"],
    )
    .await;
    let ready = wait_condition(
        &client,
        &ns.name,
        "o",
        "Ready",
        "True",
        None,
        Duration::from_secs(60),
    )
    .await;
    let conditions_before = ready.status.as_ref().unwrap().conditions.clone();

    emulator(
        &env,
        "POST",
        "/outage",
        Some(json!({"seconds": 8, "mode": "error"})),
    );
    touch(&client, &ns.name, "o", "during-outage").await;
    let api: Api<LinkedAccount> = Api::namespaced(client.clone(), &ns.name);
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let link = api.get("o").await.unwrap();
        assert_eq!(
            link.status.as_ref().unwrap().conditions,
            conditions_before,
            "conditions changed during the outage"
        );
    }
    assert!(
        op.is_running(),
        "the operator crashed during the outage:\n{}",
        op.log()
    );
    let recovered = eventually(Duration::from_secs(90), "verified after the outage", || {
        let api = api.clone();
        async move {
            let link = api.get("o").await.ok()?;
            (link.status.as_ref()?.observed_generation == link.metadata.generation).then_some(link)
        }
    })
    .await;
    assert_eq!(condition(&recovered, "Ready"), Some(("True", "Verified")));
    ns.cleanup().await;
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let _shared = FAULTS.read().await;
    let env = support::env();
    let client = env.client().await;
    let ns = TestNamespace::create(&client, "la-leader").await;
    let account = member_account(&env);
    put_role(&env, &account, "leader-test-id-001", "123456789012");
    external_id_secret(&client, &ns.name, "xid", "leader-test-id-001").await;
    let mut first = Operator::start(&env, &ns.name, &["--leader-identity", "first"]);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let holder = |leases: Api<Lease>| async move {
        leases
            .get_opt("account-linker")
            .await
            .ok()??
            .spec?
            .holder_identity
    };
    eventually(Duration::from_secs(30), "first holds the lease", || {
        let leases = leases.clone();
        async move { (holder(leases).await.as_deref() == Some("first")).then_some(()) }
    })
    .await;
    let mut second = Operator::start(&env, &ns.name, &["--leader-identity", "second"]);
    create_link(
        &client,
        &ns.name,
        "l1",
        json!({
            "accountId": account, "externalId": {"secretRef": {"name": "xid", "key": "externalId"}},
        }),
    )
    .await;
    wait_condition(
        &client,
        &ns.name,
        "l1",
        "Ready",
        "True",
        None,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(holder(leases.clone()).await.as_deref(), Some("first"));
    assert!(
        !second.log().contains("condition changed"),
        "the standby reconciled:\n{}",
        second.log()
    );

    // The leader dies without releasing the lease; the standby takes over within its duration.
    first.kill();
    eventually(Duration::from_secs(40), "second holds the lease", || {
        let leases = leases.clone();
        async move { (holder(leases).await.as_deref() == Some("second")).then_some(()) }
    })
    .await;
    create_link(
        &client,
        &ns.name,
        "l2",
        json!({
            "accountId": account, "externalId": {"secretRef": {"name": "xid", "key": "externalId"}},
        }),
    )
    .await;
    wait_condition(
        &client,
        &ns.name,
        "l2",
        "Ready",
        "True",
        None,
        Duration::from_secs(60),
    )
    .await;

    // A graceful stop (SIGTERM) releases the lease: a standby takes over well within the
    // lease duration.
    let _third = Operator::start(&env, &ns.name, &["--leader-identity", "third"]);
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
    eventually(Duration::from_secs(20), "third holds the lease", || {
        let leases = leases.clone();
        async move { (holder(leases).await.as_deref() == Some("third")).then_some(()) }
    })
    .await;
    assert!(
        stopped_at.elapsed() < Duration::from_secs(leader_lease_seconds()),
        "takeover after a graceful stop took {:?}",
        stopped_at.elapsed()
    );
    ns.cleanup().await;
}

fn leader_lease_seconds() -> u64 {
    account_linker::runtime::leader::LEASE_DURATION_SECONDS
}
