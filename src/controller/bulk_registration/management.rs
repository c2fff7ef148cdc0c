//! The organization's management account (`targets.includeManagementAccount`): no StackSet
//! deploys there (a ServiceManaged one never does), so its role comes from a plain stack with
//! the StackSet's template and parameters, named after the StackSet, created with the hub's own
//! credentials (the hub must be the management account), tagged with this registration's owner
//! tags and the template fingerprint. The stack is tracked like an instance: [`instance`]
//! turns it into one, so summary, `status.failures` and the child LinkedAccount treat the
//! management account like any other target. Nothing blocks: a stack in progress is looked at
//! again on the next pass. Its tags are read right before every UpdateStack and DeleteStack; a
//! stack by that name that is not this registration's is reported, never changed.

use std::borrow::Cow;

use kube::ResourceExt;
use kube::runtime::events::EventType;
use tracing::info;

use super::definition::Definition;
use super::ownership::{self, Owner, Standing};
use super::plan::Desired;
use super::{Context, Error, Pass};
use crate::api::bulk_registration::reason;
use crate::aws::management::{PlainStack, PlainStackSpec};
use crate::aws::stacksets::Instance;

/// The plain stack's name: the StackSet's, with this suffix (within CloudFormation's 128).
pub const STACK_SUFFIX: &str = "-management";
/// The stack tag holding the fingerprint of the template and parameters it was given.
pub const HASH_TAG: &str = "accountlinker.dev/template-hash";

/// The plain stack's name for StackSet `stack_set`.
pub fn stack_name(stack_set: &str) -> String {
    let base: String = stack_set.chars().take(128 - STACK_SUFFIX.len()).collect();
    format!("{base}{STACK_SUFFIX}")
}

/// What the management account's stack needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    Create,
    /// The template or parameters (the token) changed.
    Update,
    /// Being created, updated or deleted: look again next pass.
    Wait,
    /// Current.
    Settled,
    /// Failed, not this registration's, or not reachable from the hub: why.
    Blocked(String),
}

/// Decides from the stack as DescribeStacks reports it (tags read now, not from status).
pub fn decide(name: &str, stack: Option<&PlainStack>, owner: &Owner, hash: &str) -> Act {
    let Some(stack) = stack else {
        return Act::Create;
    };
    match ownership::standing(&stack.tags, "", owner) {
        Standing::Ours => {}
        Standing::Foreign(whose) => {
            return Act::Blocked(format!(
                "stack {name} in the management account is not this registration's: {whose}; it is left alone"
            ));
        }
        Standing::Legacy | Standing::Untagged => {
            return Act::Blocked(format!(
                "stack {name} in the management account carries no owner tag of this registration: it was not created by it and is left alone"
            ));
        }
    }
    let status = stack.status.as_str();
    if status.ends_with("_IN_PROGRESS") {
        return Act::Wait;
    }
    let current = stack.tags.get(HASH_TAG).map(String::as_str) == Some(hash);
    match status {
        "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "IMPORT_COMPLETE" if current => Act::Settled,
        "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "IMPORT_COMPLETE" => Act::Update,
        _ => Act::Blocked(format!(
            "stack {name} in the management account is {status}{}",
            stack
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )),
    }
}

/// The management account's stack as a stack instance, the way the rest of the controller
/// reads instances.
pub fn instance(account: &str, region: &str, act: &Act) -> Instance {
    let (status, detailed, reason) = match act {
        Act::Settled => ("CURRENT", "SUCCEEDED", None),
        Act::Create | Act::Update | Act::Wait => ("OUTDATED", "RUNNING", None),
        Act::Blocked(why) => ("OUTDATED", "FAILED", Some(why.clone())),
    };
    Instance {
        account: account.to_string(),
        region: region.to_string(),
        status: status.into(),
        detailed_status: Some(detailed.into()),
        reason,
        ..Instance::default()
    }
}

/// The registration's targets and instances with the management account's stack among them,
/// for status and children (the planner sees neither).
pub fn with_management<'a>(
    desired: &'a Desired,
    instances: &'a [Instance],
    management: Option<&Instance>,
) -> (Cow<'a, Desired>, Cow<'a, [Instance]>) {
    let Some(stack) = management else {
        return (Cow::Borrowed(desired), Cow::Borrowed(instances));
    };
    let mut all = desired.clone();
    all.accounts.insert(stack.account.clone());
    let mut listed = instances.to_vec();
    listed.retain(|i| i.account != stack.account);
    listed.push(stack.clone());
    (Cow::Owned(all), Cow::Owned(listed))
}

impl Context {
    /// The management account and the hub's account, read once per process.
    async fn management_ids(&self) -> Result<&(String, String), Error> {
        self.management_ids
            .get_or_try_init(|| async {
                let management = self.management.management_account().await?;
                let hub = self.hub.caller().await?.account;
                Ok::<_, Error>((management, hub))
            })
            .await
    }
}

/// Brings the management account's stack to the definition, when the registration includes
/// the management account: takes the account out of `desired` (no StackSet instance for it)
/// and leaves its stack, as an instance, in the pass for status and children.
pub(super) async fn converge(
    pass: &mut Pass<'_>,
    definition: &Definition,
    desired: &mut Desired,
) -> Result<(), Error> {
    let ctx = pass.ctx;
    if !pass.bulk.spec.targets.include_management_account {
        return Ok(());
    }
    let (management, hub) = ctx.management_ids().await?.clone();
    desired.accounts.remove(&management);
    let region = ctx.settings.region.clone();
    if hub != management {
        let why = format!(
            "the hub (account {hub}) is not the management account ({management}): the management account's stack is created with the hub's credentials, so run the operator as the management account or leave includeManagementAccount off"
        );
        pass.management = Some(instance(&management, &region, &Act::Blocked(why)));
        return Ok(());
    }
    let name = stack_name(&pass.set.name);
    let stack = ctx.management.describe_stack(&name).await?;
    let owner = pass.owner();
    let hash = &definition.hash;
    let mut tags = owner.tags();
    tags.push((HASH_TAG.to_string(), hash.clone()));
    let spec = PlainStackSpec {
        name: &name,
        template: &definition.spec.template,
        parameters: &definition.spec.parameters,
        tags: &tags,
    };
    let act = decide(&name, stack.as_ref(), &owner, hash);
    let generation = pass.generation().unwrap_or_default();
    match &act {
        Act::Create => {
            let token = format!("al-mgmt-g{generation}-{}", &hash[..hash.len().min(16)]);
            ctx.management.create_stack(&spec, &token).await?;
            info!(name = %pass.bulk.name_any(), stack = %name, "creating the management account's stack");
        }
        // The tags were read by this pass's DescribeStacks, right before.
        Act::Update => {
            ctx.management.update_stack(&spec).await?;
            info!(name = %pass.bulk.name_any(), stack = %name, "updating the management account's stack");
        }
        Act::Wait | Act::Settled | Act::Blocked(_) => {}
    }
    let shown = match act {
        Act::Create | Act::Update => Act::Wait,
        other => other,
    };
    pass.management = Some(instance(&management, &region, &shown));
    Ok(())
}

/// `deletionPolicy: Delete`: deletes the management account's stack once its tags (read now)
/// show it is this registration's. `true` while the deletion is under way.
pub(super) async fn delete(pass: &Pass<'_>) -> Result<bool, Error> {
    let ctx = pass.ctx;
    if !pass.bulk.spec.targets.include_management_account {
        return Ok(false);
    }
    let (management, hub) = ctx.management_ids().await?;
    if hub != management {
        return Ok(false);
    }
    let name = stack_name(&pass.set.name);
    let Some(stack) = ctx.management.describe_stack(&name).await? else {
        return Ok(false);
    };
    if ownership::standing(&stack.tags, "", &pass.owner()) != Standing::Ours {
        let note = format!(
            "stack {name} in the management account is not this registration's; deletionPolicy Delete leaves it in AWS"
        );
        pass.publish(EventType::Warning, reason::STACK_SET_NOT_OWNED, &note)
            .await;
        return Ok(false);
    }
    if stack.status != "DELETE_IN_PROGRESS" {
        ctx.management.delete_stack(&name).await?;
        info!(name = %pass.bulk.name_any(), stack = %name, "deleting the management account's stack");
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn owner() -> Owner {
        Owner {
            cluster: "c-1".into(),
            namespace: "team-a".into(),
            name: "x".into(),
            uid: "u-1".into(),
        }
    }

    fn stack(status: &str, hash: &str, ours: bool) -> PlainStack {
        let mut tags: BTreeMap<String, String> = if ours {
            owner().tags().into_iter().collect()
        } else {
            BTreeMap::new()
        };
        tags.insert(HASH_TAG.into(), hash.into());
        PlainStack {
            id: "arn".into(),
            status: status.into(),
            reason: Some("Role exists".into()),
            tags,
        }
    }

    #[test]
    fn the_stack_is_created_updated_awaited_or_left_alone() {
        let cases = [
            (None, Act::Create),
            (Some(stack("CREATE_COMPLETE", "h1", true)), Act::Settled),
            (Some(stack("UPDATE_COMPLETE", "h0", true)), Act::Update),
            (Some(stack("CREATE_IN_PROGRESS", "h1", true)), Act::Wait),
            (Some(stack("UPDATE_IN_PROGRESS", "h0", true)), Act::Wait),
        ];
        for (found, want) in cases {
            assert_eq!(
                decide("s", found.as_ref(), &owner(), "h1"),
                want,
                "{found:?}"
            );
        }
        let Act::Blocked(why) = decide(
            "s",
            Some(&stack("ROLLBACK_COMPLETE", "h1", true)),
            &owner(),
            "h1",
        ) else {
            panic!("a failed stack blocks");
        };
        assert!(why.contains("ROLLBACK_COMPLETE: Role exists"), "{why}");
        let Act::Blocked(why) = decide(
            "s",
            Some(&stack("CREATE_COMPLETE", "h0", false)),
            &owner(),
            "h1",
        ) else {
            panic!("an untagged stack is never updated");
        };
        assert!(why.contains("no owner tag"), "{why}");
    }

    #[test]
    fn the_stack_reads_as_an_instance() {
        let settled = instance("123456789012", "us-east-1", &Act::Settled);
        assert_eq!(settled.status.as_str(), "CURRENT");
        let failed = instance("123456789012", "us-east-1", &Act::Blocked("no".into()));
        assert_eq!(
            (
                failed.detailed_status.unwrap().as_str(),
                failed.reason.as_deref()
            ),
            ("FAILED", Some("no"))
        );
        let waiting = instance("123456789012", "us-east-1", &Act::Wait);
        assert_eq!(waiting.detailed_status.unwrap().as_str(), "RUNNING");
    }

    #[test]
    fn names_are_the_stack_sets_within_the_limit() {
        assert_eq!(
            stack_name("account-linker-a-b"),
            "account-linker-a-b-management"
        );
        assert_eq!(stack_name(&"x".repeat(128)).len(), 128);
    }
}
