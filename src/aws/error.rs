//! Classification of AWS failures: every AWS error code this operator can meet is mapped to an
//! [`ErrorClass`] here and nowhere else, so controllers branch on meaning, never on code strings.

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
    /// What the call would create already exists (a name, an account in its destination) or
    /// its idempotency token was used for another request: creating it again cannot succeed,
    /// and callers that own the resource treat it as done.
    AlreadyExists,
    /// The account is closed already: closing it again is done.
    AlreadyClosed,
    /// Another operation on the same resource is running (StackSets run one at a time): wait
    /// for it and try again.
    InProgress,
    /// A concurrent change to the same resource won: the same call may succeed once it settles.
    Conflict,
    /// A quota of the account or organization is used up (CloseAccount's 30-day quota, the
    /// number of accounts or StackSets): retrying will not help until it frees or is raised.
    QuotaExceeded,
    /// The hub's account is not in an organization: every Organizations call will fail.
    OrganizationsNotInUse,
    /// Rate limited; retry later with backoff.
    Throttled,
    /// Server errors, timeouts, connection failures: retry with backoff.
    Transient,
    /// AWS rejected the request for another reason; it will fail again unchanged.
    Rejected,
}

impl ErrorClass {
    /// Every class, for tables and tests.
    pub const ALL: [Self; 14] = [
        Self::AccessDenied,
        Self::RegionDisabled,
        Self::ExpiredToken,
        Self::InvalidIdentityToken,
        Self::NotFound,
        Self::AlreadyExists,
        Self::AlreadyClosed,
        Self::InProgress,
        Self::Conflict,
        Self::QuotaExceeded,
        Self::OrganizationsNotInUse,
        Self::Throttled,
        Self::Transient,
        Self::Rejected,
    ];

    /// Whether retrying the same call later may succeed without any change.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Throttled | Self::Transient | Self::InProgress | Self::Conflict
        )
    }

    /// A stable, bounded label for metrics.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::AccessDenied => "access_denied",
            Self::RegionDisabled => "region_disabled",
            Self::ExpiredToken => "expired_token",
            Self::InvalidIdentityToken => "invalid_identity_token",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::AlreadyClosed => "already_closed",
            Self::InProgress => "in_progress",
            Self::Conflict => "conflict",
            Self::QuotaExceeded => "quota_exceeded",
            Self::OrganizationsNotInUse => "organizations_not_in_use",
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
    /// The finer reason some codes carry in a field of their own (Organizations'
    /// `ConstraintViolationException`: `CLOSE_ACCOUNT_QUOTA_EXCEEDED`, …). It decides the class
    /// and also leads the message, so conditions show it.
    pub reason: Option<String>,
    /// The AWS error message, or a description of the transport failure.
    pub message: String,
}

impl AwsError {
    /// An error the adapter itself concludes (an answer without the expected content, a
    /// request it cannot build), without an AWS code.
    pub fn new(operation: &'static str, class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            operation,
            class,
            code: None,
            reason: None,
            message: message.into(),
        }
    }

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
                    class: classify(code.as_deref(), status),
                    code,
                    ..Self::new(operation, ErrorClass::Rejected, message)
                }
            }
            SdkError::TimeoutError(_) => {
                Self::new(operation, ErrorClass::Transient, "request timed out")
            }
            SdkError::DispatchFailure(failure) => Self::new(
                operation,
                ErrorClass::Transient,
                format!(
                    "request could not be sent: {}",
                    describe_chain(&err, failure)
                ),
            ),
            SdkError::ResponseError(_) => Self::new(
                operation,
                ErrorClass::Transient,
                format!("unreadable response: {}", chain(&err)),
            ),
            _ => Self::new(operation, ErrorClass::Rejected, chain(&err)),
        }
    }

    /// Adds the reason a code carries in a field of its own; the reason then decides the class.
    pub fn with_reason(mut self, reason: Option<&str>) -> Self {
        if let Some(reason) = reason {
            self.message = format!("{reason}: {}", self.message);
            self.class = classify_reason(reason);
            self.reason = Some(reason.to_string());
        }
        self
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
            | "ChildNotFoundException"
            | "ParentNotFoundException"
            | "SourceParentNotFoundException"
            | "DestinationParentNotFoundException"
            | "OrganizationalUnitNotFoundException"
            | "RootNotFoundException"
            | "TargetNotFoundException"
            | "StackSetNotFoundException"
            | "StackInstanceNotFoundException"
            | "OperationNotFoundException"
            | "CreateAccountStatusNotFoundException",
        ) => ErrorClass::NotFound,
        Some(
            "NameAlreadyExistsException"
            | "AlreadyExistsException"
            | "OperationIdAlreadyExistsException"
            | "DuplicateAccountException"
            | "DuplicateOrganizationalUnitException"
            | "AccountAlreadyRegisteredException"
            | "EntityAlreadyExists",
        ) => ErrorClass::AlreadyExists,
        Some("AccountAlreadyClosedException") => ErrorClass::AlreadyClosed,
        Some("OperationInProgressException") => ErrorClass::InProgress,
        Some("ConcurrentModificationException" | "ConflictException" | "StaleRequestException") => {
            ErrorClass::Conflict
        }
        Some("LimitExceededException") => ErrorClass::QuotaExceeded,
        Some("AWSOrganizationsNotInUseException") => ErrorClass::OrganizationsNotInUse,
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

/// Maps the reason of an Organizations `ConstraintViolationException` to a class: rate limits
/// and the cap on closures in progress pass with time; used-up quotas and limits do not.
pub fn classify_reason(reason: &str) -> ErrorClass {
    match reason {
        r if r.contains("RATE_LIMIT") => ErrorClass::Throttled,
        "CLOSE_ACCOUNT_REQUESTS_LIMIT_EXCEEDED" => ErrorClass::Throttled,
        r if r.ends_with("_QUOTA_EXCEEDED") || r.ends_with("_LIMIT_EXCEEDED") => {
            ErrorClass::QuotaExceeded
        }
        _ => ErrorClass::Rejected,
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

    /// Every code the operator can meet, with its class and whether a retry may help.
    #[test]
    fn every_code_has_one_class() {
        use ErrorClass::*;
        let table: &[(&str, u16, ErrorClass)] = &[
            ("AccessDenied", 403, AccessDenied),
            ("AccessDeniedException", 400, AccessDenied),
            ("RegionDisabledException", 403, RegionDisabled),
            ("ExpiredTokenException", 400, ExpiredToken),
            ("InvalidIdentityToken", 400, InvalidIdentityToken),
            ("Throttling", 400, Throttled),
            ("ThrottlingException", 400, Throttled),
            ("TooManyRequestsException", 400, Throttled),
            ("AccountNotFoundException", 400, NotFound),
            ("SourceParentNotFoundException", 400, NotFound),
            ("StackSetNotFoundException", 404, NotFound),
            ("OperationNotFoundException", 404, NotFound),
            ("CreateAccountStatusNotFoundException", 400, NotFound),
            ("NameAlreadyExistsException", 409, AlreadyExists),
            ("OperationIdAlreadyExistsException", 409, AlreadyExists),
            ("DuplicateAccountException", 400, AlreadyExists),
            ("AccountAlreadyClosedException", 400, AlreadyClosed),
            ("OperationInProgressException", 409, InProgress),
            ("ConcurrentModificationException", 400, Conflict),
            ("StaleRequestException", 400, Conflict),
            ("LimitExceededException", 400, QuotaExceeded),
            (
                "AWSOrganizationsNotInUseException",
                400,
                OrganizationsNotInUse,
            ),
            ("ServiceUnavailable", 503, Transient),
            ("InternalFailure", 500, Transient),
            ("SomethingNew", 502, Transient),
            ("SomethingNew", 429, Throttled),
            ("ValidationError", 400, Rejected),
            ("InvalidOperationException", 400, Rejected),
        ];
        for (code, status, class) in table {
            assert_eq!(classify(Some(code), Some(*status)), *class, "{code}");
        }
        assert_eq!(classify(None, Some(429)), Throttled);
        assert_eq!(classify(None, None), Rejected);
    }

    #[test]
    fn only_waiting_helps_retries() {
        use ErrorClass::*;
        let retryable: Vec<ErrorClass> = ErrorClass::ALL
            .into_iter()
            .filter(|c| c.is_retryable())
            .collect();
        assert_eq!(retryable, [InProgress, Conflict, Throttled, Transient]);
    }

    #[test]
    fn labels_are_distinct_snake_case() {
        let labels: std::collections::BTreeSet<&str> =
            ErrorClass::ALL.iter().map(|c| c.as_label()).collect();
        assert_eq!(labels.len(), ErrorClass::ALL.len());
        assert!(
            labels
                .iter()
                .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }

    #[test]
    fn constraint_violation_reasons_decide_the_class() {
        use ErrorClass::*;
        for (reason, class) in [
            ("ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED", Throttled),
            ("HANDSHAKE_RATE_LIMIT_EXCEEDED", Throttled),
            ("CLOSE_ACCOUNT_REQUESTS_LIMIT_EXCEEDED", Throttled),
            ("CLOSE_ACCOUNT_QUOTA_EXCEEDED", QuotaExceeded),
            ("ACCOUNT_NUMBER_LIMIT_EXCEEDED", QuotaExceeded),
            ("MAX_TAG_LIMIT_EXCEEDED", QuotaExceeded),
            ("CANNOT_CLOSE_MANAGEMENT_ACCOUNT", Rejected),
            ("TAG_POLICY_VIOLATION", Rejected),
        ] {
            assert_eq!(classify_reason(reason), class, "{reason}");
        }
    }

    #[test]
    fn a_reason_keeps_the_code_and_leads_the_message() {
        let err = AwsError {
            code: Some("ConstraintViolationException".into()),
            ..AwsError::new("organizations:CloseAccount", ErrorClass::Rejected, "quota")
        }
        .with_reason(Some("CLOSE_ACCOUNT_QUOTA_EXCEEDED"));
        assert_eq!(err.class, ErrorClass::QuotaExceeded);
        assert_eq!(err.reason.as_deref(), Some("CLOSE_ACCOUNT_QUOTA_EXCEEDED"));
        assert_eq!(
            err.to_string(),
            "organizations:CloseAccount: ConstraintViolationException: CLOSE_ACCOUNT_QUOTA_EXCEEDED: quota"
        );
        let plain = AwsError::new("organizations:TagResource", ErrorClass::Rejected, "x");
        assert_eq!(plain.clone().with_reason(None), plain);
    }

    #[test]
    fn display_names_operation_code_and_message() {
        let err = AwsError {
            code: Some("AccessDenied".into()),
            ..AwsError::new("sts:AssumeRole", ErrorClass::AccessDenied, "not authorized")
        };
        assert_eq!(
            err.to_string(),
            "sts:AssumeRole: AccessDenied: not authorized"
        );
    }
}
