//! Condition and Event reasons of BulkRegistration.

/// Condition reasons of BulkRegistration: part of the API, because `kubectl wait`, alerts and
/// GitOps health checks match on them. docs/bulkregistration.md lists every one.
pub mod reason {
    /// Ready: every target account is deployed and its role verified assumable.
    pub const READY: &str = "Ready";
    /// StackSetReady=True: the StackSet has the current template and settings.
    pub const STACK_SET_CURRENT: &str = "StackSetCurrent";
    /// StackSetReady=Unknown: an operation is in flight or the template is not applied yet.
    pub const STACK_SET_PENDING: &str = "StackSetPending";
    /// Stalled: ServiceManaged needs trusted access between StackSets and Organizations.
    pub const TRUSTED_ACCESS_DISABLED: &str = "TrustedAccessDisabled";
    /// Stalled: AWS refused a call; the message is AWS's.
    pub const AWS_REJECTED: &str = "AwsRejected";
    /// Reconciling: an operation of this registration is running.
    pub const OPERATION_RUNNING: &str = "OperationRunning";
    /// Reconciling: someone else's operation runs on the StackSet.
    pub const OPERATION_IN_PROGRESS: &str = "OperationInProgress";
    /// InstancesReady=True: every target account has a current, succeeded instance.
    pub const INSTANCES_CURRENT: &str = "InstancesCurrent";
    /// InstancesReady=False, Reconciling: instances are missing or being deployed.
    pub const INSTANCES_PENDING: &str = "InstancesPending";
    /// InstancesReady=False, Stalled: instances failed; see `status.failures`.
    pub const INSTANCES_FAILED: &str = "InstancesFailed";
    /// Reconciling: roles are deployed, not all verified assumable yet.
    pub const VERIFYING: &str = "Verifying";
    /// Stalled: a deployed role cannot be assumed (the message names a child).
    pub const NOT_ASSUMABLE: &str = "RolesNotAssumable";
    /// Reconciling or Stalled while `deletionPolicy: Delete` removes instances and StackSet.
    pub const DELETING: &str = "Deleting";
    /// Stalled: a `targets.accountsFrom` ConfigMap is missing or has malformed lines.
    pub const INVALID_ACCOUNT_LIST: &str = "InvalidAccountList";
    /// Stalled: the `template.configMapRef` ConfigMap does not exist.
    pub const TEMPLATE_CONFIG_MAP_NOT_FOUND: &str = "TemplateConfigMapNotFound";
    /// Stalled: the `template.configMapRef` ConfigMap has no such key.
    pub const TEMPLATE_KEY_NOT_FOUND: &str = "TemplateKeyNotFound";
    /// Stalled: the `externalId.secretRef` Secret does not exist.
    pub const TOKEN_SECRET_NOT_FOUND: &str = "TokenSecretNotFound";
    /// Stalled: the `externalId.secretRef` Secret lacks the `accountlinker.dev/external-id=true`
    /// label, so it is not read.
    pub const SECRET_NOT_LABELLED: &str = "SecretNotLabelled";
    /// Stalled: the token Secret has no such key, or its value is not a valid ExternalId.
    pub const TOKEN_KEY_NOT_FOUND: &str = "TokenKeyNotFound";
    /// Stalled: a Secret named like the generated token exists and is not this registration's.
    pub const TOKEN_SECRET_CONFLICT: &str = "TokenSecretConflict";
    /// Stalled: a ConfigMap or URL template does not declare `ExternalId` with `NoEcho: true`
    /// (GetTemplateSummary); no StackSet call is made with it.
    pub const EXTERNAL_ID_NOT_NO_ECHO: &str = "ExternalIdNotNoEcho";
    /// Stalled: `template.url` names no S3 object version (admitted before that was required).
    pub const TEMPLATE_URL_NOT_VERSIONED: &str = "TemplateUrlNotVersioned";
    /// Stalled: the targets resolve to more accounts than `--max-targets`.
    pub const TOO_MANY_TARGETS: &str = "TooManyTargets";
    /// Stalled: the StackSet exists and its tags do not name this registration (another
    /// cluster, another object, or none and no adoption asked for); nothing is changed.
    pub const STACK_SET_NOT_OWNED: &str = "StackSetNotOwned";
    /// Stalled: no LinkPolicy selecting the namespace permits everything the registration
    /// asks; the message names the field, the value and the policies (docs/linkpolicy.md).
    pub const NOT_PERMITTED: &str = "NotPermitted";
    /// Stalled: `callAs: DelegatedAdmin`, and the hub is not registered as a delegated
    /// administrator for StackSets; the message carries the command that registers it. No
    /// StackSet call is made.
    pub const DELEGATED_ADMIN_NOT_REGISTERED: &str = "DelegatedAdminNotRegistered";
    /// Stalled: `callAs: DelegatedAdmin`, and the hub may not call
    /// organizations:ListDelegatedAdministrators to check its registration (AWS refuses it to a
    /// member that is no delegated administrator, and to a role without the permission).
    pub const DELEGATED_ADMIN_UNVERIFIED: &str = "DelegatedAdminUnverified";
}

/// Event reasons of BulkRegistration, besides condition transitions (which carry the
/// condition's reason).
pub mod event {
    /// The StackSet was created.
    pub const STACK_SET_CREATED: &str = "StackSetCreated";
    /// An operation of this registration ended SUCCEEDED.
    pub const OPERATION_SUCCEEDED: &str = "OperationSucceeded";
    /// An operation of this registration ended FAILED or STOPPED.
    pub const OPERATION_FAILED: &str = "OperationFailed";
    /// `deletionPolicy: Delete` removed the StackSet.
    pub const STACK_SET_DELETED: &str = "StackSetDeleted";
    /// `deletionPolicy: Retain` left the StackSet and its stacks in AWS.
    pub const RETAINED: &str = "Retained";
    /// Deleted while no LinkPolicy permits it: the StackSet and its stacks stay in AWS,
    /// whatever `deletionPolicy` says.
    pub const RETAINED_NOT_PERMITTED: &str = "RetainedNotPermitted";
    /// Warning: `accountlinker.dev/rotate-requested-at` on a registration whose token comes
    /// from `externalId.secretRef`, which only its owner can rotate; the request is recorded
    /// as handled.
    pub const ROTATE_NOT_POSSIBLE: &str = "RotateNotPossible";
    /// A drift check found roles changed by hand (the note names the accounts).
    pub const DRIFT_DETECTED: &str = "DriftDetected";
    /// `drift.remediation: Update` redeployed the drifted instances.
    pub const DRIFT_REMEDIATED: &str = "DriftRemediated";
}
