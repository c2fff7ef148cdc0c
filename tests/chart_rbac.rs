//! The Helm chart's RBAC is enough, and no more: the chart's ServiceAccount and (Cluster)Roles
//! rendered by helm are applied to the real API server, and the real operator runs with a
//! kubeconfig that impersonates that ServiceAccount. Each kind gets one scenario that makes an
//! object Ready through [`ChartInstall::apply_and_wait_ready`]; forbidden actions must fail.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::Kubeconfig;
use serde_json::json;

use account_linker::api::annotations::VERIFY_REQUESTED_AT;
use account_linker::api::{BulkRegistration, BulkRegistrationStatus, LinkedAccount, MemberAccount};
use support::{
    Budget, Context, HUB_ACCOUNT, Operator, TestNamespace, delete_policy, eventually, repo_root,
    run, run_ok, unique,
};

/// Release name; the chart names its ServiceAccount and roles after it.
const RELEASE: &str = "account-linker";

/// The pinned helm (`hack/tools.sh`, cached outside the repository after the first build),
/// looked up once per test binary: parallel tests would otherwise build it side by side.
fn helm() -> PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Ok(path) = std::env::var("ACCOUNT_LINKER_HELM") {
            return path.into();
        }
        let out = Command::new("bash")
            .current_dir(repo_root())
            .args(["hack/tools.sh", "helm"])
            .stderr(Stdio::inherit())
            .output()
            .expect("run hack/tools.sh");
        assert!(out.status.success(), "hack/tools.sh helm failed");
        String::from_utf8(out.stdout).unwrap().trim().into()
    })
    .clone()
}

/// Whether a command succeeded, with its stderr.
fn outcome(out: &Output) -> (bool, String) {
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The chart's ServiceAccount and RBAC installed in a fresh namespace, the operator running as
/// that ServiceAccount and watching the namespace.
struct ChartInstall {
    ctx: Context,
    budget: Budget,
    /// A kubeconfig whose user impersonates the chart's ServiceAccount.
    sa_kubeconfig: PathBuf,
    operator: Operator,
}

impl ChartInstall {
    /// Renders the chart's ServiceAccount and RBAC for a release in a fresh namespace (with
    /// `watchNamespaces` set to it, so the per-namespace Roles are what is tested), applies them
    /// as admin and starts the operator as the ServiceAccount.
    async fn start(prefix: &str) -> Self {
        Self::start_with(prefix, &[]).await
    }

    /// [`ChartInstall::start`] with extra operator flags.
    async fn start_with(prefix: &str, flags: &[&str]) -> Self {
        Self::install(Context::new(prefix).await, flags).await
    }

    /// [`ChartInstall::start_with`] in the namespace of `ctx`.
    async fn install(ctx: Context, flags: &[&str]) -> Self {
        let ns = &ctx.ns.name;
        let mut helm_cmd = Command::new(helm());
        helm_cmd.current_dir(repo_root()).args([
            "template",
            RELEASE,
            "charts/account-linker",
            "--namespace",
            ns,
            "--kube-version",
            "v1.36.5",
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
            "--set",
            &format!("watchNamespaces={{{ns}}}"),
        ]);
        let rendered = run_ok(helm_cmd, None);
        assert!(
            rendered.contains("kind: Role"),
            "no Role rendered:\n{rendered}"
        );
        let mut apply = ctx.env.kubectl();
        apply.args(["apply", "-f", "-"]);
        run_ok(apply, Some(&rendered));

        let sa_kubeconfig = impersonating_kubeconfig(&ctx, ns);
        let identity = unique("chart-rbac");
        let mut args = vec!["--leader-identity", identity.as_str()];
        args.extend_from_slice(flags);
        let operator = Operator::start_with_kubeconfig(&ctx.env, &sa_kubeconfig, ns, &args);
        let budget = ctx.budget().await;
        Self {
            ctx,
            budget,
            sa_kubeconfig,
            operator,
        }
    }

    /// `kubectl` acting as the chart's ServiceAccount.
    fn kubectl_as_sa(&self) -> Command {
        let mut cmd = self.ctx.env.kubectl();
        cmd.env("KUBECONFIG", &self.sa_kubeconfig);
        cmd
    }

    /// `kubectl <args>` as admin in the test namespace, fed `stdin`; must succeed.
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) {
        let mut cmd = self.ctx.env.kubectl();
        cmd.args(args).args(["-n", &self.ctx.ns.name]);
        let out = run(cmd, stdin);
        let (ok, err) = outcome(&out);
        assert!(
            ok,
            "kubectl {args:?}: {err}\noperator log:\n{}",
            self.operator.log()
        );
    }

    /// Applies `manifest` (as admin, in the test namespace) and waits with `kubectl wait` until
    /// its Ready condition is True. One call per kind's scenario.
    fn apply_and_wait_ready(&self, manifest: serde_json::Value, timeout: Duration) {
        let kind = manifest["kind"].as_str().expect("kind").to_lowercase();
        let name = manifest["metadata"]["name"].as_str().expect("name");
        self.kubectl(&["apply", "-f", "-"], Some(&manifest.to_string()));
        self.kubectl(
            &[
                "wait",
                "--for=condition=Ready",
                &format!("--timeout={}s", timeout.as_secs()),
                &format!("{kind}.accountlinker.dev/{name}"),
            ],
            None,
        );
    }

    /// Deletes `resource` (as admin) and waits until its finalizer has run.
    fn delete_and_wait(&self, resource: &str, timeout: Duration) {
        self.kubectl(
            &[
                "delete",
                resource,
                &format!("--timeout={}s", timeout.as_secs()),
            ],
            None,
        );
    }

    /// Asserts the operator never hit a permission error.
    fn assert_no_forbidden_in_log(&self) {
        let log = self.operator.log();
        assert!(
            !log.to_lowercase().contains("forbidden"),
            "the operator was denied something the chart should grant:\n{log}"
        );
    }

    async fn cleanup(mut self) {
        self.operator.terminate(Duration::from_secs(10));
        self.ctx.cleanup().await;
    }
}

/// The admin kubeconfig with `as: system:serviceaccount:<ns>:<release>` (the admin may
/// impersonate), written next to the environment's other files.
fn impersonating_kubeconfig(ctx: &Context, ns: &str) -> PathBuf {
    let mut config = Kubeconfig::read_from(ctx.env.kubeconfig()).expect("admin kubeconfig");
    for named in &mut config.auth_infos {
        if let Some(auth) = named.auth_info.as_mut() {
            auth.impersonate = Some(format!("system:serviceaccount:{ns}:{RELEASE}"));
        }
    }
    let path = ctx.env.state_dir.join(format!("kubeconfig-sa-{ns}"));
    // JSON is YAML: kubectl and kube-rs both read it.
    std::fs::write(
        &path,
        serde_json::to_string(&config).expect("kubeconfig json"),
    )
    .expect("write kubeconfig");
    path
}

/// The status of the BulkRegistration `via-chart`.
async fn status_of(bulks: &Api<BulkRegistration>) -> BulkRegistrationStatus {
    bulks
        .get("via-chart")
        .await
        .expect("get the registration")
        .status
        .unwrap_or_default()
}

/// The generated value in Secret `name` of the test namespace.
async fn secret_value(ctx: &Context, name: &str) -> Vec<u8> {
    let secret = ctx.api::<Secret>().get(name).await.expect("get the Secret");
    secret.data.unwrap_or_default()["externalId"].0.clone()
}

fn assert_forbidden(install: &ChartInstall, what: &str, args: &[&str]) {
    let mut cmd = install.kubectl_as_sa();
    cmd.args(args);
    let out = run(cmd, None);
    let (ok, err) = outcome(&out);
    assert!(
        !ok && err.to_lowercase().contains("forbidden"),
        "the chart's ServiceAccount could {what}: ok={ok} stdout={} stderr={err}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_rbac_runs_the_linked_account_controller_and_nothing_more() {
    let install = ChartInstall::start("chart-rbac").await;
    let ctx = &install.ctx;
    let budget = install.budget;
    let ns = ctx.ns.name.clone();
    let account = ctx.aws.member_account("rbac").await;

    // The controller generates the ExternalId Secret (create as the ServiceAccount) and reports
    // its name in status.
    let links: Api<LinkedAccount> = ctx.api();
    let manifest = json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "LinkedAccount",
        "metadata": {"name": "via-chart"}, "spec": {"accountId": account},
    });
    install.kubectl(&["apply", "-f", "-"], Some(&manifest.to_string()));
    let secret_name = eventually(budget.react(), "generated Secret in status", || async {
        links
            .get("via-chart")
            .await
            .ok()?
            .status?
            .external_id_secret
    })
    .await;
    let secret = ctx
        .api::<Secret>()
        .get(&secret_name)
        .await
        .expect("the generated Secret exists");
    let external_id = String::from_utf8(secret.data.unwrap()["externalId"].0.clone()).unwrap();

    // The administrator deploys the role; the link becomes Ready.
    ctx.aws.put_role(&account, &external_id, HUB_ACCOUNT).await;
    install.apply_and_wait_ready(manifest, budget.react());

    // The leader Lease was acquired by this operator, and Events were written.
    let lease = ctx
        .api::<Lease>()
        .get("account-linker")
        .await
        .expect("leader Lease exists");
    let holder = lease
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(
        holder.starts_with("chart-rbac-"),
        "Lease held by {holder:?}"
    );
    // A verification's transitions are one Event; a failed verification and a good one again
    // repeat `Verified` within the series window: created, then patched into a series.
    let request = async |value: &str| {
        let annotations = json!({"metadata": {"annotations": {VERIFY_REQUESTED_AT: value}}});
        links
            .patch(
                "via-chart",
                &PatchParams::default(),
                &Patch::Merge(annotations),
            )
            .await
            .expect("request a verification");
    };
    let ready = async |status: &str| {
        eventually(budget.react(), &format!("Ready={status}"), || async {
            let link = links.get("via-chart").await.ok()?;
            link.status?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == status)
                .then_some(())
        })
        .await
    };
    ctx.aws.delete_role(&account).await;
    request("1").await;
    ready("False").await;
    ctx.aws.put_role(&account, &external_id, HUB_ACCOUNT).await;
    request("2").await;
    ready("True").await;
    let events = ctx.api::<Event>();
    eventually(
        budget.react(),
        "a repeated Event about the link",
        || async {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("via-chart")
                        && e.series.as_ref().is_some_and(|s| s.count >= 2)
                })
                .then_some(())
        },
    )
    .await;
    install.assert_no_forbidden_in_log();

    // The identity works (a positive control), and what the chart does not grant is refused.
    let mut get = install.kubectl_as_sa();
    get.args(["get", "linkedaccounts", "-n", &ns]);
    run_ok(get, None);
    let other = TestNamespace::create(&ctx.client, "chart-rbac-other").await;
    let mut secret_elsewhere = ctx.env.kubectl();
    secret_elsewhere.args([
        "create",
        "secret",
        "generic",
        "unrelated",
        "-n",
        &other.name,
        "--from-literal=k=v",
    ]);
    run_ok(secret_elsewhere, None);
    assert_forbidden(
        &install,
        "read a Secret outside its watched namespaces",
        &["get", "secret", "unrelated", "-n", &other.name],
    );
    assert_forbidden(
        &install,
        "delete a namespace",
        &["delete", "namespace", &other.name],
    );
    assert_forbidden(&install, "list pods", &["get", "pods", "-n", &ns]);
    assert_forbidden(
        &install,
        "create a ConfigMap",
        &["create", "configmap", "x", "-n", &ns, "--from-literal=k=v"],
    );
    assert_forbidden(
        &install,
        "delete the leader Lease",
        &["delete", "lease", "account-linker", "-n", &ns],
    );
    assert_forbidden(
        &install,
        "delete a BulkRegistration",
        &["delete", "bulkregistration", "any", "-n", &ns],
    );
    // The link became Ready through the LinkPolicy the operator reads (list/watch); it can
    // never write one.
    assert_forbidden(
        &install,
        "delete a LinkPolicy",
        &["delete", "linkpolicy", &ns],
    );

    other.cleanup().await;
    install.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_rbac_runs_the_bulk_registration_controller() {
    let install = ChartInstall::start_with(
        "chart-rbac-bulk",
        &[
            "--stackset-poll-interval",
            "500ms",
            "--bulk-resync-interval",
            "3s",
        ],
    )
    .await;
    let ctx = &install.ctx;
    let budget = install.budget;
    ctx.aws.ensure_org().await;
    ctx.aws.set_trusted_access(true).await;
    let ou = ctx.aws.create_ou(&unique("rbac-ou"), None).await;
    let accounts = ctx
        .aws
        .create_accounts(&unique("rbac-bulk"), 3, Some(&ou))
        .await;

    // The account list ConfigMap is read by name (get) and, labelled, also arrives through
    // the operator's label-scoped watch (list, watch).
    let config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "bulk-accounts", "labels": {"accountlinker.dev/watch": "true"}},
        "data": {"accounts": accounts[0]},
    });
    install.kubectl(&["apply", "-f", "-"], Some(&config_map.to_string()));
    let manifest = json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "BulkRegistration",
        "metadata": {"name": "via-chart"},
        "spec": {
            "stackSet": {"permissionModel": "ServiceManaged"},
            "template": {"builtin": {}},
            "targets": {
                "organizationalUnitIds": [ou],
                "accountsFrom": [{"configMapRef": {"name": "bulk-accounts", "key": "accounts"}}],
            },
            "regions": ["us-east-1"],
            "externalId": {"rotateEvery": "1h"},
            "deletionPolicy": "Delete",
        },
    });
    // The default operation preferences: one account at a time.
    install.apply_and_wait_ready(manifest, budget.registration_ready(3, 1, 1));
    let bulks: Api<BulkRegistration> = ctx.api();
    let before = status_of(&bulks).await;
    let token_secret = before.external_id_secret.expect("token Secret in status");
    let token_before = secret_value(ctx, &token_secret).await;
    let children: Api<LinkedAccount> = ctx.api();
    let of_registration =
        ListParams::default().labels("accountlinker.dev/bulk-registration=via-chart");
    let listed = children
        .list(&of_registration)
        .await
        .expect("list children");
    assert_eq!(listed.items.len(), 3, "one child per account in the OU");

    // A rotation that is due (rotateEvery passed since the recorded rotation) creates the next
    // token Secret, deploys it (a new template hash), the children verify with it, and the
    // replaced Secret is deleted.
    let forged = "2020-01-01T00:00:00Z";
    install.kubectl(
        &[
            "patch",
            "bulkregistration",
            "via-chart",
            "--subresource=status",
            "--type=merge",
            "-p",
            &json!({"status": {"externalIdRotatedTime": forged}}).to_string(),
        ],
        None,
    );
    let rotated = eventually(
        budget.registration_ready(3, 1, 1),
        "rotated and Ready",
        || async {
            let bulk = bulks.get("via-chart").await.ok()?;
            let status = bulk.status.as_ref()?;
            let rotated = status.external_id_rotated_time.as_ref()?;
            let deployed =
                status.template_hash.is_some() && status.template_hash != before.template_hash;
            (rotated.0.to_string() != forged
                && deployed
                && support::has(&bulk, "Ready", "True", None))
            .then(|| status.clone())
        },
    )
    .await;
    let token_after = secret_value(ctx, &rotated.external_id_secret.expect("token Secret")).await;
    assert_ne!(token_after, token_before, "the token was not rotated");
    let secrets: Api<Secret> = ctx.api();
    eventually(
        budget.react(),
        "the replaced token Secret deleted",
        || async {
            secrets
                .get_opt(&token_secret)
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;

    // Deletion: instances and StackSet in AWS, then the children (deletecollection) and the
    // finalizer, all as the ServiceAccount.
    install.delete_and_wait(
        "bulkregistration.accountlinker.dev/via-chart",
        budget.registration_deleted(3, 1),
    );
    eventually(budget.react(), "children deleted", || async {
        children
            .list(&of_registration)
            .await
            .ok()
            .filter(|l| l.items.is_empty())
    })
    .await;
    install.assert_no_forbidden_in_log();
    install.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_rbac_runs_the_member_account_controller() {
    let install =
        ChartInstall::start_with("chart-rbac-macct", &["--account-poll-interval", "500ms"]).await;
    let ctx = &install.ctx;
    let budget = install.budget;
    let root = ctx.aws.ensure_org().await;
    let name = unique("rbac-macct");
    let manifest = json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "MemberAccount",
        "metadata": {"name": "via-chart"},
        "spec": {"accountName": name, "email": format!("{name}@example.com"), "parentId": root,
                 "deletionPolicy": "Close"},
    });
    // Created, placed, tagged nothing, child LinkedAccount (and its generated Secret) Ready.
    install.apply_and_wait_ready(manifest, budget.member_ready());
    let child: Api<LinkedAccount> = ctx.api();
    assert!(child.get("via-chart").await.is_ok(), "child LinkedAccount");

    // Unlinking deletes the child LinkedAccount (delete).
    install.kubectl(
        &[
            "patch",
            "memberaccount",
            "via-chart",
            "--type=merge",
            "-p",
            r#"{"spec":{"link":{"enabled":false}}}"#,
        ],
        None,
    );
    eventually(budget.react(), "child LinkedAccount deleted", || async {
        child
            .get_opt("via-chart")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    // Deletion with Close: CloseAccount, an Event, the finalizer released once the account is
    // SUSPENDED (a second after CloseAccount here; in AWS it takes a while).
    ctx.emulator
        .put("/organizations", json!({"suspend_seconds": 1}))
        .await;
    install.delete_and_wait("memberaccount.accountlinker.dev/via-chart", budget.react());
    install.assert_no_forbidden_in_log();
    install.cleanup().await;
}

/// The chart's starter LinkPolicy for `ns` over `accounts` and `ous`, as helm renders it, named
/// `<ns>-starter`, with one managed policy.
fn starter_policy(ns: &str, accounts: &[String], ous: &[String]) -> String {
    let mut helm_cmd = Command::new(helm());
    helm_cmd.current_dir(repo_root()).args([
        "template",
        RELEASE,
        "charts/account-linker",
        "--namespace",
        ns,
        "--kube-version",
        "v1.36.5",
        "--show-only",
        "templates/starter-policy.yaml",
        "--set",
        &format!("fullnameOverride={ns}"),
        "--set",
        "starterPolicy.enabled=true",
        "--set",
        &format!("starterPolicy.namespaces={{{ns}}}"),
        "--set-string",
        &format!("starterPolicy.accounts.ids={{{}}}", accounts.join(",")),
        "--set",
        &format!(
            "starterPolicy.accounts.organizationalUnitIds={{{}}}",
            ous.join(",")
        ),
        "--set",
        "starterPolicy.managedPolicyArns={arn:aws:iam::aws:policy/ReadOnlyAccess}",
    ]);
    run_ok(helm_cmd, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_starter_policy_permits_builtin_links_and_registrations_and_nothing_wider() {
    // No policy but the chart's: the operator enforces tenancy (its default).
    let install = ChartInstall::install(
        Context::without_policy("chart-starter").await,
        &[
            "--stackset-poll-interval",
            "500ms",
            "--bulk-resync-interval",
            "3s",
        ],
    )
    .await;
    let ctx = &install.ctx;
    let budget = install.budget;
    let ns = ctx.ns.name.clone();
    ctx.aws.set_trusted_access(true).await;
    let linked = ctx.aws.member_account("starter").await;
    let ou = ctx.aws.create_ou(&unique("starter-ou"), None).await;
    ctx.aws
        .create_accounts(&unique("starter"), 2, Some(&ou))
        .await;
    let policy = starter_policy(
        &ns,
        std::slice::from_ref(&linked),
        std::slice::from_ref(&ou),
    );
    install.kubectl(&["apply", "-f", "-"], Some(&policy));

    // A LinkedAccount of a listed account: permitted (its ExternalId Secret is generated).
    let links: Api<LinkedAccount> = ctx.api();
    let link = json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "LinkedAccount",
        "metadata": {"name": "starter-link"}, "spec": {"accountId": linked},
    });
    install.kubectl(&["apply", "-f", "-"], Some(&link.to_string()));
    let secret_name = eventually(budget.react(), "generated Secret in status", || async {
        links
            .get("starter-link")
            .await
            .ok()?
            .status?
            .external_id_secret
    })
    .await;
    let external_id = secret_value(ctx, &secret_name).await;
    ctx.aws
        .put_role(
            &linked,
            &String::from_utf8(external_id).unwrap(),
            HUB_ACCOUNT,
        )
        .await;
    install.apply_and_wait_ready(link, budget.react());

    // A built-in registration over the listed OU with the listed managed policy: permitted.
    let registration = |name: &str, builtin: serde_json::Value| {
        json!({
            "apiVersion": "accountlinker.dev/v1alpha1", "kind": "BulkRegistration",
            "metadata": {"name": name},
            "spec": {
                "stackSet": {"permissionModel": "ServiceManaged"},
                "template": {"builtin": builtin},
                "targets": {"organizationalUnitIds": [ou]},
                "regions": ["us-east-1"],
            },
        })
    };
    install.apply_and_wait_ready(
        registration(
            "starter",
            json!({"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}),
        ),
        budget.registration_ready(2, 1, 1),
    );

    // What the starter does not grant is refused: other trust, another managed policy, a
    // MemberAccount.
    let bulks: Api<BulkRegistration> = ctx.api();
    for (name, builtin) in [
        ("foreign-trust", json!({"trustedAccountId": "999999999999"})),
        (
            "admin",
            json!({"managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]}),
        ),
    ] {
        install.kubectl(
            &["apply", "-f", "-"],
            Some(&registration(name, builtin).to_string()),
        );
        support::wait_for(&bulks, name, "NotPermitted", budget.react(), |b| {
            support::has(b, "Stalled", "True", Some("NotPermitted"))
        })
        .await;
    }
    let member = json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "MemberAccount",
        "metadata": {"name": "starter-member"},
        "spec": {"accountName": "starter-member", "email": "starter-member@example.com",
                 "parentId": ou},
    });
    install.kubectl(&["apply", "-f", "-"], Some(&member.to_string()));
    let members: Api<MemberAccount> = ctx.api();
    support::wait_for(
        &members,
        "starter-member",
        "NotPermitted",
        budget.react(),
        |m| support::has(m, "Stalled", "True", Some("NotPermitted")),
    )
    .await;
    install.assert_no_forbidden_in_log();

    delete_policy(&ctx.client, &format!("{ns}-starter")).await;
    install.cleanup().await;
}
