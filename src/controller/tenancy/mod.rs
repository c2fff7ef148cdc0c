//! The tenancy gate: every controller asks it, before any AWS call or other side effect,
//! whether the LinkPolicies selecting an object's namespace permit what the object asks
//! ([`crate::policy`] decides; this module feeds it the cached policies and namespace labels
//! and makes the reads it asks for).
//!
//! Policies and namespaces are watched once for the whole operator ([`watch::start`]); a
//! change to either wakes every controller ([`Gate::changes`]), which re-evaluates its
//! objects both ways: a refused object that a policy now permits resumes, a permitted one that
//! no policy permits any more stops acting.

mod org;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::sync::watch as signal;
use tracing::{debug, info};

pub use self::org::Membership;
use crate::api::LinkPolicy;
use crate::api::conditions::{READY, RECONCILING, STALLED};
use crate::aws::{AwsError, OrgUnits};
use crate::controller::conditions::{Desired, Status};
use crate::policy::{self, Ask, Facts, Verdict};

/// How soon a refused object is evaluated again without a policy or namespace change: an
/// account may have joined a permitted OU meanwhile — a MemberAccount's new account always
/// does, moments after the OU was read for the MemberAccount itself. Just past the membership
/// cache's shortest refresh, so the second look reads the OU again; a refusal on the spec
/// alone makes no AWS call however often it is repeated.
pub const NOT_PERMITTED_RECHECK: Duration = org::MIN_REFRESH.saturating_add(Duration::from_secs(5));

/// At most this many rounds of reads per decision (targets, OU membership, rank): evaluation
/// asks for each at most once, so more rounds would be a bug, answered with a refusal.
const MAX_ROUNDS: usize = 5;

/// What the gate decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Act. `policy` names the LinkPolicy that permits it (`None` with tenancy disabled).
    Permitted { policy: Option<String> },
    /// Do nothing in AWS; say why in status.
    NotPermitted { message: String },
}

/// A read of the object's own kind that evaluation may ask for; the gate makes the
/// Organizations reads itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// A BulkRegistration's targets, resolved (into [`Facts::targets`]).
    Targets,
    /// A MemberAccount's rank in its namespace (into [`Facts::rank`]).
    Rank,
}

/// Makes the reads of an object's own kind that evaluation asks for, into the facts.
pub trait Reads<E>: Send {
    fn read<'a>(&'a mut self, read: Read, facts: &'a mut Facts) -> BoxFuture<'a, Result<(), E>>;
}

/// The reads of a kind whose requests never need one (LinkedAccount).
pub struct NoReads;

impl<E: Send + 'static> Reads<E> for NoReads {
    fn read<'a>(&'a mut self, _: Read, _: &'a mut Facts) -> BoxFuture<'a, Result<(), E>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The gate; one per operator, shared by every controller.
pub struct Gate {
    enforced: Option<Enforced>,
    changes: signal::Receiver<u64>,
}

/// Whether both caches have synced. A store's own `wait_until_ready` wakes only one of the
/// tasks waiting on it, so many reconciles wait on this instead.
type Synced = signal::Receiver<bool>;

/// What an enforcing gate reads from.
struct Enforced {
    synced: Synced,
    policies: Store<LinkPolicy>,
    namespaces: Store<Namespace>,
    membership: Membership,
}

impl Gate {
    /// A gate that permits everything: `--tenancy=disabled`, a single-tenant operator.
    pub fn disabled() -> Self {
        let (_, changes) = signal::channel(0);
        Self {
            enforced: None,
            changes,
        }
    }

    /// A gate over the caches [`watch::start`] fills, woken by `changes`.
    fn enforced(
        synced: Synced,
        policies: Store<LinkPolicy>,
        namespaces: Store<Namespace>,
        org: Arc<dyn OrgUnits>,
        changes: signal::Receiver<u64>,
    ) -> Self {
        Self {
            enforced: Some(Enforced {
                synced,
                policies,
                namespaces,
                membership: Membership::new(org),
            }),
            changes,
        }
    }

    /// Yields once per change of a LinkPolicy or of a namespace's labels (changes in a burst
    /// may yield once): a controller hands it to `Controller::reconcile_all_on`. Never yields
    /// with tenancy disabled.
    pub fn changes(&self) -> impl Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.changes.clone(), |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
    }

    /// Makes the next decisions read OU membership from Organizations again (a requested
    /// re-read of targets); nothing with tenancy disabled, which reads no membership.
    pub fn refresh_membership(&self) {
        if let Some(gate) = &self.enforced {
            gate.membership.forget();
        }
    }

    /// Decides `ask` of `object`. `reads` makes a read of the object's own kind when
    /// evaluation asks for one. Nothing is read that a refusal on the spec alone makes
    /// unnecessary.
    pub async fn decide<K, E>(
        &self,
        object: &K,
        ask: &Ask,
        reads: &mut impl Reads<E>,
    ) -> Result<Decision, E>
    where
        K: Resource,
        E: From<AwsError>,
    {
        let Some(gate) = &self.enforced else {
            return Ok(Decision::Permitted { policy: None });
        };
        let namespace = object.namespace().unwrap_or_default();
        let name = object.name_any();
        let kind = ask.kind();
        // Err only when the watch task ended (shutdown): decide on what the caches hold.
        let _ = gate.synced.clone().wait_for(|synced| *synced).await;
        let policies = gate.policies.state();
        let policies: Vec<&LinkPolicy> = policies.iter().map(AsRef::as_ref).collect();
        let labels = gate.labels(&namespace, &policies).await;
        let ns = policy::Namespace {
            name: &namespace,
            labels: &labels,
        };
        let mut facts = Facts::default();
        for _ in 0..MAX_ROUNDS {
            match policy::evaluate(ask, ns, &policies, &facts) {
                Verdict::Permitted { policy } => {
                    debug!(kind, namespace, name, policy, "permitted by LinkPolicy");
                    return Ok(Decision::Permitted {
                        policy: Some(policy),
                    });
                }
                Verdict::NotPermitted { message } => {
                    info!(
                        kind,
                        namespace,
                        name,
                        reason = message.as_str(),
                        "not permitted by any LinkPolicy"
                    );
                    return Ok(Decision::NotPermitted { message });
                }
                Verdict::Needs(needs) => {
                    if needs.targets {
                        reads.read(Read::Targets, &mut facts).await?;
                    }
                    if needs.rank {
                        reads.read(Read::Rank, &mut facts).await?;
                    }
                    for (id, unit) in needs.within {
                        let found = gate.membership.within(&id, &unit).await?;
                        facts.within.insert((id, unit), found);
                    }
                }
            }
        }
        let message = "the LinkPolicies could not be evaluated (reads kept being asked for)";
        info!(
            kind,
            namespace,
            name,
            reason = message,
            "not permitted by any LinkPolicy"
        );
        Ok(Decision::NotPermitted {
            message: message.into(),
        })
    }
}

impl Enforced {
    /// The labels of namespace `name`, when a policy selects by labels. A namespace created a
    /// moment before its first object may not be in the cache yet: wait for the watch a little
    /// (it delivers within a second), then decide on no labels, which selects less, never more.
    async fn labels(&self, name: &str, policies: &[&LinkPolicy]) -> BTreeMap<String, String> {
        if policies.iter().all(|p| p.spec.namespace_selector.is_none()) {
            return BTreeMap::new();
        }
        let key = ObjectRef::new(name);
        for _ in 0..NAMESPACE_WAIT_STEPS {
            if let Some(ns) = self.namespaces.get(&key) {
                return ns.labels().clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        BTreeMap::new()
    }
}

/// How many 100 ms steps to wait for a new namespace to reach the cache.
const NAMESPACE_WAIT_STEPS: usize = 50;

/// The conditions of an object no policy permits (`reason` is the kind's `NotPermitted`):
/// Stalled, because only a change of policy, namespace labels or spec can help.
pub fn refused(reason: &str, message: &str) -> Vec<Desired> {
    vec![
        Desired::new(READY, Status::False, reason, message),
        Desired::new(RECONCILING, Status::False, reason, ""),
        Desired::new(STALLED, Status::True, reason, message),
    ]
}
