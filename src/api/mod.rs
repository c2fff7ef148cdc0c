//! The `accountlinker.dev/v1alpha1` API: custom resource types only, no controller logic.
//!
//! Every field's doc comment becomes its `kubectl explain` text, so they are written for the
//! platform engineer reading them there.

pub mod annotations;
pub mod bulk_registration;
pub mod common;
pub mod conditions;
pub mod labels;
pub mod link_policy;
pub mod linked_account;
pub mod member_account;

pub use bulk_registration::{BulkRegistration, BulkRegistrationSpec, BulkRegistrationStatus};
pub use link_policy::{LinkPolicy, LinkPolicySpec};
pub use linked_account::{LinkedAccount, LinkedAccountSpec, LinkedAccountStatus};
pub use member_account::{MemberAccount, MemberAccountSpec, MemberAccountStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every account-linker kind.
pub const GROUP: &str = "accountlinker.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// The `kubectl get <category>` name that lists all account-linker kinds.
pub const CATEGORY: &str = "accountlinker";

/// Every CustomResourceDefinition of the API, in a stable order (by kind).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        BulkRegistration::crd(),
        LinkPolicy::crd(),
        LinkedAccount::crd(),
        MemberAccount::crd(),
    ]
}
