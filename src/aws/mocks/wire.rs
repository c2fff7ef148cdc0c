//! A replay HTTP client for the SDK: each request is answered with the reply registered for
//! its operation, written as AWS sends it on the wire, and every request is kept so a test can
//! read what was sent. The SDK serializes and deserializes for real, so these tests cover the
//! whole mapping from the operator's types to AWS's protocol and back.

use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

/// A request the SDK sent.
#[derive(Clone, Debug)]
pub struct Sent {
    /// The operation, e.g. `CreateStackSet`.
    pub action: String,
    /// The form (awsQuery) or JSON (awsJson) body.
    pub body: String,
    pub authorization: String,
}

#[derive(Debug)]
struct Reply {
    action: &'static str,
    /// A fragment the request body must contain for this reply.
    when: Option<String>,
    status: u16,
    body: String,
}

/// Replies are used once each, in the order registered.
#[derive(Clone, Debug, Default)]
pub struct Wire {
    replies: Arc<Mutex<Vec<Reply>>>,
    sent: Arc<Mutex<Vec<Sent>>>,
}

impl Wire {
    /// Answers the next `action` call with `status` and `body`.
    pub fn reply(&self, action: &'static str, status: u16, body: String) -> &Self {
        self.push(action, None, status, body)
    }

    /// Answers the next `action` call whose body contains `when`.
    pub fn reply_when(&self, action: &'static str, when: &str, status: u16, body: String) -> &Self {
        self.push(action, Some(when.to_string()), status, body)
    }

    fn push(&self, action: &'static str, when: Option<String>, status: u16, body: String) -> &Self {
        let reply = Reply {
            action,
            when,
            status,
            body,
        };
        self.replies.lock().expect("wire poisoned").push(reply);
        self
    }

    /// Every request sent so far.
    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().expect("wire poisoned").clone()
    }

    /// The body of the only `action` request sent.
    pub fn body_of(&self, action: &str) -> String {
        let sent: Vec<Sent> = self
            .sent()
            .into_iter()
            .filter(|s| s.action == action)
            .collect();
        assert_eq!(sent.len(), 1, "{action} sent {} times", sent.len());
        sent[0].body.clone()
    }

    fn answer(&self, request: &HttpRequest) -> HttpResponse {
        let body = String::from_utf8_lossy(request.body().bytes().unwrap_or_default()).to_string();
        let action = match request.headers().get("x-amz-target") {
            // awsJson: `AWSOrganizationsV20161128.CreateAccount`.
            Some(target) => target.rsplit('.').next().unwrap_or_default().to_string(),
            // awsQuery: `Action=CreateStackSet&Version=…`.
            None => body
                .split('&')
                .find_map(|p| p.strip_prefix("Action="))
                .unwrap_or_default()
                .to_string(),
        };
        let authorization = request.headers().get("authorization").unwrap_or_default();
        self.sent.lock().expect("wire poisoned").push(Sent {
            action: action.clone(),
            body: body.clone(),
            authorization: authorization.to_string(),
        });
        let mut replies = self.replies.lock().expect("wire poisoned");
        let found = replies.iter().position(|r| {
            r.action == action && r.when.as_ref().is_none_or(|w| body.contains(w.as_str()))
        });
        let (status, reply) = match found.map(|i| replies.remove(i)) {
            Some(r) => (r.status, r.body),
            None => (418, format!("no reply registered for {action}: {body}")),
        };
        HttpResponse::new(
            StatusCode::try_from(status).expect("valid status"),
            SdkBody::from(reply),
        )
    }
}

impl HttpConnector for Wire {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        HttpConnectorFuture::ready(Ok(self.answer(&request)))
    }
}

impl HttpClient for Wire {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

/// A successful awsQuery answer (CloudFormation, STS).
pub fn query_ok(action: &str, result: &str) -> String {
    format!(
        "<{action}Response><{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></{action}Response>"
    )
}

/// An awsQuery error.
pub fn query_error(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"
    )
}

/// An awsJson error (Organizations), with a `Reason` when it has one.
pub fn json_error(code: &str, message: &str, reason: Option<&str>) -> String {
    let reason = reason
        .map(|r| format!(r#","Reason":"{r}""#))
        .unwrap_or_default();
    format!(r#"{{"__type":"{code}","Message":"{message}"{reason}}}"#)
}
