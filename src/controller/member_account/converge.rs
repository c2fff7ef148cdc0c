//! After creation: the account is moved under `parentId`, its tags are kept equal to the spec
//! (plus the owner and cluster tags), its name and state are reported, and the child
//! LinkedAccount proves the access role — once its tags, read in the same pass right before
//! those calls, show it is this object's (status is a cache). What to change is [`decide::converge`]'s; refusals that will not go away by
//! themselves are reported as Stalled and looked at again on the slow resync.

use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::decide::Identity;
use super::decide::converge::{self, Call, Child, LinkStep};
use super::{Error, Pass, identity, publish};
use crate::api::labels::{MEMBER_ACCOUNT_CHILD_MANAGER, MEMBER_ACCOUNT_LABEL};
use crate::api::member_account::reason;
use crate::api::{LinkedAccount, MemberAccount};
use crate::aws::{Accounts, AwsError};
use crate::controller::conditions::Desired as Cond;

pub(super) async fn converge(pass: &mut Pass<'_>, account: &str) -> Result<Action, Error> {
    let ctx = pass.ctx;
    let member = pass.member;
    let spec = &member.spec;
    let accounts = &ctx.accounts;

    let info = match accounts.account(account).await {
        Ok(info) => info,
        Err(e) => return refused(pass, Call::DescribeAccount, account, e).await,
    };
    let parent = match accounts.parent_of(account).await {
        Ok(parent) => parent,
        Err(e) => return refused(pass, Call::ListParents, account, e).await,
    };
    let tags = match accounts.tags(account).await {
        Ok(tags) => tags,
        Err(e) => return refused(pass, Call::ListTags, account, e).await,
    };
    let who = identity(member, &ctx.settings.cluster_id);
    if let Some(report) = converge::not_owned(account, &tags, &who) {
        warn!(name = %member.name_any(), %account, "the account in status is not this object's; left alone");
        pass.report(&report).await?;
        return Ok(Action::requeue(ctx.settings.resync_interval));
    }
    pass.next.account_status = info.state.as_ref().map(ToString::to_string);
    let plan = converge::plan(spec, &who, account, &info, &parent, &tags);

    pass.next.parent_id = Some(parent.clone());
    if let Some(from) = &plan.move_from {
        if let Err(e) = accounts.move_account(account, from, &spec.parent_id).await
            && !moved_after_all(accounts.as_ref(), account, &spec.parent_id, &who, &e).await
        {
            return refused(pass, Call::MoveAccount, account, e).await;
        }
        info!(name = %member.name_any(), %account, from = %parent, to = %spec.parent_id, "moved account");
        let note = format!(
            "account {account} moved from {parent} to {}",
            spec.parent_id
        );
        publish(member, ctx, EventType::Normal, reason::MOVED, &note).await;
        pass.next.parent_id = Some(spec.parent_id.clone());
    }
    if !plan.tag.is_empty()
        && let Err(e) = accounts.tag(account, &plan.tag).await
    {
        return refused(pass, Call::TagResource, account, e).await;
    }
    if !plan.untag.is_empty()
        && let Err(e) = accounts.untag(account, &plan.untag).await
    {
        return refused(pass, Call::UntagResource, account, e).await;
    }
    if let Some(report) = &plan.not_active {
        pass.report(report).await?;
        return Ok(Action::requeue(ctx.settings.resync_interval));
    }
    let display = spec.account_name.clone().unwrap_or(info.name);
    link(pass, account, &display, plan.created).await
}

/// After MoveAccount of `account` to `to` was refused as [`converge::may_have_moved`] says our
/// own earlier move would be: whether the account, read again, is under `to` and still this
/// object's (the move is done). A failed re-read is no proof: the refusal stands.
pub(super) async fn moved_after_all(
    accounts: &dyn Accounts,
    account: &str,
    to: &str,
    who: &Identity,
    e: &AwsError,
) -> bool {
    if !converge::may_have_moved(e) {
        return false;
    }
    let (Ok(parent), Ok(tags)) = (
        accounts.parent_of(account).await,
        accounts.tags(account).await,
    ) else {
        return false;
    };
    let done = converge::moved_already(&parent, to, &tags, who);
    if done {
        info!(%account, %to, "MoveAccount was refused but the account is there and ours: an earlier move took effect");
    }
    done
}

/// Reports a refusal for good (and looks again on the slow resync), or hands a passing one to
/// the error policy.
pub(super) async fn refused(
    pass: &mut Pass<'_>,
    call: Call,
    account: &str,
    e: AwsError,
) -> Result<Action, Error> {
    let to = &pass.member.spec.parent_id;
    match converge::refused(call, account, to, &e) {
        Some(report) => {
            pass.report(&report).await?;
            Ok(Action::requeue(pass.ctx.settings.resync_interval))
        }
        None => Err(e.into()),
    }
}

/// The child LinkedAccount: the new account's access role, verified like any other link.
async fn link(
    pass: &mut Pass<'_>,
    account: &str,
    display: &str,
    created: Cond,
) -> Result<Action, Error> {
    let ctx = pass.ctx;
    let member = pass.member;
    let children: Api<LinkedAccount> =
        Api::namespaced(ctx.client.clone(), &member.namespace().unwrap_or_default());
    let name = member.name_any();
    let existing = children.get_opt(&name).await?;
    let child = match existing {
        None => Child::Missing,
        Some(c) if owned_by(&c, member) => {
            Child::Ours(c.status.map(|s| s.conditions).unwrap_or_default())
        }
        Some(_) => Child::Foreign,
    };
    match converge::link(member.spec.link.enabled, account, &name, &child, created) {
        LinkStep::Unlink { delete, report } => {
            pass.next.linked_account = None;
            if delete {
                children.delete(&name, &DeleteParams::default()).await?;
            }
            pass.report(&report).await?;
            Ok(Action::requeue(ctx.settings.resync_interval))
        }
        LinkStep::NameTaken(report) => {
            pass.report(&report).await?;
            Ok(Action::await_change())
        }
        LinkStep::Link { report, ready } => {
            children
                .patch(
                    &name,
                    &PatchParams::apply(MEMBER_ACCOUNT_CHILD_MANAGER).force(),
                    &Patch::Apply(&child_manifest(member, account, display)),
                )
                .await?;
            pass.next.linked_account = Some(name);
            pass.report(&report).await?;
            Ok(Action::requeue(if ready {
                ctx.settings.resync_interval
            } else {
                ctx.settings
                    .poll_interval
                    .max(std::time::Duration::from_secs(30))
            }))
        }
    }
}

fn owned_by(child: &LinkedAccount, member: &MemberAccount) -> bool {
    child
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == member.meta().uid.as_ref())
}

/// The child LinkedAccount's manifest: the account's access role, with this object as owner.
fn child_manifest(member: &MemberAccount, account: &str, display: &str) -> serde_json::Value {
    let owner = member.controller_owner_ref(&());
    let mut spec = json!({
        "accountId": account,
        "roleName": member.spec.role_name,
        "displayName": display,
    });
    if let Some(interval) = &member.spec.link.verify_interval {
        spec["verifyInterval"] = json!(interval);
    }
    json!({
        "apiVersion": "accountlinker.dev/v1alpha1",
        "kind": "LinkedAccount",
        "metadata": {
            "name": member.name_any(),
            "namespace": member.namespace(),
            "labels": {MEMBER_ACCOUNT_LABEL: member.name_any()},
            "ownerReferences": owner.map(|o| vec![o]),
        },
        "spec": spec,
    })
}
