//! Whether a StackSet is this registration's, decided from what AWS says (its owner tags, read
//! fresh) and never from status: every call that changes a StackSet — UpdateStackSet,
//! Create/Update/DeleteStackInstances, DeleteStackSet — is preceded by a DescribeStackSet and
//! [`permits`]. A StackSet that is not provably this registration's is reported
//! (`StackSetNotOwned`) and left alone, unless the registration asks to adopt an untagged one:
//! then the UpdateStackSet that brings it to the spec also tags it.

use std::collections::BTreeMap;

use kube::{Resource, ResourceExt};
use tracing::info;

use super::{Context, Pass};
use crate::api::BulkRegistration;
use crate::api::labels::{BULK_REGISTRATION_TAG, CLUSTER_TAG, NAMESPACE_TAG, UID_TAG};
use crate::aws::AwsError;
use crate::aws::stacksets::{StackSetInfo, StackSetRef};

/// The registration a StackSet's tags must name: cluster, namespace and name (the UID is
/// written, not compared: see [`UID_TAG`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn of(bulk: &BulkRegistration, cluster: &str) -> Self {
        Self {
            cluster: cluster.to_string(),
            namespace: bulk.namespace().unwrap_or_default(),
            name: bulk.name_any(),
            uid: bulk.meta().uid.clone().unwrap_or_default(),
        }
    }

    /// The tags CreateStackSet and every UpdateStackSet send.
    pub fn tags(&self) -> Vec<(String, String)> {
        [
            (CLUSTER_TAG, &self.cluster),
            (NAMESPACE_TAG, &self.namespace),
            (BULK_REGISTRATION_TAG, &self.name),
            (UID_TAG, &self.uid),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
    }

    /// The description every release gives the StackSets it creates. Earlier releases wrote no
    /// tags, so for an untagged StackSet it is the proof that the operator made it for this
    /// namespace and name (namespaces cannot contain `/`, so no other object's text matches).
    pub fn description(&self) -> String {
        format!(
            "account-linker BulkRegistration {}/{}",
            self.namespace, self.name
        )
    }
}

/// Who a StackSet belongs to, by its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Tagged with this cluster, namespace and name.
    Ours,
    /// No owner tag, and the description an earlier release gave this registration's StackSet:
    /// managed as its own; the next UpdateStackSet tags it.
    Legacy,
    /// No owner tag, not made by the operator for this registration.
    Untagged,
    /// Owner tags naming someone else; the text says whom.
    Foreign(String),
}

/// Reads the owner tags of a StackSet.
pub fn standing(tags: &BTreeMap<String, String>, description: &str, owner: &Owner) -> Standing {
    let tag = |key: &str| tags.get(key).map(String::as_str);
    let (cluster, namespace, name) = (
        tag(CLUSTER_TAG),
        tag(NAMESPACE_TAG),
        tag(BULK_REGISTRATION_TAG),
    );
    if cluster.is_none() && namespace.is_none() && name.is_none() {
        return if description == owner.description() {
            Standing::Legacy
        } else {
            Standing::Untagged
        };
    }
    let object = format!(
        "{}/{}",
        namespace.unwrap_or("<no namespace tag>"),
        name.unwrap_or("<no name tag>")
    );
    match cluster {
        Some(c) if c == owner.cluster => {
            if namespace == Some(owner.namespace.as_str()) && name == Some(owner.name.as_str()) {
                Standing::Ours
            } else {
                Standing::Foreign(format!(
                    "its tags name BulkRegistration {object} of this cluster"
                ))
            }
        }
        Some(c) => Standing::Foreign(format!(
            "its tags name another cluster ({CLUSTER_TAG}={c}, BulkRegistration {object})"
        )),
        None => Standing::Foreign(format!(
            "its tags name BulkRegistration {object} without a {CLUSTER_TAG} tag"
        )),
    }
}

/// Whether a change may be made to StackSet `name` standing as it does: `tagging` when the
/// call is an UpdateStackSet (which writes the owner tags), `adopt` from the spec (a LinkPolicy
/// allowed it before the pass got here). `Err` is the condition message.
pub fn permits(standing: &Standing, name: &str, tagging: bool, adopt: bool) -> Result<(), String> {
    match standing {
        Standing::Ours | Standing::Legacy => Ok(()),
        Standing::Untagged if adopt && tagging => Ok(()),
        Standing::Untagged if adopt => Err(format!(
            "StackSet {name} carries no owner tag yet; adopting it starts with an UpdateStackSet that tags it, and nothing else is changed before"
        )),
        Standing::Untagged => Err(format!(
            "StackSet {name} exists and carries no owner tag ({CLUSTER_TAG}, {NAMESPACE_TAG}, {BULK_REGISTRATION_TAG}): it was not created by this registration and is left alone; set spec.stackSet.adopt: true to take it over (a LinkPolicy must allow StackSet adoption), or choose another name"
        )),
        Standing::Foreign(whose) => Err(format!(
            "StackSet {name} is not this registration's: {whose}; it is never updated, shrunk or deleted from here"
        )),
    }
}

/// The standing of the StackSet described as `info`.
pub fn standing_of(info: &StackSetInfo, owner: &Owner) -> Standing {
    standing(&info.tags, &info.description, owner)
}

impl Pass<'_> {
    /// This registration as owner tags name it.
    pub(super) fn owner(&self) -> Owner {
        Owner::of(self.bulk, &self.ctx.settings.cluster_id)
    }

    /// DescribeStackSet right before a change, and whether the StackSet's tags permit it
    /// (`tagging`: the change is an UpdateStackSet). `Ok(Err(message))`: not this registration's.
    pub(super) async fn may_change(&self, tagging: bool) -> Result<Result<(), String>, AwsError> {
        let Some(info) = self.ctx.stacksets.describe(&self.set).await? else {
            // Gone: the call itself answers (and creates nothing under someone else's name).
            return Ok(Ok(()));
        };
        let standing = standing_of(&info, &self.owner());
        Ok(permits(
            &standing,
            &self.set.name,
            tagging,
            self.bulk.spec.stack_set.adopt,
        ))
    }
}

/// The StackSet a pass addresses, described: the spec's name or the derived one — or, for a
/// registration an earlier release managed under another derived name, the name its status
/// recorded, but only when that StackSet's tags or description prove it this registration's.
/// Status alone never decides; switches `pass.set` (and `status.stackSetName`) accordingly.
pub(super) async fn locate(pass: &mut Pass<'_>) -> Result<Option<StackSetInfo>, AwsError> {
    let ctx: &Context = pass.ctx;
    let recorded = pass.current.stack_set_name.clone();
    if pass.bulk.spec.stack_set.name.is_none()
        && let Some(recorded) = recorded.filter(|r| *r != pass.set.name)
    {
        let earlier = StackSetRef {
            name: recorded,
            call_as: pass.set.call_as,
        };
        if let Some(info) = ctx.stacksets.describe(&earlier).await? {
            if matches!(
                standing_of(&info, &pass.owner()),
                Standing::Ours | Standing::Legacy
            ) {
                pass.next.stack_set_name = Some(earlier.name.clone());
                pass.set = earlier;
                return Ok(Some(info));
            }
            info!(name = %pass.bulk.name_any(), recorded = %earlier.name, derived = %pass.set.name, "the StackSet in status is not this registration's; using the derived name");
        }
    }
    pass.next.stack_set_name = Some(pass.set.name.clone());
    ctx.stacksets.describe(&pass.set).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            cluster: "c-1".into(),
            namespace: "team-a".into(),
            name: "x".into(),
            uid: "u-1".into(),
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tagged(cluster: &str, namespace: &str, name: &str) -> BTreeMap<String, String> {
        tags(&[
            (CLUSTER_TAG, cluster),
            (NAMESPACE_TAG, namespace),
            (BULK_REGISTRATION_TAG, name),
            (UID_TAG, "u-old"),
        ])
    }

    #[test]
    fn the_owner_tags_name_cluster_namespace_name_and_uid() {
        let written: BTreeMap<String, String> = owner().tags().into_iter().collect();
        assert_eq!(
            written,
            tags(&[
                (CLUSTER_TAG, "c-1"),
                (NAMESPACE_TAG, "team-a"),
                (BULK_REGISTRATION_TAG, "x"),
                (UID_TAG, "u-1"),
            ])
        );
        assert_eq!(standing(&written, "", &owner()), Standing::Ours);
    }

    #[test]
    fn tags_decide_who_owns_a_stack_set() {
        let legacy = "account-linker BulkRegistration team-a/x";
        let collision = "account-linker BulkRegistration team/a-x";
        let cases: [(BTreeMap<String, String>, &str, &str); 9] = [
            // A re-created object (another UID) of the same cluster, namespace and name.
            (tagged("c-1", "team-a", "x"), "", "ours"),
            (tagged("c-1", "team-a", "x"), collision, "ours"),
            (tags(&[]), legacy, "legacy"),
            (tags(&[("team", "a")]), legacy, "legacy"),
            (tags(&[]), collision, "untagged"),
            (tags(&[]), "", "untagged"),
            (tagged("c-2", "team-a", "x"), legacy, "another cluster"),
            (
                tagged("c-1", "team", "a-x"),
                legacy,
                "team/a-x of this cluster",
            ),
            (
                tags(&[(BULK_REGISTRATION_TAG, "x")]),
                legacy,
                "without a accountlinker.dev/cluster-id tag",
            ),
        ];
        for (tags, description, want) in cases {
            let got = standing(&tags, description, &owner());
            let matched = match &got {
                Standing::Ours => want == "ours",
                Standing::Legacy => want == "legacy",
                Standing::Untagged => want == "untagged",
                Standing::Foreign(text) => text.contains(want),
            };
            assert!(
                matched,
                "{tags:?} {description:?}: want {want}, got {got:?}"
            );
        }
    }

    #[test]
    fn only_an_untagged_stack_set_is_adopted_and_only_by_the_update_that_tags_it() {
        let foreign = Standing::Foreign("its tags name another cluster".into());
        // (standing, tagging, adopt, permitted)
        let cases = [
            (Standing::Ours, false, false, true),
            (Standing::Ours, true, false, true),
            (Standing::Legacy, false, false, true),
            (Standing::Legacy, true, false, true),
            (Standing::Untagged, true, true, true),
            (Standing::Untagged, false, true, false),
            (Standing::Untagged, true, false, false),
            (Standing::Untagged, false, false, false),
            (foreign.clone(), true, true, false),
            (foreign.clone(), false, true, false),
            (foreign.clone(), true, false, false),
        ];
        for (standing, tagging, adopt, want) in cases {
            let got = permits(&standing, "ss", tagging, adopt);
            assert_eq!(
                got.is_ok(),
                want,
                "{standing:?} tagging={tagging} adopt={adopt}: {got:?}"
            );
        }
        let refused = permits(&foreign, "ss", true, true).unwrap_err();
        assert!(
            refused.starts_with(
                "StackSet ss is not this registration's: its tags name another cluster"
            ),
            "{refused}"
        );
        let untagged = permits(&Standing::Untagged, "ss", true, false).unwrap_err();
        assert!(untagged.contains("spec.stackSet.adopt: true"), "{untagged}");
    }
}
