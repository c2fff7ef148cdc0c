//! Where a LinkedAccount's ExternalId comes from: a referenced Secret key, or a Secret the
//! operator generates once and owns (garbage-collected with the LinkedAccount).

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

use crate::api::LinkedAccount;
use crate::api::linked_account::reason;
use crate::controller::external_id::{
    self, ExternalId, GENERATED_KEY, SecretCache, Unreadable, VALID_FORM,
};

/// The ExternalId and where it was read from.
#[derive(Debug)]
pub struct Resolved {
    pub value: ExternalId,
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

/// Reads the ExternalId of `link` (from `cache` when it holds the Secret), generating its
/// Secret first when the spec names none.
pub async fn resolve(
    secrets: &Api<Secret>,
    cache: &SecretCache,
    link: &LinkedAccount,
) -> Result<Resolved, Unavailable> {
    let (name, key, read) = match &link.spec.external_id {
        Some(source) => {
            let r = &source.secret_ref;
            let read = match cache.fetch(secrets, &r.name).await {
                Ok(secret) => external_id::read_labelled(secret, &r.key),
                Err(source) => Err(Unreadable::Api(source)),
            };
            (r.name.clone(), r.key.as_str(), read)
        }
        None => {
            let secret = ensure_generated(secrets, cache, link).await?;
            let read = external_id::read(&secret, GENERATED_KEY).map(|v| (v, secret));
            (generated_secret_name(link), GENERATED_KEY, read)
        }
    };
    let blocked = |reason, message| Unavailable::Blocked { reason, message };
    match read {
        Ok((value, secret)) => Ok(Resolved {
            value,
            secret_name: secret.name_any(),
            version: secret.resource_version().unwrap_or_default(),
        }),
        Err(Unreadable::SecretNotFound) => Err(blocked(
            reason::EXTERNAL_ID_SECRET_NOT_FOUND,
            format!("Secret {name} (spec.externalId.secretRef) not found"),
        )),
        Err(Unreadable::NotLabelled) => Err(blocked(
            reason::SECRET_NOT_LABELLED,
            format!(
                "{} (spec.externalId.secretRef)",
                external_id::label_hint(&name)
            ),
        )),
        Err(Unreadable::KeyNotFound) => Err(blocked(
            reason::EXTERNAL_ID_KEY_NOT_FOUND,
            format!("Secret {name} has no key {key}"),
        )),
        Err(Unreadable::Invalid) => Err(blocked(
            reason::INVALID_EXTERNAL_ID,
            format!("key {key} of Secret {name} is not a valid ExternalId ({VALID_FORM})"),
        )),
        Err(Unreadable::Api(source)) => Err(Unavailable::Api { name, source }),
    }
}

/// Returns the generated Secret, creating it exactly once. A Secret of that name that the
/// LinkedAccount does not own is never overwritten.
async fn ensure_generated(
    secrets: &Api<Secret>,
    cache: &SecretCache,
    link: &LinkedAccount,
) -> Result<Secret, Unavailable> {
    let name = generated_secret_name(link);
    let api_err = |source| Unavailable::Api {
        name: name.clone(),
        source,
    };
    let existing = match cache.fetch(secrets, &name).await.map_err(api_err)? {
        Some(secret) => secret,
        None => {
            let owner = link
                .controller_owner_ref(&())
                .expect("objects read from the API server have a name and uid");
            let secret =
                external_id::generated_secret(&name, Some(owner), &external_id::generate());
            match secrets.create(&PostParams::default(), &secret).await {
                Ok(created) => {
                    crate::failpoint!("link:secret-created");
                    created
                }
                // Another reconcile (or a restarted process) created it first: use theirs.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    secrets.get(&name).await.map_err(api_err)?
                }
                Err(source) => return Err(api_err(source)),
            }
        }
    };
    if !external_id::owned_by(&existing, link.meta().uid.as_deref()) {
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
