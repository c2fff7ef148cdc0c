//! Creation: finds, resumes or starts the CreateAccount request, exactly once. The order of
//! reads and the one call are [`decide::creation`]'s; this module performs them and records the
//! request ID with a status write the moment CreateAccount answers.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{info, warn};

use super::decide::creation::{
    self, CreateAnswer, CreationStep, Forgotten, Proof, REJECTED_RECHECK, Recorded, Then,
};
use super::decide::{Lookup, Report, Seen};
use super::{Error, MAX_READS, Pass, identity, look};
use crate::aws::accounts::CreateAccountState;

/// How the creation phase ended.
#[derive(Debug)]
pub(super) enum Creation {
    /// The account exists and is this object's: its ID.
    Done(String),
    /// Not yet (or not at all): come back as the action says.
    Wait(Action),
}

/// Never calls CreateAccount while a request of this object may still be running or its
/// account may exist.
pub(super) async fn create(pass: &mut Pass<'_>) -> Result<Creation, Error> {
    let ctx = pass.ctx;
    let who = identity(pass.member);
    let name = pass.member.name_any();
    let poll = ctx.settings.poll_interval;
    let mut seen = Seen::default();
    let mut last = Lookup::ByEmail;
    for _ in 0..MAX_READS {
        let recorded = Recorded::new(
            pass.next.create_account_request_id.clone(),
            pass.next.create_account_state.clone(),
            pass.current.observed_generation,
            pass.generation(),
            &pass.current.conditions,
            pass.now,
        );
        match creation::creation(&recorded, &seen, &who) {
            CreationStep::Look(lookup) => {
                look(ctx, &who, &lookup, &mut seen).await?;
                if let (Lookup::Request(_), Some(request)) = (&lookup, &seen.request) {
                    pass.next.create_account_state = Some(request.state.to_string());
                }
                last = lookup;
            }
            CreationStep::Forget(why) => {
                let request = pass
                    .next
                    .create_account_request_id
                    .take()
                    .unwrap_or_default();
                pass.next.create_account_state = None;
                seen.request = None;
                match &why {
                    Forgotten::MadeAnotherAccount(account) => {
                        warn!(%name, %account, %request, "the request made an account for another e-mail; it is not this object's");
                    }
                    Forgotten::TransientFailure | Forgotten::FailedBeforeSpecChange => {
                        info!(%name, %request, reason = ?why, "a new CreateAccount request may follow");
                    }
                }
            }
            CreationStep::Done { account, proof } => {
                match proof {
                    Proof::Request => {
                        let request = pass
                            .next
                            .create_account_request_id
                            .clone()
                            .unwrap_or_default();
                        info!(%name, %account, %request, "account created");
                    }
                    Proof::OwnerTag => {
                        info!(%name, %account, "recovered the account with this e-mail and owner tag");
                        pass.next.create_account_state =
                            Some(CreateAccountState::Succeeded.to_string());
                    }
                }
                return Ok(Creation::Done(account));
            }
            CreationStep::Report { report, then } => {
                pass.report(&report).await?;
                return Ok(Creation::Wait(match then {
                    Then::Poll => Action::requeue(poll),
                    Then::Change => Action::await_change(),
                    Then::After(after) => Action::requeue(after),
                }));
            }
            CreationStep::Follow(request) => {
                info!(%name, request = %request.id, "resumed a CreateAccount request in progress");
                pass.next.create_account_request_id = Some(request.id.clone());
                pass.next.create_account_state = Some(request.state.to_string());
                pass.report(&Report::creating(&request.id)).await?;
                return Ok(Creation::Wait(Action::requeue(poll)));
            }
            CreationStep::PollQuietly => return Ok(Creation::Wait(Action::requeue(poll))),
            CreationStep::Create => return start(pass).await,
        }
    }
    Err(Error::Undecided(last))
}

/// Calls CreateAccount once and records its request before anything waits on it.
async fn start(pass: &mut Pass<'_>) -> Result<Creation, Error> {
    let ctx = pass.ctx;
    let who = identity(pass.member);
    let new = creation::new_account(&pass.member.spec, &who.owner);
    let result = ctx.accounts.create_account(&new).await;
    match creation::answered(result) {
        CreateAnswer::Recorded(request) => {
            pass.next.create_account_request_id = Some(request.id.clone());
            pass.next.create_account_state = Some(request.state.to_string());
            pass.save().await?;
            info!(name = %pass.member.name_any(), request = %request.id, "CreateAccount requested");
            pass.report(&Report::creating(&request.id)).await?;
            Ok(Creation::Wait(Action::requeue(ctx.settings.poll_interval)))
        }
        CreateAnswer::RetryReported(report, e) => {
            pass.report(&report).await?;
            Err(e.into())
        }
        CreateAnswer::Retry(e) => Err(e.into()),
        CreateAnswer::Rejected(report) => {
            pass.report(&report).await?;
            Ok(Creation::Wait(Action::requeue(REJECTED_RECHECK)))
        }
    }
}
