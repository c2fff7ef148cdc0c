//! The per-cluster key of template fingerprints. `status.templateHash` covers the registration
//! token, and status is readable by far more people than the token's Secret: a plain digest
//! would let any reader test guesses of a short token offline. Keyed with HMAC-SHA256, the
//! fingerprint proves nothing to anyone without this key.
//!
//! The key lives in one Secret in the operator's own namespace. It is created once, with
//! create-only semantics (a replica or a restart that races finds the first one's key, never
//! overwrites it), marked immutable, and read at start. Losing it changes every fingerprint:
//! each registration then makes one UpdateStackSet that deploys what it already had.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use rand::RngExt;
use tracing::info;

use crate::api::labels::{MANAGED_BY, MANAGED_BY_LABEL};

/// The data key of the Secret.
pub const KEY_FIELD: &str = "key";
/// Bytes of a generated key, and the fewest a stored key may have (the output size of SHA-256).
pub const KEY_LENGTH: usize = 32;

/// A fingerprint key. `Debug` never shows it.
#[derive(Clone)]
pub struct HashKey(Arc<[u8]>);

impl HashKey {
    /// A fresh key from the thread-local CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; KEY_LENGTH];
        rand::rng().fill(&mut bytes[..]);
        Self(Arc::from(&bytes[..]))
    }

    /// A key from stored bytes; `None` when there are too few to be a key.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (bytes.len() >= KEY_LENGTH).then(|| Self(Arc::from(bytes)))
    }

    /// The bytes, for the one place that keys the MAC.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

/// Why the key cannot be had. The operator does not start without it.
#[derive(Debug, thiserror::Error)]
pub enum HashKeyError {
    #[error(
        "Secret {namespace}/{name} holds no key of at least {KEY_LENGTH} bytes under {KEY_FIELD:?}; delete it to have a new one created (each BulkRegistration then makes one UpdateStackSet)"
    )]
    Invalid { namespace: String, name: String },
    #[error("reading or creating Secret {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The Secret that stores `key` as `name`: immutable, labelled as the operator's.
pub fn secret(name: &str, key: &HashKey) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                MANAGED_BY.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        immutable: Some(true),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            KEY_FIELD.to_string(),
            ByteString(key.expose().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// The key a stored Secret holds.
pub fn read(secret: &Secret) -> Option<HashKey> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEY_FIELD))
        .and_then(|b| HashKey::from_bytes(&b.0))
}

/// Reads the key from Secret `name` in `namespace`, creating the Secret when it is missing.
pub async fn load_or_create(
    secrets: &Api<Secret>,
    namespace: &str,
    name: &str,
) -> Result<HashKey, HashKeyError> {
    let api = |source| HashKeyError::Api {
        namespace: namespace.to_string(),
        name: name.to_string(),
        source,
    };
    let invalid = || HashKeyError::Invalid {
        namespace: namespace.to_string(),
        name: name.to_string(),
    };
    if let Some(stored) = secrets.get_opt(name).await.map_err(api)? {
        return read(&stored).ok_or_else(invalid);
    }
    let fresh = HashKey::generate();
    match secrets
        .create(&PostParams::default(), &secret(name, &fresh))
        .await
    {
        Ok(_) => {
            info!(namespace, name, "created the key of template fingerprints");
            Ok(fresh)
        }
        // Another replica created it first: theirs is the key.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let stored = secrets.get(name).await.map_err(api)?;
            read(&stored).ok_or_else(invalid)
        }
        Err(source) => Err(api(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_random_and_stored_immutable() {
        let a = HashKey::generate();
        let b = HashKey::generate();
        assert_eq!(a.expose().len(), KEY_LENGTH);
        assert_ne!(a.expose(), b.expose());
        let stored = secret("k", &a);
        assert_eq!(stored.immutable, Some(true));
        assert_eq!(read(&stored).unwrap().expose(), a.expose());
    }

    #[test]
    fn short_or_missing_keys_are_refused() {
        let with = |bytes: &[u8]| Secret {
            data: Some(BTreeMap::from([(
                KEY_FIELD.to_string(),
                ByteString(bytes.to_vec()),
            )])),
            ..Secret::default()
        };
        assert!(read(&with(&[7; KEY_LENGTH - 1])).is_none());
        assert!(read(&with(&[7; KEY_LENGTH])).is_some());
        assert!(read(&Secret::default()).is_none());
    }

    #[test]
    fn keys_never_print() {
        let key = HashKey::from_bytes(b"0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(format!("{key:?}"), "HashKey(<redacted>)");
    }
}
