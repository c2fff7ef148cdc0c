//! What the operator tells the people running it: Prometheus metrics and logs.

pub mod metrics;
pub mod tracing;

pub use metrics::{Metrics, ReconcileResult};
