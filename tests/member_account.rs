//! The MemberAccount controller end to end: the real operator binary against a real API server
//! and the strict emulator, where CreateAccount is asynchronous (requests stay IN_PROGRESS for a
//! while), e-mails are unique, failure reasons and held responses can be injected, and
//! CloseAccount has a quota. CreateAccount calls are counted by e-mail.

mod support;

use std::collections::BTreeMap;

use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, RwLock};

use account_linker::api::{LinkedAccount, MemberAccount};
use support::{
    Context, Running, Share, Share::Exclusive, Share::Shared, condition, create, eventually, gone,
    message, unique,
};

static SETUP: OnceCell<()> = OnceCell::const_new();
/// Throttling is emulator-wide: the test that turns it on runs alone.
static THROTTLE: RwLock<()> = RwLock::const_new(());

/// The tag CreateAccount puts on every account, naming its MemberAccount.
const OWNER_TAG: &str = "accountlinker.dev/member-account";
/// The tag CreateAccount puts on every account, naming the cluster (by default the UID of
/// `kube-system`).
const CLUSTER_TAG: &str = "accountlinker.dev/cluster-id";

const FLAGS: &[&str] = &[
    "--account-poll-interval",
    "500ms",
    "--leader-elect=false",
    "--access-denied-grace",
    "30s",
];

/// A test's operator; [`Share::Exclusive`] for a test that changes emulator-wide settings.
async fn fixture(prefix: &str, share: Share) -> Running {
    // The organization, and CreateAccount requests that stay IN_PROGRESS for a second.
    let setup = async |ctx: &Context| {
        ctx.aws.ensure_org().await;
        ctx.emulator
            .put("/organizations", json!({"create_seconds": 1}))
            .await;
    };
    Running::start(prefix, FLAGS, (&THROTTLE, share), (&SETUP, setup)).await
}

/// What the tests of this file do with their operator.
impl Running {
    fn members(&self) -> Api<MemberAccount> {
        self.api()
    }

    async fn new_ou(&self) -> String {
        self.aws.create_ou(&unique("macct-ou"), None).await
    }

    /// Creates a MemberAccount named `name` with a unique e-mail; returns the e-mail.
    async fn create(&self, name: &str, spec: Value) -> String {
        let email = format!("{}@example.com", unique(name));
        let mut spec = spec;
        spec["email"] = json!(email);
        if spec.get("accountName").is_none() {
            spec["accountName"] = json!(name);
        }
        create(&self.members(), name, spec).await;
        email
    }

    async fn wait_reason(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> MemberAccount {
        support::wait_condition(
            &self.members(),
            name,
            type_,
            status,
            Some(reason),
            self.budget.member_ready(),
        )
        .await
    }

    async fn wait_ready(&self, name: &str) -> MemberAccount {
        support::wait_ready(&self.members(), name, self.budget.member_ready()).await
    }

    async fn tags(&self, account: &str) -> BTreeMap<String, String> {
        self.aws.describe_account(account).await.tags
    }
}

fn tags<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_account_is_created_once_in_its_ou_tagged_linked_and_kubectl_wait_works() {
    let f = fixture("macct-create", Shared).await;
    let ou = f.new_ou().await;
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
        &format!("--timeout={}s", f.budget.member_ready().as_secs()),
        "macct/sandbox",
    ]);
    let wait = support::run(kubectl, None);
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
    assert_eq!(
        f.emulator.create_calls(&email).await,
        1,
        "one CreateAccount call"
    );

    // In AWS: under the OU (moved there from the root), tagged, and naming its MemberAccount
    // and this cluster.
    let owner = format!("{}/sandbox", f.ns.name);
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(f.client.clone());
    let kube_system = namespaces.get("kube-system").await.expect("kube-system");
    let cluster = kube_system.metadata.uid.expect("uid");
    let described = f.aws.describe_account(&account).await;
    assert_eq!(described.parent_id, ou);
    assert_eq!(
        described.tags,
        tags([
            ("team", "platform"),
            ("cost-center", "42"),
            (OWNER_TAG, &owner),
            (CLUSTER_TAG, &cluster),
        ])
    );

    // The child link verified the access role.
    let child = f
        .api::<LinkedAccount>()
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
    let wanted = tags([
        ("team", "payments"),
        ("env", "dev"),
        (OWNER_TAG, &owner),
        (CLUSTER_TAG, &cluster),
    ]);
    eventually(f.budget.react(), "tags in sync", || async {
        (f.tags(&account).await == wanted).then_some(())
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
    assert!(message(&m, "AccountCreated").contains("\"renamed\""));
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
    gone(&f.members(), "sandbox", f.budget.react()).await;
    assert_eq!(f.aws.describe_account(&account).await.status, "ACTIVE");
    let reasons = f.event_reasons("sandbox").await;
    assert!(reasons.iter().any(|r| r == "Retained"), "{reasons:?}");
    assert_eq!(f.emulator.create_calls(&email).await, 1);
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_create_account_and_the_status_write_still_makes_one_account() {
    let mut f = fixture("macct-crash", Shared).await;
    let ou = f.new_ou().await;
    // The emulator creates the account, then holds the answer for 20 s: the operator dies
    // after its call took effect and before it could record the request.
    let name = "crashy";
    let email = format!("{}@example.com", unique(name));
    f.emulator
        .put(
            "/organizations",
            json!({"hold_seconds": {email.clone(): 20}}),
        )
        .await;
    create(
        &f.members(),
        name,
        json!({"accountName": name, "email": email, "parentId": ou, "link": {"enabled": false}}),
    )
    .await;
    eventually(f.budget.react(), "the CreateAccount call made", || async {
        (f.emulator.create_calls(&email).await == 1).then_some(())
    })
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
    f.emulator
        .put(
            "/organizations",
            json!({"hold_seconds": {email.clone(): null}}),
        )
        .await;

    f.operator = f.ctx.operator(FLAGS);
    let m = f.wait_ready(name).await;
    assert_eq!(
        f.emulator.create_calls(&email).await,
        1,
        "never called CreateAccount again"
    );
    let found = f.aws.account_by_email(&email).await;
    assert_eq!(
        m.status.as_ref().and_then(|s| s.account_id.clone()),
        found,
        "the one account with that e-mail was adopted"
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_account_failure_reasons_are_conditions_and_transient_ones_are_retried() {
    let f = fixture("macct-fail", Shared).await;
    let ou = f.new_ou().await;
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
    f.emulator
        .put("/organizations", json!({"failures": failures}))
        .await;
    for (name, email) in &emails {
        create(
            &f.members(),
            name,
            json!({"accountName": name, "email": email, "parentId": ou, "link": {"enabled": false}}),
        )
        .await;
    }
    for (name, reason, code) in [
        ("taken", "EmailAlreadyExists", "EMAIL_ALREADY_EXISTS"),
        ("limited", "AccountLimitExceeded", "ACCOUNT_LIMIT_EXCEEDED"),
    ] {
        let m = f.wait_reason(name, "Stalled", "True", reason).await;
        assert!(message(&m, "Ready").contains(code));
        assert_eq!(condition(&m, "AccountCreated"), Some(("False", reason)));
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
    f.emulator
        .put("/organizations", json!({"failures": {busy.clone(): null}}))
        .await;
    f.wait_ready("busy").await;
    assert_eq!(f.emulator.create_calls(busy).await, 2, "one retry");
    // The stalled ones are not retried in a loop.
    assert_eq!(f.emulator.create_calls(&emails[0].1).await, 1);
    assert_eq!(f.emulator.create_calls(&emails[1].1).await, 1);
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_with_the_e_mail_is_not_taken_over_until_tagged_for_this_object() {
    let f = fixture("macct-foreign", Shared).await;
    let ou = f.new_ou().await;
    // Someone made an account with this e-mail outside the operator.
    let email = format!("{}@example.com", unique("foreign"));
    let existing = f.aws.create_account("foreign", &email).await;
    let calls = f.emulator.create_calls(&email).await;
    create(
        &f.members(),
        "foreign",
        json!({"accountName": "foreign", "email": email, "parentId": ou, "link": {"enabled": false}}),
    )
    .await;

    // Not adopted, not created again: Stalled, naming the account and how to adopt it.
    let owner = format!("{}/foreign", f.ns.name);
    let m = f
        .wait_reason("foreign", "Stalled", "True", "EmailAlreadyExists")
        .await;
    let text = message(&m, "Ready");
    assert!(text.contains(&existing), "{text}");
    assert!(text.contains(&format!("{OWNER_TAG}={owner}")), "{text}");
    assert!(
        m.status
            .as_ref()
            .and_then(|s| s.account_id.as_ref())
            .is_none()
    );
    let root = f.aws.root().await;
    assert_eq!(
        f.aws.describe_account(&existing).await.parent_id,
        root,
        "not moved"
    );
    assert_eq!(
        f.emulator.create_calls(&email).await,
        calls,
        "no CreateAccount call"
    );

    // Deleting a MemberAccount with that e-mail and `Close` never closes the foreign account.
    create(
        &f.members(),
        "closer",
        json!({"accountName": "closer", "email": email, "parentId": ou,
               "deletionPolicy": "Close", "link": {"enabled": false}}),
    )
    .await;
    f.wait_reason("closer", "Stalled", "True", "EmailAlreadyExists")
        .await;
    f.members()
        .delete("closer", &DeleteParams::default())
        .await
        .expect("delete closer");
    gone(&f.members(), "closer", f.budget.react()).await;
    assert_eq!(f.aws.describe_account(&existing).await.status, "ACTIVE");
    let reasons = f.event_reasons("closer").await;
    assert!(reasons.iter().any(|r| r == "NothingToClose"), "{reasons:?}");

    // Tagging the account for this object adopts it (the change to the object looks at once).
    f.aws.tag_account(&existing, OWNER_TAG, &owner).await;
    f.members()
        .patch(
            "foreign",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/poke": "1"}}})),
        )
        .await
        .expect("annotate");
    let m = f.wait_ready("foreign").await;
    assert_eq!(
        m.status.as_ref().and_then(|s| s.account_id.as_deref()),
        Some(existing.as_str())
    );
    assert_eq!(f.aws.describe_account(&existing).await.parent_id, ou);
    assert_eq!(
        f.emulator.create_calls(&email).await,
        calls,
        "still no CreateAccount call"
    );
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_create_account_backs_off_then_succeeds() {
    let f = fixture("macct-throttle", Exclusive).await;
    let ou = f.new_ou().await;
    let before = f.emulator.throttled("organizations:CreateAccount").await;
    f.emulator
        .put(
            "/throttle",
            json!({"organizations:CreateAccount": {"rate": 0.2, "burst": 1}}),
        )
        .await;
    let mut emails = Vec::new();
    for name in ["first", "second", "third"] {
        emails.push(
            f.create(name, json!({"parentId": ou, "link": {"enabled": false}}))
                .await,
        );
    }
    for name in ["first", "second", "third"] {
        f.wait_ready(name).await;
    }
    f.emulator.delete("/throttle").await;
    let after = f.emulator.throttled("organizations:CreateAccount").await;
    assert!(after > before, "some calls were throttled");
    for email in &emails {
        assert_eq!(
            f.emulator.create_calls(email).await,
            1,
            "{email}: one account"
        );
    }
    let reasons: Vec<String> = [
        f.event_reasons("second").await,
        f.event_reasons("third").await,
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
    let f = fixture("macct-close", Shared).await;
    let ou = f.new_ou().await;
    f.create(
        "leaving",
        json!({"parentId": ou, "deletionPolicy": "Close", "link": {"enabled": false}}),
    )
    .await;
    let m = f.wait_ready("leaving").await;
    let account = m.status.and_then(|s| s.account_id).expect("account");

    // The quota is spent: deletion stops with a condition, the account stays.
    let closed = f.emulator.get("/organizations").await["closed"].clone();
    f.emulator
        .put("/organizations", json!({"close_quota": closed}))
        .await;
    f.members()
        .delete("leaving", &DeleteParams::default())
        .await
        .expect("delete");
    let m = f
        .wait_reason("leaving", "Stalled", "True", "CloseAccountQuotaExceeded")
        .await;
    assert!(message(&m, "Ready").contains("CLOSE_ACCOUNT_QUOTA_EXCEEDED"));
    assert_eq!(f.aws.describe_account(&account).await.status, "ACTIVE");

    // Quota back: the next look (any change to the object) closes it and lets it go.
    f.emulator
        .put("/organizations", json!({"close_quota": null}))
        .await;
    f.members()
        .patch(
            "leaving",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/retry": "1"}}})),
        )
        .await
        .expect("annotate");
    gone(&f.members(), "leaving", f.budget.react()).await;
    assert_eq!(
        f.aws.describe_account(&account).await.status,
        "PENDING_CLOSURE"
    );
    let reasons = f.event_reasons("leaving").await;
    assert!(reasons.iter().any(|r| r == "Closing"), "{reasons:?}");
    f.cleanup().await;
}
