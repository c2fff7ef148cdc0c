//! What every pass of the BulkRegistration controller shares: its settings, the AWS clients as
//! the phases use them, and what passes remember (caches of look-ups, the last listings).

use std::sync::Arc;
use std::time::Duration;

use crate::controller::recorder::Recorder;
use kube::Client;
use tokio::sync::OnceCell;

use super::{import, memo, preflight, targets, template};
use crate::aws::{
    DelegatedAdministrators, HubIdentity, ManagementStacks, OrgUnits, StackImports, StackSets,
    TemplateSummaries,
};
use crate::controller::hash_key::HashKey;
use crate::controller::link_cache::LinkStores;
use crate::controller::tenancy::Gate;
use crate::telemetry::Metrics;

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The operator's region: where StackSets live, and the default deployment region.
    pub region: String,
    pub partition: String,
    /// How often an operation in flight is polled.
    pub poll_interval: Duration,
    /// How often a settled registration is looked at again (drift, auto-deployed accounts).
    pub resync_interval: Duration,
    /// Most target accounts a registration may resolve to (`--max-targets`).
    pub max_targets: usize,
    /// The role the built-in template trusts; `None`: the operator's own, from
    /// GetCallerIdentity.
    pub hub_role_arn: Option<String>,
    /// The key of template fingerprints.
    pub hash_key: HashKey,
    /// This cluster's identity (`--cluster-id`): in every owner tag and derived StackSet name.
    pub cluster_id: String,
    /// Replaces every registration's `drift.checkInterval` (`--drift-check-interval`, for
    /// tests: the API's minimum is 10m).
    pub drift_check_interval: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            partition: "aws".into(),
            poll_interval: Duration::from_secs(5),
            resync_interval: Duration::from_secs(300),
            max_targets: 10_000,
            hub_role_arn: None,
            hash_key: HashKey::generate(),
            cluster_id: String::new(),
            drift_check_interval: None,
        }
    }
}

impl Settings {
    /// When to look at a registration again after a pass that settled it (no operation to
    /// start): one whose status changed, or in a token rotation, is `moving` and looked at again
    /// soon (a rotation moves on one step per pass and counts verifications, which trigger no
    /// pass; nor does a change of its own status), never sooner than children's changes would;
    /// an unchanged one waits for the resync, or for 10 s while it is not Ready.
    pub fn after_settled(&self, ready: bool, moving: bool) -> Duration {
        if moving {
            self.poll_interval.max(super::CHILD_WINDOW)
        } else if ready {
            self.resync_interval
        } else {
            self.poll_interval.max(Duration::from_secs(10))
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub stacksets: Arc<dyn StackSets>,
    pub org: Arc<dyn OrgUnits>,
    pub hub: Arc<dyn HubIdentity>,
    pub templates: Arc<dyn TemplateSummaries>,
    /// Existing per-account stacks: found and imported (`spec.import`).
    pub imports: Arc<dyn StackImports>,
    /// Organizations' delegated administrators (the `callAs: DelegatedAdmin` preflight).
    pub delegated: Arc<dyn DelegatedAdministrators>,
    /// The management account and its plain stack (`targets.includeManagementAccount`).
    pub management: Arc<dyn ManagementStacks>,
    pub recorder: Recorder,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// The principal the built-in template trusts, found once per process.
    pub(super) hub_principal: OnceCell<String>,
    /// Custom templates found to hide the token, so polling passes do not ask again.
    pub(super) vetted: template::Vetted,
    pub gate: Arc<Gate>,
    /// What look-ups for `spec.import` found, per registration and generation.
    pub(super) import_lookups: import::Cache,
    /// The hub's delegated-administrator registration, as last checked.
    pub(super) preflight: preflight::Cache,
    /// The management account and the hub's account, found once per process.
    pub(super) management_ids: OnceCell<(String, String)>,
    /// Every watched namespace's LinkedAccounts: where children are read.
    pub children: LinkStores,
    /// The last walk of each registration's OUs.
    pub(super) walks: targets::Walks,
    /// The last listing of each registration's stack instances.
    pub(super) instances: memo::Instances,
}

impl Context {
    pub fn new(
        client: Client,
        aws: Arc<crate::aws::AwsClients>,
        recorder: Recorder,
        settings: Settings,
        metrics: Arc<Metrics>,
        gate: Arc<Gate>,
    ) -> Self {
        Self {
            walks: memo::Memo::new(settings.resync_interval),
            instances: memo::Memo::new(settings.resync_interval),
            gate,
            client,
            stacksets: aws.clone(),
            org: aws.clone(),
            hub: aws.clone(),
            imports: aws.clone(),
            delegated: aws.clone(),
            management: aws.clone(),
            templates: aws,
            recorder,
            settings,
            metrics,
            hub_principal: OnceCell::new(),
            vetted: template::Vetted::default(),
            import_lookups: import::Cache::default(),
            preflight: preflight::Cache::default(),
            management_ids: OnceCell::new(),
            children: LinkStores::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_that_changed_status_is_followed_soon_and_a_quiet_one_waits() {
        let settings = Settings {
            poll_interval: Duration::from_millis(500),
            resync_interval: Duration::from_secs(3600),
            ..Settings::default()
        };
        // (ready, changed status or rotating) → next pass after
        let rows = [
            (true, true, super::super::CHILD_WINDOW),
            (false, true, super::super::CHILD_WINDOW),
            (true, false, Duration::from_secs(3600)),
            (false, false, Duration::from_secs(10)),
        ];
        for (ready, moving, want) in rows {
            assert_eq!(
                settings.after_settled(ready, moving),
                want,
                "{ready} {moving}"
            );
        }
    }
}
