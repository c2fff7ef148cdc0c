//! ExternalId values as both controllers read them from Secrets: one reader, so a value that
//! works for a LinkedAccount works the same as a BulkRegistration's token (a trailing newline
//! from `kubectl create secret --from-file` included), and one redacting type, so the value
//! cannot reach a log line through `Debug`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::Stream;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use rand::distr::{Alphanumeric, SampleString};

use crate::api::labels::{
    EXTERNAL_ID_LABEL, EXTERNAL_ID_LABEL_VALUE, MANAGED_BY, MANAGED_BY_LABEL,
};
pub use crate::aws::sts::Secret as ExternalId;

/// The key generated Secrets keep the ExternalId under.
pub const GENERATED_KEY: &str = "externalId";
/// Length of generated ExternalIds (characters of `[A-Za-z0-9]`).
pub const GENERATED_LENGTH: usize = 40;
/// What a valid value looks like, for messages (never the value itself).
pub const VALID_FORM: &str = "2 to 1224 characters of [A-Za-z0-9_+=,.@:/-]";

/// A fresh ExternalId from the thread-local CSPRNG.
pub fn generate() -> ExternalId {
    ExternalId::new(Alphanumeric.sample_string(&mut rand::rng(), GENERATED_LENGTH))
}

/// Whether a value is a valid ExternalId for STS: 2–1224 characters of `[\w+=,.@:/-]`.
pub fn is_valid(value: &str) -> bool {
    (2..=1224).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
}

/// Why a Secret holds no usable ExternalId. Callers turn it into their own condition reason;
/// nothing here carries the value.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error("Secret not found")]
    SecretNotFound,
    /// The Secret lacks [`EXTERNAL_ID_LABEL`]; its data was not looked at.
    #[error("Secret not labelled {EXTERNAL_ID_LABEL}={EXTERNAL_ID_LABEL_VALUE}")]
    NotLabelled,
    #[error("no such key")]
    KeyNotFound,
    /// Not UTF-8, or not a valid ExternalId after trimming surrounding whitespace.
    #[error("not a valid ExternalId ({VALID_FORM})")]
    Invalid,
    #[error("reading the Secret: {0}")]
    Api(#[source] kube::Error),
}

/// The ExternalId under `key` of `secret`: surrounding whitespace trimmed, then validated.
pub fn read(secret: &Secret, key: &str) -> Result<ExternalId, Unreadable> {
    let raw = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or(Unreadable::KeyNotFound)?;
    std::str::from_utf8(&raw.0)
        .ok()
        .map(str::trim)
        .filter(|v| is_valid(v))
        .map(ExternalId::new)
        .ok_or(Unreadable::Invalid)
}

/// Whether a Secret was marked by its owner as one an ExternalId may be read from.
pub fn labelled(secret: &Secret) -> bool {
    secret.labels().get(EXTERNAL_ID_LABEL).map(String::as_str) == Some(EXTERNAL_ID_LABEL_VALUE)
}

/// What a user runs to let spec references read Secret `name`, for messages.
pub fn label_hint(name: &str) -> String {
    format!(
        "Secret {name} is not labelled {EXTERNAL_ID_LABEL}={EXTERNAL_ID_LABEL_VALUE}, so it is not read as an ExternalId; if it holds one, run: kubectl label secret {name} {EXTERNAL_ID_LABEL}={EXTERNAL_ID_LABEL_VALUE}"
    )
}

/// Fetches Secret `name` and reads `key` from it (a Secret named in a spec), returning the
/// Secret too (its resourceVersion tells a changed value). A Secret without
/// [`EXTERNAL_ID_LABEL`] is refused before its data is read.
pub async fn read_referenced(
    secrets: &Api<Secret>,
    name: &str,
    key: &str,
) -> Result<(ExternalId, Secret), Unreadable> {
    read_labelled(secrets.get_opt(name).await.map_err(Unreadable::Api)?, key)
}

/// Reads `key` from `secret` (looked up by the name a spec gives) when it is labelled
/// [`EXTERNAL_ID_LABEL`]; its data is not looked at otherwise.
pub fn read_labelled(
    secret: Option<Secret>,
    key: &str,
) -> Result<(ExternalId, Secret), Unreadable> {
    let secret = secret.ok_or(Unreadable::SecretNotFound)?;
    if !labelled(&secret) {
        return Err(Unreadable::NotLabelled);
    }
    Ok((read(&secret, key)?, secret))
}

/// The Secrets labelled [`EXTERNAL_ID_LABEL`] in every watched namespace, kept by one watch
/// per namespace ([`SecretCache::watch`]): what a verification reads its ExternalId from,
/// instead of one GET per verification (at 10,000 links, 50 a second). Only labelled Secrets
/// are held — the ones the operator would read anyway; a Secret not found here (unlabelled,
/// or newer than the watch) is read from the API server ([`SecretCache::fetch`]).
#[derive(Default)]
pub struct SecretCache(Mutex<Vec<Store<Secret>>>);

impl SecretCache {
    /// A watch of the labelled Secrets of `api`'s namespace (or of all) filling a new store
    /// of this cache, trimmed like every cache; its stream must be driven (it also tells
    /// which Secrets changed).
    pub fn watch(
        &self,
        api: Api<Secret>,
    ) -> impl Stream<Item = Result<Secret, watcher::Error>> + Send + 'static {
        let (store, writer) = reflector::store();
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(store);
        let labelled = watcher::Config::default()
            .labels(&format!("{EXTERNAL_ID_LABEL}={EXTERNAL_ID_LABEL_VALUE}"));
        reflector::reflector(
            writer,
            watcher(api, labelled).modify(crate::controller::link_cache::trim),
        )
        .default_backoff()
        .touched_objects()
    }

    /// Secret `name` of `secrets`' namespace: from the cache when held there, else from the
    /// API server.
    pub async fn fetch(
        &self,
        secrets: &Api<Secret>,
        name: &str,
    ) -> Result<Option<Secret>, kube::Error> {
        let key = ObjectRef::new(name).within(secrets.namespace().unwrap_or_default());
        let stores = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match stores.iter().find_map(|store| store.get(&key)) {
            Some(cached) => Ok(Some(Secret::clone(&cached))),
            None => secrets.get_opt(name).await,
        }
    }
}

/// The data of a generated Secret: `value` under [`GENERATED_KEY`].
fn generated_data(value: &ExternalId) -> BTreeMap<String, ByteString> {
    BTreeMap::from([(
        GENERATED_KEY.to_string(),
        ByteString(value.expose().as_bytes().to_vec()),
    )])
}

/// A new Secret `name` holding a generated ExternalId, owned by the object it belongs to (so it
/// goes with it), labelled as the operator's and as an ExternalId (so a LinkedAccount that
/// names it, like a BulkRegistration's child, may read it), and immutable: nobody rewrites the
/// value in place, the operator included (a new value is a new Secret).
pub fn generated_secret(name: &str, owner: Option<OwnerReference>, value: &ExternalId) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            owner_references: owner.map(|o| vec![o]),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                (
                    EXTERNAL_ID_LABEL.to_string(),
                    EXTERNAL_ID_LABEL_VALUE.to_string(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        immutable: Some(true),
        data: Some(generated_data(value)),
        ..Secret::default()
    }
}

/// Whether the object with `uid` owns `secret`: a generated Secret of another object (or a
/// user's Secret that happens to have the name) is never read or overwritten.
pub fn owned_by(secret: &Secret, uid: Option<&str>) -> bool {
    secret
        .owner_references()
        .iter()
        .any(|o| Some(o.uid.as_str()) == uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(value: &[u8]) -> Secret {
        Secret {
            data: Some(BTreeMap::from([(
                GENERATED_KEY.to_string(),
                ByteString(value.to_vec()),
            )])),
            ..Secret::default()
        }
    }

    #[test]
    fn generated_ids_are_long_random_and_valid() {
        let a = generate();
        let b = generate();
        assert_eq!(a.expose().len(), GENERATED_LENGTH);
        assert!(a.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(is_valid(a.expose()));
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
    fn values_are_trimmed_then_validated() {
        let cases: [(&[u8], Option<&str>); 6] = [
            (b"abc123", Some("abc123")),
            (b"abc123\n", Some("abc123")),
            (b"  abc123\r\n", Some("abc123")),
            (b"abc 123", None),
            (b"a\n", None),
            (b"\xff\xfe", None),
        ];
        for (raw, want) in cases {
            let got = read(&secret(raw), GENERATED_KEY).ok();
            assert_eq!(got.as_ref().map(ExternalId::expose), want, "{raw:?}");
        }
        assert!(matches!(
            read(&secret(b"abc"), "other"),
            Err(Unreadable::KeyNotFound)
        ));
    }

    #[test]
    fn only_secrets_labelled_true_are_readable_by_reference() {
        let with = |labels: &[(&str, &str)]| Secret {
            metadata: ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        };
        let cases: [(&[(&str, &str)], bool); 5] = [
            (&[(EXTERNAL_ID_LABEL, "true")], true),
            (&[], false),
            (&[(EXTERNAL_ID_LABEL, "false")], false),
            (&[(EXTERNAL_ID_LABEL, "")], false),
            (&[(MANAGED_BY_LABEL, MANAGED_BY)], false),
        ];
        for (labels, want) in cases {
            assert_eq!(labelled(&with(labels)), want, "{labels:?}");
        }
        assert!(!labelled(&Secret::default()));
        let hint = label_hint("db");
        assert!(hint.contains("kubectl label secret db accountlinker.dev/external-id=true"));
    }

    #[test]
    fn generated_secrets_are_labelled_and_immutable() {
        let secret = generated_secret("x", None, &generate());
        assert!(labelled(&secret));
        assert_eq!(secret.immutable, Some(true));
    }

    #[test]
    fn values_never_print() {
        let value = read(&secret(b"s3cr3t-value\n"), GENERATED_KEY).unwrap();
        assert!(!format!("{value:?}").contains("s3cr3t"));
        assert!(!format!("{:?}", Unreadable::Invalid).contains("s3cr3t"));
    }
}
