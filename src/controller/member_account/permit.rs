//! The tenancy gate of a MemberAccount, before anything else: creation and deletion both ask
//! it. `maxAccounts` counts MemberAccounts oldest first, so a MemberAccount's rank in its
//! namespace is read (from the API server) only when a policy sets one.

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::{Context, Error};
use crate::api::MemberAccount;
use crate::controller::tenancy::{Decision, Read, Reads};
use crate::policy::{Ask, Facts, MemberAsk};

/// `Some(message)` when no LinkPolicy permits `member`.
pub(super) async fn refusal(
    member: &MemberAccount,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let ask = Ask::Member(MemberAsk::of(member));
    let mut reads = RankReads { member, ctx };
    Ok(match ctx.gate.decide(member, &ask, &mut reads).await? {
        Decision::Permitted { .. } => None,
        Decision::NotPermitted { message } => Some(message),
    })
}

/// The one read of a MemberAccount's own that evaluation asks for: its rank in the namespace.
struct RankReads<'a> {
    member: &'a MemberAccount,
    ctx: &'a Context,
}

impl Reads<Error> for RankReads<'_> {
    fn read<'a>(
        &'a mut self,
        read: Read,
        facts: &'a mut Facts,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            if read == Read::Rank {
                let ns = self.member.namespace().unwrap_or_default();
                let api: Api<MemberAccount> = Api::namespaced(self.ctx.client.clone(), &ns);
                let listed = api.list_metadata(&ListParams::default()).await?;
                let all = listed.items.iter().map(|m| key(&m.metadata));
                facts.rank = Some(rank(&key(&self.member.metadata), all));
            }
            Ok(())
        })
    }
}

/// How MemberAccounts are ordered for `maxAccounts`: creation time, then name.
type Key = (Option<Timestamp>, String);

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (
        meta.creation_timestamp.as_ref().map(|t| t.0),
        meta.name.clone().unwrap_or_default(),
    )
}

/// How many of `all` come before `me`.
fn rank(me: &Key, all: impl Iterator<Item = Key>) -> usize {
    all.filter(|other| other < me).count()
}

/// Whether the object ever asked Organizations for an account (as far as its status knows):
/// what decides whether its deletion, refused, has anything to retain.
pub(super) fn touched_aws(member: &MemberAccount) -> bool {
    member
        .status
        .as_ref()
        .is_some_and(|s| s.create_account_request_id.is_some() || s.account_id.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_is_by_creation_time_then_name() {
        let at = |s: i64, name: &str| {
            (
                Some(Timestamp::from_second(1_800_000_000 + s).unwrap()),
                name.to_string(),
            )
        };
        let all = [at(0, "b"), at(0, "a"), at(5, "c"), at(9, "a")];
        let table = [
            (at(0, "a"), 0),
            (at(0, "b"), 1),
            (at(5, "c"), 2),
            (at(9, "a"), 3),
        ];
        for (me, want) in table {
            assert_eq!(rank(&me, all.iter().cloned()), want, "{me:?}");
        }
    }
}
