//! Deletion: `Retain` leaves the account; `Close` closes only an account that is provably this
//! object's ([`decide::closure`] says which), and reports CloseAccount's refusals instead of
//! retrying them in a tight loop. An object no LinkPolicy permits any more leaves its account
//! alone whatever its policy says.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::decide::closure::{self, CLOSE_RECHECK, CloseAnswer, ClosureStep, Recorded};
use super::{Context, Error, Pass, decided, identity, permit, publish};
use crate::api::MemberAccount;
use crate::api::member_account::reason;
use crate::aws::accounts::AccountState;

/// The note of the `NothingToClose` Event.
const NOTHING_TO_CLOSE: &str = "no account of this object exists (none was created, or the one with its e-mail is not tagged for it); nothing is closed";

pub(super) async fn cleanup(member: &MemberAccount, ctx: &Context) -> Result<Action, Error> {
    if let Some(message) = permit::refusal(member, ctx).await? {
        if permit::touched_aws(member) {
            let note = format!(
                "the account stays in the organization: no LinkPolicy permits this object ({message})"
            );
            publish(
                member,
                ctx,
                EventType::Warning,
                reason::RETAINED_NOT_PERMITTED,
                &note,
            )
            .await;
        }
        return Ok(Action::await_change());
    }
    let status = member.status.clone().unwrap_or_default();
    let recorded = Recorded {
        policy: member.spec.deletion_policy,
        account_id: status.account_id,
        request_id: status.create_account_request_id,
    };
    let who = identity(member, &ctx.settings.cluster_id);
    let step = decided(ctx.accounts.as_ref(), &who, |seen| {
        match closure::closure(&recorded, seen, &who) {
            ClosureStep::Look(lookup) => Err(lookup),
            step => Ok(step),
        }
    })
    .await?;
    match step {
        ClosureStep::Look(lookup) => Err(Error::Undecided(Some(lookup))),
        ClosureStep::Retain(note) => {
            publish(member, ctx, EventType::Normal, reason::RETAINED, &note).await;
            Ok(Action::await_change())
        }
        ClosureStep::WaitForRequest(message) => {
            Err(Error::Waiting(message, ctx.settings.poll_interval))
        }
        ClosureStep::NothingToClose => {
            let note = NOTHING_TO_CLOSE;
            publish(
                member,
                ctx,
                EventType::Normal,
                reason::NOTHING_TO_CLOSE,
                note,
            )
            .await;
            Ok(Action::await_change())
        }
        ClosureStep::AlreadyClosed => Ok(Action::await_change()),
        ClosureStep::NotOwned(note) => {
            warn!(name = %member.name_any(), "{note}");
            let reason = reason::ACCOUNT_NOT_OWNED;
            publish(member, ctx, EventType::Warning, reason, &note).await;
            Ok(Action::await_change())
        }
        ClosureStep::Close(account) => close(member, ctx, &account).await,
    }
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
