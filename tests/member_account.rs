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

/// How long a closed account stays PENDING_CLOSURE in the emulator before it is SUSPENDED.
const SUSPEND_SECONDS: u64 = 3;

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
            .put(
                "/organizations",
                json!({"create_seconds": 1, "suspend_seconds": SUSPEND_SECONDS}),
            )
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
    // The object stays while the account is PENDING_CLOSURE (polled, not awaited), and goes
    // once it is SUSPENDED, with an Event saying so.
    let m = f
        .wait_reason("leaving", "Reconciling", "True", "Closing")
        .await;
    assert_eq!(
        m.status.as_ref().and_then(|s| s.account_status.as_deref()),
        Some("PENDING_CLOSURE")
    );
    assert!(message(&m, "Ready").contains("PENDING_CLOSURE"));
    let budget = f.budget.react() + std::time::Duration::from_secs(SUSPEND_SECONDS);
    gone(&f.members(), "leaving", budget).await;
    assert_eq!(f.aws.describe_account(&account).await.status, "SUSPENDED");
    let reasons = f.event_reasons("leaving").await;
    assert!(reasons.iter().any(|r| r == "Closing"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "Suspended"), "{reasons:?}");
    f.cleanup().await;
}

/// The emulator's request counts since the last reset, for one service (`organizations`, `sts`).
async fn calls(f: &Running, service: &str) -> BTreeMap<String, u64> {
    let counts = f.emulator.get("/requests").await["counts"].clone();
    serde_json::from_value::<BTreeMap<String, u64>>(counts)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, n)| *n > 0 && k.starts_with(&format!("{service}:")))
        .collect()
}

/// `kubectl get macct/<name> -o wide` and `kubectl describe macct/<name>`, printed for the docs.
fn show(f: &Running, name: &str) {
    for verb in ["get", "describe"] {
        let mut args = vec![verb, "-n", &f.ns.name, "macct"];
        args.push(name);
        let out = f.env.kubectl_ok(&args);
        println!("$ kubectl {verb} macct {name}\n{out}");
    }
}

/// Runs alone: it counts the emulator's requests for adoption and for Park.
#[tokio::test(flavor = "multi_thread")]
async fn an_existing_account_is_adopted_by_id_placed_tagged_linked_and_parked_on_deletion() {
    let f = fixture("macct-adopt", Exclusive).await;
    let ou = f.new_ou().await;
    let park = f.new_ou().await;
    let root = f.aws.root().await;
    // An account made outside the operator, years ago, with a tag of its own.
    let email = format!("{}@example.com", unique("legacy"));
    let existing = f.aws.create_account("legacy", &email).await;
    f.aws.tag_account(&existing, "team", "legacy").await;
    let created_before = f.emulator.create_calls(&email).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    f.emulator.reset_counts().await;

    create(
        &f.members(),
        "legacy",
        json!({"accountId": existing, "parentId": ou, "tags": {"env": "prod"},
               "deletionPolicy": "Park", "parkParentId": park}),
    )
    .await;
    let m = f.wait_ready("legacy").await;
    let adopt_calls = calls(&f, "organizations").await;
    println!("adoption, Organizations calls until Ready: {adopt_calls:?}");
    println!(
        "adoption, STS calls until Ready: {:?}",
        calls(&f, "sts").await
    );
    show(&f, "legacy");

    let status = m.status.clone().expect("status");
    assert_eq!(status.account_id.as_deref(), Some(existing.as_str()));
    assert_eq!(status.adopted, Some(true));
    assert_eq!(status.create_account_request_id, None);
    assert_eq!(status.parent_id.as_deref(), Some(ou.as_str()));
    assert_eq!(status.account_status.as_deref(), Some("ACTIVE"));
    assert_eq!(
        condition(&m, "AccountCreated"),
        Some(("True", "Adopted")),
        "{m:?}"
    );
    assert!(!adopt_calls.contains_key("organizations:CreateAccount"));
    assert_eq!(f.emulator.create_calls(&email).await, created_before);
    let reasons = f.event_reasons("legacy").await;
    for reason in ["Adopted", "Moved"] {
        assert!(reasons.iter().any(|r| r == reason), "{reasons:?}");
    }

    // In AWS: moved, tagged for this object and cluster, its own tag kept; linked.
    let owner = format!("{}/legacy", f.ns.name);
    let described = f.aws.describe_account(&existing).await;
    assert_eq!(described.parent_id, ou);
    assert_eq!(described.tags["team"], "legacy");
    assert_eq!(described.tags["env"], "prod");
    assert_eq!(described.tags[OWNER_TAG], owner);
    assert!(described.tags.contains_key(CLUSTER_TAG));
    let child = f
        .api::<LinkedAccount>()
        .get("legacy")
        .await
        .expect("child LinkedAccount");
    assert_eq!(child.spec.account_id, existing);
    assert_eq!(child.spec.display_name.as_deref(), Some("legacy"));
    assert_eq!(condition(&child, "Ready").map(|c| c.0), Some("True"));

    // accountId is immutable.
    let refused = f
        .members()
        .patch(
            "legacy",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"accountId": "000000000001"}})),
        )
        .await
        .expect_err("accountId change refused");
    assert!(
        refused.to_string().contains("accountId is immutable"),
        "{refused}"
    );

    // Park: moved to the park OU, owner tags removed, still ACTIVE; the object goes.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    f.emulator.reset_counts().await;
    f.members()
        .delete("legacy", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&f.members(), "legacy", f.budget.react()).await;
    let park_calls = calls(&f, "organizations").await;
    println!("park, Organizations calls until gone: {park_calls:?}");
    let described = f.aws.describe_account(&existing).await;
    assert_eq!(described.parent_id, park);
    assert_ne!(described.parent_id, root);
    assert_eq!(described.status, "ACTIVE");
    assert!(
        !described.tags.contains_key(OWNER_TAG),
        "{:?}",
        described.tags
    );
    assert!(
        !described.tags.contains_key(CLUSTER_TAG),
        "{:?}",
        described.tags
    );
    assert_eq!(described.tags["team"], "legacy");
    let reasons = f.event_reasons("legacy").await;
    assert!(reasons.iter().any(|r| r == "Parked"), "{reasons:?}");
    assert_eq!(park_calls.get("organizations:MoveAccount"), Some(&1));
    assert_eq!(park_calls.get("organizations:UntagResource"), Some(&1));
    assert!(!park_calls.contains_key("organizations:CloseAccount"));
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn adoption_is_refused_for_another_owner_s_account_and_the_management_account() {
    let f = fixture("macct-adopt-foreign", Shared).await;
    let ou = f.new_ou().await;
    let root = f.aws.root().await;
    let taken = f.aws.member_account("taken").await;
    f.aws
        .tag_account(&taken, OWNER_TAG, "other-team/prod")
        .await;
    f.aws
        .tag_account(&taken, CLUSTER_TAG, "another-cluster")
        .await;
    let before = f.tags(&taken).await;

    create(
        &f.members(),
        "grab",
        json!({"accountId": taken, "parentId": ou, "deletionPolicy": "Park", "parkParentId": ou}),
    )
    .await;
    let m = f
        .wait_reason("grab", "Stalled", "True", "AdoptionRefused")
        .await;
    let text = message(&m, "Ready");
    assert!(
        text.contains(&taken) && text.contains("other-team/prod"),
        "{text}"
    );
    assert_eq!(condition(&m, "AccountCreated").map(|c| c.0), Some("False"));
    assert!(
        m.status
            .as_ref()
            .and_then(|s| s.account_id.as_ref())
            .is_none()
    );
    let described = f.aws.describe_account(&taken).await;
    assert_eq!(described.parent_id, root, "not moved");
    assert_eq!(described.tags, before, "no tag changed");
    assert!(
        f.api::<LinkedAccount>()
            .get_opt("grab")
            .await
            .unwrap()
            .is_none()
    );

    // Deleting it with Park parks nothing: the account is not this object's.
    f.members()
        .delete("grab", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&f.members(), "grab", f.budget.react()).await;
    let described = f.aws.describe_account(&taken).await;
    assert_eq!(
        (described.parent_id, described.tags),
        (root.clone(), before)
    );

    // The management account is never adopted.
    let management = support::HUB_ACCOUNT;
    create(
        &f.members(),
        "management",
        json!({"accountId": management, "parentId": ou, "link": {"enabled": false}}),
    )
    .await;
    let m = f
        .wait_reason("management", "Stalled", "True", "AdoptionRefused")
        .await;
    assert!(message(&m, "Ready").contains("management account"), "{m:?}");
    assert!(!f.tags(management).await.contains_key(OWNER_TAG));
    f.cleanup().await;
}

/// Runs alone: it counts the emulator's requests while the gate refuses.
#[tokio::test(flavor = "multi_thread")]
async fn adoption_needs_a_policy_right_and_is_refused_without_any_aws_call() {
    let f = fixture("macct-adopt-policy", Exclusive).await;
    let ou = f.new_ou().await;
    let root = f.aws.root().await;
    let account = f.aws.member_account("unadoptable").await;
    let other = f.aws.member_account("unadoptable-other").await;
    // The namespace may create accounts under the OU and link `other`, but not adopt.
    let ns = f.ns.name.clone();
    let spec = |adoption: bool| {
        json!({
            "namespaces": [ns],
            "accounts": {"ids": [other]},
            "roleNames": ["*"],
            "memberAccounts": {"parentIds": [ou], "emailDomains": ["example.com"],
                               "adoption": adoption},
        })
    };
    support::apply_policy(&f.client, &ns, spec(false)).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    f.emulator.reset_counts().await;

    create(
        &f.members(),
        "no-right",
        json!({"accountId": other, "parentId": ou, "link": {"enabled": false}}),
    )
    .await;
    let m = f
        .wait_reason("no-right", "Stalled", "True", "NotPermitted")
        .await;
    assert!(
        message(&m, "Ready").contains(&format!(
            "spec.accountId={other} (adoption) is not permitted: LinkPolicy {ns} does not allow adoption"
        )),
        "{m:?}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let seen = calls(&f, "organizations").await;
    assert!(
        seen.is_empty(),
        "a refused adoption called Organizations: {seen:?}"
    );
    // Gone before the policy changes (a permitted object would adopt at once).
    f.members()
        .delete("no-right", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&f.members(), "no-right", f.budget.react()).await;

    // The right, but an account outside `accounts`.
    support::apply_policy(&f.client, &ns, spec(true)).await;
    create(
        &f.members(),
        "out-of-scope",
        json!({"accountId": account, "parentId": ou, "link": {"enabled": false}}),
    )
    .await;
    let m = f
        .wait_reason("out-of-scope", "Stalled", "True", "NotPermitted")
        .await;
    assert!(
        message(&m, "Ready").contains(&format!("spec.accountId={account} is not permitted")),
        "{m:?}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let seen = calls(&f, "organizations").await;
    assert!(
        seen.is_empty(),
        "refused adoptions called Organizations: {seen:?}"
    );
    let described = f.aws.describe_account(&account).await;
    assert_eq!(described.parent_id, root);
    assert!(!described.tags.contains_key(OWNER_TAG));
    f.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_created_account_is_parked_on_deletion_and_stays_active() {
    let f = fixture("macct-park", Shared).await;
    let ou = f.new_ou().await;
    let park = f.new_ou().await;
    let email = f
        .create(
            "parked",
            json!({"parentId": ou, "tags": {"team": "platform"}, "deletionPolicy": "Park",
                   "parkParentId": park, "link": {"enabled": false}}),
        )
        .await;
    let m = f.wait_ready("parked").await;
    let account = m.status.and_then(|s| s.account_id).expect("account");
    assert!(f.tags(&account).await.contains_key(OWNER_TAG));

    f.members()
        .delete("parked", &DeleteParams::default())
        .await
        .expect("delete");
    gone(&f.members(), "parked", f.budget.react()).await;
    let described = f.aws.describe_account(&account).await;
    assert_eq!(described.parent_id, park);
    assert_eq!(described.status, "ACTIVE");
    assert_eq!(described.tags, tags([("team", "platform")]));
    let reasons = f.event_reasons("parked").await;
    assert!(reasons.iter().any(|r| r == "Parked"), "{reasons:?}");
    assert_eq!(f.emulator.create_calls(&email).await, 1);
    f.cleanup().await;
}

/// Issue 14: a CreateAccount request that FAILED with EMAIL_ALREADY_EXISTS because of the
/// object's own account (an earlier request's account whose answer was lost; here made by the
/// administrator and tagged for the object, as that request would have) recovers the account
/// instead of stalling.
#[tokio::test(flavor = "multi_thread")]
async fn email_already_exists_from_our_own_account_recovers_it() {
    let f = fixture("macct-failover", Shared).await;
    let ou = f.new_ou().await;
    let email = format!("{}@example.com", unique("failover"));
    f.emulator
        .put(
            "/organizations",
            json!({"failures": {&email: "EMAIL_ALREADY_EXISTS"}}),
        )
        .await;
    create(
        &f.members(),
        "failover",
        json!({"accountName": "failover", "email": email, "parentId": ou,
               "link": {"enabled": false}}),
    )
    .await;
    eventually(f.budget.react(), "the request recorded", || async {
        let m = f.members().get("failover").await.ok()?;
        m.status.and_then(|s| s.create_account_request_id)
    })
    .await;
    f.emulator
        .put("/organizations", json!({"failures": {&email: null}}))
        .await;
    // The account of the "first" request, with the tags that request would have given it.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(f.client.clone());
    let cluster = namespaces
        .get("kube-system")
        .await
        .expect("kube-system")
        .metadata
        .uid
        .expect("uid");
    let account = f.aws.create_account("failover", &email).await;
    f.aws
        .tag_account(&account, OWNER_TAG, &format!("{}/failover", f.ns.name))
        .await;
    f.aws.tag_account(&account, CLUSTER_TAG, &cluster).await;
    f.members()
        .patch(
            "failover",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/poke": "1"}}})),
        )
        .await
        .expect("annotate");
    let m = f.wait_ready("failover").await;
    let status = m.status.expect("status");
    assert_eq!(status.account_id.as_deref(), Some(account.as_str()));
    assert_eq!(status.create_account_request_id, None);
    assert_eq!(f.aws.describe_account(&account).await.parent_id, ou);
    // The object's request and the administrator's: no third.
    assert_eq!(f.emulator.create_calls(&email).await, 2);
    f.cleanup().await;
}
