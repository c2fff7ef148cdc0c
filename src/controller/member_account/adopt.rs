//! Adoption: the existing account in `spec.accountId` becomes this object's (no CreateAccount).
//! Reads the organization's management account, the account and its tags, asks
//! [`decide::adoption`], and makes the one call it names: TagResource with the owner tags. The
//! account is recorded (`status.accountId`, `status.adopted`) only after that call, so a pass
//! that dies in between finds its own tags next time and goes on.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::info;

use super::decide::adoption::{self, Adoption, Candidate};
use super::decide::converge::Call;
use super::{Error, Pass, identity, publish};
use crate::api::member_account::reason;

/// How the adoption phase ended.
pub(super) enum Adopted {
    /// The account is this object's now.
    Done(String),
    /// Refused or failed: come back as the action says.
    Wait(Action),
}

pub(super) async fn adopt(pass: &mut Pass<'_>, id: &str) -> Result<Adopted, Error> {
    let ctx = pass.ctx;
    let accounts = &ctx.accounts;
    let management = accounts.management_account().await?;
    let info = match accounts.account(id).await {
        Ok(info) => info,
        Err(e) => {
            if let Some(report) = adoption::not_found(id, &e) {
                pass.report(&report).await?;
                return Ok(Adopted::Wait(Action::requeue(ctx.settings.resync_interval)));
            }
            return refused(pass, Call::DescribeAccount, id, e).await;
        }
    };
    let tags = match accounts.tags(id).await {
        Ok(tags) => tags,
        Err(e) => return refused(pass, Call::ListTags, id, e).await,
    };
    let who = identity(pass.member, &ctx.settings.cluster_id);
    let candidate = Candidate {
        id,
        management: &management,
        info: &info,
        tags: &tags,
        email: pass.member.spec.email.as_deref(),
    };
    match adoption::adoption(&candidate, &who) {
        Adoption::Refused(report) => {
            pass.report(&report).await?;
            Ok(Adopted::Wait(Action::requeue(ctx.settings.resync_interval)))
        }
        Adoption::Take(owner_tags) => {
            if let Err(e) = accounts.tag(id, &owner_tags).await {
                return refused(pass, Call::TagResource, id, e).await;
            }
            record(pass, id).await?;
            let note = format!(
                "existing account {id} ({:?}) adopted: tagged {}={}; it is placed, tagged and linked like a created one",
                info.name,
                crate::api::labels::OWNER_TAG,
                who.owner
            );
            info!(name = %pass.member.name_any(), account = %id, "adopted an existing account");
            publish(pass.member, ctx, EventType::Normal, reason::ADOPTED, &note).await;
            Ok(Adopted::Done(id.to_string()))
        }
        Adoption::Ours => {
            record(pass, id).await?;
            Ok(Adopted::Done(id.to_string()))
        }
    }
}

async fn record(pass: &mut Pass<'_>, id: &str) -> Result<(), Error> {
    pass.next.account_id = Some(id.to_string());
    pass.next.adopted = Some(true);
    pass.save().await
}

async fn refused(
    pass: &mut Pass<'_>,
    call: Call,
    id: &str,
    e: crate::aws::AwsError,
) -> Result<Adopted, Error> {
    super::converge::refused(pass, call, id, e)
        .await
        .map(Adopted::Wait)
}
