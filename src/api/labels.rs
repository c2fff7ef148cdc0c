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

/// Label that makes a ConfigMap a BulkRegistration reads (`targets.accountsFrom`,
/// `template.configMapRef`) trigger the registration as soon as it changes. The operator watches
/// only ConfigMaps carrying it, not every ConfigMap of the watched namespaces; it reads the ones
/// a registration names by name whether labelled or not, so an unlabelled one still works and
/// its changes are picked up at the next resync.
pub const WATCH_LABEL: &str = "accountlinker.dev/watch";
/// Value of [`WATCH_LABEL`].
pub const WATCH_LABEL_VALUE: &str = "true";

/// Annotation on a generated registration-token Secret: when the token was generated (the
/// rotation time, RFC 3339), readable by anyone who may read the Secret's metadata.
pub const ROTATED_AT_ANNOTATION: &str = "accountlinker.dev/rotated-at";

/// Finalizer that LinkedAccounts carried up to v0.2 although they own nothing outside the
/// cluster; the controller removes it (it blocked namespace deletion while the operator was down).
pub const LINKED_ACCOUNT_FINALIZER: &str = "accountlinker.dev/linked-account";
/// Finalizer of BulkRegistrations: the StackSet and its instances are removed (or retained)
/// before the object goes.
pub const BULK_REGISTRATION_FINALIZER: &str = "accountlinker.dev/bulk-registration";
/// Finalizer of MemberAccounts: the account is closed (or retained) before the object goes.
pub const MEMBER_ACCOUNT_FINALIZER: &str = "accountlinker.dev/member-account";

/// The AWS tag naming the MemberAccount (`<namespace>/<name>`) an account was created for; with
/// [`CLUSTER_TAG`] it is the account's owner. Both are set by CreateAccount itself, so an account
/// found by e-mail after a crash proves it is this object's, and an account someone else made
/// with that e-mail is never taken over silently. The value keeps the format of earlier
/// releases, whose accounts carry no cluster tag.
pub const OWNER_TAG: &str = "accountlinker.dev/member-account";

/// The [`OWNER_TAG`] value for a MemberAccount.
pub fn owner(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// AWS tag naming the cluster (its `--cluster-id`) whose operator created or adopted a StackSet
/// or an account. Namespaces and names repeat across clusters (staging and production), so an
/// owner tag without it would let one cluster close or rewrite the other's resources.
pub const CLUSTER_TAG: &str = "accountlinker.dev/cluster-id";
/// AWS tag naming the namespace of the BulkRegistration that owns a StackSet.
pub const NAMESPACE_TAG: &str = "accountlinker.dev/namespace";
/// AWS tag naming the BulkRegistration that owns a StackSet.
pub const BULK_REGISTRATION_TAG: &str = "accountlinker.dev/bulk-registration";
/// AWS tag carrying the UID of the BulkRegistration that last wrote a StackSet. It is a record,
/// not part of the ownership test: an object deleted with `Retain` and created again under the
/// same name is the same registration to the namespace that owns it.
pub const UID_TAG: &str = "accountlinker.dev/uid";

/// Longest cluster identity: it is an AWS tag value and is hashed into StackSet names.
pub const MAX_CLUSTER_ID: usize = 128;

/// Checks a cluster identity: 1 to [`MAX_CLUSTER_ID`] characters that every AWS tag value
/// accepts (`[A-Za-z0-9_.:/=+@-]`), so that it can be written into every owner tag.
pub fn check_cluster_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_CLUSTER_ID {
        return Err(format!(
            "must be 1 to {MAX_CLUSTER_ID} characters, got {}",
            id.len()
        ));
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.:/=+@-".contains(*c)))
    {
        Some(c) => Err(format!(
            "{c:?} is not allowed: use letters, digits and _.:/=+@- (an AWS tag value)"
        )),
        None => Ok(()),
    }
}

/// The StackSet name of a BulkRegistration that names none: readable (`account-linker-`,
/// namespace and name) and injective, because a short SHA-256 over cluster, namespace and name
/// follows. Without the hash `team-a`/`x` and `team`/`a-x` would share one StackSet, and two
/// clusters with the same names would too. At most 128 characters of `[a-zA-Z0-9-]`, starting
/// with a letter, as CloudFormation requires. Every caller takes the name from here.
pub fn derived_stack_set_name(cluster: &str, namespace: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    const PREFIX: &str = "account-linker-";
    const HASH: usize = 16;
    let mut hasher = Sha256::new();
    for part in [cluster, namespace, name] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let hash: String = hasher.finalize()[..HASH / 2]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let readable: String = format!("{namespace}-{name}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(128 - PREFIX.len() - 1 - HASH)
        .collect();
    format!("{PREFIX}{readable}-{hash}")
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

    #[test]
    fn cluster_ids_must_be_tag_values() {
        let uid = "0f5c6a8e-5b8a-4d3e-9c1a-2b7e4f1d9a60";
        for good in [uid, "prod", "eks:eu-west-1/prod", "a"] {
            assert_eq!(check_cluster_id(good), Ok(()), "{good}");
        }
        let long = "x".repeat(MAX_CLUSTER_ID + 1);
        for bad in ["", "prod cluster", "prod\n", "prod,eu", "é", long.as_str()] {
            assert!(check_cluster_id(bad).is_err(), "{bad:?}");
        }
    }

    fn valid_stack_set_name(name: &str) -> bool {
        name.len() <= 128
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    }

    /// The names earlier releases derived (`account-linker-<namespace>-<name>`) collide; these
    /// must not, nor across clusters.
    #[test]
    fn derived_stack_set_names_are_injective_and_valid() {
        let a = derived_stack_set_name("c1", "team-a", "x");
        let b = derived_stack_set_name("c1", "team", "a-x");
        assert_ne!(a, b);
        assert!(a.starts_with("account-linker-team-a-x-"), "{a}");
        assert_ne!(a, derived_stack_set_name("c2", "team-a", "x"));
        assert_ne!(
            derived_stack_set_name("c1", "team", "a.x"),
            derived_stack_set_name("c1", "team", "a-x")
        );
        assert_eq!(a, derived_stack_set_name("c1", "team-a", "x"), "stable");
        // Pinned: a changed derivation would orphan every StackSet named by it.
        assert_eq!(a, "account-linker-team-a-x-a8bd364b11ee2d6c");
        let longest = derived_stack_set_name(&"c".repeat(128), &"n".repeat(63), &"a.b".repeat(84));
        assert_eq!(longest.len(), 128, "{longest}");
        for name in [a, b, longest] {
            assert!(valid_stack_set_name(&name), "{name}");
        }
        let distinct: std::collections::BTreeSet<String> = (0..200)
            .map(|i| {
                derived_stack_set_name("c", &"n".repeat(63), &format!("{}{i}", "x".repeat(120)))
            })
            .collect();
        assert_eq!(
            distinct.len(),
            200,
            "names that differ only past the readable part"
        );
    }
}
