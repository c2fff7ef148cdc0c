//! Phase "permit", before every other: the tenancy gate. The checks that need no read come
//! first (in [`crate::policy`]); only when a policy could still permit the registration are
//! the targets resolved (ConfigMaps and Organizations, read-only), and those targets are
//! then reused by the pass, so a permitted registration resolves them once.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::Api;

use super::plan::Desired;
use super::{Context, Halt, targets};
use crate::api::BulkRegistration;
use crate::controller::tenancy::{Decision, Read, Reads};
use crate::policy::{Ask, BulkAsk, Facts, Targets};

/// What the gate said.
pub enum Permit {
    /// Go on, with the targets when the gate had to resolve them.
    Granted(Option<Desired>),
    /// Touch nothing in AWS; the message says why.
    Refused(String),
}

/// Asks the gate about `bulk`.
pub async fn permit(bulk: &BulkRegistration, ctx: &Context) -> Result<Permit, Halt> {
    let ns = bulk.namespace().unwrap_or_default();
    let mut reads = TargetReads {
        bulk,
        ctx,
        config_maps: Api::namespaced(ctx.client.clone(), &ns),
        resolved: None,
    };
    let ask = Ask::Bulk(BulkAsk::of(bulk));
    Ok(match ctx.gate.decide(bulk, &ask, &mut reads).await? {
        Decision::Permitted { .. } => Permit::Granted(reads.resolved),
        Decision::NotPermitted { message } => Permit::Refused(message),
    })
}

/// The one read of a registration's own that evaluation asks for: its targets.
struct TargetReads<'a> {
    bulk: &'a BulkRegistration,
    ctx: &'a Context,
    config_maps: Api<ConfigMap>,
    resolved: Option<Desired>,
}

impl Reads<Halt> for TargetReads<'_> {
    fn read<'a>(&'a mut self, read: Read, facts: &'a mut Facts) -> BoxFuture<'a, Result<(), Halt>> {
        Box::pin(async move {
            if read == Read::Targets {
                let (ctx, settings) = (self.ctx, &self.ctx.settings);
                let (region, max) = (&settings.region, settings.max_targets);
                let org = ctx.org.as_ref();
                let walks = &ctx.walks;
                let desired =
                    targets::resolve(self.bulk, &self.config_maps, org, walks, region, max).await?;
                facts.targets = Some(policy_targets(&desired));
                self.resolved = Some(desired);
            }
            Ok(())
        })
    }
}

/// The targets as a policy counts them: all of them, and those named by ID.
fn policy_targets(desired: &Desired) -> Targets {
    Targets {
        count: desired.accounts.len(),
        listed: desired
            .accounts
            .iter()
            .filter(|a| !desired.via.contains_key(*a))
            .cloned()
            .collect(),
    }
}

/// Whether the registration ever acted in AWS (as far as its status knows): what decides
/// whether its deletion, refused, has anything to retain.
pub fn touched_aws(bulk: &BulkRegistration) -> bool {
    bulk.status.as_ref().is_some_and(|s| {
        s.stack_set_id.is_some()
            || s.template_hash.is_some()
            || s.operation.is_some()
            || s.last_operation.is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_reached_through_an_ou_are_not_listed() {
        let desired = Desired {
            accounts: ["111111111111", "222222222222", "333333333333"]
                .map(String::from)
                .into(),
            via: [("333333333333".to_string(), "ou-ab12-11111111".to_string())].into(),
            ..Desired::default()
        };
        let targets = policy_targets(&desired);
        assert_eq!(targets.count, 3);
        assert_eq!(
            targets.listed.into_iter().collect::<Vec<_>>(),
            ["111111111111", "222222222222"]
        );
    }
}
