//! Classification of AWS failures.

use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

/// What kind of failure an AWS call ended in. Controllers branch on this, metrics label with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Denied by IAM: missing role, untrusted caller, wrong ExternalId, SCP or explicit deny.
    AccessDenied,
    /// The region is not enabled for the account (also seen briefly on brand-new accounts).
    RegionDisabled,
    /// The caller's credentials expired.
    ExpiredToken,
    /// A web identity token was rejected.
    InvalidIdentityToken,
    /// The resource does not exist.
    NotFound,
    /// Rate limited; retry later with backoff.
    Throttled,
    /// Server errors, timeouts, connection failures: retry with backoff.
    Transient,
    /// AWS rejected the request for another reason; it will fail again unchanged.
    Rejected,
}

impl ErrorClass {
    /// Whether retrying the same call later may succeed without any change.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Throttled | Self::Transient)
    }

    /// A stable, bounded label for metrics.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::AccessDenied => "access_denied",
            Self::RegionDisabled => "region_disabled",
            Self::ExpiredToken => "expired_token",
            Self::InvalidIdentityToken => "invalid_identity_token",
            Self::NotFound => "not_found",
            Self::Throttled => "throttled",
            Self::Transient => "transient",
            Self::Rejected => "rejected",
        }
    }
}

/// A failed AWS call, classified, with the code and message AWS gave (if any).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{operation}: {}{message}", code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct AwsError {
    /// `service:Operation`, e.g. `sts:AssumeRole`.
    pub operation: &'static str,
    pub class: ErrorClass,
    /// The AWS error code, e.g. `AccessDenied`.
    pub code: Option<String>,
    /// The AWS error message, or a description of the transport failure.
    pub message: String,
}

impl AwsError {
    /// Classifies an SDK error of any operation.
    pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match &err {
            SdkError::ServiceError(service) => {
                let code = service.err().code().map(str::to_string);
                let message = service
                    .err()
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| service.err().to_string());
                let status = Some(service.raw().status().as_u16());
                Self {
                    operation,
                    class: classify(code.as_deref(), status),
                    code,
                    message,
                }
            }
            SdkError::TimeoutError(_) => Self::transient(operation, "request timed out"),
            SdkError::DispatchFailure(failure) => Self::transient(
                operation,
                format!(
                    "request could not be sent: {}",
                    describe_chain(&err, failure)
                ),
            ),
            SdkError::ResponseError(_) => {
                Self::transient(operation, format!("unreadable response: {}", chain(&err)))
            }
            _ => Self {
                operation,
                class: ErrorClass::Rejected,
                code: None,
                message: chain(&err),
            },
        }
    }

    fn transient(operation: &'static str, message: impl Into<String>) -> Self {
        Self {
            operation,
            class: ErrorClass::Transient,
            code: None,
            message: message.into(),
        }
    }
}

/// Maps an AWS error code (and the HTTP status, for unknown codes) to a class.
pub fn classify(code: Option<&str>, http_status: Option<u16>) -> ErrorClass {
    match code {
        Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation") => {
            ErrorClass::AccessDenied
        }
        Some("RegionDisabledException") => ErrorClass::RegionDisabled,
        Some("ExpiredToken" | "ExpiredTokenException" | "RequestExpired") => {
            ErrorClass::ExpiredToken
        }
        Some("InvalidIdentityToken" | "InvalidIdentityTokenException") => {
            ErrorClass::InvalidIdentityToken
        }
        Some(
            "Throttling"
            | "ThrottlingException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "SlowDown",
        ) => ErrorClass::Throttled,
        Some(
            "NoSuchEntity"
            | "AccountNotFoundException"
            | "StackSetNotFoundException"
            | "StackInstanceNotFoundException"
            | "OperationNotFoundException"
            | "CreateAccountStatusNotFoundException",
        ) => ErrorClass::NotFound,
        Some("ServiceUnavailable" | "ServiceUnavailableException" | "InternalFailure")
        | Some("InternalError" | "InternalServerError" | "ServiceException") => {
            ErrorClass::Transient
        }
        _ => match http_status {
            Some(429) => ErrorClass::Throttled,
            Some(s) if s >= 500 => ErrorClass::Transient,
            _ => ErrorClass::Rejected,
        },
    }
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn describe_chain(err: &dyn std::error::Error, failure: &dyn std::fmt::Debug) -> String {
    let text = chain(err);
    if text.is_empty() {
        format!("{failure:?}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_are_not_retryable() {
        assert_eq!(
            classify(Some("AccessDenied"), Some(403)),
            ErrorClass::AccessDenied
        );
        assert!(!ErrorClass::AccessDenied.is_retryable());
    }

    #[test]
    fn sts_specific_codes_keep_their_meaning() {
        assert_eq!(
            classify(Some("RegionDisabledException"), Some(403)),
            ErrorClass::RegionDisabled
        );
        assert_eq!(
            classify(Some("ExpiredTokenException"), Some(400)),
            ErrorClass::ExpiredToken
        );
        assert_eq!(
            classify(Some("InvalidIdentityToken"), Some(400)),
            ErrorClass::InvalidIdentityToken
        );
    }

    #[test]
    fn throttling_codes_of_every_service_are_throttled() {
        for code in [
            "Throttling",
            "ThrottlingException",
            "TooManyRequestsException",
        ] {
            assert_eq!(
                classify(Some(code), Some(400)),
                ErrorClass::Throttled,
                "{code}"
            );
        }
        assert_eq!(classify(None, Some(429)), ErrorClass::Throttled);
    }

    #[test]
    fn server_errors_are_transient_and_client_errors_rejected() {
        assert_eq!(
            classify(Some("ServiceUnavailable"), Some(503)),
            ErrorClass::Transient
        );
        assert_eq!(
            classify(Some("SomethingNew"), Some(502)),
            ErrorClass::Transient
        );
        assert_eq!(
            classify(Some("ValidationError"), Some(400)),
            ErrorClass::Rejected
        );
        assert!(ErrorClass::Transient.is_retryable());
        assert!(!ErrorClass::Rejected.is_retryable());
    }

    #[test]
    fn display_names_operation_code_and_message() {
        let err = AwsError {
            operation: "sts:AssumeRole",
            class: ErrorClass::AccessDenied,
            code: Some("AccessDenied".into()),
            message: "not authorized".into(),
        };
        assert_eq!(
            err.to_string(),
            "sts:AssumeRole: AccessDenied: not authorized"
        );
    }
}
