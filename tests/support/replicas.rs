//! Several operator replicas of one test, each with an identity the evidence can attribute: its
//! own Kubernetes user (the admin impersonates `<name>`, so the audit log names it), its own AWS
//! access key (the emulator's request log names it) and its own proxy to the API server (to cut
//! or black-hole its connections). The test process records the Lease history from outside; from
//! the three, [`Evidence`] says who wrote when and whether it held the lease then.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::proxy::Proxy;
use super::{Context, Operator, TestEnv};

/// The Lease the operator elects on (the default `--lease-name`).
pub const LEASE: &str = "account-linker";

/// Seconds since the epoch, as every piece of evidence is timed.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn epoch(rfc3339: &str) -> Option<f64> {
    let ts: k8s_openapi::jiff::Timestamp = rfc3339.parse().ok()?;
    Some(ts.as_microsecond() as f64 / 1e6)
}

/// The address of the API server the environment's kubeconfig points at.
fn apiserver(env: &TestEnv) -> (Value, SocketAddr) {
    let raw = std::fs::read_to_string(env.kubeconfig()).expect("kubeconfig");
    let config: Value = serde_json::from_str(&raw).expect("the test kubeconfig is JSON");
    let server = config["clusters"][0]["cluster"]["server"]
        .as_str()
        .expect("server")
        .trim_start_matches("https://")
        .to_string();
    (config, server.parse().expect("host:port of the API server"))
}

/// One operator process with its identity and proxy.
pub struct Replica {
    pub name: String,
    pub access_key: String,
    pub proxy: Proxy,
    pub operator: Operator,
}

impl Replica {
    /// Starts replica `name` of the operator watching the test's namespace, with `flags`.
    pub async fn start(ctx: &Context, name: &str, flags: &[&str]) -> Self {
        Self::start_via(ctx, name, flags, None).await
    }

    /// Like [`Self::start`], talking to the API server at `server` (another proxy, such as
    /// [`super::conflicts::ConflictProxy`]) instead of through its own TCP proxy.
    pub async fn start_via(
        ctx: &Context,
        name: &str,
        flags: &[&str],
        server: Option<String>,
    ) -> Self {
        let (mut config, upstream) = apiserver(&ctx.env);
        let proxy = Proxy::start(upstream).await;
        config["clusters"][0]["cluster"]["server"] = json!(server.unwrap_or_else(|| proxy.url()));
        config["users"][0]["user"]["as"] = json!(name);
        config["users"][0]["user"]["as-groups"] = json!(["system:masters"]);
        let kubeconfig: PathBuf = ctx.env.state_dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&kubeconfig, config.to_string()).expect("write replica kubeconfig");
        let access_key = format!("AKID{}", name.replace('-', "").to_uppercase());
        let mut args = vec!["--leader-identity", name];
        args.extend_from_slice(flags);
        let vars = [
            ("AWS_ACCESS_KEY_ID".to_string(), access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), "testing".to_string()),
        ];
        let operator = Operator::start_as(&ctx.env, &kubeconfig, &ctx.ns.name, &args, &vars);
        Self {
            name: name.into(),
            access_key,
            proxy,
            operator,
        }
    }
}

/// One holder of the Lease, as the test saw it.
#[derive(Debug, Clone)]
pub struct Term {
    pub holder: String,
    /// `spec.acquireTime`: when the holder claimed it.
    pub acquired: f64,
    /// The last `spec.renewTime` seen from it.
    pub renewed: f64,
}

/// The Lease's holders over time, polled every 100 ms by a background task.
pub struct LeaseHistory {
    terms: Arc<Mutex<Vec<Term>>>,
    task: JoinHandle<()>,
}

impl LeaseHistory {
    pub fn record(ctx: &Context) -> Self {
        let leases: Api<Lease> = ctx.api();
        let terms: Arc<Mutex<Vec<Term>>> = Arc::default();
        let sink = terms.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(Some(lease)) = leases.get_opt(LEASE).await {
                    let spec = lease.spec.unwrap_or_default();
                    let time =
                        |t: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>| {
                            t.map(|t| t.0.as_microsecond() as f64 / 1e6)
                        };
                    if let (Some(holder), Some(acquired), Some(renewed)) = (
                        spec.holder_identity.filter(|h| !h.is_empty()),
                        time(spec.acquire_time),
                        time(spec.renew_time),
                    ) {
                        let mut terms = sink.lock().unwrap();
                        match terms.last_mut() {
                            Some(t) if t.holder == holder && t.acquired == acquired => {
                                t.renewed = renewed;
                            }
                            _ => terms.push(Term {
                                holder,
                                acquired,
                                renewed,
                            }),
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { terms, task }
    }

    pub fn terms(&self) -> Vec<Term> {
        self.terms.lock().unwrap().clone()
    }

    pub fn holder(&self) -> Option<String> {
        self.terms().last().map(|t| t.holder.clone())
    }

    /// The first term that began after `t`.
    pub fn term_after(&self, t: f64) -> Option<Term> {
        self.terms().into_iter().find(|term| term.acquired > t)
    }
}

impl Drop for LeaseHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One write (Kubernetes) or call (AWS) of a replica.
#[derive(Debug, Clone)]
pub struct Act {
    pub who: String,
    pub at: f64,
    pub what: String,
    /// The HTTP status of a Kubernetes write (0 for AWS calls).
    pub code: u64,
}

/// Writes to the operator's objects in `ns` by the replicas (impersonated users), from the API
/// server's audit log: every request that reached the server, whatever its answer.
pub fn kube_writes(env: &TestEnv, ns: &str) -> Vec<Act> {
    let raw = std::fs::read_to_string(env.state_dir.join("audit.log")).unwrap_or_default();
    raw.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|e| e["objectRef"]["namespace"] == ns)
        .filter_map(|e| {
            let who = e["impersonatedUser"]["username"].as_str()?.to_string();
            let at = epoch(e["requestReceivedTimestamp"].as_str()?)?;
            let what = format!(
                "{} {}/{} {}",
                e["verb"].as_str().unwrap_or(""),
                e["objectRef"]["resource"].as_str().unwrap_or(""),
                e["objectRef"]["subresource"].as_str().unwrap_or(""),
                e["objectRef"]["name"].as_str().unwrap_or(""),
            );
            let code = e["responseStatus"]["code"].as_u64().unwrap_or(0);
            Some(Act {
                who,
                at,
                what,
                code,
            })
        })
        .collect()
}

/// AWS calls of the replicas (by access key), from the emulator's request log.
pub async fn aws_calls(ctx: &Context, replicas: &[&Replica]) -> Vec<Act> {
    let names: BTreeMap<&str, &str> = replicas
        .iter()
        .map(|r| (r.access_key.as_str(), r.name.as_str()))
        .collect();
    let log = ctx.emulator.get("/requests/log").await;
    log["entries"]
        .as_array()
        .expect("the request log is on")
        .iter()
        .filter_map(|e| {
            let who = names.get(e["access_key"].as_str()?)?;
            Some(Act {
                who: (*who).to_string(),
                at: e["started"].as_f64()?,
                what: e["key"].as_str().unwrap_or("").to_string(),
                code: 0,
            })
        })
        .collect()
}

/// Every act outside the actor's own term(s): a term runs from its acquisition to the next
/// holder's (the last one without end).
pub fn outside_terms(acts: &[Act], terms: &[Term]) -> Vec<Act> {
    acts.iter()
        .filter(|act| {
            !terms.iter().enumerate().any(|(i, term)| {
                let end = terms.get(i + 1).map_or(f64::INFINITY, |next| next.acquired);
                term.holder == act.who && term.acquired <= act.at && act.at < end
            })
        })
        .cloned()
        .collect()
}

/// The first act of `who` at or after `t`.
pub fn first_act(acts: &[Act], who: &str, t: f64) -> Option<f64> {
    acts.iter()
        .filter(|a| a.who == who && a.at >= t)
        .map(|a| a.at)
        .reduce(f64::min)
}

/// The last act of `who`.
pub fn last_act(acts: &[Act], who: &str) -> Option<f64> {
    acts.iter()
        .filter(|a| a.who == who)
        .map(|a| a.at)
        .reduce(f64::max)
}

/// Prints one figure line for the reliability report (`CHAOS {json}`; at full size the lead
/// collects them, at small size they show with `--nocapture`).
pub fn report(scenario: &str, figures: Value) {
    let size = if super::chaos_full() { "full" } else { "small" };
    let mut line = json!({"scenario": scenario, "size": size});
    if let (Some(line), Some(figures)) = (line.as_object_mut(), figures.as_object()) {
        line.extend(figures.clone());
    }
    super::report_chaos(&line);
}
