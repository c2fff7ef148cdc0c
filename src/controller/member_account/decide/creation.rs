//! The exactly-once CreateAccount protocol as a pure step function. Given what status recorded
//! and what the pass has read so far, [`creation`] names the next read, or the one thing to do.
//! The driver performs it and, after a read, asks again. That CreateAccount is only ever the
//! answer once the e-mail and the requests in progress were looked at is a fact the table below
//! checks, not a habit of the async code.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::{Found, Health, Identity, Lookup, Report, Seen, request_account};
use crate::api::MemberAccountStatus;
use crate::api::conditions::ACCOUNT_CREATED;
use crate::api::labels::{CLUSTER_TAG, OWNER_TAG};
use crate::api::member_account::reason;
use crate::aws::accounts::{CreateAccountState, CreateRequest};
use crate::aws::{AwsError, ErrorClass};

/// The FailureReason of a request whose e-mail an account already has (possibly our own).
const EMAIL_ALREADY_EXISTS: &str = "EMAIL_ALREADY_EXISTS";

/// How long after a transient failure was first reported a new request is sent.
pub const RETRY_PAUSE: Duration = Duration::from_secs(30);

/// How often a refused CreateAccount call is tried again without a change to the object.
pub const REJECTED_RECHECK: Duration = Duration::from_secs(600);

/// What status recorded about creation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub request_id: Option<String>,
    /// `status.createAccountState` as last written.
    pub request_state: Option<String>,
    /// The spec changed since the status was computed (a request that FAILED for good is
    /// retried only then).
    pub spec_changed: bool,
    /// `AccountCreated`'s reason and how long ago its status last changed.
    pub created: Option<(String, Duration)>,
}

impl Recorded {
    /// What `status` records, for the object at `generation`.
    pub fn new(status: &MemberAccountStatus, generation: Option<i64>, now: Timestamp) -> Self {
        let created =
            crate::controller::conditions::find(&status.conditions, ACCOUNT_CREATED).map(|c| {
                let age = now.duration_since(c.last_transition_time.0).unsigned_abs();
                (c.reason.clone(), age)
            });
        Self {
            request_id: status.create_account_request_id.clone(),
            request_state: status.create_account_state.clone(),
            spec_changed: status.observed_generation < generation,
            created,
        }
    }
}

/// Why a recorded request is set aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forgotten {
    /// It FAILED for good and the spec changed since: try again.
    FailedBeforeSpecChange,
    /// It made an account for another e-mail: it was never this object's.
    MadeAnotherAccount(String),
    /// It FAILED for a transient reason long enough ago.
    TransientFailure,
}

/// How the account was proven this object's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// Its request (recorded, or followed by name) SUCCEEDED and it has the spec's e-mail.
    Request,
    /// It has the spec's e-mail and this object's owner tag.
    OwnerTag,
}

/// When to look again after a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// After `--account-poll-interval`.
    Poll,
    /// Only on a change to the object.
    Change,
    After(Duration),
}

/// The next step of creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreationStep {
    /// Read this, then ask again.
    Look(Lookup),
    /// Clear the recorded request, then ask again.
    Forget(Forgotten),
    /// The account exists and is this object's.
    Done { account: String, proof: Proof },
    /// Write this report, then look again.
    Report { report: Report, then: Then },
    /// Record this request in progress (found by name) as the object's, report Creating, poll.
    Follow(CreateRequest),
    /// The request SUCCEEDED but names no account yet: poll without writing.
    PollQuietly,
    /// Nothing of this object exists or runs: call CreateAccount.
    Create,
}

/// The next step. Never [`CreationStep::Create`] while a request of this object may still run
/// or its account may exist.
pub fn creation(recorded: &Recorded, seen: &Seen, who: &Identity) -> CreationStep {
    if let Some(id) = &recorded.request_id {
        let recorded_state = recorded
            .request_state
            .as_deref()
            .map(CreateAccountState::from);
        if recorded_state == Some(CreateAccountState::Failed) && recorded.spec_changed {
            return CreationStep::Forget(Forgotten::FailedBeforeSpecChange);
        }
        let Some(request) = &seen.request else {
            return CreationStep::Look(Lookup::Request(id.clone()));
        };
        match request.state {
            CreateAccountState::Succeeded => match request_account(request, seen, who) {
                Err(lookup) => return CreationStep::Look(lookup),
                Ok(Some(account)) => {
                    return CreationStep::Done {
                        account,
                        proof: Proof::Request,
                    };
                }
                Ok(None) => match &request.account_id {
                    Some(other) => {
                        return CreationStep::Forget(Forgotten::MadeAnotherAccount(other.clone()));
                    }
                    None => return CreationStep::PollQuietly,
                },
            },
            CreateAccountState::Failed => {
                let failure = request.failure_reason.as_deref().unwrap_or_default();
                let (reason, transient) = classify_failure(failure);
                let message = format!(
                    "CreateAccount request {id} failed: {failure}{}",
                    if transient {
                        "; retried with backoff"
                    } else {
                        "; fix the cause and change the spec to try again"
                    }
                );
                if !transient {
                    // Our own earlier request may have made the account with this e-mail (its
                    // answer was lost, or a failover sent a second request before the account
                    // was visible): the owner tag proves it ours.
                    if failure == EMAIL_ALREADY_EXISTS {
                        match &seen.by_email {
                            None => return CreationStep::Look(Lookup::ByEmail),
                            Some(Some(Found { id, owned: true })) => {
                                return CreationStep::Done {
                                    account: id.clone(),
                                    proof: Proof::OwnerTag,
                                };
                            }
                            Some(_) => {}
                        }
                    }
                    return CreationStep::Report {
                        report: Report::not_created(Health::Stalled, &reason, &message),
                        then: Then::Change,
                    };
                }
                // A new request after a pause measured from when the failure was first
                // reported (status writes of this pass trigger the next one at once).
                let waited = recorded
                    .created
                    .as_ref()
                    .filter(|(r, _)| *r == reason)
                    .map(|(_, age)| *age);
                if waited.is_some_and(|w| w >= RETRY_PAUSE) {
                    return CreationStep::Forget(Forgotten::TransientFailure);
                }
                return CreationStep::Report {
                    report: Report::not_created(Health::Progressing, &reason, &message),
                    then: Then::After(RETRY_PAUSE.saturating_sub(waited.unwrap_or_default())),
                };
            }
            CreateAccountState::InProgress | CreateAccountState::Other(_) => {
                return CreationStep::Report {
                    report: Report::creating(id),
                    then: Then::Poll,
                };
            }
        }
    }
    // Recovery before creation: an account with this e-mail carrying this object's owner tag,
    // or a request in progress under this name, is ours (the status write after an earlier
    // call was lost). An account with the e-mail and without the tag is not.
    match &seen.by_email {
        None => return CreationStep::Look(Lookup::ByEmail),
        Some(Some(Found { id, owned: true })) => {
            return CreationStep::Done {
                account: id.clone(),
                proof: Proof::OwnerTag,
            };
        }
        Some(Some(Found { id, owned: false })) => {
            let message = format!(
                "account {id} already has the e-mail {} and was not created for this MemberAccount of this cluster (it is not tagged {OWNER_TAG}={owner} and {CLUSTER_TAG}={cluster}); use another e-mail, or tag that account to manage it here: aws organizations tag-resource --resource-id {id} --tags Key={OWNER_TAG},Value={owner} Key={CLUSTER_TAG},Value={cluster}",
                who.email,
                owner = who.owner,
                cluster = who.cluster,
            );
            return CreationStep::Report {
                report: Report::not_created(Health::Stalled, reason::EMAIL_IN_USE, &message),
                then: Then::After(super::UNOWNED_RECHECK),
            };
        }
        Some(None) => {}
    }
    match &seen.in_progress {
        None => CreationStep::Look(Lookup::InProgress),
        Some(Some(request)) => CreationStep::Follow(request.clone()),
        Some(None) => CreationStep::Create,
    }
}

/// A request in progress, out of ListCreateAccountStatus's, that may be this object's: the one
/// under its account name (the listing carries no e-mail; the account proves it later).
pub fn under_name(requests: Vec<CreateRequest>, who: &Identity) -> Option<CreateRequest> {
    requests
        .into_iter()
        .find(|r| r.account_name.as_deref() == Some(who.account_name.as_str()))
}

/// What to do with CreateAccount's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateAnswer {
    /// Record the request before anything waits on it, report Creating, poll.
    Recorded(CreateRequest),
    /// Write the report, then back off (the error goes to the error policy).
    RetryReported(Report, AwsError),
    /// Back off without a report.
    Retry(AwsError),
    /// Refused for good: write the report, look again after [`REJECTED_RECHECK`].
    Rejected(Report),
}

pub fn answered(result: Result<CreateRequest, AwsError>) -> CreateAnswer {
    let e = match result {
        Ok(request) => return CreateAnswer::Recorded(request),
        Err(e) => e,
    };
    let message = format!("CreateAccount: {}", super::aws_text(&e));
    if e.class == ErrorClass::Throttled {
        let report = Report::not_created(Health::Progressing, reason::RATE_LIMITED, &message);
        return CreateAnswer::RetryReported(report, e);
    }
    if e.class.is_retryable() {
        return CreateAnswer::Retry(e);
    }
    let reason = rejection_reason(e.class);
    CreateAnswer::Rejected(Report::not_created(Health::Stalled, reason, &message))
}

/// The condition reason of a CreateAccount `FailureReason`, and whether a new request may
/// succeed without anyone changing anything (AWS's own transient failures).
pub fn classify_failure(failure: &str) -> (String, bool) {
    let transient = matches!(
        failure,
        "CONCURRENT_ACCOUNT_MODIFICATION" | "INTERNAL_FAILURE"
    );
    // A reason the API server accepts (a letter first, at most 1,024 characters); anything
    // else AWS may send stays in the message only.
    let camel = camel(failure);
    let reason = if camel.starts_with(|c: char| c.is_ascii_alphabetic()) && camel.len() <= 1024 {
        camel
    } else {
        reason::CREATE_ACCOUNT_FAILED.to_string()
    };
    (reason, transient)
}

/// The condition reason of a refused CreateAccount call (not a FAILED request).
pub fn rejection_reason(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::OrganizationsNotInUse => reason::NOT_IN_USE,
        _ => reason::AWS_REJECTED,
    }
}

/// `EMAIL_ALREADY_EXISTS` → `EmailAlreadyExists` (a valid condition reason).
fn camel(code: &str) -> String {
    code.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars
                .next()
                .map(|f| f.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// CreateAccount's request, from the spec: the owner tag goes in the same call, so the account
/// carries it from its first moment.
pub fn new_account(
    spec: &crate::api::MemberAccountSpec,
    who: &Identity,
) -> crate::aws::accounts::NewAccount {
    crate::aws::accounts::NewAccount {
        name: spec.account_name.clone().unwrap_or_default(),
        email: spec.email.clone().unwrap_or_default(),
        role_name: spec.role_name.clone(),
        billing_allowed: spec.iam_user_access_to_billing
            == crate::api::member_account::BillingAccess::Allow,
        tags: super::wanted_tags(&spec.tags, who),
    }
}

#[cfg(test)]
mod tests;
