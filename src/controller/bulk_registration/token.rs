//! The registration token: one ExternalId per BulkRegistration, generated into a Secret the
//! registration owns (or read from a referenced Secret), rotated on `rotateEvery`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

use crate::api::BulkRegistration;
use crate::api::labels::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::controller::linked_account::external_id::{GENERATED_KEY, generate, is_valid};

/// The token and where children read it.
#[derive(Debug)]
pub struct Token {
    /// The value (never logged or written to status).
    pub value: String,
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

/// Reads (creating or rotating when due) the registration token.
pub async fn ensure(
    secrets: &Api<Secret>,
    bulk: &BulkRegistration,
    rotated_before: Option<&Time>,
    now: Timestamp,
) -> Result<Token, TokenError> {
    let spec = bulk.spec.external_id.clone().unwrap_or_default();
    if let Some(reference) = spec.secret_ref {
        let secret =
            secrets
                .get_opt(&reference.name)
                .await?
                .ok_or_else(|| TokenError::Blocked {
                    reason: "TokenSecretNotFound",
                    message: format!("Secret {:?} not found", reference.name),
                })?;
        let value = value_of(&secret, &reference.key).ok_or_else(|| TokenError::Blocked {
            reason: "TokenKeyNotFound",
            message: format!(
                "Secret {:?} has no valid key {:?} (2 to 1224 characters of [\\w+=,.@:/-])",
                reference.name, reference.key
            ),
        })?;
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
    match secrets.get_opt(&name).await? {
        Some(secret) if !owned_by(&secret, bulk) => Err(TokenError::Blocked {
            reason: "TokenSecretConflict",
            message: format!(
                "Secret {name:?} exists and is not owned by this BulkRegistration; delete or rename it"
            ),
        }),
        Some(secret) => {
            let created = secret.metadata.creation_timestamp.clone();
            let since = rotated_before.cloned().or(created);
            let due = match (rotate_every, &since) {
                (Some(every), Some(t)) => now.duration_since(t.0).unsigned_abs() >= every,
                _ => false,
            };
            match value_of(&secret, GENERATED_KEY) {
                Some(value) if !due => Ok(Token {
                    value,
                    secret_name: name,
                    key: GENERATED_KEY.into(),
                    rotated: since,
                }),
                _ => {
                    // Rotate (or repair) in place; the resourceVersion precondition makes a
                    // concurrent writer fail instead of losing a token.
                    let value = generate();
                    let mut replaced = secret.clone();
                    replaced.data = Some(data(&value));
                    secrets
                        .replace(&name, &PostParams::default(), &replaced)
                        .await?;
                    Ok(Token {
                        value,
                        secret_name: name,
                        key: GENERATED_KEY.into(),
                        rotated: Some(Time(now)),
                    })
                }
            }
        }
        None => {
            let value = generate();
            let secret = Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.clone()),
                    namespace: bulk.namespace(),
                    labels: Some(BTreeMap::from([(
                        MANAGED_BY_LABEL.to_string(),
                        MANAGED_BY.to_string(),
                    )])),
                    owner_references: bulk.controller_owner_ref(&()).map(|o| vec![o]),
                    ..Default::default()
                },
                data: Some(data(&value)),
                type_: Some("Opaque".into()),
                ..Default::default()
            };
            secrets.create(&PostParams::default(), &secret).await?;
            Ok(Token {
                value,
                secret_name: name,
                key: GENERATED_KEY.into(),
                rotated: Some(Time(now)),
            })
        }
    }
}

fn data(value: &str) -> BTreeMap<String, ByteString> {
    BTreeMap::from([(
        GENERATED_KEY.to_string(),
        ByteString(value.as_bytes().to_vec()),
    )])
}

fn value_of(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    let value = String::from_utf8(bytes.0.clone()).ok()?;
    is_valid(&value).then_some(value)
}

fn owned_by(secret: &Secret, bulk: &BulkRegistration) -> bool {
    let uid = bulk.meta().uid.as_deref();
    secret
        .owner_references()
        .iter()
        .any(|o| Some(o.uid.as_str()) == uid)
}
