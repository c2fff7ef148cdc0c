//! Where a LinkedAccount's ExternalId comes from: a referenced Secret key, or a Secret the
//! operator generates once and owns (garbage-collected with the LinkedAccount).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use rand::distr::{Alphanumeric, SampleString};

use crate::api::LinkedAccount;
use crate::api::labels::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::api::linked_account::reason;
use crate::aws::sts::Secret as SecretValue;

/// The key generated Secrets keep the ExternalId under.
pub const GENERATED_KEY: &str = "externalId";
/// Length of generated ExternalIds (characters of `[A-Za-z0-9]`).
pub const GENERATED_LENGTH: usize = 40;

/// The ExternalId and where it was read from.
#[derive(Debug)]
pub struct Resolved {
    pub value: SecretValue,
    pub secret_name: String,
    /// The Secret's resourceVersion: a change means the value may have changed.
    pub version: String,
}

/// Why the ExternalId is not available. The message names the Secret and key, never the value.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("{message}")]
    Blocked {
        reason: &'static str,
        message: String,
    },
    #[error("reading Secret {name}: {source}")]
    Api {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The name of the Secret generated for a LinkedAccount.
pub fn generated_secret_name(link: &LinkedAccount) -> String {
    let name = link.name_any();
    let suffix = "-external-id";
    // Secret names are DNS subdomains (253 characters); LinkedAccount names are too, so
    // keep the suffix and shorten the name when both do not fit.
    let keep = 253usize.saturating_sub(suffix.len()).min(name.len());
    format!("{}{suffix}", name[..keep].trim_end_matches(['-', '.']))
}

/// A fresh ExternalId from the thread-local CSPRNG.
pub fn generate() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), GENERATED_LENGTH)
}

/// Whether a value is a valid ExternalId for STS: 2–1224 characters of `[\w+=,.@:/-]`.
pub fn is_valid(value: &str) -> bool {
    (2..=1224).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
}

/// Reads the ExternalId of `link`, generating its Secret first when the spec names none.
pub async fn resolve(secrets: &Api<Secret>, link: &LinkedAccount) -> Result<Resolved, Unavailable> {
    match &link.spec.external_id {
        Some(source) => {
            let name = &source.secret_ref.name;
            let secret = secrets
                .get_opt(name)
                .await
                .map_err(|source| Unavailable::Api {
                    name: name.clone(),
                    source,
                })?
                .ok_or_else(|| Unavailable::Blocked {
                    reason: reason::EXTERNAL_ID_SECRET_NOT_FOUND,
                    message: format!("Secret {name} (spec.externalId.secretRef) not found"),
                })?;
            read_key(&secret, &source.secret_ref.key)
        }
        None => {
            let secret = ensure_generated(secrets, link).await?;
            read_key(&secret, GENERATED_KEY)
        }
    }
}

fn read_key(secret: &Secret, key: &str) -> Result<Resolved, Unavailable> {
    let name = secret.name_any();
    let raw = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| Unavailable::Blocked {
            reason: reason::EXTERNAL_ID_KEY_NOT_FOUND,
            message: format!("Secret {name} has no key {key}"),
        })?;
    let value = std::str::from_utf8(&raw.0)
        .ok()
        .map(str::trim)
        .filter(|v| is_valid(v))
        .ok_or_else(|| Unavailable::Blocked {
            reason: reason::INVALID_EXTERNAL_ID,
            message: format!(
                "key {key} of Secret {name} is not a valid ExternalId (2 to 1224 characters of [A-Za-z0-9_+=,.@:/-])"
            ),
        })?;
    Ok(Resolved {
        value: SecretValue::new(value),
        secret_name: name,
        version: secret.resource_version().unwrap_or_default(),
    })
}

/// Returns the generated Secret, creating it exactly once. A Secret of that name that the
/// LinkedAccount does not own is never overwritten.
async fn ensure_generated(
    secrets: &Api<Secret>,
    link: &LinkedAccount,
) -> Result<Secret, Unavailable> {
    let name = generated_secret_name(link);
    let api_err = |source| Unavailable::Api {
        name: name.clone(),
        source,
    };
    let existing = match secrets.get_opt(&name).await.map_err(api_err)? {
        Some(secret) => secret,
        None => {
            let owner = link
                .controller_owner_ref(&())
                .expect("objects read from the API server have a name and uid");
            let secret = Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.clone()),
                    owner_references: Some(vec![owner]),
                    labels: Some(BTreeMap::from([(
                        MANAGED_BY_LABEL.to_string(),
                        MANAGED_BY.to_string(),
                    )])),
                    ..Default::default()
                },
                type_: Some("Opaque".into()),
                data: Some(BTreeMap::from([(
                    GENERATED_KEY.to_string(),
                    ByteString(generate().into_bytes()),
                )])),
                ..Default::default()
            };
            match secrets.create(&PostParams::default(), &secret).await {
                Ok(created) => created,
                // Another reconcile (or a restarted process) created it first: use theirs.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    secrets.get(&name).await.map_err(api_err)?
                }
                Err(source) => return Err(api_err(source)),
            }
        }
    };
    let uid = link.meta().uid.as_deref();
    let owned = existing
        .owner_references()
        .iter()
        .any(|o| Some(o.uid.as_str()) == uid);
    if !owned {
        return Err(Unavailable::Blocked {
            reason: reason::EXTERNAL_ID_SECRET_NOT_FOUND,
            message: format!(
                "Secret {name} exists but is not owned by this LinkedAccount; set spec.externalId.secretRef to use it, or delete it"
            ),
        });
    }
    Ok(existing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_long_random_and_valid() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), GENERATED_LENGTH);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(is_valid(&a));
        assert_ne!(a, b);
    }

    #[test]
    fn validity_follows_sts_rules() {
        assert!(is_valid("ab"));
        assert!(is_valid("token-1/2:3@x.y,z=w+v_u"));
        assert!(!is_valid("a"));
        assert!(!is_valid("has space"));
        assert!(!is_valid(&"x".repeat(1225)));
    }

    #[test]
    fn generated_secret_names_fit() {
        let mut link = LinkedAccount::new(
            "payments",
            serde_json::from_value(serde_json::json!({"accountId": "123456789012"})).unwrap(),
        );
        assert_eq!(generated_secret_name(&link), "payments-external-id");
        link.metadata.name = Some("a".repeat(253));
        assert!(generated_secret_name(&link).len() <= 253);
    }
}
