//! An `account-linker run` process of the binary under test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TestEnv, unique};

/// The operator, stopped (SIGTERM, then kill) on drop.
pub struct Operator {
    child: Child,
    pub log_path: PathBuf,
}

impl Operator {
    /// Starts the operator watching `namespace`, with `extra` flags.
    pub fn start(env: &TestEnv, namespace: &str, extra: &[&str]) -> Self {
        Self::start_with_kubeconfig(env, env.kubeconfig(), namespace, extra)
    }

    /// Like [`Operator::start`], with environment variables `vars` set over the environment's
    /// (e.g. other AWS credentials).
    pub fn start_with_env(
        env: &TestEnv,
        namespace: &str,
        extra: &[&str],
        vars: &[(String, String)],
    ) -> Self {
        Self::spawn(env, env.kubeconfig(), namespace, extra, vars)
    }

    /// Like [`Operator::start`], with another identity (e.g. a kubeconfig that impersonates the
    /// chart's ServiceAccount).
    pub fn start_with_kubeconfig(
        env: &TestEnv,
        kubeconfig: &Path,
        namespace: &str,
        extra: &[&str],
    ) -> Self {
        Self::spawn(env, kubeconfig, namespace, extra, &[])
    }

    /// With both another kubeconfig and extra environment variables (e.g. one replica of
    /// several, each with its own Kubernetes user and AWS access key).
    pub fn start_as(
        env: &TestEnv,
        kubeconfig: &Path,
        namespace: &str,
        extra: &[&str],
        vars: &[(String, String)],
    ) -> Self {
        Self::spawn(env, kubeconfig, namespace, extra, vars)
    }

    fn spawn(
        env: &TestEnv,
        kubeconfig: &Path,
        namespace: &str,
        extra: &[&str],
        vars: &[(String, String)],
    ) -> Self {
        let log_path = env
            .state_dir
            .join(format!("{}.log", unique(&format!("operator-{namespace}"))));
        let log = std::fs::File::create(&log_path).expect("operator log");
        // `ACCOUNT_LINKER_BIN` runs another build (e.g. the one before a change, to compare).
        let binary = std::env::var("ACCOUNT_LINKER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_account-linker").to_string());
        let child = Command::new(binary)
            .arg("run")
            .args(["--watch-namespace", namespace])
            .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "text"])
            .args(["--leader-election-namespace", namespace])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .envs(env.aws_vars())
            .envs(vars.iter().cloned())
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

    /// Waits up to `timeout` for the process to end by itself (a crash point); whether it did.
    pub async fn exited_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.is_running() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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

    /// Where the operator serves `/metrics` (it binds port 0 and logs the address it got).
    pub async fn metrics_addr(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = without_ansi(&self.log());
            let found = log
                .lines()
                .filter(|l| l.contains("serving /metrics"))
                .find_map(|l| l.split("addr=").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string);
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "the operator did not log its metrics address: {log}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The operator's `/metrics` text.
    pub async fn metrics(&self) -> String {
        use http_body_util::{BodyExt, Empty};
        let addr = self.metrics_addr().await;
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<bytes::Bytes>>();
        let uri: hyper::Uri = format!("http://{addr}/metrics")
            .parse()
            .expect("metrics URI");
        let response = http.get(uri).await.expect("GET /metrics");
        let body = response.into_body().collect().await.expect("metrics body");
        String::from_utf8_lossy(&body.to_bytes()).into_owned()
    }

    /// The sum of the samples of metric `name` whose labels include every `key="value"` of
    /// `labels`.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        sample(&self.metrics().await, name, labels)
    }
}

/// The sum of the samples of `name` in Prometheus text whose labels include all of `labels`.
pub fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `text` without terminal colour codes (the text log format may carry them).
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.is_running() {
            self.terminate(Duration::from_secs(5));
        }
    }
}
