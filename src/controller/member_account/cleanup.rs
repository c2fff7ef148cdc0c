//! Deletion: `Retain` leaves the account; `Close` closes only an account that is provably this
//! object's ([`decide::closure`] says which), and reports CloseAccount's refusals instead of
//! retrying them in a tight loop.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::info;

use super::decide::closure::{self, CLOSE_RECHECK, CloseAnswer, ClosureStep, Recorded};
use super::decide::{Lookup, Seen};
use super::{Context, Error, MAX_READS, Pass, identity, look, publish};
use crate::api::MemberAccount;
use crate::api::member_account::reason;
use crate::aws::accounts::AccountState;

pub(super) async fn cleanup(member: &MemberAccount, ctx: &Context) -> Result<Action, Error> {
    let status = member.status.clone().unwrap_or_default();
    let recorded = Recorded {
        policy: member.spec.deletion_policy,
        account_id: status.account_id,
        request_id: status.create_account_request_id,
    };
    let who = identity(member);
    let mut seen = Seen::default();
    let mut last = Lookup::ByEmail;
    for _ in 0..MAX_READS {
        match closure::closure(&recorded, &seen, &who) {
            ClosureStep::Look(lookup) => {
                look(ctx, &who, &lookup, &mut seen).await?;
                last = lookup;
            }
            ClosureStep::Retain(note) => {
                publish(member, ctx, EventType::Normal, reason::RETAINED, &note).await;
                return Ok(Action::await_change());
            }
            ClosureStep::WaitForRequest(message) => {
                return Err(Error::Waiting(message, ctx.settings.poll_interval));
            }
            ClosureStep::NothingToClose => {
                publish(
                    member,
                    ctx,
                    EventType::Normal,
                    reason::NOTHING_TO_CLOSE,
                    "no account of this object exists (none was created, or the one with its e-mail is not tagged for it); nothing is closed",
                )
                .await;
                return Ok(Action::await_change());
            }
            ClosureStep::AlreadyClosed => return Ok(Action::await_change()),
            ClosureStep::Close(account) => return close(member, ctx, &account).await,
        }
    }
    Err(Error::Undecided(last))
}

async fn close(member: &MemberAccount, ctx: &Context, account: &str) -> Result<Action, Error> {
    let result = ctx.accounts.close_account(account).await;
    let mut pass = Pass::new(member, ctx);
    match closure::close_answered(account, result) {
        CloseAnswer::Closed(note) => {
            pass.next.account_status = Some(AccountState::PendingClosure.to_string());
            pass.save().await?;
            publish(member, ctx, EventType::Normal, reason::CLOSING, &note).await;
            info!(name = %member.name_any(), %account, "account closed");
            Ok(Action::await_change())
        }
        CloseAnswer::AlreadyClosed => Ok(Action::await_change()),
        CloseAnswer::Refused(report) => {
            pass.report(&report).await?;
            Err(Error::Waiting(report.message, CLOSE_RECHECK))
        }
        CloseAnswer::Retry(e) => Err(e.into()),
    }
}
