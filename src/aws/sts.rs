//! Role verification: AssumeRole with an ExternalId, then GetCallerIdentity with the session.

use aws_sdk_sts::config::{Credentials, IdentityCache};
use futures::future::BoxFuture;

use super::AwsClients;
use super::error::AwsError;

/// One verification of a role.
#[derive(Clone, Debug)]
pub struct VerifyRequest<'a> {
    pub role_arn: &'a str,
    /// Never logged; `Debug` of this struct redacts it.
    pub external_id: &'a Secret,
    pub session_name: &'a str,
    pub duration_seconds: i32,
}

/// A secret string whose `Debug` and `Display` never reveal it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Who a caller turned out to be (GetCallerIdentity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerIdentity {
    pub account: String,
    /// The user's or assumed-role session's ARN.
    pub arn: String,
}

/// Proves that a role can be assumed, and by whom.
pub trait RoleVerifier: Send + Sync {
    fn verify<'a>(
        &'a self,
        req: VerifyRequest<'a>,
    ) -> BoxFuture<'a, Result<CallerIdentity, AwsError>>;
}

impl RoleVerifier for AwsClients {
    fn verify<'a>(
        &'a self,
        req: VerifyRequest<'a>,
    ) -> BoxFuture<'a, Result<CallerIdentity, AwsError>> {
        Box::pin(async move {
            let assumed = self
                .call(
                    "sts:AssumeRole",
                    self.sts
                        .assume_role()
                        .role_arn(req.role_arn)
                        .role_session_name(req.session_name)
                        .external_id(req.external_id.expose())
                        .duration_seconds(req.duration_seconds)
                        .send(),
                )
                .await?;
            let creds = assumed.credentials().ok_or_else(|| {
                AwsError::new(
                    "sts:AssumeRole",
                    super::ErrorClass::Transient,
                    "response carried no credentials",
                )
            })?;
            // The session client is the hub's STS client with the assumed credentials: same
            // endpoint, retries, timeouts and interceptors. Static credentials need no identity
            // cache (a shared one would keep an entry for every session).
            let session = aws_sdk_sts::Client::from_conf(
                self.sts
                    .config()
                    .to_builder()
                    .identity_cache(IdentityCache::no_cache())
                    .credentials_provider(Credentials::new(
                        creds.access_key_id(),
                        creds.secret_access_key(),
                        Some(creds.session_token().to_string()),
                        None,
                        "account-linker-assumed-role",
                    ))
                    .build(),
            );
            let identity = self
                .call(
                    "sts:GetCallerIdentity",
                    session.get_caller_identity().send(),
                )
                .await?;
            Ok(CallerIdentity {
                account: identity.account().unwrap_or_default().to_string(),
                arn: identity.arn().unwrap_or_default().to_string(),
            })
        })
    }
}

/// The hub's own identity.
pub trait HubIdentity: Send + Sync {
    /// Who the operator's credentials are (GetCallerIdentity): the account, and the ARN of the
    /// user or assumed-role session.
    fn caller(&self) -> BoxFuture<'_, Result<CallerIdentity, AwsError>>;
}

impl HubIdentity for AwsClients {
    fn caller(&self) -> BoxFuture<'_, Result<CallerIdentity, AwsError>> {
        Box::pin(async move {
            let identity = self
                .call(
                    "sts:GetCallerIdentity",
                    self.sts.get_caller_identity().send(),
                )
                .await?;
            Ok(CallerIdentity {
                account: identity.account().unwrap_or_default().to_string(),
                arn: identity.arn().unwrap_or_default().to_string(),
            })
        })
    }
}

/// The STS session name for a LinkedAccount: `al-<namespace>-<name>`, restricted to the
/// characters STS accepts and to its 64-character limit, so CloudTrail shows which object
/// verified.
pub fn session_name(namespace: &str, name: &str) -> String {
    let raw = format!("al-{namespace}-{name}");
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    cleaned.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_sts_rules() {
        assert_eq!(
            session_name("platform", "payments-prod"),
            "al-platform-payments-prod"
        );
        let long = session_name(&"n".repeat(63), &"x".repeat(253));
        assert_eq!(long.len(), 64);
        assert!(
            long.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c))
        );
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("s3cr3t-value");
        assert!(!format!("{secret:?}").contains("s3cr3t"));
        let req = VerifyRequest {
            role_arn: "arn:aws:iam::123456789012:role/R",
            external_id: &secret,
            session_name: "s",
            duration_seconds: 900,
        };
        assert!(!format!("{req:?}").contains("s3cr3t"));
    }
}
