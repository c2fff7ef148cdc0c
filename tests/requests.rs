//! Request annotations end to end (`accountlinker.dev/verify-requested-at`,
//! `accountlinker.dev/rotate-requested-at`): the real operator against a real API server and the
//! strict AWS emulator. Each value is handled once: the tests count the AWS calls and the
//! StackSet operations it causes, then trigger more reconciles with the same value. They count
//! on the shared emulator, so they take turns.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use account_linker::api::annotations::{ROTATE_REQUESTED_AT, VERIFY_REQUESTED_AT};
use account_linker::api::{BulkRegistration, LinkedAccount};
use support::{Context, HUB_ACCOUNT, create, eventually, unique, wait_for, wait_ready};

/// The tests count calls on the shared emulator: one at a time.
static TURN: Mutex<()> = Mutex::const_new(());

/// Sets annotation `key` to `value` with a merge patch, as `kubectl annotate` (or the plugin)
/// does: metadata only, the generation does not move.
async fn annotate<K>(api: &Api<K>, name: &str, key: &str, value: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
    )
    .await
    .expect("annotate");
}

/// A label change: another reconcile, with the request already handled.
async fn poke<K>(api: &Api<K>, name: &str, value: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"poke": value}}})),
    )
    .await
    .expect("label");
}

/// A Secret holding `key: value`, labelled so the operator may read it by reference.
async fn labelled_secret(ctx: &Context, name: &str, key: &str, value: &str) {
    let secrets: Api<Secret> = ctx.api();
    let secret = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"accountlinker.dev/external-id": "true"}},
        "stringData": {key: value},
    }))
    .expect("secret");
    secrets
        .create(&Default::default(), &secret)
        .await
        .expect("create secret");
}

fn last_verified(link: &LinkedAccount) -> Option<k8s_openapi::jiff::Timestamp> {
    link.status
        .as_ref()?
        .last_verified_time
        .as_ref()
        .map(|t| t.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verify_request_verifies_a_linked_account_now_and_once() {
    let _turn = TURN.lock().await;
    let ctx = Context::new("req-verify").await;
    let budget = ctx.budget().await;
    let account = ctx.aws.member_account("req").await;
    ctx.aws
        .put_role(&account, "request-external-id-1", HUB_ACCOUNT)
        .await;
    labelled_secret(&ctx, "xid", "externalId", "request-external-id-1").await;
    let _op = ctx.operator(&["--leader-elect=false"]);
    let links = ctx.api::<LinkedAccount>();
    // A day between scheduled verifications: any verification below is the request's.
    create(
        &links,
        "l",
        json!({
            "accountId": account,
            "externalId": {"secretRef": {"name": "xid", "key": "externalId"}},
            "verifyInterval": "24h",
        }),
    )
    .await;
    let ready = wait_ready(&links, "l", budget.react()).await;
    let first = last_verified(&ready).expect("verified");
    // Settle: the status write of the first verification reconciles once more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = ctx.emulator.count("sts:AssumeRole").await;

    annotate(&links, "l", VERIFY_REQUESTED_AT, "1700000000").await;
    let link = wait_for(&links, "l", "the request handled", budget.react(), |l| {
        l.status
            .as_ref()
            .and_then(|s| s.last_handled_verify_request.as_deref())
            == Some("1700000000")
    })
    .await;
    let second = last_verified(&link).expect("verified");
    assert!(second > first, "verified again: {first} then {second}");
    assert_eq!(ctx.emulator.count("sts:AssumeRole").await, before + 1);

    // More reconciles with the same value verify no more.
    for i in 0..3 {
        poke(&links, "l", &i.to_string()).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ctx.emulator.count("sts:AssumeRole").await,
        before + 1,
        "the same request value verified twice"
    );
    assert_eq!(last_verified(&links.get("l").await.unwrap()), Some(second));

    // A new value verifies again.
    annotate(&links, "l", VERIFY_REQUESTED_AT, "1700000060").await;
    wait_for(
        &links,
        "l",
        "the second request handled",
        budget.react(),
        |l| {
            l.status
                .as_ref()
                .and_then(|s| s.last_handled_verify_request.as_deref())
                == Some("1700000060")
        },
    )
    .await;
    assert_eq!(ctx.emulator.count("sts:AssumeRole").await, before + 2);
    ctx.cleanup().await;
}

fn service_managed(targets: Value, external_id: Value) -> Value {
    json!({
        "stackSet": {"permissionModel": "ServiceManaged", "name": unique("ss")},
        "template": {"builtin": {}},
        "targets": targets,
        "regions": ["us-east-1"],
        "externalId": external_id,
    })
}

/// Waits until the registration is Ready with no operation in flight: the write that records
/// an operation before starting it still carries the conditions of the pass before, so Ready
/// alone may be seen while the operation is only about to start.
async fn settled(bulks: &Api<BulkRegistration>, name: &str, timeout: Duration) -> BulkRegistration {
    wait_for(bulks, name, "Ready, no operation in flight", timeout, |b| {
        support::has(b, "Ready", "True", None)
            && b.status.as_ref().is_some_and(|s| s.operation.is_none())
    })
    .await
}

fn handled_rotation(b: &BulkRegistration) -> Option<&str> {
    b.status.as_ref()?.last_handled_rotate_request.as_deref()
}

fn token_secret(b: &BulkRegistration) -> String {
    b.status
        .as_ref()
        .and_then(|s| s.external_id_secret.clone())
        .expect("token Secret")
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_on_a_registration_read_targets_now_and_rotate_the_token_once() {
    let _turn = TURN.lock().await;
    let ctx = Context::new("req-bulk").await;
    ctx.prepare_stack_sets(json!({"base_seconds": 0.5, "seconds_per_wave": 0.2}))
        .await;
    let budget = ctx.budget().await;
    // An hour between resyncs: what happens below happens because it was asked for.
    let _op = ctx.operator(&[
        "--leader-elect=false",
        "--stackset-poll-interval",
        "500ms",
        "--bulk-resync-interval",
        "1h",
        "--sts-requests-per-second",
        "100",
    ]);
    let ou = ctx.aws.create_ou(&unique("ou"), None).await;
    let accounts = ctx.aws.create_accounts(&unique("acct"), 1, Some(&ou)).await;
    let bulks = ctx.api::<BulkRegistration>();
    let spec = service_managed(
        json!({"organizationalUnitIds": [ou]}),
        json!({"rotateEvery": "720h"}),
    );
    let stack_set = spec["stackSet"]["name"].as_str().unwrap().to_string();
    create(&bulks, "b", spec).await;
    let timeout = budget.registration_ready(2, 10, 3);
    let ready = settled(&bulks, "b", timeout).await;
    let old_secret = token_secret(&ready);
    let ops = ctx.emulator.operations(&stack_set).await.len();

    // An account joins the OU: nothing notices before the hour is up, unless asked.
    ctx.aws.create_accounts(&unique("acct"), 1, Some(&ou)).await;
    annotate(&bulks, "b", VERIFY_REQUESTED_AT, "1").await;
    let bulk = wait_for(&bulks, "b", "both accounts targeted", timeout, |b| {
        b.status.as_ref().is_some_and(|s| {
            s.last_handled_verify_request.as_deref() == Some("1")
                && s.summary.as_ref().is_some_and(|m| m.targets == 2)
        })
    })
    .await;
    assert_eq!(accounts.len(), 1);
    let bulk = settled(&bulks, &bulk.metadata.name.clone().unwrap(), timeout).await;
    assert!(
        ctx.emulator.operations(&stack_set).await.len() > ops,
        "the new account was deployed"
    );
    // Updates only: instance operations (the joined account) may be counted at any time.
    let updates = async || {
        let ops = ctx.emulator.operations(&stack_set).await;
        ops.iter().filter(|o| o["action"] == "UPDATE").count()
    };
    let updates_before_rotation = updates().await;
    assert_eq!(token_secret(&bulk), old_secret);

    // Rotate now.
    annotate(&bulks, "b", ROTATE_REQUESTED_AT, "100").await;
    let rotated = wait_for(&bulks, "b", "the rotation handled", timeout, |b| {
        handled_rotation(b) == Some("100")
    })
    .await;
    let new_secret = token_secret(&rotated);
    assert_ne!(new_secret, old_secret);
    wait_for(&bulks, "b", "the rotation finished", timeout, |b| {
        b.status.as_ref().is_some_and(|s| {
            s.external_id_rotation.is_none()
                && s.external_id_retired_secrets.is_empty()
                && s.operation.is_none()
        })
    })
    .await;
    settled(&bulks, "b", timeout).await;
    // One new Secret, and the rotation's two UpdateStackSets (add the new token
    // next to the old, then drop the old once every child verified with the new one).
    let updates_after_rotation = updates().await;
    assert_eq!(
        updates_after_rotation,
        updates_before_rotation + 2,
        "two updates for the new token: {:?}",
        ctx.emulator.operations(&stack_set).await
    );
    // The same value again, through more passes: no second rotation.
    for i in 0..3 {
        poke(&bulks, "b", &i.to_string()).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let bulk = settled(&bulks, "b", timeout).await;
    assert_eq!(token_secret(&bulk), new_secret, "rotated twice");
    assert_eq!(updates().await, updates_after_rotation, "rotated twice");

    // A token from a Secret of the user's cannot be rotated by the operator: it says so.
    labelled_secret(&ctx, "tok", "token", "users-own-registration-token").await;
    let spec = service_managed(
        json!({"accounts": [accounts[0]]}),
        json!({"secretRef": {"name": "tok", "key": "token"}}),
    );
    create(&bulks, "referenced", spec).await;
    annotate(&bulks, "referenced", ROTATE_REQUESTED_AT, "7").await;
    wait_for(&bulks, "referenced", "the request recorded", timeout, |b| {
        handled_rotation(b) == Some("7")
    })
    .await;
    eventually(budget.react(), "a RotateNotPossible Event", || async {
        ctx.event_reasons("referenced")
            .await
            .iter()
            .any(|r| r == "RotateNotPossible")
            .then_some(())
    })
    .await;
    ctx.cleanup().await;
}
