//! Shared harness of the integration tests: one real control plane (etcd, kube-apiserver,
//! kube-controller-manager) and one strict AWS emulator per test binary, started by
//! `hack/testenv.py` on free loopback ports. Each test works in a namespace of its own.
//!
//! The supervisor watches this process: when the test binary exits, or is killed, it stops
//! every component and removes its state folder, so nothing leaks even on a panic or Ctrl-C.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// How long a cold start of the environment may take before the tests give up.
const STARTUP_DEADLINE: Duration = Duration::from_secs(180);

/// What `hack/testenv.py` wrote to `env.json` once everything was ready.
#[derive(Debug, Clone)]
pub struct TestEnv {
    /// Environment variables of `env.sh` (KUBECONFIG, AWS_ENDPOINT_URL, …).
    pub vars: BTreeMap<String, String>,
    pub state_dir: PathBuf,
}

impl TestEnv {
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("test environment does not export {name}"))
    }

    pub fn kubeconfig(&self) -> &Path {
        Path::new(self.var("KUBECONFIG"))
    }

    /// The `kubectl` of the pinned release.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(Path::new(self.var("KUBEBUILDER_ASSETS")).join("kubectl"));
        cmd.env("KUBECONFIG", self.kubeconfig());
        cmd
    }

    /// A client for the admin identity. Create one per test: a client belongs to the tokio
    /// runtime it was created on.
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(self.kubeconfig()).expect("readable kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("valid kubeconfig");
        Client::try_from(config).expect("client")
    }
}

struct Supervisor {
    child: Child,
    env: TestEnv,
}

static SUPERVISOR: OnceLock<Mutex<Supervisor>> = OnceLock::new();

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    if let Ok(py) = std::env::var("ACCOUNT_LINKER_PYTHON") {
        return PathBuf::from(py);
    }
    let out = Command::new("bash")
        .arg(repo_root().join("hack/venv.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run hack/venv.sh");
    assert!(out.status.success(), "hack/venv.sh failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("bin/python")
}

/// The environment of this test binary, started on first use.
pub fn env() -> TestEnv {
    let sup = SUPERVISOR.get_or_init(|| Mutex::new(start()));
    sup.lock().unwrap_or_else(|p| p.into_inner()).env.clone()
}

fn start() -> Supervisor {
    let state_dir = std::env::temp_dir().join(format!(
        "account-linker-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    ));
    let log_path =
        std::env::temp_dir().join(format!("account-linker-testenv-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).expect("create supervisor log");
    let mut child = Command::new(python())
        .current_dir(repo_root())
        .arg("hack/testenv.py")
        .args(["up", "--foreground", "--state-dir"])
        .arg(&state_dir)
        .arg("--crds")
        .arg(repo_root().join("crds"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .expect("start hack/testenv.py");

    let env_json = state_dir.join("env.json");
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        if env_json.exists() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("test environment exited with {status} before it was ready:\n{log}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("test environment not ready after {STARTUP_DEADLINE:?}:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(&log_path);
    let raw = std::fs::read_to_string(&env_json).expect("read env.json");
    let json: serde_json::Value = serde_json::from_str(&raw).expect("env.json is JSON");
    let vars = json
        .get("env")
        .and_then(|v| v.as_object())
        .expect("env.json has an `env` object")
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect();
    Supervisor {
        child,
        env: TestEnv { vars, state_dir },
    }
}

static NAMESPACE_SEQ: AtomicU32 = AtomicU32::new(0);

/// A namespace of one test; deleted by [`TestNamespace::cleanup`].
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    /// Creates a fresh namespace whose name starts with `prefix`.
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NAMESPACE_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
        }))
        .expect("namespace object");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self {
            name,
            client: client.clone(),
        }
    }

    /// Deletes the namespace (the controller manager finishes it in the background).
    pub async fn cleanup(self) {
        let _ = Api::<Namespace>::all(self.client)
            .delete(&self.name, &DeleteParams::default())
            .await;
    }
}

/// Runs `hack/aws-admin.py` against the emulator (what an administrator does by hand) and
/// returns its JSON answer.
pub fn aws_admin(env: &TestEnv, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .current_dir(repo_root())
        .arg("hack/aws-admin.py")
        .args(args)
        .envs(env.aws_vars())
        .output()
        .expect("run hack/aws-admin.py");
    assert!(
        out.status.success(),
        "aws-admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("aws-admin prints JSON")
}

/// Calls the emulator's control API (`/_strict/...`) and returns its JSON answer.
pub fn emulator(
    env: &TestEnv,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let url = format!("{}{}", env.var("EMULATOR_CONTROL_URL"), path);
    let script = r#"
import json, sys, urllib.request
method, url, body = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url, method=method, data=body.encode() if body else None,
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=10) as resp:
    sys.stdout.write(resp.read().decode() or "null")
"#;
    let out = Command::new(python())
        .args(["-c", script, method, &url])
        .arg(body.map(|b| b.to_string()).unwrap_or_default())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "emulator {method} {path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("control API answers JSON")
}

impl TestEnv {
    /// AWS_* variables pointing at the emulator's hub account.
    pub fn aws_vars(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// An `account-linker run` process of the binary under test, stopped (SIGTERM, then kill) on
/// drop.
pub struct Operator {
    child: Child,
    pub log_path: PathBuf,
}

impl Operator {
    /// Starts the operator watching `namespace`, with `extra` flags.
    pub fn start(env: &TestEnv, namespace: &str, extra: &[&str]) -> Self {
        Self::start_with_kubeconfig(env, env.kubeconfig(), namespace, extra)
    }

    /// Like [`Operator::start`], with another identity (e.g. a kubeconfig that impersonates the
    /// chart's ServiceAccount).
    pub fn start_with_kubeconfig(
        env: &TestEnv,
        kubeconfig: &Path,
        namespace: &str,
        extra: &[&str],
    ) -> Self {
        let log_path = env.state_dir.join(format!(
            "operator-{namespace}-{}.log",
            NAMESPACE_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let log = std::fs::File::create(&log_path).expect("operator log");
        let child = Command::new(env!("CARGO_BIN_EXE_account-linker"))
            .arg("run")
            .args(["--watch-namespace", namespace])
            .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "text"])
            .args(["--leader-election-namespace", namespace])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .envs(env.aws_vars())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start account-linker run");
        Self { child, log_path }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then wait up to `grace` before SIGKILL. Returns whether it exited by itself.
    pub fn terminate(&mut self, grace: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        false
    }

    /// SIGKILL: a crash, with no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.is_running() {
            self.terminate(Duration::from_secs(5));
        }
    }
}

/// Waits until the object `name` no longer exists (its finalizers ran), or panics after `timeout`.
pub async fn gone<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(timeout, &format!("{name} deleted"), || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

/// Polls `check` every 250 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
