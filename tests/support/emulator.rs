//! The AWS emulator's control API (`/_strict/...`, see emulator/README.md), spoken over HTTP
//! from the test process: fault injection, latencies, request counts, and the IAM roles an
//! administrator would deploy by hand.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::TestEnv;

/// The emulator's control API. Cheap to create; create one per test (its connections belong
/// to the tokio runtime of the test that made them).
#[derive(Clone)]
pub struct Emulator {
    base: String,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

/// The trust policy of a role that lets `trust_account` assume it, with `external_id` when given.
pub fn trust_policy(trust_account: &str, external_id: Option<&str>) -> Value {
    let mut statement = json!({
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{trust_account}:root")},
        "Action": "sts:AssumeRole",
    });
    if let Some(id) = external_id {
        statement["Condition"] = json!({"StringEquals": {"sts:ExternalId": id}});
    }
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

impl Emulator {
    pub fn new(env: &TestEnv) -> Self {
        Self {
            base: env
                .var("EMULATOR_CONTROL_URL")
                .trim_end_matches('/')
                .to_string(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// One call; panics unless the emulator answers 2xx with JSON.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .expect("control request");
        let response = self
            .http
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("emulator {method} {path}: {e}"));
        let status = response.status();
        let raw = response
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("emulator {method} {path}: reading the answer: {e}"))
            .to_bytes();
        assert!(
            status.is_success(),
            "emulator {method} {path} answered {status}: {}",
            String::from_utf8_lossy(&raw)
        );
        serde_json::from_slice(&raw).expect("the control API answers JSON")
    }

    pub async fn get(&self, path: &str) -> Value {
        self.call(Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Value {
        self.call(Method::DELETE, path, None).await
    }

    // --- request counts -----------------------------------------------------------------

    /// How many `service:Operation` calls the emulator answered since the last reset.
    pub async fn count(&self, key: &str) -> u64 {
        self.get("/requests").await["counts"][key]
            .as_u64()
            .unwrap_or(0)
    }

    /// How many `service:Operation` calls were throttled since the last reset.
    pub async fn throttled(&self, key: &str) -> u64 {
        self.get("/requests").await["outcomes"][key]["throttled"]
            .as_u64()
            .unwrap_or(0)
    }

    pub async fn reset_counts(&self) {
        self.delete("/requests").await;
    }

    // --- StackSets ----------------------------------------------------------------------

    /// StackSet operations the emulator ran for `stack_set`, oldest first.
    pub async fn operations(&self, stack_set: &str) -> Vec<Value> {
        self.get("/stacksets/operations").await["operations"]
            .as_array()
            .expect("operations")
            .iter()
            .filter(|op| op["stack_set_name"] == stack_set)
            .cloned()
            .collect()
    }

    // --- Organizations ------------------------------------------------------------------

    /// CreateAccount calls made with `email`.
    pub async fn create_calls(&self, email: &str) -> u64 {
        self.get("/organizations").await["create_calls"][email.to_lowercase()]
            .as_u64()
            .unwrap_or(0)
    }

    // --- IAM roles, as an administrator deploys them ------------------------------------

    /// Creates the role `name` in `account` trusting `trust_account` (with `external_id`), or
    /// gives an existing one that trust policy.
    pub async fn put_role(
        &self,
        account: &str,
        name: &str,
        trust_account: &str,
        external_id: Option<&str>,
    ) -> Value {
        self.put(
            "/iam/roles",
            json!({
                "account": account,
                "name": name,
                "trust_policy": trust_policy(trust_account, external_id),
            }),
        )
        .await
    }

    /// The role `name` in `account`: `{"exists", "arn", "max_session_duration", "trust_policy"}`.
    pub async fn role(&self, account: &str, name: &str) -> Value {
        self.get(&format!("/iam/roles?account={account}&name={name}"))
            .await
    }

    pub async fn delete_role(&self, account: &str, name: &str) {
        self.delete(&format!("/iam/roles?account={account}&name={name}"))
            .await;
    }
}
