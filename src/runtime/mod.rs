//! The process's plumbing, each piece a leaf that knows nothing of controllers: the HTTP
//! endpoints, readiness, leader election and shutdown signals. `operator` wires them together.

pub mod http;
pub mod leader;
pub mod readiness;
pub mod shutdown;

pub use readiness::{ControllerReadiness, Readiness};
