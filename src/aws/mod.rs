//! AWS behind small traits that speak the operator's domain, plus the SDK-backed
//! implementations. [`AwsError`] is the only place that sees the SDK's error types: it classifies
//! each failure once, so controllers decide on meaning (denied, throttled, transient, …), never
//! on error codes.

pub mod accounts;
pub mod client;
pub mod error;
#[cfg(test)]
pub mod fake;
pub mod management;
pub mod metered;
#[cfg(test)]
mod mocks;
pub mod org_units;
pub mod organizations;
pub mod stacks;
pub mod stacksets;
pub mod state;
pub mod sts;
pub mod template_summary;

pub use accounts::Accounts;
pub use client::{AwsClients, AwsSettings};
pub use error::{AwsError, ErrorClass};
pub use management::ManagementStacks;
pub use metered::CallObserver;
pub use org_units::OrgUnits;
pub use organizations::{AccountDirectory, DelegatedAdministrators};
pub use stacks::StackImports;
pub use stacksets::StackSets;
pub use sts::{CallerIdentity, HubIdentity, RoleVerifier, VerifyRequest};
pub use template_summary::{TemplateParameter, TemplateSummaries};
