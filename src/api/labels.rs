//! Names the operator writes onto objects it does not define the schema of — labels, finalizers,
//! AWS tags and server-side-apply field managers. Users select on them, tools match them, and
//! existing clusters carry them, so they are part of the API: changing one orphans what is
//! already out there. Every controller takes them from here, never from a sibling controller.

/// Label on every child LinkedAccount of a BulkRegistration; its value is the registration's
/// name. The registration lists its children by it (`kubectl get lacct -l ...` does too).
pub const BULK_REGISTRATION_LABEL: &str = "accountlinker.dev/bulk-registration";

/// Label on the child LinkedAccount of a MemberAccount; its value is the MemberAccount's name.
pub const MEMBER_ACCOUNT_LABEL: &str = "accountlinker.dev/member-account";

/// Label on every Secret the operator generates (ExternalIds), so the operator watches only
/// its own Secrets and users can find them.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "account-linker";

/// Label a user's Secret must carry before a `spec.externalId.secretRef` may read it: a
/// namespace's author can otherwise send the value of any Secret in the namespace (a database
/// password, a token) to AWS as an ExternalId. Labelling is an explicit act by whoever may edit
/// the Secret. Generated Secrets carry it too, though they are trusted by ownership.
pub const EXTERNAL_ID_LABEL: &str = "accountlinker.dev/external-id";
/// Value of [`EXTERNAL_ID_LABEL`].
pub const EXTERNAL_ID_LABEL_VALUE: &str = "true";

/// Finalizer of LinkedAccounts.
pub const LINKED_ACCOUNT_FINALIZER: &str = "accountlinker.dev/linked-account";
/// Finalizer of BulkRegistrations: the StackSet and its instances are removed (or retained)
/// before the object goes.
pub const BULK_REGISTRATION_FINALIZER: &str = "accountlinker.dev/bulk-registration";
/// Finalizer of MemberAccounts: the account is closed (or retained) before the object goes.
pub const MEMBER_ACCOUNT_FINALIZER: &str = "accountlinker.dev/member-account";

/// The AWS tag naming the MemberAccount (`<namespace>/<name>`) an account was created for. It
/// is set by CreateAccount itself, so an account found by e-mail after a crash proves it is
/// this object's, and an account someone else made with that e-mail is never taken over
/// silently.
pub const OWNER_TAG: &str = "accountlinker.dev/member-account";

/// The [`OWNER_TAG`] value for a MemberAccount.
pub fn owner(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Field manager of every controller's writes to its own objects' status.
pub const STATUS_MANAGER: &str = "account-linker";
/// Field manager of a BulkRegistration's children (spec and `status.stackInstance`), apart
/// from the LinkedAccount controller's status writes so neither takes the other's fields.
pub const BULK_REGISTRATION_CHILD_MANAGER: &str = "account-linker-bulkregistration";
/// Field manager of a MemberAccount's child LinkedAccount.
pub const MEMBER_ACCOUNT_CHILD_MANAGER: &str = "account-linker-memberaccount";
/// Field manager of the leader-election Lease.
pub const LEADER_ELECTION_MANAGER: &str = "account-linker-leader-election";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_names_namespace_and_name() {
        assert_eq!(owner("team-a", "sandbox"), "team-a/sandbox");
    }
}
