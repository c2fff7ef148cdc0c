//! The MemberAccount controller end to end: the real operator binary against a real API server
//! and the strict emulator, where CreateAccount is asynchronous (requests stay IN_PROGRESS for a
//! while), e-mails are unique, failure reasons and held responses can be injected, and
//! CloseAccount has a quota. CreateAccount calls are counted by e-mail.

mod support;

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use account_linker::api::{LinkedAccount, MemberAccount};
use support::{Operator, TestEnv, TestNamespace, aws_admin, emulator, eventually, gone};

static SETUP: Once = Once::new();
static SEQ: AtomicU32 = AtomicU32::new(0);
/// Throttling is emulator-wide: the test that turns it on runs alone.
static THROTTLE: RwLock<()> = RwLock::const_new(());

/// The tag CreateAccount puts on every account, naming its MemberAccount.
const OWNER_TAG: &str = "accountlinker.dev/member-account";

const FLAGS: &[&str] = &[
    "--account-poll-interval",
    "500ms",
    "--leader-elect=false",
    "--access-denied-grace",
    "30s",
];

/// The organization, and CreateAccount requests that stay IN_PROGRESS for a second.
fn setup(env: &TestEnv) {
    SETUP.call_once(|| {
        aws_admin(env, &["ensure-org"]);
        emulator(
            env,
            "PUT",
            "/organizations",
            Some(json!({"create_seconds": 1})),
        );
    });
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn create_calls(env: &TestEnv, email: &str) -> u64 {
    emulator(env, "GET", "/organizations", None)["create_calls"][email.to_lowercase()]
        .as_u64()
        .unwrap_or(0)
}

struct Fixture {
    env: TestEnv,
    client: Client,
    ns: TestNamespace,
    operator: Operator,
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _exclusive: Option<RwLockWriteGuard<'static, ()>>,
}

impl Fixture {
    async fn new(prefix: &str) -> Self {
        let guard = THROTTLE.read().await;
        Self::start(prefix, Some(guard), None).await
    }

    async fn exclusive(prefix: &str) -> Self {
        let guard = THROTTLE.write().await;
        Self::start(prefix, None, Some(guard)).await
    }

    async fn start(
        prefix: &str,
        shared: Option<RwLockReadGuard<'static, ()>>,
        exclusive: Option<RwLockWriteGuard<'static, ()>>,
    ) -> Self {
        let env = support::env();
        setup(&env);
        let client = env.client().await;
        let ns = TestNamespace::create(&client, prefix).await;
        let operator = Operator::start(&env, &ns.name, FLAGS);
        Self {
            env,
            client,
            ns,
            operator,
            _shared: shared,
            _exclusive: exclusive,
        }
    }

    fn members(&self) -> Api<MemberAccount> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// Creates a MemberAccount named `name` with a unique e-mail; returns the e-mail.
    async fn create(&self, name: &str, spec: Value) -> String {
        let email = format!("{}@example.com", unique(name));
        let mut spec = spec;
        spec["email"] = json!(email);
        if spec.get("accountName").is_none() {
            spec["accountName"] = json!(name);
        }
        let member: MemberAccount = serde_json::from_value(json!({
            "apiVersion": "accountlinker.dev/v1alpha1", "kind": "MemberAccount",
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("valid MemberAccount");
        self.members()
            .create(&PostParams::default(), &member)
            .await
            .expect("create MemberAccount");
        email
    }

    async fn wait(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&MemberAccount) -> bool,
    ) -> MemberAccount {
        let api = self.members();
        let check = &check;
        eventually(timeout, &format!("{name}: {what}"), || {
            let api = api.clone();
            async move {
                let m = api.get_opt(name).await.ok()??;
                check(&m).then_some(m)
            }
        })
        .await
    }

    async fn wait_reason(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> MemberAccount {
        self.wait(
            name,
            &format!("{type_}={status} {reason}"),
            Duration::from_secs(90),
            |m| condition(m, type_).is_some_and(|c| c.0 == status && c.1 == reason),
        )
        .await
    }

    async fn cleanup(self) {
        let Self {
            ns, mut operator, ..
        } = self;
        operator.terminate(Duration::from_secs(10));
        ns.cleanup().await;
    }
}

fn condition<'a>(m: &'a MemberAccount, type_: &str) -> Option<(&'a str, &'a str, &'a str)> {
    m.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

fn new_ou(env: &TestEnv) -> String {
    aws_admin(env, &["create-ou", "--name", &unique("macct-ou")])["ouId"]
        .as_str()
        .expect("ou id")
        .to_string()
}

fn describe(env: &TestEnv, account: &str) -> Value {
    aws_admin(env, &["describe-account", "--account", account])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_account_is_created_once_in_its_ou_tagged_linked_and_kubectl_wait_works() {
    let f = Fixture::new("macct-create").await;
    let ou = new_ou(&f.env);
    let email = f
        .create(
            "sandbox",
            json!({"parentId": ou, "tags": {"team": "platform", "cost-center": "42"}}),
        )
        .await;

    // Reconciling while the request is in progress, then Ready: kubectl wait agrees.
    let mut kubectl = f.env.kubectl();
    kubectl.args([
        "wait",
        "-n",
        &f.ns.name,
        "--for=condition=Ready",
        "--timeout=120s",
        "macct/sandbox",
    ]);
    let wait = kubectl.output().expect("kubectl wait");
    assert!(
        wait.status.success(),
        "kubectl wait: {}\n{}",
        String::from_utf8_lossy(&wait.stderr),
        f.operator.log()
    );
    let member = f.members().get("sandbox").await.expect("get");
    let status = member.status.clone().expect("status");
    let account = status.account_id.clone().expect("accountId");
    assert!(status.create_account_request_id.is_some());
    assert_eq!(status.create_account_state.as_deref(), Some("SUCCEEDED"));
    assert_eq!(status.parent_id.as_deref(), Some(ou.as_str()));
    assert_eq!(status.account_status.as_deref(), Some("ACTIVE"));
    assert_eq!(create_calls(&f.env, &email), 1, "one CreateAccount call");

    // In AWS: under the OU (moved there from the root), tagged, and naming its MemberAccount.
    let owner = format!("{}/sandbox", f.ns.name);
    let described = describe(&f.env, &account);
    assert_eq!(described["parentId"], json!(ou));
    assert_eq!(
        described["tags"],
        json!({"team": "platform", "cost-center": "42", OWNER_TAG: owner})
    );

    // The child link verified the access role.
    let child = Api::<LinkedAccount>::namespaced(f.client.clone(), &f.ns.name)
        .get("sandbox")
        .await
        .expect("child LinkedAccount");
    assert_eq!(child.spec.account_id, account);
    assert_eq!(
        child.spec.role_name.as_deref(),
        Some("OrganizationAccountAccessRole")
    );
    assert_eq!(status.linked_account.as_deref(), Some("sandbox"));

    // Tags follow the spec: changed, added and removed.
    f.members()
        .patch(
            "sandbox",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"tags": {"team": "payments", "cost-center": null, "env": "dev"}}}),
            ),
        )
        .await
        .expect("patch tags");
    eventually(Duration::from_secs(60), "tags in sync", || async {
        (describe(&f.env, &account)["tags"]
            == json!({"team": "payments", "env": "dev", OWNER_TAG: owner}))
        .then_some(())
    })
    .await;

    // A new name is reported as not applied, not silently dropped; the account stays Ready.
    f.members()
        .patch(
            "sandbox",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"accountName": "renamed"}})),
        )
        .await
        .expect("patch name");
    let m = f
        .wait_reason("sandbox", "AccountCreated", "True", "AccountNameNotApplied")
        .await;
    assert!(
        condition(&m, "AccountCreated")
            .unwrap()
            .2
            .contains("\"renamed\"")
    );
    assert_eq!(condition(&m, "Ready").map(|c| c.0), Some("True"));

    // The e-mail is immutable at admission.
    let refused = f
        .members()
        .patch(
            "sandbox",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"email": "other@example.com"}})),
        )
        .await
        .expect_err("email change refused");
    assert!(
        refused.to_string().contains("email is immutable"),
        "{refused}"
    );

    // Retain (the default): the object goes, the account stays, an Event says so.
    f.members()
        .delete("sandbox", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&f.members(), "sandbox", Duration::from_secs(60)).await;
    assert_eq!(describe(&f.env, &account)["status"], "ACTIVE");
    let reasons = event_reasons(&f.client, &f.ns.name, "sandbox").await;
    assert!(reasons.iter().any(|r| r == "Retained"), "{reasons:?}");
    assert_eq!(create_calls(&f.env, &email), 1);
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_create_account_and_the_status_write_still_makes_one_account() {
    let f = Fixture::new("macct-crash").await;
    let mut f = f;
    let ou = new_ou(&f.env);
    // The emulator creates the account, then holds the answer for 20 s: the operator dies
    // after its call took effect and before it could record the request.
    let name = "crashy";
    let email_hint = unique(name);
    let email = format!("{email_hint}@example.com");
    emulator(
        &f.env,
        "PUT",
        "/organizations",
        Some(json!({"hold_seconds": {email.clone(): 20}})),
    );
    let member: MemberAccount = serde_json::from_value(json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "MemberAccount",
        "metadata": {"name": name},
        "spec": {"accountName": name, "email": email, "parentId": ou, "link": {"enabled": false}},
    }))
    .expect("valid");
    f.members()
        .create(&PostParams::default(), &member)
        .await
        .expect("create");
    eventually(
        Duration::from_secs(60),
        "the CreateAccount call made",
        || async { (create_calls(&f.env, &email) == 1).then_some(()) },
    )
    .await;
    f.operator.kill();
    let m = f.members().get(name).await.expect("get");
    assert!(
        m.status
            .as_ref()
            .and_then(|s| s.create_account_request_id.as_ref())
            .is_none(),
        "the request ID was not recorded before the crash"
    );
    emulator(
        &f.env,
        "PUT",
        "/organizations",
        Some(json!({"hold_seconds": {email.clone(): null}})),
    );

    f.operator = Operator::start(&f.env, &f.ns.name, FLAGS);
    let m = f
        .wait(
            name,
            "Ready after the restart",
            Duration::from_secs(90),
            |m| condition(m, "Ready").is_some_and(|c| c.0 == "True"),
        )
        .await;
    assert_eq!(
        create_calls(&f.env, &email),
        1,
        "never called CreateAccount again"
    );
    let found = aws_admin(&f.env, &["account-by-email", "--email", &email]);
    assert_eq!(
        m.status.as_ref().and_then(|s| s.account_id.clone()),
        found["accountId"].as_str().map(str::to_string),
        "the one account with that e-mail was adopted"
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_account_failure_reasons_are_conditions_and_transient_ones_are_retried() {
    let f = Fixture::new("macct-fail").await;
    let ou = new_ou(&f.env);
    let mut failures = serde_json::Map::new();
    let mut emails = Vec::new();
    for (name, reason) in [
        ("taken", "EMAIL_ALREADY_EXISTS"),
        ("limited", "ACCOUNT_LIMIT_EXCEEDED"),
        ("busy", "CONCURRENT_ACCOUNT_MODIFICATION"),
    ] {
        let email = format!("{}@example.com", unique(name));
        failures.insert(email.clone(), json!(reason));
        emails.push((name, email));
    }
    emulator(
        &f.env,
        "PUT",
        "/organizations",
        Some(json!({"failures": failures})),
    );
    for (name, email) in &emails {
        let member: MemberAccount = serde_json::from_value(json!({
            "apiVersion": "accountlinker.dev/v1alpha1", "kind": "MemberAccount",
            "metadata": {"name": name},
            "spec": {"accountName": name, "email": email, "parentId": ou, "link": {"enabled": false}},
        }))
        .expect("valid");
        f.members()
            .create(&PostParams::default(), &member)
            .await
            .expect("create");
    }
    for (name, reason, code) in [
        ("taken", "EmailAlreadyExists", "EMAIL_ALREADY_EXISTS"),
        ("limited", "AccountLimitExceeded", "ACCOUNT_LIMIT_EXCEEDED"),
    ] {
        let m = f.wait_reason(name, "Stalled", "True", reason).await;
        assert!(condition(&m, "Ready").unwrap().2.contains(code));
        assert_eq!(
            condition(&m, "AccountCreated").map(|c| (c.0, c.1)),
            Some(("False", reason))
        );
    }
    // Transient: Reconciling with the reason, then a new request once the cause is gone.
    let busy = &emails[2].1;
    let m = f
        .wait_reason(
            "busy",
            "Reconciling",
            "True",
            "ConcurrentAccountModification",
        )
        .await;
    assert_eq!(condition(&m, "Stalled").map(|c| c.0), Some("False"));
    emulator(
        &f.env,
        "PUT",
        "/organizations",
        Some(json!({"failures": {busy.clone(): null}})),
    );
    f.wait(
        "busy",
        "Ready after a new request",
        Duration::from_secs(120),
        |m| condition(m, "Ready").is_some_and(|c| c.0 == "True"),
    )
    .await;
    assert_eq!(create_calls(&f.env, busy), 2, "one retry");
    // The stalled ones are not retried in a loop.
    assert_eq!(create_calls(&f.env, &emails[0].1), 1);
    assert_eq!(create_calls(&f.env, &emails[1].1), 1);
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_with_the_e_mail_is_not_taken_over_until_tagged_for_this_object() {
    let f = Fixture::new("macct-foreign").await;
    let ou = new_ou(&f.env);
    // Someone made an account with this e-mail outside the operator.
    let email = format!("{}@example.com", unique("foreign"));
    let existing = aws_admin(
        &f.env,
        &["create-account", "--name", "foreign", "--email", &email],
    )["accountId"]
        .as_str()
        .expect("account id")
        .to_string();
    let calls = create_calls(&f.env, &email);
    let member: MemberAccount = serde_json::from_value(json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "MemberAccount",
        "metadata": {"name": "foreign"},
        "spec": {"accountName": "foreign", "email": email, "parentId": ou, "link": {"enabled": false}},
    }))
    .expect("valid");
    f.members()
        .create(&PostParams::default(), &member)
        .await
        .expect("create");

    // Not adopted, not created again: Stalled, naming the account and how to adopt it.
    let owner = format!("{}/foreign", f.ns.name);
    let m = f
        .wait_reason("foreign", "Stalled", "True", "EmailAlreadyExists")
        .await;
    let message = condition(&m, "Ready").unwrap().2;
    assert!(message.contains(&existing), "{message}");
    assert!(
        message.contains(&format!("{OWNER_TAG}={owner}")),
        "{message}"
    );
    assert!(
        m.status
            .as_ref()
            .and_then(|s| s.account_id.as_ref())
            .is_none()
    );
    let root = aws_admin(&f.env, &["ensure-org"])["rootId"].clone();
    assert_eq!(describe(&f.env, &existing)["parentId"], root, "not moved");
    assert_eq!(create_calls(&f.env, &email), calls, "no CreateAccount call");

    // Deleting a MemberAccount with that e-mail and `Close` never closes the foreign account.
    let closer: MemberAccount = serde_json::from_value(json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "MemberAccount",
        "metadata": {"name": "closer"},
        "spec": {"accountName": "closer", "email": email, "parentId": ou,
                 "deletionPolicy": "Close", "link": {"enabled": false}},
    }))
    .expect("valid");
    f.members()
        .create(&PostParams::default(), &closer)
        .await
        .expect("create closer");
    f.wait_reason("closer", "Stalled", "True", "EmailAlreadyExists")
        .await;
    f.members()
        .delete("closer", &DeleteParams::default())
        .await
        .expect("delete closer");
    gone(&f.members(), "closer", Duration::from_secs(60)).await;
    assert_eq!(describe(&f.env, &existing)["status"], "ACTIVE");
    let reasons = event_reasons(&f.client, &f.ns.name, "closer").await;
    assert!(reasons.iter().any(|r| r == "NothingToClose"), "{reasons:?}");

    // Tagging the account for this object adopts it (the change to the object looks at once).
    aws_admin(
        &f.env,
        &[
            "tag-account",
            "--account",
            &existing,
            "--tag",
            &format!("{OWNER_TAG}={owner}"),
        ],
    );
    f.members()
        .patch(
            "foreign",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/poke": "1"}}})),
        )
        .await
        .expect("annotate");
    let m = f
        .wait(
            "foreign",
            "Ready with the tagged account",
            Duration::from_secs(90),
            |m| condition(m, "Ready").is_some_and(|c| c.0 == "True"),
        )
        .await;
    assert_eq!(
        m.status.as_ref().and_then(|s| s.account_id.as_deref()),
        Some(existing.as_str())
    );
    assert_eq!(describe(&f.env, &existing)["parentId"], json!(ou));
    assert_eq!(
        create_calls(&f.env, &email),
        calls,
        "still no CreateAccount call"
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_create_account_backs_off_then_succeeds() {
    let f = Fixture::exclusive("macct-throttle").await;
    let ou = new_ou(&f.env);
    let before = emulator(&f.env, "GET", "/requests", None)["outcomes"]["organizations:CreateAccount"]
        ["throttled"]
        .as_u64()
        .unwrap_or(0);
    emulator(
        &f.env,
        "PUT",
        "/throttle",
        Some(json!({"organizations:CreateAccount": {"rate": 0.2, "burst": 1}})),
    );
    let mut emails = Vec::new();
    for name in ["first", "second", "third"] {
        emails.push(
            f.create(name, json!({"parentId": ou, "link": {"enabled": false}}))
                .await,
        );
    }
    for name in ["first", "second", "third"] {
        f.wait(name, "Ready", Duration::from_secs(120), |m| {
            condition(m, "Ready").is_some_and(|c| c.0 == "True")
        })
        .await;
    }
    emulator(&f.env, "DELETE", "/throttle", None);
    let after = emulator(&f.env, "GET", "/requests", None)["outcomes"]["organizations:CreateAccount"]
        ["throttled"]
        .as_u64()
        .unwrap_or(0);
    assert!(after > before, "some calls were throttled");
    for email in &emails {
        assert_eq!(create_calls(&f.env, email), 1, "{email}: one account");
    }
    let reasons: Vec<String> = [
        event_reasons(&f.client, &f.ns.name, "second").await,
        event_reasons(&f.client, &f.ns.name, "third").await,
    ]
    .concat();
    assert!(
        reasons.iter().any(|r| r == "RateLimited"),
        "the wait was reported: {reasons:?}"
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn close_deletion_reports_the_quota_then_closes_the_account() {
    let f = Fixture::new("macct-close").await;
    let ou = new_ou(&f.env);
    f.create(
        "leaving",
        json!({"parentId": ou, "deletionPolicy": "Close", "link": {"enabled": false}}),
    )
    .await;
    let m = f
        .wait("leaving", "Ready", Duration::from_secs(90), |m| {
            condition(m, "Ready").is_some_and(|c| c.0 == "True")
        })
        .await;
    let account = m.status.and_then(|s| s.account_id).expect("account");

    // The quota is spent: deletion stops with a condition, the account stays.
    let closed = emulator(&f.env, "GET", "/organizations", None)["closed"].clone();
    emulator(
        &f.env,
        "PUT",
        "/organizations",
        Some(json!({"close_quota": closed})),
    );
    f.members()
        .delete("leaving", &DeleteParams::default())
        .await
        .expect("delete");
    let m = f
        .wait_reason("leaving", "Stalled", "True", "CloseAccountQuotaExceeded")
        .await;
    assert!(
        condition(&m, "Ready")
            .unwrap()
            .2
            .contains("CLOSE_ACCOUNT_QUOTA_EXCEEDED")
    );
    assert_eq!(describe(&f.env, &account)["status"], "ACTIVE");

    // Quota back: the next look (any change to the object) closes it and lets it go.
    emulator(
        &f.env,
        "PUT",
        "/organizations",
        Some(json!({"close_quota": null})),
    );
    f.members()
        .patch(
            "leaving",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/retry": "1"}}})),
        )
        .await
        .expect("annotate");
    gone(&f.members(), "leaving", Duration::from_secs(60)).await;
    assert_eq!(describe(&f.env, &account)["status"], "PENDING_CLOSURE");
    let reasons = event_reasons(&f.client, &f.ns.name, "leaving").await;
    assert!(reasons.iter().any(|r| r == "Closing"), "{reasons:?}");
    f.cleanup().await;
}

async fn event_reasons(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}
