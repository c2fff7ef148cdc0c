//! Deletion: `Retain` leaves the account; `Close` closes only an account that is provably this
//! object's and keeps the object (polling, never waiting in a reconcile) until the account is
//! SUSPENDED, so the end state is reported; `Park` moves the account to `parkParentId` and
//! removes the owner tags. [`decide::closure`] says which account and what to do; CloseAccount's
//! and MoveAccount's refusals are reported instead of retried in a tight loop. An object no
//! LinkPolicy permits any more leaves its account alone whatever its policy says.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::converge::moved_after_all;
use super::decide::closure::{self, CLOSE_RECHECK, CloseAnswer, ClosureStep, Recorded};
use super::decide::converge::{self as plan, Call};
use super::{Context, Error, Pass, decided, identity, permit, publish};
use crate::api::MemberAccount;
use crate::api::member_account::reason;
use crate::aws::accounts::AccountState;

/// The note of the `NothingToClose` Event.
const NOTHING_TO_CLOSE: &str = "no account of this object exists (none was created, or the one with its e-mail is not tagged for it); nothing is closed or parked";

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
    let now = k8s_openapi::jiff::Timestamp::now();
    let recorded = Recorded {
        policy: member.spec.deletion_policy,
        account_id: status.account_id,
        request_id: status.create_account_request_id,
        adopt_id: member.spec.account_id.clone(),
        park_parent: member.spec.park_parent_id.clone(),
        closing_for: closure::closing_for(&status.conditions, now),
    };
    let who = identity(member, &ctx.settings.cluster_id);
    let step = decided(ctx.accounts.as_ref(), &who, |seen| {
        match closure::closure(&recorded, seen, &who) {
            ClosureStep::Look(lookup) => Err(lookup),
            step => Ok(step),
        }
    })
    .await?;
    let event = |type_, reason: &'static str, note: String| async move {
        publish(member, ctx, type_, reason, &note).await;
        Ok(Action::await_change())
    };
    match step {
        ClosureStep::Look(lookup) => Err(Error::Undecided(Some(lookup))),
        ClosureStep::Retain(note) => event(EventType::Normal, reason::RETAINED, note).await,
        ClosureStep::WaitForRequest(message) => {
            Err(Error::Waiting(message, ctx.settings.poll_interval))
        }
        ClosureStep::NothingToClose => {
            let note = NOTHING_TO_CLOSE.to_string();
            event(EventType::Normal, reason::NOTHING_TO_CLOSE, note).await
        }
        ClosureStep::AlreadyClosed => Ok(Action::await_change()),
        ClosureStep::NotOwned(note) => {
            warn!(name = %member.name_any(), "{note}");
            event(EventType::Warning, reason::ACCOUNT_NOT_OWNED, note).await
        }
        ClosureStep::Close(account) => close(member, ctx, &account).await,
        ClosureStep::WaitForSuspension(account) => wait_for_suspension(member, ctx, &account).await,
        ClosureStep::Closed { account, state } => {
            let mut pass = Pass::new(member, ctx);
            pass.next.account_status = Some(state.clone());
            pass.save().await?;
            let note = if state == AccountState::PendingClosure.as_str() {
                format!(
                    "account {account} is still PENDING_CLOSURE after {}s; not waited for any longer",
                    closure::CLOSE_WAIT.as_secs()
                )
            } else {
                format!("account {account} is {state}: closed, reinstatable for 90 days")
            };
            info!(name = %member.name_any(), %account, %state, "closing account reported");
            event(EventType::Normal, reason::SUSPENDED, note).await
        }
        ClosureStep::Park {
            account,
            from,
            to,
            untag,
        } => park(member, ctx, &account, from.as_deref(), &to, &untag).await,
        ClosureStep::AlreadyParked(account) => {
            let to = member.spec.park_parent_id.clone().unwrap_or_default();
            let note = format!(
                "account {account} is under {to} without an owner tag (parked by an earlier pass); it stays ACTIVE"
            );
            event(EventType::Normal, reason::PARKED, note).await
        }
    }
}

async fn close(member: &MemberAccount, ctx: &Context, account: &str) -> Result<Action, Error> {
    let result = ctx.accounts.close_account(account).await;
    let mut pass = Pass::new(member, ctx);
    match closure::close_answered(account, result) {
        CloseAnswer::Closed(note) => {
            pass.next.account_status = Some(AccountState::PendingClosure.to_string());
            pass.report(&closure::closing(account)).await?;
            publish(member, ctx, EventType::Normal, reason::CLOSING, &note).await;
            info!(name = %member.name_any(), %account, "account closed");
            Err(Error::Waiting(
                format!("account {account} is PENDING_CLOSURE"),
                ctx.settings.poll_interval,
            ))
        }
        CloseAnswer::AlreadyClosed => wait_for_suspension(member, ctx, account).await,
        CloseAnswer::Refused(report) => {
            pass.report(&report).await?;
            Err(Error::Waiting(report.message, CLOSE_RECHECK))
        }
        CloseAnswer::Retry(e) => Err(e.into()),
    }
}

/// Reports that the account is PENDING_CLOSURE (once: unchanged reports write nothing) and
/// looks again after the poll interval.
async fn wait_for_suspension(
    member: &MemberAccount,
    ctx: &Context,
    account: &str,
) -> Result<Action, Error> {
    let mut pass = Pass::new(member, ctx);
    pass.next.account_status = Some(AccountState::PendingClosure.to_string());
    pass.report(&closure::closing(account)).await?;
    Err(Error::Waiting(
        format!("account {account} is PENDING_CLOSURE"),
        ctx.settings.poll_interval,
    ))
}

/// Moves the account to the park parent (unless an earlier pass did), then removes the owner
/// tags: a crash between the two finds the account parked but still tagged and untags it.
async fn park(
    member: &MemberAccount,
    ctx: &Context,
    account: &str,
    from: Option<&str>,
    to: &str,
    untag: &[String],
) -> Result<Action, Error> {
    let accounts = &ctx.accounts;
    let failed = |call: Call, e: crate::aws::AwsError| async move {
        let mut pass = Pass::new(member, ctx);
        match plan::refused(call, account, to, &e) {
            Some(report) => {
                pass.report(&report).await?;
                Err(Error::Waiting(report.message, ctx.settings.resync_interval))
            }
            None => Err(Error::Aws(e)),
        }
    };
    if let Some(from) = from
        && let Err(e) = accounts.move_account(account, from, to).await
    {
        let who = identity(member, &ctx.settings.cluster_id);
        if !moved_after_all(accounts.as_ref(), account, to, &who, &e).await {
            return failed(Call::MoveAccount, e).await;
        }
    }
    if !untag.is_empty()
        && let Err(e) = accounts.untag(account, untag).await
    {
        return failed(Call::UntagResource, e).await;
    }
    let note = match from {
        Some(from) => format!(
            "deletionPolicy is Park: account {account} moved from {from} to {to} and its owner tags removed; it stays ACTIVE"
        ),
        None => format!(
            "deletionPolicy is Park: account {account} is under {to} and its owner tags were removed; it stays ACTIVE"
        ),
    };
    info!(name = %member.name_any(), %account, %to, "account parked");
    publish(member, ctx, EventType::Normal, reason::PARKED, &note).await;
    Ok(Action::await_change())
}
