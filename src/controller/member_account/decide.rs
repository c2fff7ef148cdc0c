//! The pure decisions of the MemberAccount controller.

use std::collections::BTreeMap;

use kube::runtime::controller::Action;

use crate::api::labels::OWNER_TAG;
use crate::aws::ErrorClass;

/// How the creation step ended.
#[derive(Debug)]
pub enum Creation {
    /// The account exists: its ID.
    Done(String),
    /// Not yet (or not at all): come back as the action says.
    Wait(Action),
}

/// The condition reason of a CreateAccount `FailureReason`, and whether a new request may
/// succeed without anyone changing anything (AWS's own transient failures).
pub fn classify_failure(failure: &str) -> (String, bool) {
    let transient = matches!(
        failure,
        "CONCURRENT_ACCOUNT_MODIFICATION" | "INTERNAL_FAILURE"
    );
    let reason = if failure.is_empty() {
        "CreateAccountFailed".to_string()
    } else {
        camel(failure)
    };
    (reason, transient)
}

/// The condition reason of a refused CreateAccount call (not a FAILED request).
pub fn rejection_reason(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::OrganizationsNotInUse => super::reason::NOT_IN_USE,
        _ => super::reason::AWS_REJECTED,
    }
}

/// `EMAIL_ALREADY_EXISTS` → `EmailAlreadyExists` (a valid condition reason).
fn camel(code: &str) -> String {
    code.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars
                .next()
                .map(|f| f.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The tags an account should carry: the spec's, and the owner tag.
pub fn wanted_tags(spec: &BTreeMap<String, String>, owner: &str) -> BTreeMap<String, String> {
    let mut tags = spec.clone();
    tags.insert(OWNER_TAG.to_string(), owner.to_string());
    tags
}

/// Whether an account's tags name `owner` as its MemberAccount.
pub fn owned(tags: &BTreeMap<String, String>, owner: &str) -> bool {
    tags.get(OWNER_TAG).is_some_and(|v| v == owner)
}

/// Whether an account's e-mail is the spec's (e-mail addresses compare without case here, as
/// Organizations compares them). An account described without an e-mail is given the benefit
/// of the doubt: the request that made it is this object's own.
pub fn same_email(account: &str, spec: &str) -> bool {
    account.is_empty() || account.eq_ignore_ascii_case(spec)
}

/// Tags to set (new or changed values) and keys to remove, to make `actual` equal `wanted`.
pub fn tag_changes(
    actual: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let set = wanted
        .iter()
        .filter(|(k, v)| actual.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove = actual
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .cloned()
        .collect();
    (set, remove)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::labels::owner;

    #[test]
    fn failure_reasons_become_condition_reasons() {
        assert_eq!(
            classify_failure("EMAIL_ALREADY_EXISTS"),
            ("EmailAlreadyExists".to_string(), false)
        );
        assert_eq!(
            classify_failure("ACCOUNT_LIMIT_EXCEEDED"),
            ("AccountLimitExceeded".to_string(), false)
        );
        assert_eq!(
            classify_failure("CONCURRENT_ACCOUNT_MODIFICATION"),
            ("ConcurrentAccountModification".to_string(), true)
        );
        assert_eq!(
            classify_failure(""),
            ("CreateAccountFailed".to_string(), false)
        );
    }

    #[test]
    fn organizations_not_in_use_is_named() {
        assert_eq!(
            rejection_reason(ErrorClass::OrganizationsNotInUse),
            "OrganizationsNotInUse"
        );
        assert_eq!(rejection_reason(ErrorClass::AccessDenied), "AwsRejected");
        assert_eq!(rejection_reason(ErrorClass::Rejected), "AwsRejected");
    }

    #[test]
    fn the_owner_tag_is_wanted_and_proves_ownership() {
        let me = owner("team-a", "sandbox");
        assert_eq!(me, "team-a/sandbox");
        let spec = BTreeMap::from([("team".to_string(), "a".to_string())]);
        let wanted = wanted_tags(&spec, &me);
        assert_eq!(wanted.len(), 2);
        assert!(owned(&wanted, &me));
        assert!(!owned(&spec, &me));
        assert!(!owned(&wanted, &owner("team-b", "sandbox")));
        // Syncing never removes the owner tag.
        let (set, remove) = tag_changes(&wanted, &wanted_tags(&BTreeMap::new(), &me));
        assert!(set.is_empty());
        assert_eq!(remove, vec!["team".to_string()]);
    }

    #[test]
    fn an_account_is_matched_by_e_mail_without_case() {
        assert!(same_email("Dev@Example.com", "dev@example.com"));
        assert!(!same_email("other@example.com", "dev@example.com"));
        assert!(same_email("", "dev@example.com"));
    }

    #[test]
    fn tags_converge_to_the_spec() {
        let actual = BTreeMap::from([
            ("team".to_string(), "a".to_string()),
            ("old".to_string(), "x".to_string()),
            ("same".to_string(), "s".to_string()),
        ]);
        let wanted = BTreeMap::from([
            ("team".to_string(), "b".to_string()),
            ("same".to_string(), "s".to_string()),
            ("new".to_string(), "n".to_string()),
        ]);
        let (set, remove) = tag_changes(&actual, &wanted);
        assert_eq!(
            set,
            BTreeMap::from([
                ("new".to_string(), "n".to_string()),
                ("team".to_string(), "b".to_string())
            ])
        );
        assert_eq!(remove, ["old"]);
        assert_eq!(tag_changes(&wanted, &wanted), (BTreeMap::new(), Vec::new()));
    }
}
