//! What the operator tells its operators: Prometheus metrics and logs.

pub mod metrics;

pub use metrics::{Metrics, ReconcileResult};
