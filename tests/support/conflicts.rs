//! An HTTP proxy between one operator and the kube-apiserver that answers a chosen fraction of
//! the operator's writes with a genuine Kubernetes 409 Conflict instead of forwarding them: the
//! answer the server gives a write whose resourceVersion went stale. The operator's own writes
//! (server-side apply of status, merge patches of finalizers) carry no resourceVersion, so the
//! real server would never refuse them; this is how a test sees what the operator does with one.
//!
//! The operator talks plain HTTP to the proxy (its kubeconfig points at `http://…`; kube's
//! connector accepts both schemes); the proxy forwards everything else — reads, lists, watches
//! streamed frame by frame — over TLS with the administrator's client (kube's `Client::send`,
//! the raw request path), and the impersonation headers of the operator's kubeconfig pass along,
//! so the audit log still names the operator. Leases are never refused: leadership stays put.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

type Answer = Response<http_body_util::combinators::UnsyncBoxBody<Bytes, kube::Error>>;

/// Which writes may be refused, by path (`/apis/<group>/<version>/namespaces/…`).
pub type Filter = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// What the proxy did with the writes it may refuse (those its filter matches, never a Lease's),
/// per `"<VERB> <resource>[/<subresource>]"`.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub refused: BTreeMap<String, u64>,
    pub forwarded: BTreeMap<String, u64>,
}

impl Tally {
    /// 409 answers given.
    pub fn conflicts(&self) -> u64 {
        self.refused.values().sum()
    }

    /// Writes that could have been refused and reached the API server.
    pub fn forwarded_writes(&self) -> u64 {
        self.forwarded.values().sum()
    }
}

struct Shared {
    upstream: kube::Client,
    filter: Filter,
    /// The fraction of matching writes refused, as `f64` bits (0 = none).
    fraction: AtomicU64,
    /// The next matching write is refused whatever the dice say.
    first: AtomicBool,
    /// xorshift64 state: reproducible choices, no dependency.
    dice: Mutex<u64>,
    tally: Mutex<Tally>,
}

impl Shared {
    fn roll(&self) -> f64 {
        let mut x = self.dice.lock().unwrap();
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        (*x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A running proxy; it stops, with every connection through it, when dropped.
pub struct ConflictProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl ConflictProxy {
    /// Listens on a free loopback port and forwards with `upstream` (a client of the real API
    /// server allowed to impersonate); writes whose path passes `filter` may be refused once
    /// [`Self::refuse`] sets a fraction above 0.
    pub async fn start(upstream: kube::Client, filter: Filter) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            filter,
            fraction: AtomicU64::new(0f64.to_bits()),
            first: AtomicBool::new(false),
            dice: Mutex::new(0x9e37_79b9_7f4a_7c15),
            tally: Mutex::default(),
        });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            // Dropped with the task: every open connection (watches included) closes with it.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = serving.clone();
                let service = hyper::service::service_fn(move |req| answer(shared.clone(), req));
                connections.spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
                while connections.try_join_next().is_some() {}
            }
        });
        Self { addr, shared, task }
    }

    /// From now on refuse this fraction (0..=1) of the matching writes, chosen at random
    /// (seeded), the first of them always: a short storm is never spared by chance.
    pub fn refuse(&self, fraction: f64) {
        let fraction = fraction.clamp(0.0, 1.0);
        self.shared
            .fraction
            .store(fraction.to_bits(), Ordering::Relaxed);
        self.shared.first.store(fraction > 0.0, Ordering::Relaxed);
    }

    /// What happened to the writes so far.
    pub fn tally(&self) -> Tally {
        self.shared.tally.lock().unwrap().clone()
    }

    /// The URL the operator's kubeconfig names as its server.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ConflictProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn is_write(method: &Method) -> bool {
    [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(method)
}

/// `(resource[/subresource], name)` of an object path: `…/namespaces/<ns>/<resource>/<name>[/<sub>]`
/// (a collection path, a create, has no name).
pub fn target(path: &str) -> (String, String) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let at = parts
        .iter()
        .position(|p| *p == "namespaces")
        .map_or(0, |i| i + 2);
    let resource = parts.get(at).copied().unwrap_or_default();
    let name = parts.get(at + 1).copied().unwrap_or_default();
    match parts.get(at + 2) {
        Some(sub) => (format!("{resource}/{sub}"), name.to_string()),
        None => (resource.to_string(), name.to_string()),
    }
}

/// The Status the API server answers a write with a stale resourceVersion.
fn conflict_status(group: &str, resource: &str, name: &str) -> Value {
    let kind = resource.split('/').next().unwrap_or_default();
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "reason": "Conflict", "code": 409,
        "message": format!("Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
        "details": {"name": name, "group": group, "kind": kind},
    })
}

fn full(status: StatusCode, body: Value) -> Answer {
    let mut answer = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    answer
}

/// Headers of one hop: never forwarded.
fn strip_hop(headers: &mut HeaderMap) {
    for name in [
        header::HOST,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

async fn answer(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Answer, hyper::Error> {
    let (mut parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts.uri.path().to_string();
    let lease = path.contains("/coordination.k8s.io/");
    if is_write(&parts.method) && !lease && (shared.filter)(&path) {
        let (resource, mut name) = target(&path);
        let key = format!("{} {resource}", parts.method);
        let fraction = f64::from_bits(shared.fraction.load(Ordering::Relaxed));
        if shared.first.swap(false, Ordering::Relaxed) || shared.roll() < fraction {
            *shared.tally.lock().unwrap().refused.entry(key).or_default() += 1;
            if name.is_empty() {
                // A create names its object in the body.
                let object: Value = serde_json::from_slice(&body).unwrap_or_default();
                name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
            }
            let group = path
                .strip_prefix("/apis/")
                .and_then(|p| p.split('/').next())
                .unwrap_or("");
            let status = conflict_status(group, &resource, &name);
            return Ok(full(StatusCode::CONFLICT, status));
        }
        *shared
            .tally
            .lock()
            .unwrap()
            .forwarded
            .entry(key)
            .or_default() += 1;
    }
    strip_hop(&mut parts.headers);
    let forward = Request::from_parts(parts, kube::client::Body::from(body));
    match shared.upstream.send(forward).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, body.boxed_unsync()))
        }
        Err(e) => Ok(full(
            StatusCode::BAD_GATEWAY,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                   "reason": "ServiceUnavailable", "code": 502, "message": e.to_string()}),
        )),
    }
}
