//! One control plane and one AWS emulator per test binary, started by `hack/testenv.py` on
//! free loopback ports.
//!
//! The supervisor watches this process: when the test binary exits, or is killed, it stops
//! every component and removes its state folder, so nothing leaks even on a panic or Ctrl-C.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

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

    /// Runs `kubectl <args>`, which must succeed; returns its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let mut cmd = self.kubectl();
        cmd.args(args);
        super::run_ok(cmd, None)
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

    /// AWS_* variables pointing at the emulator's hub account.
    pub fn aws_vars(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

struct Supervisor {
    _child: Child,
    env: TestEnv,
}

static SUPERVISOR: OnceLock<Mutex<Supervisor>> = OnceLock::new();

pub fn repo_root() -> PathBuf {
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

/// A control plane and emulator of one test alone, for tests that restart or pause its
/// processes (the binary's shared one must stay healthy for the others). Stopped on drop.
pub struct PrivateEnv {
    supervisor: Supervisor,
}

impl PrivateEnv {
    pub fn start() -> Self {
        Self {
            supervisor: start(),
        }
    }

    pub fn env(&self) -> TestEnv {
        self.supervisor.env.clone()
    }

    /// `hack/testenv.py <args> --state-dir <this environment>`, which must succeed.
    fn testenv(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(python());
        cmd.current_dir(repo_root())
            .arg("hack/testenv.py")
            .args(args)
            .arg("--state-dir")
            .arg(&self.supervisor.env.state_dir);
        super::run_ok(cmd, None)
    }

    /// Stops `component` (SIGTERM, or SIGKILL when `kill`) and starts it again on its ports;
    /// returns once it is ready.
    pub fn restart(&self, component: &str, kill: bool) {
        let mut args = vec!["restart", component];
        if kill {
            args.push("--kill");
        }
        self.testenv(&args);
    }

    /// SIGSTOP `component`.
    pub fn pause(&self, component: &str) {
        self.testenv(&["pause", component]);
    }

    /// SIGCONT `component`.
    pub fn resume(&self, component: &str) {
        self.testenv(&["resume", component]);
    }
}

impl Drop for PrivateEnv {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.supervisor._child.id().to_string()])
            .status();
        let _ = self.supervisor._child.wait();
    }
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
    // Named like the state folder: a test binary may start private environments too.
    let log_path = state_dir.with_extension("log");
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
        _child: child,
        env: TestEnv { vars, state_dir },
    }
}
