//! The kubectl plugin against a real API server, no operator: a fleet in mixed states is
//! written directly (objects and their status subresources, Events), and the plugin's output
//! is compared with golden files under tests/snapshots/plugin/ (`UPDATE_SNAPSHOTS=1` rewrites
//! them). Ages are computed from fixed timestamps with the hidden `--now` flag.

mod support;

use std::path::PathBuf;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Event, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource, ResourceExt};
use serde_json::{Value, json};

use account_linker::api::{BulkRegistration, LinkedAccount, MemberAccount};
use account_linker::plugin::{self, Format, Out, PluginCli, PluginError};
use clap::Parser;
use support::{Context, repo_root};

/// The clock of every snapshot: two hours after [`T0`].
const NOW: &str = "2026-01-01T02:00:00Z";
const T0: &str = "2026-01-01T00:00:00Z";

/// A time `minutes` after [`T0`].
fn at(minutes: u32) -> String {
    format!("2026-01-01T{:02}:{:02}:00Z", minutes / 60, minutes % 60)
}

/// Runs `kubectl accountlinker <args>` in-process with `client`; the output or the error.
async fn plugin(client: &Client, ns: &str, args: &[&str]) -> Result<String, PluginError> {
    let argv = ["kubectl-accountlinker", "--now", NOW]
        .into_iter()
        .chain(args.iter().copied());
    let cli = PluginCli::try_parse_from(argv).expect("arguments");
    let mut buffer = Vec::new();
    let mut out = Out {
        writer: &mut buffer,
        format: Format::Table,
        colour: false,
        now: k8s_openapi::jiff::Timestamp::now(),
    };
    plugin::execute(cli.args, client.clone(), ns, &mut out).await?;
    Ok(String::from_utf8(buffer).expect("utf-8"))
}

/// Compares `text` (the namespace replaced by `NS`) with the golden file `name`.
fn snapshot(name: &str, ns: &str, text: &str) {
    let text = text.replace(ns, "NS");
    let path: PathBuf = repo_root().join("tests/snapshots/plugin").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_SNAPSHOTS=1 writes it)", path.display()));
    assert!(
        want == text,
        "{} differs (UPDATE_SNAPSHOTS=1 rewrites it)\n--- want\n{want}\n--- got\n{text}",
        path.display()
    );
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, minutes: u32) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": at(minutes), "observedGeneration": 1})
}

/// Conditions as the LinkedAccount controller writes them for `ready` with `reason`.
fn link_conditions(ready: &str, reason: &str, message: &str, minutes: u32) -> Value {
    let stalled = ready == "False" && reason != "StackInstancePending";
    json!([
        condition("Ready", ready, reason, message, minutes),
        condition(
            "Reconciling",
            if ready == "True" || stalled {
                "False"
            } else {
                "True"
            },
            reason,
            "",
            minutes
        ),
        condition(
            "Stalled",
            if stalled { "True" } else { "False" },
            reason,
            if stalled { message } else { "" },
            minutes
        ),
    ])
}

/// Creates an object from `object` (JSON) and writes `status` to its status subresource.
async fn put<K>(api: &Api<K>, object: Value, status: Value) -> K
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = object["metadata"]["name"].as_str().unwrap().to_string();
    let obj: K = serde_json::from_value(object).expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create");
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .expect("status")
}

fn link(name: &str, account: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "LinkedAccount",
        "metadata": {"name": name, "labels": labels},
        "spec": {"accountId": account},
    })
}

fn registration(name: &str, accounts: &[String]) -> Value {
    json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "BulkRegistration",
        "metadata": {"name": name},
        "spec": {"stackSet": {"permissionModel": "SelfManaged"}, "targets": {"accounts": accounts}},
    })
}

fn account(i: usize) -> String {
    format!("{:012}", 100_000_000_000usize + i)
}

/// A child's state: (Ready, reason, message). Of 200 children, 12 fail for four reasons.
fn child_state(i: usize) -> (&'static str, &'static str, &'static str) {
    match i {
        3 | 53 | 103 | 153 => (
            "False",
            "AccessDenied",
            "AssumeRole: AccessDenied: User: arn:aws:sts::000000000000:assumed-role/hub/op is not authorized to perform: sts:AssumeRole",
        ),
        17 | 67 | 117 => (
            "False",
            "StackInstanceFailed",
            "stack instance of StackSet workloads in us-east-1 is CURRENT/FAILED: Role AccountLinkerAccess already exists",
        ),
        11 | 111 | 161 => (
            "False",
            "StackInstancePending",
            "stack instance of StackSet workloads in us-east-1 is OUTDATED/PENDING",
        ),
        41 | 141 => (
            "False",
            "RegionDisabled",
            "AssumeRole: RegionDisabledException: STS is not activated in this region for account",
        ),
        _ => (
            "True",
            "Verified",
            "AssumeRole and GetCallerIdentity succeeded",
        ),
    }
}

/// A registration with `children` children in mixed states (`status.operation` in flight),
/// written with up to 16 requests at a time.
async fn fleet(ctx: &Context, name: &str, children: usize) {
    let bulks = ctx.api::<BulkRegistration>();
    let accounts: Vec<String> = (0..children).map(account).collect();
    put(&bulks, registration(name, &accounts), json!({
        "conditions": [condition("Ready", "False", "OperationRunning", "operation op-2 (Update) is RUNNING", 100)],
        "externalIdRotatedTime": at(10),
        "operation": {"id": "op-2", "action": "Update", "status": "RUNNING", "startedAt": at(100), "accounts": 3},
        "summary": {"targets": children, "current": children, "outdated": 0, "failed": 0, "assumable": 0},
    }))
    .await;
    let links = ctx.api::<LinkedAccount>();
    stream::iter(0..children)
        .for_each_concurrent(16, |i| {
            let links = links.clone();
            let account = account(i);
            async move {
                let (ready, reason, message) = child_state(i);
                let labels = json!({"accountlinker.dev/bulk-registration": name});
                put(
                    &links,
                    link(&format!("{name}-{account}"), &account, labels),
                    json!({
                        "conditions": link_conditions(ready, reason, message, 60 + (i % 50) as u32),
                        "lastVerifiedTime": at(30 + (i % 60) as u32),
                    }),
                )
                .await;
            }
        })
        .await;
}

/// Records a core/v1 Event about `object` at minute `minutes`.
async fn event<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    type_: &str,
    reason: &str,
    message: &str,
    minutes: u32,
) {
    let events: Api<Event> = ctx.api();
    let name = format!("{}.{reason}", object.meta().name.clone().unwrap());
    let ev: Event = serde_json::from_value(json!({
        "metadata": {"name": name.to_lowercase()},
        "involvedObject": serde_json::to_value(object.object_ref(&())).unwrap(),
        "type": type_, "reason": reason, "message": message, "count": 1,
        "firstTimestamp": at(minutes), "lastTimestamp": at(minutes),
        "source": {"component": "account-linker"},
    }))
    .unwrap();
    events
        .create(&PostParams::default(), &ev)
        .await
        .expect("event");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_why_describe_a_fleet_in_mixed_states() {
    let ctx = Context::without_policy("plugin").await;
    let ns = ctx.ns.name.clone();
    fleet(&ctx, "workloads", 20).await;
    let links = ctx.api::<LinkedAccount>();
    // A link of no registration, stalled on AccessDenied.
    let solo = put(&links, link("solo", "222222222222", json!({})), json!({
        "conditions": link_conditions("False", "AccessDenied", "AssumeRole: AccessDenied: not authorized", 40),
        "lastVerifiedTime": at(110),
    }))
    .await;
    event(
        &ctx,
        &solo,
        "Warning",
        "AccessDenied",
        "Ready: AccessDenied: not authorized",
        40,
    )
    .await;
    // A MemberAccount being created, its link waiting.
    let members = ctx.api::<MemberAccount>();
    put(&members, json!({
        "apiVersion": "accountlinker.dev/v1alpha1", "kind": "MemberAccount",
        "metadata": {"name": "sandbox"},
        "spec": {"email": "sandbox@example.com", "accountName": "sandbox", "parentId": "ou-ab12-34567890"},
    }), json!({"conditions": [
        condition("Ready", "False", "Creating", "CreateAccount request car-1 is IN_PROGRESS", 115),
        condition("Reconciling", "True", "Creating", "", 115),
    ]}))
    .await;
    let denied = links
        .get(&format!("workloads-{}", account(3)))
        .await
        .unwrap();
    event(
        &ctx,
        &denied,
        "Warning",
        "AccessDenied",
        "RoleAssumable: AccessDenied: not authorized",
        70,
    )
    .await;
    event(&ctx, &denied, "Normal", "Verified", "Ready: Verified", 20).await;

    let status = plugin(&ctx.client, &ns, &["status"]).await.expect("status");
    snapshot("status.txt", &ns, &status);
    let why_child = plugin(
        &ctx.client,
        &ns,
        &["why", &format!("lacct/{}", denied.name_any())],
    )
    .await
    .expect("why");
    snapshot("why-child.txt", &ns, &why_child);
    let why_member = plugin(&ctx.client, &ns, &["why", "macct/sandbox"])
        .await
        .expect("why");
    snapshot("why-member.txt", &ns, &why_member);
    let json: Value = serde_json::from_str(
        &plugin(
            &ctx.client,
            &ns,
            &["status", "-o", "json", "--failing", "2"],
        )
        .await
        .unwrap(),
    )
    .expect("json");
    assert_eq!(json["total"]["accounts"], 21);
    assert_eq!(json["failing"].as_array().unwrap().len(), 2);
    let yaml = plugin(&ctx.client, &ns, &["why", "lacct/solo", "-o", "yaml"])
        .await
        .unwrap();
    assert!(yaml.contains("reason: AccessDenied"), "{yaml}");

    // Unknown names and kinds are errors that say so.
    let missing = plugin(&ctx.client, &ns, &["why", "bulkreg/nope"])
        .await
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("BulkRegistration/nope not found"),
        "{missing}"
    );
    let kind = plugin(&ctx.client, &ns, &["why", "pod/x"])
        .await
        .unwrap_err();
    assert!(kind.to_string().contains("unknown kind"), "{kind}");

    // verify and rotate set the annotations, with the current unix seconds.
    let said = plugin(&ctx.client, &ns, &["verify", "lacct/solo"])
        .await
        .unwrap();
    assert!(
        said.contains("accountlinker.dev/verify-requested-at=1767232800"),
        "{said}"
    );
    let solo = links.get("solo").await.unwrap();
    assert_eq!(
        solo.annotations()["accountlinker.dev/verify-requested-at"],
        "1767232800"
    );
    plugin(&ctx.client, &ns, &["rotate", "bulkreg/workloads"])
        .await
        .unwrap();
    let bulk = ctx
        .api::<BulkRegistration>()
        .get("workloads")
        .await
        .unwrap();
    assert_eq!(
        bulk.annotations()["accountlinker.dev/rotate-requested-at"],
        "1767232800"
    );
    let refused = plugin(&ctx.client, &ns, &["rotate", "lacct/solo"])
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("rotate takes a BulkRegistration"),
        "{refused}"
    );

    // The same binary, found by kubectl on PATH under the plugin's name.
    let bin = tempdir_with_plugin();
    let mut kubectl = ctx.env.kubectl();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    kubectl
        .env("PATH", path)
        .args(["accountlinker", "status", "-n", &ns, "--now", NOW]);
    let through_kubectl = support::run_ok(kubectl, None);
    assert_eq!(
        through_kubectl, status,
        "kubectl accountlinker prints what the library does"
    );
    // And as a subcommand of the operator's binary.
    let mut fleet = std::process::Command::new(env!("CARGO_BIN_EXE_account-linker"));
    fleet
        .env("KUBECONFIG", ctx.env.kubeconfig())
        .args(["fleet", "status", "-n", &ns, "--now", NOW]);
    assert_eq!(
        support::run_ok(fleet, None),
        status,
        "account-linker fleet status"
    );
    ctx.cleanup().await;
}

/// A folder holding `kubectl-accountlinker`, a symlink to the built binary.
fn tempdir_with_plugin() -> PathBuf {
    let dir = std::env::temp_dir().join(support::unique("kubectl-plugin"));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_account-linker"),
        dir.join("kubectl-accountlinker"),
    )
    .unwrap();
    dir
}

/// A client that acts as ServiceAccount `sa` of `ns` (impersonation by the admin identity).
async fn client_as(ctx: &Context, ns: &str, sa: &str) -> Client {
    let mut kubeconfig = Kubeconfig::read_from(ctx.env.kubeconfig()).expect("kubeconfig");
    for named in &mut kubeconfig.auth_infos {
        if let Some(auth) = named.auth_info.as_mut() {
            auth.impersonate = Some(format!("system:serviceaccount:{ns}:{sa}"));
        }
    }
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_whose_rbac_stops_short_gets_a_clear_error() {
    let ctx = Context::without_policy("plugin-rbac").await;
    let ns = ctx.ns.name.clone();
    fleet(&ctx, "small", 3).await;
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "viewer"}})).unwrap();
    ctx.api::<ServiceAccount>()
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    // May read the account-linker kinds of this namespace, not Events, nothing elsewhere.
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "viewer"},
        "rules": [{"apiGroups": ["accountlinker.dev"], "resources": ["linkedaccounts", "bulkregistrations", "memberaccounts"], "verbs": ["get", "list"]}],
    }))
    .unwrap();
    ctx.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "viewer"},
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": ns}],
    }))
    .unwrap();
    ctx.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let viewer = client_as(&ctx, &ns, "viewer").await;

    // Its own namespace: fine (RBAC may take a moment to reach the authorizer).
    let mut own = Err(PluginError::Usage(String::new()));
    for _ in 0..20 {
        own = plugin(&viewer, &ns, &["status"]).await;
        if own.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(own.expect("status in its own namespace").contains("small"));
    // Every namespace: a worded error, not a panic.
    let all = plugin(&viewer, &ns, &["status", "-A"]).await.unwrap_err();
    let text = all.to_string();
    assert!(matches!(all, PluginError::Forbidden { .. }), "{text}");
    assert!(
        text.starts_with("list bulkregistrations in all namespaces: forbidden for your user"),
        "{text}"
    );
    // Events are not readable for it: `why` says which read failed.
    let why = plugin(&viewer, &ns, &["why", "bulkreg/small"])
        .await
        .unwrap_err();
    assert!(
        why.to_string()
            .starts_with(&format!("list events in namespace {ns}: forbidden")),
        "{why}"
    );
    // Nor may it patch: `verify` says so.
    let verify = plugin(&viewer, &ns, &["verify", "bulkreg/small"])
        .await
        .unwrap_err();
    assert!(
        verify.to_string().starts_with("patch bulkregistrations"),
        "{verify}"
    );
    ctx.cleanup().await;
}

/// The closing note's fleet: one registration with 200 children, 12 of them failing for mixed
/// reasons. Prints the table (`--nocapture` shows it) and keeps it as a golden file.
#[tokio::test(flavor = "multi_thread")]
async fn status_of_a_two_hundred_account_fleet() {
    let ctx = Context::without_policy("plugin-200").await;
    let ns = ctx.ns.name.clone();
    fleet(&ctx, "workloads", 200).await;
    let started = std::time::Instant::now();
    let status = plugin(&ctx.client, &ns, &["status"]).await.expect("status");
    eprintln!(
        "status of 200 accounts in {:?}:\n{status}",
        started.elapsed()
    );
    snapshot("status-200.txt", &ns, &status);
    let _ = T0;
    ctx.cleanup().await;
}
