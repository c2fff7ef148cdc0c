//! The Helm chart's RBAC is enough, and no more: the chart's ServiceAccount and (Cluster)Roles
//! rendered by helm are applied to the real API server, and the real operator runs with a
//! kubeconfig that impersonates that ServiceAccount. Each kind gets one scenario that makes an
//! object Ready through [`ChartInstall::apply_and_wait_ready`]; forbidden actions must fail.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use kube::config::Kubeconfig;
use serde_json::json;

use account_linker::api::LinkedAccount;
use support::{Operator, TestEnv, TestNamespace, aws_admin, eventually};

/// Release name; the chart names its ServiceAccount and roles after it.
const RELEASE: &str = "account-linker";
/// The hub account of the emulator: the account whose role the operator runs as.
const HUB_ACCOUNT: &str = "123456789012";
static SEQ: AtomicU32 = AtomicU32::new(0);

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pinned helm (`hack/tools.sh`, cached outside the repository after the first build).
fn helm() -> PathBuf {
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
}

/// Runs a command, returning (success, stdout, stderr).
fn run(mut cmd: Command, stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The chart's ServiceAccount and RBAC installed in a fresh namespace, the operator running as
/// that ServiceAccount and watching the namespace.
struct ChartInstall {
    env: TestEnv,
    ns: TestNamespace,
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
        let env = support::env();
        let client = env.client().await;
        let ns = TestNamespace::create(&client, prefix).await;
        let mut helm_cmd = Command::new(helm());
        helm_cmd.current_dir(repo_root()).args([
            "template",
            RELEASE,
            "charts/account-linker",
            "--namespace",
            &ns.name,
            "--kube-version",
            "v1.36.5",
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
            "--set",
            &format!("watchNamespaces={{{}}}", ns.name),
        ]);
        let (ok, rendered, err) = run(helm_cmd, None);
        assert!(ok, "helm template failed: {err}");
        assert!(
            rendered.contains("kind: Role"),
            "no Role rendered:\n{rendered}"
        );

        let mut apply = env.kubectl();
        apply.args(["apply", "-f", "-"]);
        let (ok, _, err) = run(apply, Some(&rendered));
        assert!(ok, "applying the chart's RBAC failed: {err}");

        let sa_kubeconfig = impersonating_kubeconfig(&env, &ns.name);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let identity = format!("chart-rbac-{n}");
        let mut args = vec!["--leader-identity", identity.as_str()];
        args.extend_from_slice(flags);
        let operator = Operator::start_with_kubeconfig(&env, &sa_kubeconfig, &ns.name, &args);
        Self {
            env,
            ns,
            sa_kubeconfig,
            operator,
        }
    }

    /// `kubectl` acting as the chart's ServiceAccount.
    fn kubectl_as_sa(&self) -> Command {
        let mut cmd = self.env.kubectl();
        cmd.env("KUBECONFIG", &self.sa_kubeconfig);
        cmd
    }

    /// Applies `manifest` (as admin, in the test namespace) and waits with `kubectl wait` until
    /// its Ready condition is True. One call per kind's scenario.
    fn apply_and_wait_ready(&self, manifest: serde_json::Value, timeout: Duration) {
        let kind = manifest["kind"].as_str().expect("kind").to_lowercase();
        let name = manifest["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        let mut apply = self.env.kubectl();
        apply.args(["apply", "-n", &self.ns.name, "-f", "-"]);
        let (ok, _, err) = run(apply, Some(&manifest.to_string()));
        assert!(ok, "apply {kind}/{name} failed: {err}");
        let mut wait = self.env.kubectl();
        wait.args([
            "wait",
            "-n",
            &self.ns.name,
            "--for=condition=Ready",
            &format!("--timeout={}s", timeout.as_secs()),
            &format!("{kind}.accountlinker.dev/{name}"),
        ]);
        let (ok, _, err) = run(wait, None);
        assert!(
            ok,
            "{kind}/{name} did not become Ready: {err}\noperator log:\n{}",
            self.operator.log()
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
        self.ns.cleanup().await;
    }
}

/// The admin kubeconfig with `as: system:serviceaccount:<ns>:<release>` (the admin may
/// impersonate), written next to the environment's other files.
fn impersonating_kubeconfig(env: &TestEnv, ns: &str) -> PathBuf {
    let mut config = Kubeconfig::read_from(env.kubeconfig()).expect("admin kubeconfig");
    for named in &mut config.auth_infos {
        if let Some(auth) = named.auth_info.as_mut() {
            auth.impersonate = Some(format!("system:serviceaccount:{ns}:{RELEASE}"));
        }
    }
    let path = env.state_dir.join(format!("kubeconfig-sa-{ns}"));
    // JSON is YAML: kubectl and kube-rs both read it.
    std::fs::write(
        &path,
        serde_json::to_string(&config).expect("kubeconfig json"),
    )
    .expect("write kubeconfig");
    path
}

/// A member account in the emulator's organization, created the way an administrator would.
fn member_account(env: &TestEnv) -> String {
    aws_admin(env, &["ensure-org"]);
    let name = format!(
        "rbac-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let email = format!("{name}@example.com");
    aws_admin(env, &["create-account", "--name", &name, "--email", &email])["accountId"]
        .as_str()
        .expect("account id")
        .to_string()
}

fn assert_forbidden(install: &ChartInstall, what: &str, args: &[&str]) {
    let mut cmd = install.kubectl_as_sa();
    cmd.args(args);
    let (ok, out, err) = run(cmd, None);
    assert!(
        !ok && err.to_lowercase().contains("forbidden"),
        "the chart's ServiceAccount could {what}: ok={ok} stdout={out} stderr={err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_rbac_runs_the_linked_account_controller_and_nothing_more() {
    let install = ChartInstall::start("chart-rbac").await;
    let env = install.env.clone();
    let client = env.client().await;
    let ns = install.ns.name.clone();
    let account = member_account(&env);

    // The controller generates the ExternalId Secret (create as the ServiceAccount) and reports
    // its name in status.
    let links: Api<LinkedAccount> = Api::namespaced(client.clone(), &ns);
    let mut create = env.kubectl();
    create.args(["apply", "-n", &ns, "-f", "-"]);
    let manifest = json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "LinkedAccount",
        "metadata": {"name": "via-chart"}, "spec": {"accountId": account},
    });
    let (ok, _, err) = run(create, Some(&manifest.to_string()));
    assert!(ok, "create LinkedAccount: {err}");
    let secret_name = eventually(
        Duration::from_secs(60),
        "generated Secret in status",
        || {
            let links = links.clone();
            async move {
                links
                    .get("via-chart")
                    .await
                    .ok()?
                    .status?
                    .external_id_secret
            }
        },
    )
    .await;
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get(&secret_name)
        .await
        .expect("the generated Secret exists");
    let external_id = String::from_utf8(secret.data.unwrap()["externalId"].0.clone()).unwrap();

    // The administrator deploys the role; the link becomes Ready.
    aws_admin(
        &env,
        &[
            "put-role",
            "--account",
            &account,
            "--external-id",
            &external_id,
            "--trust-account",
            HUB_ACCOUNT,
        ],
    );
    install.apply_and_wait_ready(manifest, Duration::from_secs(90));

    // The leader Lease was acquired by this operator, and Events were written.
    let lease = Api::<Lease>::namespaced(client.clone(), &ns)
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
    let events = eventually(Duration::from_secs(30), "an Event about the link", || {
        let api = Api::<Event>::namespaced(client.clone(), &ns);
        async move {
            let list = api.list(&Default::default()).await.ok()?;
            let about: Vec<_> = list
                .items
                .into_iter()
                .filter(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("via-chart")
                })
                .collect();
            (!about.is_empty()).then_some(about)
        }
    })
    .await;
    assert!(!events.is_empty());
    install.assert_no_forbidden_in_log();

    // The identity works (a positive control), and what the chart does not grant is refused.
    let mut get = install.kubectl_as_sa();
    get.args(["get", "linkedaccounts", "-n", &ns]);
    let (ok, _, err) = run(get, None);
    assert!(ok, "the ServiceAccount cannot list LinkedAccounts: {err}");
    let other = TestNamespace::create(&client, "chart-rbac-other").await;
    let mut secret_elsewhere = env.kubectl();
    secret_elsewhere.args([
        "create",
        "secret",
        "generic",
        "unrelated",
        "-n",
        &other.name,
        "--from-literal=k=v",
    ]);
    assert!(run(secret_elsewhere, None).0, "create the unrelated Secret");
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
    let env = install.env.clone();
    let client = env.client().await;
    let ns = install.ns.name.clone();
    aws_admin(&env, &["ensure-org"]);
    aws_admin(&env, &["activate-trusted-access"]);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let ou_name = format!("rbac-ou-{}-{n}", std::process::id());
    let ou = aws_admin(&env, &["create-ou", "--name", &ou_name])["ouId"]
        .as_str()
        .expect("ou id")
        .to_string();
    let prefix = format!("rbac-bulk-{}-{n}", std::process::id());
    let accounts: Vec<String> = aws_admin(
        &env,
        &[
            "create-accounts",
            "--prefix",
            &prefix,
            "--count",
            "3",
            "--parent",
            &ou,
        ],
    )["accountIds"]
        .as_array()
        .expect("account ids")
        .iter()
        .map(|v| v.as_str().expect("id").to_string())
        .collect();

    // The account list ConfigMap is read through the operator's watch (list/watch granted).
    let mut cm = env.kubectl();
    cm.args([
        "create",
        "configmap",
        "bulk-accounts",
        "-n",
        &ns,
        &format!("--from-literal=accounts={}", accounts[0]),
    ]);
    assert!(run(cm, None).0, "create the account list ConfigMap");
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
            "deletionPolicy": "Delete",
        },
    });
    install.apply_and_wait_ready(manifest, Duration::from_secs(120));
    let children: Api<LinkedAccount> = Api::namespaced(client.clone(), &ns);
    let listed = children
        .list(&ListParams::default().labels("accountlinker.dev/bulk-registration=via-chart"))
        .await
        .expect("list children");
    assert_eq!(listed.items.len(), 3, "one child per account in the OU");

    // Deletion: instances and StackSet in AWS, then the children (deletecollection) and the
    // finalizer, all as the ServiceAccount.
    let mut delete = env.kubectl();
    delete.args([
        "delete",
        "bulkregistration.accountlinker.dev/via-chart",
        "-n",
        &ns,
        "--timeout=120s",
    ]);
    let (ok, _, err) = run(delete, None);
    assert!(
        ok,
        "deleting the BulkRegistration did not finish: {err}\noperator log:\n{}",
        install.operator.log()
    );
    eventually(Duration::from_secs(30), "children deleted", || {
        let children = children.clone();
        async move {
            children
                .list(
                    &ListParams::default().labels("accountlinker.dev/bulk-registration=via-chart"),
                )
                .await
                .ok()
                .filter(|l| l.items.is_empty())
        }
    })
    .await;
    install.assert_no_forbidden_in_log();
    install.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_rbac_runs_the_member_account_controller() {
    let install =
        ChartInstall::start_with("chart-rbac-macct", &["--account-poll-interval", "500ms"]).await;
    let env = install.env.clone();
    let client = env.client().await;
    let ns = install.ns.name.clone();
    let root = aws_admin(&env, &["ensure-org"])["rootId"]
        .as_str()
        .expect("root id")
        .to_string();
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let email = format!("rbac-macct-{}-{n}@example.com", std::process::id());
    let manifest = json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "MemberAccount",
        "metadata": {"name": "via-chart"},
        "spec": {"accountName": format!("rbac-macct-{n}"), "email": email, "parentId": root,
                 "deletionPolicy": "Close"},
    });
    // Created, placed, tagged nothing, child LinkedAccount (and its generated Secret) Ready.
    install.apply_and_wait_ready(manifest, Duration::from_secs(120));
    let child: Api<LinkedAccount> = Api::namespaced(client.clone(), &ns);
    assert!(child.get("via-chart").await.is_ok(), "child LinkedAccount");

    // Deletion with Close: CloseAccount, an Event, the finalizer released.
    let mut delete = env.kubectl();
    delete.args([
        "delete",
        "memberaccount.accountlinker.dev/via-chart",
        "-n",
        &ns,
        "--timeout=60s",
    ]);
    let (ok, _, err) = run(delete, None);
    assert!(
        ok,
        "deleting the MemberAccount did not finish: {err}\noperator log:\n{}",
        install.operator.log()
    );
    install.assert_no_forbidden_in_log();
    install.cleanup().await;
}
