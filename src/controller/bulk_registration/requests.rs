//! Request annotations on a BulkRegistration ([`crate::api::annotations`]): what a pass does
//! about `verify-requested-at` and `rotate-requested-at`. Each value is handled once: it is
//! recorded in status with what it caused, in the same write.

use kube::ResourceExt;

use crate::api::annotations::{self, ROTATE_REQUESTED_AT, VERIFY_REQUESTED_AT};
use crate::api::{BulkRegistration, BulkRegistrationStatus};

/// A verification request not handled yet: the pass reads OU membership past the cache (the
/// targets and instances are read on every pass anyway).
pub fn verify(bulk: &BulkRegistration, current: &BulkRegistrationStatus) -> Option<String> {
    annotations::pending(
        bulk.annotations(),
        VERIFY_REQUESTED_AT,
        current.last_handled_verify_request.as_deref(),
    )
    .map(str::to_owned)
}

/// What a rotation request asks of this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// None pending.
    None,
    /// Rotate the generated token; recorded once the token was replaced (a rotation waits
    /// while the token an earlier one replaced is not retired yet).
    Rotate(String),
    /// The token comes from `externalId.secretRef`: only its owner can rotate it. Recorded at
    /// once, with a Warning Event saying so.
    NotPossible(String),
}

/// The rotation request pending on `bulk`, if any.
pub fn rotation(bulk: &BulkRegistration, current: &BulkRegistrationStatus) -> Rotation {
    let pending = annotations::pending(
        bulk.annotations(),
        ROTATE_REQUESTED_AT,
        current.last_handled_rotate_request.as_deref(),
    );
    let referenced = bulk
        .spec
        .external_id
        .as_ref()
        .is_some_and(|e| e.secret_ref.is_some());
    match pending {
        None => Rotation::None,
        Some(value) if referenced => Rotation::NotPossible(value.to_owned()),
        Some(value) => Rotation::Rotate(value.to_owned()),
    }
}

/// The Event note of [`Rotation::NotPossible`]: names the Secret, never its value.
pub fn not_possible_note(bulk: &BulkRegistration) -> String {
    let name = bulk
        .spec
        .external_id
        .as_ref()
        .and_then(|e| e.secret_ref.as_ref())
        .map(|r| r.name.as_str())
        .unwrap_or_default();
    format!(
        "{ROTATE_REQUESTED_AT} ignored: the token comes from Secret {name:?} (externalId.secretRef), which only its owner can rotate; write a new value into it instead"
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bulk(external_id: serde_json::Value, annotations: &[(&str, &str)]) -> BulkRegistration {
        let spec = json!({
            "stackSet": {"permissionModel": "SelfManaged"},
            "targets": {"accounts": ["111111111111"]},
            "externalId": external_id,
        });
        let mut b = BulkRegistration::new("b", serde_json::from_value(spec).unwrap());
        b.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        b
    }

    fn handled(verify: Option<&str>, rotate: Option<&str>) -> BulkRegistrationStatus {
        BulkRegistrationStatus {
            last_handled_verify_request: verify.map(Into::into),
            last_handled_rotate_request: rotate.map(Into::into),
            ..BulkRegistrationStatus::default()
        }
    }

    #[test]
    fn rotation_requests_rotate_generated_tokens_once_and_refuse_referenced_ones() {
        let generated = json!({"rotateEvery": "720h"});
        let referenced = json!({"secretRef": {"name": "tok", "key": "t"}});
        let asked = [(ROTATE_REQUESTED_AT, "100")];
        let cases = [
            (&generated, &asked[..], None, Rotation::Rotate("100".into())),
            (&generated, &asked[..], Some("100"), Rotation::None),
            (&generated, &[][..], None, Rotation::None),
            (
                &referenced,
                &asked[..],
                None,
                Rotation::NotPossible("100".into()),
            ),
            (&referenced, &asked[..], Some("100"), Rotation::None),
        ];
        for (spec, annotations, recorded, want) in cases {
            let b = bulk(spec.clone(), annotations);
            assert_eq!(
                rotation(&b, &handled(None, recorded)),
                want,
                "{spec} {annotations:?} {recorded:?}"
            );
        }
        let note = not_possible_note(&bulk(referenced, &asked));
        assert!(note.contains("\"tok\""), "{note}");
    }

    #[test]
    fn verification_requests_are_pending_until_recorded() {
        let b = bulk(json!({}), &[(VERIFY_REQUESTED_AT, "7")]);
        assert_eq!(verify(&b, &handled(None, None)), Some("7".into()));
        assert_eq!(verify(&b, &handled(Some("7"), None)), None);
        assert_eq!(verify(&b, &handled(Some("6"), Some("7"))), Some("7".into()));
    }
}
