//! Prometheus metrics. Label values are bounded enums and static strings, never per-object
//! values, so cardinality stays flat at 10,000 accounts. Documented in docs/metrics.md.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, text::encode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    controller: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsLabels {
    service: &'static str,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StackSetLabels {
    action: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadyLabels {
    ready: &'static str,
}

/// How a reconcile ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconcileResult {
    Success,
    Error,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: Family<ControllerLabels, Histogram>,
    aws_calls: Family<AwsLabels, Counter>,
    aws_retries: Family<ControllerLabels, Counter>,
    stackset_operations: Family<StackSetLabels, Counter>,
    linked_accounts: Family<ReadyLabels, Gauge>,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("account_linker");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by controller and result",
            reconciles.clone(),
        );
        let reconcile_duration =
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            });
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration by controller",
            reconcile_duration.clone(),
        );
        let aws_calls = Family::<AwsLabels, Counter>::default();
        registry.register(
            "aws_calls",
            "AWS API calls by service, operation and outcome",
            aws_calls.clone(),
        );
        let aws_retries = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "aws_retries",
            "Reconciles rescheduled with backoff after a transient AWS error",
            aws_retries.clone(),
        );
        let stackset_operations = Family::<StackSetLabels, Counter>::default();
        registry.register(
            "stackset_operations",
            "StackSet operations by action and result",
            stackset_operations.clone(),
        );
        let linked_accounts = Family::<ReadyLabels, Gauge>::default();
        registry.register(
            "linked_accounts",
            "LinkedAccounts by Ready condition status",
            linked_accounts.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_duration,
            aws_calls,
            aws_retries,
            stackset_operations,
            linked_accounts,
            leader,
        }
    }

    /// Records one reconcile.
    pub fn reconcile(&self, controller: &'static str, result: ReconcileResult, took: Duration) {
        let result = match result {
            ReconcileResult::Success => "success",
            ReconcileResult::Error => "error",
        };
        self.reconciles
            .get_or_create(&ReconcileLabels { controller, result })
            .inc();
        self.reconcile_duration
            .get_or_create(&ControllerLabels { controller })
            .observe(took.as_secs_f64());
    }

    /// Records one AWS call; `outcome` is `ok` or an error class label.
    pub fn aws_call(&self, service: &'static str, operation: &'static str, outcome: &'static str) {
        self.aws_calls
            .get_or_create(&AwsLabels {
                service,
                operation,
                outcome,
            })
            .inc();
    }

    /// Records a retry scheduled with backoff.
    pub fn aws_retry(&self, controller: &'static str) {
        self.aws_retries
            .get_or_create(&ControllerLabels { controller })
            .inc();
    }

    /// Records a StackSet operation started or finished.
    pub fn stackset_operation(&self, action: &'static str, result: &'static str) {
        self.stackset_operations
            .get_or_create(&StackSetLabels { action, result })
            .inc();
    }

    /// Sets the LinkedAccount readiness counts.
    pub fn set_linked_accounts(&self, ready: i64, not_ready: i64, unknown: i64) {
        for (label, value) in [("true", ready), ("false", not_ready), ("unknown", unknown)] {
            self.linked_accounts
                .get_or_create(&ReadyLabels { ready: label })
                .set(value);
        }
    }

    /// Sets whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Every AWS call the adapters make is counted here, reads included.
impl crate::aws::CallObserver for Metrics {
    fn aws_call(&self, service: &'static str, operation: &'static str, outcome: &'static str) {
        Metrics::aws_call(self, service, operation, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_bounded_labels() {
        let m = Metrics::new();
        m.reconcile(
            "linkedaccount",
            ReconcileResult::Success,
            Duration::from_millis(20),
        );
        m.aws_call("sts", "AssumeRole", "throttled");
        m.aws_retry("linkedaccount");
        m.stackset_operation("create", "started");
        m.set_linked_accounts(3, 1, 0);
        m.set_leader(true);
        let text = m.render();
        for needle in [
            r#"account_linker_reconciles_total{controller="linkedaccount",result="success"} 1"#,
            r#"account_linker_reconcile_duration_seconds_count{controller="linkedaccount"} 1"#,
            r#"account_linker_aws_calls_total{service="sts",operation="AssumeRole",outcome="throttled"} 1"#,
            r#"account_linker_aws_retries_total{controller="linkedaccount"} 1"#,
            r#"account_linker_stackset_operations_total{action="create",result="started"} 1"#,
            r#"account_linker_linked_accounts{ready="true"} 3"#,
            "account_linker_leader 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
