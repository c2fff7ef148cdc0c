//! The one place AWS calls are counted. Every request the adapters send, reads and each page of
//! a listing included, ends in [`AwsClients::record`], which reports it to the
//! [`CallObserver`] with its classified outcome; controllers never count calls themselves, so
//! no call can be missed or counted twice.

use std::future::Future;
use std::sync::Arc;

use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

use super::{AwsClients, AwsError};

/// Sees every AWS call. The metrics registry implements it; a trait keeps `aws` independent of
/// where metrics live.
pub trait CallObserver: Send + Sync {
    /// `service` and `operation` as AWS names them (`sts`, `AssumeRole`); `outcome` is `ok` or
    /// an [`ErrorClass`](super::ErrorClass) label.
    fn aws_call(&self, service: &'static str, operation: &'static str, outcome: &'static str);
}

/// The observer of a set of clients: none until [`AwsClients::with_observer`].
#[derive(Clone, Default)]
pub struct Observer(Option<Arc<dyn CallObserver>>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.0.is_some() { "set" } else { "none" };
        f.debug_tuple("Observer").field(&state).finish()
    }
}

impl AwsClients {
    /// Reports every call of these clients to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Observer(Some(observer));
        self
    }

    /// Sends a request: the answer, or its failure classified, counted either way.
    pub(crate) async fn call<T, E>(
        &self,
        operation: &'static str,
        request: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<T, AwsError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let answer = request.await;
        self.observe(operation, answer)
    }

    /// Classifies and counts an answer already received (a page of a paginated listing).
    pub(crate) fn observe<T, E>(
        &self,
        operation: &'static str,
        answer: Result<T, SdkError<E, HttpResponse>>,
    ) -> Result<T, AwsError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.record(
            operation,
            answer.map_err(|e| AwsError::from_sdk(operation, e)),
        )
    }

    /// Counts a call whose failure is already classified. `operation` is `service:Operation`.
    pub(crate) fn record<T>(
        &self,
        operation: &'static str,
        result: Result<T, AwsError>,
    ) -> Result<T, AwsError> {
        if let Some(observer) = &self.observer.0 {
            let (service, name) = operation.split_once(':').unwrap_or(("aws", operation));
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.class.as_label(),
            };
            observer.aws_call(service, name, outcome);
        }
        crate::failpoint!(crate::failpoints::after_call(operation, result.is_ok()));
        result
    }
}

/// Records calls, for tests.
#[cfg(test)]
#[derive(Default)]
pub struct Recorder(pub std::sync::Mutex<Vec<String>>);

#[cfg(test)]
impl Recorder {
    /// Calls so far as `service:Operation=outcome`.
    pub fn calls(&self) -> Vec<String> {
        self.0.lock().expect("recorder poisoned").clone()
    }
}

#[cfg(test)]
impl CallObserver for Recorder {
    fn aws_call(&self, service: &'static str, operation: &'static str, outcome: &'static str) {
        let call = format!("{service}:{operation}={outcome}");
        self.0.lock().expect("recorder poisoned").push(call);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::ErrorClass;

    /// Every `service:Operation` the adapters name, and every outcome, is in docs/metrics.md.
    #[test]
    fn the_metrics_docs_name_every_operation_and_outcome() {
        let docs = include_str!("../../docs/metrics.md");
        let adapters = [
            include_str!("stacksets.rs"),
            include_str!("accounts.rs"),
            include_str!("org_units.rs"),
            include_str!("organizations.rs"),
            include_str!("sts.rs"),
        ];
        let operations: Vec<&str> = adapters
            .iter()
            .flat_map(|source| source.split('"'))
            .filter_map(|s| s.split_once(':'))
            .filter(|(service, op)| {
                ["sts", "cloudformation", "organizations"].contains(service)
                    && !op.is_empty()
                    && op.chars().all(|c| c.is_ascii_alphabetic())
            })
            .map(|(_, op)| op)
            .collect();
        assert!(operations.len() > 20, "{operations:?}");
        for op in operations {
            assert!(
                docs.contains(&format!("`{op}`")),
                "{op} is not in docs/metrics.md"
            );
        }
        for class in ErrorClass::ALL {
            let label = class.as_label();
            assert!(
                docs.contains(&format!("`{label}`")),
                "{label} is not in docs/metrics.md"
            );
        }
    }

    #[test]
    fn calls_are_counted_by_service_operation_and_class() {
        let recorder = Arc::new(Recorder::default());
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let clients = AwsClients::from_config(config).with_observer(recorder.clone());
        let ok: Result<(), AwsError> = Ok(());
        let denied = AwsError::new("sts:AssumeRole", ErrorClass::AccessDenied, "no");
        clients.record("sts:GetCallerIdentity", ok).unwrap();
        clients
            .record("sts:AssumeRole", Err::<(), _>(denied))
            .unwrap_err();
        assert_eq!(
            recorder.calls(),
            ["sts:GetCallerIdentity=ok", "sts:AssumeRole=access_denied"]
        );
    }
}
