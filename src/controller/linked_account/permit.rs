//! The tenancy gate of a LinkedAccount, before the ExternalId is read or STS is called. A
//! BulkRegistration's or MemberAccount's child is asked about like any other link: owner
//! references and labels are written by whoever creates the object, so they prove nothing.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::verdict::Verdict;
use super::{Context, Error, apply_verdict, role_arn};
use crate::api::linked_account::reason;
use crate::api::{LinkedAccount, LinkedAccountStatus};
use crate::controller::tenancy::{self, Decision, NOT_PERMITTED_RECHECK, NoReads};
use crate::policy::{Ask, LinkAsk};

/// `Some(action)` when no LinkPolicy permits `link`: its conditions say so, and nothing else
/// happens.
pub(super) async fn refuse_unless_permitted(
    link: &LinkedAccount,
    ctx: &Context,
) -> Result<Option<Action>, Error> {
    let ask = Ask::Link(LinkAsk::of(link));
    let decision = ctx
        .gate
        .decide::<_, Error>(link, &ask, &mut NoReads)
        .await?;
    let Decision::NotPermitted { message } = decision else {
        return Ok(None);
    };
    let links: Api<LinkedAccount> =
        Api::namespaced(ctx.client.clone(), &link.namespace().unwrap_or_default());
    let current = link.status.clone().unwrap_or_default();
    let next = LinkedAccountStatus {
        role_arn: Some(role_arn(link, &ctx.settings.partition)),
        ..current.clone()
    };
    let verdict = Verdict {
        conditions: Some(tenancy::refused(reason::NOT_PERMITTED, &message)),
        requeue_after: NOT_PERMITTED_RECHECK,
        retrying: false,
    };
    apply_verdict(link, ctx, &links, current, next, &verdict, Timestamp::now()).await?;
    // Verify at once when permitted again.
    ctx.forget(&ObjectRef::from_obj(link));
    Ok(Some(Action::requeue(NOT_PERMITTED_RECHECK)))
}
