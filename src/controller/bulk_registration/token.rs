//! Phase "token": the registration token, one ExternalId per BulkRegistration, generated into a
//! Secret the registration owns (or read from a referenced Secret), rotated on `rotateEvery`.
//! Values are read by the same reader as a LinkedAccount's ExternalId, so both treat a Secret
//! the same way.
//!
//! Generated Secrets are immutable, so a rotation never rewrites one: it creates the next
//! Secret, whose name follows from the current one (a crash between creating it and recording
//! it in status finds the same Secret on the next pass, never a second one), annotated with its
//! rotation time. The replaced Secret is listed in `status.externalIdRetiredSecrets`, and the
//! rotation overlaps ([`RotationPhase`]): the StackSet trusts both tokens, each child moves to
//! the new one once its instance carries both ([`Token::secret_for`]), and only when every
//! deployed child has verified with the new token does the StackSet drop the old one; [`retire`]
//! deletes its Secret once that update is done. Every step is decided from status, so a crash
//! anywhere resumes the same rotation. A generated Secret from before Secrets were immutable is
//! replaced the same way on the first pass.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};
use tracing::info;

use super::children::Verification;
use super::status::Headline;
use super::template::fingerprint;
use crate::api::bulk_registration::{RotationPhase, reason};
use crate::api::labels::ROTATED_AT_ANNOTATION;
use crate::api::{BulkRegistration, BulkRegistrationStatus};
use crate::controller::external_id::{self, ExternalId, GENERATED_KEY, Unreadable, VALID_FORM};

/// Suffix of generated token Secret names.
const SUFFIX: &str = "-registration-token";
/// Hex digits that tell the Secrets of successive rotations apart.
const ROTATION_DIGITS: usize = 10;

/// The token and where children read it. `Debug` shows where, never the value.
#[derive(Debug)]
pub struct Token {
    /// The value: reaches AWS only as the `ExternalId` StackSet parameter.
    pub value: ExternalId,
    pub secret_name: String,
    pub key: String,
    /// When a generated token was created or last rotated.
    pub rotated: Option<Time>,
    /// A generated Secret this token replaced, to retire once the new token is proven.
    pub replaced: Option<String>,
    /// While a rotation overlaps: the replaced token, still trusted, and still used by the
    /// children whose instance does not carry the new one yet.
    pub previous: Option<Previous>,
}

/// The token a rotation replaces, during the overlap.
#[derive(Debug)]
pub struct Previous {
    pub value: ExternalId,
    pub secret_name: String,
}

impl Token {
    /// The Secret a child reads: the new token's once its instance carries it (`carries_new`),
    /// the replaced one's before that, while a rotation overlaps.
    pub fn secret_for(&self, carries_new: bool) -> &str {
        match &self.previous {
            Some(previous) if !carries_new => &previous.secret_name,
            _ => &self.secret_name,
        }
    }
}

/// The phase a rotation that replaced a token starts in: an overlap where the template trusts
/// two tokens (the built-in one), else a cut-over.
pub fn first_phase(builtin: bool) -> RotationPhase {
    if builtin {
        RotationPhase::Overlap
    } else {
        RotationPhase::Narrowing
    }
}

/// The phase after this pass: an overlap narrows once nothing is in flight (`settled`: the
/// StackSet holds the current definition, no operation runs) and no deployed child is still to
/// verify with the new token; a narrowing ends when its Secrets are retired.
pub fn next_phase(
    phase: Option<RotationPhase>,
    settled: bool,
    children: &Verification,
) -> Option<RotationPhase> {
    match phase {
        Some(RotationPhase::Overlap) if settled && children.pending == 0 => {
            Some(RotationPhase::Narrowing)
        }
        other => other,
    }
}

/// A rotation phase for logs: `Overlap`, `Narrowing`, or `done`.
pub fn phase_name(phase: Option<RotationPhase>) -> &'static str {
    match phase {
        Some(RotationPhase::Overlap) => "Overlap",
        Some(RotationPhase::Narrowing) => "Narrowing",
        None => "done",
    }
}

/// The replaced token while `status` says a rotation overlaps, read from the first Secret in
/// `externalIdRetiredSecrets`. `None` when it cannot be read (deleted by someone): the overlap
/// cannot go on, the rotation narrows.
pub async fn previous(
    secrets: &Api<Secret>,
    bulk: &BulkRegistration,
    status: &BulkRegistrationStatus,
) -> Result<Option<Previous>, kube::Error> {
    if status.external_id_rotation != Some(RotationPhase::Overlap) {
        return Ok(None);
    }
    let Some(name) = status.external_id_retired_secrets.first() else {
        return Ok(None);
    };
    let found = secrets.get_opt(name).await?;
    Ok(found
        .filter(|s| external_id::owned_by(s, bulk.meta().uid.as_deref()))
        .and_then(|s| external_id::read(&s, GENERATED_KEY).ok())
        .map(|value| Previous {
            value,
            secret_name: name.clone(),
        }))
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

/// Name of the first generated token Secret: `<name>-registration-token`, the name shortened
/// when the Secrets of later rotations would not fit Kubernetes' 253 characters.
pub fn generated_secret_name(bulk: &BulkRegistration) -> String {
    let name = bulk.name_any();
    let keep = (253 - SUFFIX.len() - 1 - ROTATION_DIGITS).min(name.len());
    format!("{}{SUFFIX}", name[..keep].trim_end_matches(['-', '.']))
}

/// The Secret a rotation of `current` creates: `<first name>-<10 hex>`, the hex derived from the
/// registration's UID and `current`, so every attempt of one rotation names the same Secret.
pub fn next_secret_name(bulk: &BulkRegistration, current: &str) -> String {
    let uid = bulk.meta().uid.as_deref().unwrap_or_default();
    let digest = fingerprint(&["registration-token", uid, current]);
    format!(
        "{}-{}",
        generated_secret_name(bulk),
        &digest[..ROTATION_DIGITS]
    )
}

/// Whether `name` is one of the names [`generated_secret_name`] and [`next_secret_name`] give
/// `bulk`: only those are ever replaced or deleted, never a Secret a user named.
pub fn is_generated(bulk: &BulkRegistration, name: &str) -> bool {
    let first = generated_secret_name(bulk);
    name == first
        || name
            .strip_prefix(first.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|hex| {
                hex.len() == ROTATION_DIGITS && hex.bytes().all(|b| b.is_ascii_hexdigit())
            })
}

/// Whether a generated token is due for rotation: `every` has passed since `since` (the last
/// rotation, else the Secret's creation). No interval, or no known age, is never due.
pub fn rotation_due(every: Option<Duration>, since: Option<&Time>, now: Timestamp) -> bool {
    match (every, since) {
        (Some(every), Some(t)) => now.duration_since(t.0).unsigned_abs() >= every,
        _ => false,
    }
}

/// Why the current generated Secret gives way to a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replace {
    /// `rotateEvery` has passed.
    Due,
    /// Generated before Secrets were immutable.
    Mutable,
    /// Holds no valid token.
    Unreadable,
}

impl Replace {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Due => "due",
            Self::Mutable => "mutable",
            Self::Unreadable => "unreadable",
        }
    }
}

/// Whether the current generated Secret is replaced. A due rotation waits while an earlier
/// one is not retired yet (`retiring`): the fleet has not proven the last token, and piling up
/// tokens would not help it. A Secret that cannot serve as it is never waits.
pub fn replacement(readable: bool, immutable: bool, due: bool, retiring: bool) -> Option<Replace> {
    if !readable {
        Some(Replace::Unreadable)
    } else if !immutable {
        Some(Replace::Mutable)
    } else if due && !retiring {
        Some(Replace::Due)
    } else {
        None
    }
}

/// Reads (creating or rotating when due) the registration token. `status` is where the last
/// pass left the token: its Secret, its rotation time, the Secrets not retired yet.
/// `requested`: a rotation was asked for (`accountlinker.dev/rotate-requested-at`), which makes
/// it due now; the next Secret's name follows from the current one, so a pass that crashes
/// before recording the rotation finds the same Secret again, never rotates twice.
pub async fn ensure(
    secrets: &Api<Secret>,
    bulk: &BulkRegistration,
    status: &BulkRegistrationStatus,
    now: Timestamp,
    requested: bool,
) -> Result<Token, TokenError> {
    let spec = bulk.spec.external_id.clone().unwrap_or_default();
    let recorded = status
        .external_id_secret
        .clone()
        .filter(|name| is_generated(bulk, name));
    if let Some(reference) = spec.secret_ref {
        let value = external_id::read_referenced(secrets, &reference.name, &reference.key)
            .await
            .map_err(|e| referenced_error(e, &reference.name, &reference.key))?
            .0;
        return Ok(Token {
            value,
            // A generated Secret used until now goes once the referenced token is proven.
            replaced: recorded.filter(|name| *name != reference.name),
            secret_name: reference.name,
            key: reference.key,
            rotated: None,
            previous: None,
        });
    }
    let current = recorded.unwrap_or_else(|| generated_secret_name(bulk));
    let rotate_every = spec
        .rotate_every
        .as_deref()
        .and_then(|t| t.parse::<kube::core::Duration>().ok())
        .map(Duration::from);
    let token = |value, secret_name, rotated, replaced| Token {
        value,
        secret_name,
        key: GENERATED_KEY.into(),
        rotated,
        replaced,
        previous: None,
    };
    let Some(secret) = secrets.get_opt(&current).await? else {
        let value = create(secrets, bulk, &current, now).await?;
        return Ok(token(value, current, Some(Time(now)), None));
    };
    if !external_id::owned_by(&secret, bulk.meta().uid.as_deref()) {
        return Err(conflict(&current));
    }
    let since = status
        .external_id_rotated_time
        .clone()
        .or_else(|| secret.metadata.creation_timestamp.clone());
    let value = external_id::read(&secret, GENERATED_KEY).ok();
    let why = replacement(
        value.is_some(),
        secret.immutable == Some(true),
        requested || rotation_due(rotate_every, since.as_ref(), now),
        !status.external_id_retired_secrets.is_empty(),
    );
    let why = match (why, value) {
        (None, Some(value)) => return Ok(token(value, current, since, None)),
        (why, _) => why.unwrap_or(Replace::Unreadable),
    };
    let next = next_secret_name(bulk, &current);
    let value = create(secrets, bulk, &next, now).await?;
    info!(name = %bulk.name_any(), secret = %next, replaced = %current, why = why.as_str(), "new registration token");
    Ok(token(value, next, Some(Time(now)), Some(current)))
}

/// Creates the generated Secret `name` with a fresh token, annotated with the rotation time
/// `now`. One that exists already and is this registration's was created by an attempt that
/// stopped before recording it: its token is used.
async fn create(
    secrets: &Api<Secret>,
    bulk: &BulkRegistration,
    name: &str,
    now: Timestamp,
) -> Result<ExternalId, TokenError> {
    let value = external_id::generate();
    let mut secret = external_id::generated_secret(name, bulk.controller_owner_ref(&()), &value);
    secret
        .annotations_mut()
        .insert(ROTATED_AT_ANNOTATION.into(), whole_seconds(now));
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            crate::failpoint!("token:secret-created");
            Ok(value)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = secrets.get(name).await?;
            if !external_id::owned_by(&existing, bulk.meta().uid.as_deref()) {
                return Err(conflict(name));
            }
            external_id::read(&existing, GENERATED_KEY).map_err(|_| TokenError::Blocked {
                reason: reason::TOKEN_KEY_NOT_FOUND,
                message: format!(
                    "generated Secret {name:?} holds no valid token ({VALID_FORM}); delete it to have a new one generated"
                ),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// `t` as status writes times: RFC 3339 in whole seconds.
fn whole_seconds(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

fn conflict(name: &str) -> TokenError {
    TokenError::Blocked {
        reason: reason::TOKEN_SECRET_CONFLICT,
        message: format!(
            "Secret {name:?} exists and is not owned by this BulkRegistration; delete or rename it"
        ),
    }
}

/// Whether the token Secrets earlier rotations replaced may go: nothing is in flight, the
/// StackSet carries the current token, and no deployed child is still to verify with it.
pub fn retirement_due(
    headline: &Headline,
    stack_set_current: bool,
    children: &Verification,
) -> bool {
    matches!(headline, Headline::Summary) && stack_set_current && children.pending == 0
}

/// Deletes the Secrets listed in `status.externalIdRetiredSecrets` and drops them from the
/// list. Only a generated Secret this registration owns is deleted (with its UID as a
/// precondition); a name whose Secret is gone, or is not the registration's, is dropped.
pub async fn retire(
    secrets: &Api<Secret>,
    bulk: &BulkRegistration,
    status: &mut BulkRegistrationStatus,
) -> Result<(), kube::Error> {
    let uid = bulk.meta().uid.as_deref();
    while let Some(name) = status.external_id_retired_secrets.first().cloned() {
        let current = status.external_id_secret.as_deref() == Some(name.as_str());
        if !current && is_generated(bulk, &name) {
            let found = secrets.get_opt(&name).await?;
            if let Some(secret) = found.filter(|s| external_id::owned_by(s, uid)) {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: secret.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match secrets.delete(&name, &params).await {
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e),
                    Ok(_) => {
                        crate::failpoint!("token:secret-retired");
                        info!(name = %bulk.name_any(), secret = %name, "retired a replaced registration token")
                    }
                }
            }
        }
        status.external_id_retired_secrets.remove(0);
    }
    Ok(())
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
    use serde_json::json;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn bulk(name: &str, uid: &str) -> BulkRegistration {
        let spec = json!({
            "stackSet": {"permissionModel": "SelfManaged"},
            "targets": {"accounts": ["111111111111"]},
        });
        let mut b = BulkRegistration::new(name, serde_json::from_value(spec).unwrap());
        b.metadata.uid = Some(uid.into());
        b
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
    fn a_secret_is_replaced_when_it_cannot_serve_or_is_due_and_nothing_retires() {
        use Replace::{Due, Mutable, Unreadable};
        // (readable, immutable, due, retiring) → replacement
        let cases = [
            ((true, true, false, false), None),
            ((true, true, true, false), Some(Due)),
            ((true, true, true, true), None),
            ((true, false, false, false), Some(Mutable)),
            ((true, false, false, true), Some(Mutable)),
            ((false, true, false, true), Some(Unreadable)),
            ((false, false, true, false), Some(Unreadable)),
        ];
        for ((readable, immutable, due, retiring), want) in cases {
            assert_eq!(
                replacement(readable, immutable, due, retiring),
                want,
                "{readable} {immutable} {due} {retiring}"
            );
        }
    }

    #[test]
    fn rotated_secret_names_follow_from_the_current_one() {
        let b = bulk("workloads", "uid-1");
        let first = generated_secret_name(&b);
        assert_eq!(first, "workloads-registration-token");
        let second = next_secret_name(&b, &first);
        assert!(
            second.starts_with("workloads-registration-token-"),
            "{second}"
        );
        assert_eq!(second.len(), first.len() + 1 + 10);
        // Every attempt of one rotation names the same Secret; the next rotation another one.
        assert_eq!(next_secret_name(&b, &first), second);
        let third = next_secret_name(&b, &second);
        assert_ne!(third, second);
        assert_ne!(third, first);
        // Another registration of the same name (recreated: a new UID) names its own.
        assert_ne!(
            next_secret_name(&bulk("workloads", "uid-2"), &first),
            second
        );
        for name in [&first, &second, &third] {
            assert!(is_generated(&b, name), "{name}");
        }
        for name in [
            "workloads-registration-token-db-password",
            "workloads-registration-token-0123456789ab",
            "workloads-registration-token-012345678g",
            "workloads-registration",
            "other-registration-token",
        ] {
            assert!(!is_generated(&b, name), "{name}");
        }
    }

    #[test]
    fn generated_names_fit_kubernetes_after_any_rotation() {
        let b = bulk(&"a".repeat(253), "uid-1");
        let first = generated_secret_name(&b);
        let next = next_secret_name(&b, &first);
        assert!(next.len() <= 253, "{}", next.len());
        assert!(is_generated(&b, &next));
    }

    #[test]
    fn replaced_tokens_retire_only_when_the_new_one_is_proven() {
        let settled = Verification::default();
        let pending = Verification {
            pending: 1,
            ..Verification::default()
        };
        let busy = Headline::Busy {
            reason: reason::OPERATION_RUNNING,
            message: String::new(),
        };
        assert!(retirement_due(&Headline::Summary, true, &settled));
        assert!(!retirement_due(&Headline::Summary, false, &settled));
        assert!(!retirement_due(&Headline::Summary, true, &pending));
        assert!(!retirement_due(&busy, true, &settled));
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
            replaced: None,
            previous: None,
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

    #[test]
    fn a_rotation_overlaps_then_narrows_once_every_deployed_child_uses_the_new_token() {
        use RotationPhase::{Narrowing, Overlap};
        assert_eq!(first_phase(true), Overlap);
        assert_eq!(
            first_phase(false),
            Narrowing,
            "a custom template rotates by cut-over"
        );
        let children = |pending| Verification {
            pending,
            ..Verification::default()
        };
        // (phase, settled, pending children) → next phase
        let rows = [
            (Some(Overlap), true, 0, Some(Narrowing)),
            (Some(Overlap), false, 0, Some(Overlap)),
            (Some(Overlap), true, 3, Some(Overlap)),
            (Some(Narrowing), true, 0, Some(Narrowing)),
            (None, true, 0, None),
        ];
        for (i, (phase, settled, pending, want)) in rows.into_iter().enumerate() {
            assert_eq!(
                next_phase(phase, settled, &children(pending)),
                want,
                "row {i}"
            );
        }
        let mut token = Token {
            value: ExternalId::new("new-value"),
            secret_name: "w-registration-token-0123456789".into(),
            key: GENERATED_KEY.into(),
            rotated: None,
            replaced: None,
            previous: None,
        };
        assert_eq!(token.secret_for(false), "w-registration-token-0123456789");
        token.previous = Some(Previous {
            value: ExternalId::new("old-value"),
            secret_name: "w-registration-token".into(),
        });
        assert_eq!(token.secret_for(false), "w-registration-token");
        assert_eq!(token.secret_for(true), "w-registration-token-0123456789");
        let shown = format!("{token:?}");
        assert!(
            !shown.contains("old-value") && !shown.contains("new-value"),
            "{shown}"
        );
    }
}
