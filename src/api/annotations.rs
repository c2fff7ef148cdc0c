//! Request annotations: a user (or `kubectl accountlinker verify|rotate`) asks a controller to
//! do now what it would otherwise do on its schedule, the Flux `reconcile.fluxcd.io/requestedAt`
//! convention. The value is opaque (the plugin writes the current unix seconds); a controller
//! handles each value once and records it in status, so a second reconcile with the same value
//! does nothing more. They only bring forward work the object already asks for: whoever may
//! patch the object gains no AWS reach by them.

/// On a LinkedAccount: verify now (AssumeRole + GetCallerIdentity), whatever `verifyInterval`
/// says. On a BulkRegistration: read the targets (OU membership included, past the cache) and
/// the stack instances now. Handled values land in `status.lastHandledVerifyRequest`.
pub const VERIFY_REQUESTED_AT: &str = "accountlinker.dev/verify-requested-at";

/// On a BulkRegistration with a generated token: rotate the registration token now, as a due
/// `externalId.rotateEvery` would. Handled values land in `status.lastHandledRotateRequest`.
pub const ROTATE_REQUESTED_AT: &str = "accountlinker.dev/rotate-requested-at";

/// The value of request annotation `key` on an object, when it has not been handled yet
/// (`handled` is what status records). An empty value asks for nothing.
pub fn pending<'a>(
    annotations: &'a std::collections::BTreeMap<String, String>,
    key: &str,
    handled: Option<&str>,
) -> Option<&'a str> {
    annotations
        .get(key)
        .map(|v| v.as_str())
        .filter(|v| !v.trim().is_empty() && Some(*v) != handled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_pending_until_its_value_is_recorded() {
        let with = |v: &str| [(VERIFY_REQUESTED_AT.to_string(), v.to_string())].into();
        let none = Default::default();
        // (annotations, handled) → pending
        let cases = [
            (with("100"), None, Some("100")),
            (with("100"), Some("100"), None),
            (with("200"), Some("100"), Some("200")),
            (with(""), None, None),
            (with("  "), Some("100"), None),
            (none, Some("100"), None),
        ];
        for (annotations, handled, want) in cases {
            assert_eq!(
                pending(&annotations, VERIFY_REQUESTED_AT, handled),
                want,
                "{annotations:?} {handled:?}"
            );
        }
        assert_eq!(pending(&with("1"), ROTATE_REQUESTED_AT, None), None);
    }
}
