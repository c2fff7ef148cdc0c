//! Condition types and reasons shared by the three kinds.
//!
//! Conditions follow the kstatus conventions: `Ready` summarises, and whenever `Ready` is not
//! `True`, exactly one of `Reconciling` and `Stalled` is `True`.

/// The summary condition on every kind.
pub const READY: &str = "Ready";
/// True while work is in flight (kstatus "in progress").
pub const RECONCILING: &str = "Reconciling";
/// True when progress needs a human: bad input, or access denied for good.
pub const STALLED: &str = "Stalled";
/// LinkedAccount: the hub could assume the role and the identity matched the account.
pub const ROLE_ASSUMABLE: &str = "RoleAssumable";
/// LinkedAccount deployed by a BulkRegistration: its stack instance is current and succeeded.
pub const ROLE_DEPLOYED: &str = "RoleDeployed";
/// LinkedAccount deployed by a BulkRegistration with drift detection: the last drift check
/// found the deployed role as the template says (True), changed by hand (False, `Drifted`), or
/// could not tell (Unknown). Informational: it never changes Ready.
pub const ROLE_IN_SYNC: &str = "RoleInSync";
/// BulkRegistration: the StackSet exists with the desired template and settings.
pub const STACK_SET_READY: &str = "StackSetReady";
/// BulkRegistration: every target account has a current, succeeded stack instance.
pub const INSTANCES_READY: &str = "InstancesReady";
/// MemberAccount: the account exists in the organization.
pub const ACCOUNT_CREATED: &str = "AccountCreated";
