//! Phase "token": the registration token, one ExternalId per BulkRegistration, generated into a
//! Secret the registration owns (or read from a referenced Secret), rotated on `rotateEvery`.
//! Values are read by the same reader as a LinkedAccount's ExternalId, so both treat a Secret
//! the same way.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api::BulkRegistration;
use crate::api::bulk_registration::reason;
use crate::api::labels::{EXTERNAL_ID_LABEL, EXTERNAL_ID_LABEL_VALUE};
use crate::controller::external_id::{self, ExternalId, GENERATED_KEY, Unreadable, VALID_FORM};

/// The token and where children read it. `Debug` shows where, never the value.
#[derive(Debug)]
pub struct Token {
    /// The value: reaches AWS only as the `ExternalId` StackSet parameter.
    pub value: ExternalId,
    pub secret_name: String,
    pub key: String,
    /// When a generated token was created or last rotated.
    pub rotated: Option<Time>,
}

/// Why the token is not available.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Needs a human: the message names the Secret and key, never a value.
    #[error("{message}")]
    Blocked {
        reason: &'static str,
        message: String,
    },
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Name of the generated token Secret.
pub fn generated_secret_name(bulk: &BulkRegistration) -> String {
    format!("{}-registration-token", bulk.name_any())
}

/// Whether a generated token is due for rotation: `every` has passed since `since` (the last
/// rotation, else the Secret's creation). No interval, or no known age, is never due.
pub fn rotation_due(every: Option<Duration>, since: Option<&Time>, now: Timestamp) -> bool {
    match (every, since) {
        (Some(every), Some(t)) => now.duration_since(t.0).unsigned_abs() >= every,
        _ => false,
    }
}

/// Reads (creating or rotating when due) the registration token.
pub async fn ensure(
    secrets: &Api<Secret>,
    bulk: &BulkRegistration,
    rotated_before: Option<&Time>,
    now: Timestamp,
) -> Result<Token, TokenError> {
    let spec = bulk.spec.external_id.clone().unwrap_or_default();
    if let Some(reference) = spec.secret_ref {
        let value = external_id::read_referenced(secrets, &reference.name, &reference.key)
            .await
            .map_err(|e| referenced_error(e, &reference.name, &reference.key))?
            .0;
        return Ok(Token {
            value,
            secret_name: reference.name,
            key: reference.key,
            rotated: None,
        });
    }
    let name = generated_secret_name(bulk);
    let rotate_every = spec
        .rotate_every
        .as_deref()
        .and_then(|t| t.parse::<kube::core::Duration>().ok())
        .map(Duration::from);
    let token = |value, rotated| Token {
        value,
        secret_name: name.clone(),
        key: GENERATED_KEY.into(),
        rotated,
    };
    match secrets.get_opt(&name).await? {
        Some(secret) if !external_id::owned_by(&secret, bulk.meta().uid.as_deref()) => {
            Err(TokenError::Blocked {
                reason: reason::TOKEN_SECRET_CONFLICT,
                message: format!(
                    "Secret {name:?} exists and is not owned by this BulkRegistration; delete or rename it"
                ),
            })
        }
        Some(secret) => {
            let since = rotated_before
                .cloned()
                .or_else(|| secret.metadata.creation_timestamp.clone());
            let due = rotation_due(rotate_every, since.as_ref(), now);
            match external_id::read(&secret, GENERATED_KEY) {
                Ok(value) if !due => {
                    if !external_id::labelled(&secret) {
                        // Generated before Secrets were labelled: the children read it by
                        // reference, which takes the label.
                        let patch = json!({"metadata": {"labels": {EXTERNAL_ID_LABEL: EXTERNAL_ID_LABEL_VALUE}}});
                        secrets
                            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await?;
                    }
                    Ok(token(value, since))
                }
                _ => {
                    // Rotate (or repair) in place; the resourceVersion precondition makes a
                    // concurrent writer fail instead of losing a token.
                    let value = external_id::generate();
                    let mut replaced = secret;
                    replaced.data = Some(external_id::generated_data(&value));
                    replaced
                        .labels_mut()
                        .insert(EXTERNAL_ID_LABEL.into(), EXTERNAL_ID_LABEL_VALUE.into());
                    secrets
                        .replace(&name, &PostParams::default(), &replaced)
                        .await?;
                    Ok(token(value, Some(Time(now))))
                }
            }
        }
        None => {
            let value = external_id::generate();
            let secret =
                external_id::generated_secret(&name, bulk.controller_owner_ref(&()), &value);
            secrets.create(&PostParams::default(), &secret).await?;
            Ok(token(value, Some(Time(now))))
        }
    }
}

/// The condition a referenced Secret that holds no usable token stalls on.
fn referenced_error(e: Unreadable, name: &str, key: &str) -> TokenError {
    match e {
        Unreadable::Api(e) => TokenError::Kube(e),
        Unreadable::SecretNotFound => TokenError::Blocked {
            reason: reason::TOKEN_SECRET_NOT_FOUND,
            message: format!("Secret {name:?} not found"),
        },
        Unreadable::NotLabelled => TokenError::Blocked {
            reason: reason::SECRET_NOT_LABELLED,
            message: format!(
                "{} (spec.externalId.secretRef)",
                external_id::label_hint(name)
            ),
        },
        Unreadable::KeyNotFound | Unreadable::Invalid => TokenError::Blocked {
            reason: reason::TOKEN_KEY_NOT_FOUND,
            message: format!("Secret {name:?} has no valid key {key:?} ({VALID_FORM})"),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn rotation_is_due_once_the_interval_passed() {
        let hour = Some(Duration::from_secs(3600));
        let cases = [
            (hour, Some(0), 3599, false),
            (hour, Some(0), 3600, true),
            (hour, Some(0), 90_000, true),
            (hour, None, 90_000, false),
            (None, Some(0), 90_000, false),
        ];
        for (every, since, now, due) in cases {
            let since = since.map(|s| Time(at(s)));
            assert_eq!(
                rotation_due(every, since.as_ref(), at(now)),
                due,
                "{every:?} {since:?} {now}"
            );
        }
    }

    #[test]
    fn a_trailing_newline_reads_as_for_a_linked_account() {
        let secret = Secret {
            data: Some(BTreeMap::from([(
                "token".to_string(),
                ByteString(b"registration-token-1\n".to_vec()),
            )])),
            ..Secret::default()
        };
        // The one reader both controllers use.
        let value = external_id::read(&secret, "token").unwrap();
        assert_eq!(value.expose(), "registration-token-1");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = Token {
            value: ExternalId::new("s3cr3t-token"),
            secret_name: "w-registration-token".into(),
            key: GENERATED_KEY.into(),
            rotated: None,
        };
        let shown = format!("{token:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("w-registration-token"), "{shown}");
    }

    #[test]
    fn unusable_references_stall_without_the_value() {
        let cases = [
            (Unreadable::SecretNotFound, reason::TOKEN_SECRET_NOT_FOUND),
            (Unreadable::KeyNotFound, reason::TOKEN_KEY_NOT_FOUND),
            (Unreadable::Invalid, reason::TOKEN_KEY_NOT_FOUND),
        ];
        for (e, want) in cases {
            let TokenError::Blocked { reason, message } = referenced_error(e, "s", "k") else {
                panic!("blocked expected");
            };
            assert_eq!(reason, want);
            assert!(message.contains("\"s\""), "{message}");
        }
    }
}
