//! What a BulkRegistration takes over from an estate that existed before it: the per-account
//! stacks a console wizard created.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Existing per-account stacks to bring into the StackSet instead of deploying the role again
/// (which would fail on the existing role's name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackImport {
    /// The name the existing stack has in each target account. Accounts that have a stack by this
    /// name (found through the StackSet execution role) are imported with ImportStacksToStackSet,
    /// at most 10 stacks per operation; accounts without one get a new instance as usual. The
    /// stack's template must match the StackSet's, else that account's import fails
    /// (`FAILED_IMPORT` in `status.failures`). Needs a LinkPolicy whose
    /// `bulkRegistrations.importStackNames` matches the name.
    #[schemars(pattern("^[a-zA-Z][-a-zA-Z0-9]{0,127}$"))]
    pub stack_name: String,
}
