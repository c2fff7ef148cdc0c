//! After creation: what brings the account to the spec (placement, tags), what is reported
//! about it (name, state), the child link, and which refusals of those calls are for good.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::{Health, Identity, Report, account_owner, aws_text, created, wanted_tags};
use crate::api::MemberAccountSpec;
use crate::api::conditions::{READY, STALLED};
use crate::api::member_account::reason;
use crate::aws::accounts::{AccountInfo, AccountState};
use crate::aws::{AwsError, ErrorClass};
use crate::controller::conditions::{self, Desired as Cond, Status};

/// The Organizations calls made on an existing account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    DescribeAccount,
    ListParents,
    ListTags,
    MoveAccount,
    TagResource,
    UntagResource,
}

impl Call {
    /// The operation as AWS names it.
    pub fn operation(self) -> &'static str {
        match self {
            Self::DescribeAccount => "DescribeAccount",
            Self::ListParents => "ListParents",
            Self::ListTags => "ListTagsForResource",
            Self::MoveAccount => "MoveAccount",
            Self::TagResource => "TagResource",
            Self::UntagResource => "UntagResource",
        }
    }

    /// The reason a refusal for good is reported with: it names the step, so `kubectl get`
    /// already says what to look at.
    fn reason(self) -> &'static str {
        match self {
            Self::DescribeAccount | Self::ListParents | Self::ListTags => reason::DESCRIBE_REJECTED,
            Self::MoveAccount => reason::MOVE_REJECTED,
            Self::TagResource | Self::UntagResource => reason::TAG_REJECTED,
        }
    }
}

/// The report for a refusal of `call` on `account` (moving it `to`) that will not go away by
/// itself: access denied, a bad parent, a tag policy, an account gone. `None` when it may
/// (throttling, server errors, a concurrent change): then the error policy backs off. The
/// driver looks again on the slow resync, so a refusal whose cause is fixed clears by itself.
pub fn refused(call: Call, account: &str, to: &str, e: &AwsError) -> Option<Report> {
    if e.class.is_retryable() {
        return None;
    }
    let target = match call {
        Call::MoveAccount => format!("{account} to {to}"),
        _ => account.to_string(),
    };
    let message = format!(
        "{} {target}: {}; looked at again periodically and on any change to this object",
        call.operation(),
        aws_text(e)
    );
    Some(Report::new(
        Health::Stalled,
        call.reason(),
        message,
        created(reason::CREATED, ""),
    ))
}

/// Whether a refused MoveAccount may be this object's own earlier move, whose answer was lost
/// (or whose effect a stale ListParents did not show yet): AWS says the account is in the
/// destination already (`DuplicateAccountException`) or not under the source any more
/// (`SourceParentNotFoundException`). Then where the account is and whose it is are read again
/// ([`moved_already`]) before anything is reported; a refusal the re-read does not explain is
/// reported as it was.
pub fn may_have_moved(e: &AwsError) -> bool {
    matches!(e.class, ErrorClass::AlreadyExists | ErrorClass::NotFound)
}

/// With the account's parent and tags read again after such a refusal: the move is done when
/// the account is under `to` and still this object's.
pub fn moved_already(
    parent: &str,
    to: &str,
    tags: &BTreeMap<String, String>,
    who: &Identity,
) -> bool {
    parent == to && account_owner(tags, who).is_ok()
}

/// The report when `account`'s tags (read in this pass, right before any MoveAccount, TagResource
/// or UntagResource) do not make it this object's: `status.accountId` is a cache, and a forged
/// one must not move, tag or untag someone else's account. `None`: it is this object's.
pub fn not_owned(account: &str, tags: &BTreeMap<String, String>, who: &Identity) -> Option<Report> {
    let whose = account_owner(tags, who).err()?;
    let message = format!(
        "account {account} in status.accountId is not this MemberAccount's: {whose}; it is not moved, tagged, untagged or closed from here; looked at again periodically and on any change to this object"
    );
    Some(Report::not_created(
        Health::Stalled,
        reason::ACCOUNT_NOT_OWNED,
        &message,
    ))
}

/// What to change and what to report about an existing account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// MoveAccount from this parent to `parentId`.
    pub move_from: Option<String>,
    /// TagResource with these (new or changed values).
    pub tag: BTreeMap<String, String>,
    /// UntagResource of these keys.
    pub untag: Vec<String>,
    /// `AccountCreated`.
    pub created: Cond,
    /// The account cannot be used (not ACTIVE): report this instead of linking.
    pub not_active: Option<Report>,
}

/// The plan for `account` as Organizations describes it, under `parent`, with `tags`.
pub fn plan(
    spec: &MemberAccountSpec,
    who: &Identity,
    account: &str,
    info: &AccountInfo,
    parent: &str,
    tags: &BTreeMap<String, String>,
) -> Plan {
    // The spec (and the owner tag) is the whole truth about a created account's tags. An
    // adopted account had tags before this object: the operator cannot tell them from tags it
    // set and later dropped from the spec, so it sets the spec's and removes none.
    let adopted = spec.account_id.is_some();
    let (tag, mut untag) = tag_changes(tags, &wanted_tags(&spec.tags, who));
    if adopted {
        untag.clear();
    }
    // The name cannot change after creation: say so rather than ignore it.
    let renamed = spec
        .account_name
        .as_ref()
        .filter(|name| !info.name.is_empty() && info.name != **name);
    let created = if let Some(name) = renamed {
        created(
            reason::NAME_NOT_APPLIED,
            format!(
                "account {account} exists as {:?}; accountName {name:?} is not applied (Organizations cannot rename accounts through its API; rename it in the account's settings)",
                info.name
            ),
        )
    } else {
        created(
            if adopted {
                reason::ADOPTED
            } else {
                reason::CREATED
            },
            format!(
                "account {account} is {} under {}",
                state(info),
                spec.parent_id
            ),
        )
    };
    let not_active = (!matches!(info.state, None | Some(AccountState::Active))).then(|| {
        Report::new(
            Health::Stalled,
            reason::NOT_ACTIVE,
            format!(
                "account {account} is {} in Organizations; it cannot be used",
                state(info)
            ),
            created.clone(),
        )
    });
    Plan {
        move_from: (parent != spec.parent_id).then(|| parent.to_string()),
        tag,
        untag,
        created,
        not_active,
    }
}

/// The account's state as AWS spells it (empty when Organizations reported none).
fn state(info: &AccountInfo) -> &str {
    info.state.as_ref().map_or("", AccountState::as_str)
}

/// Tags to set (new or changed values) and keys to remove, to make `actual` equal `wanted`.
pub fn tag_changes(
    actual: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let set = wanted
        .iter()
        .filter(|(k, v)| actual.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove = actual
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .cloned()
        .collect();
    (set, remove)
}

/// The LinkedAccount with this object's name, as far as the link cares.
#[derive(Clone, Debug, PartialEq)]
pub enum Child {
    Missing,
    /// This object's child, with its conditions.
    Ours(Vec<Condition>),
    /// Someone else's: never overwritten.
    Foreign,
}

/// What to do about the child LinkedAccount, and what to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkStep {
    /// Linking is disabled: delete the child when `delete`, then report Ready.
    Unlink { delete: bool, report: Report },
    /// The name is taken by a LinkedAccount this object does not own: report, wait for a change.
    NameTaken(Report),
    /// Apply the child, then report; `ready` when its access role verified.
    Link { report: Report, ready: bool },
}

pub fn link(enabled: bool, account: &str, name: &str, child: &Child, created: Cond) -> LinkStep {
    if !enabled {
        return LinkStep::Unlink {
            delete: matches!(child, Child::Ours(_)),
            report: Report::new(
                Health::Ready,
                reason::READY,
                format!("account {account} exists; linking is disabled"),
                created,
            ),
        };
    }
    let conds = match child {
        Child::Foreign => {
            return LinkStep::NameTaken(Report::new(
                Health::Stalled,
                reason::LINKED_ACCOUNT_NAME_TAKEN,
                format!(
                    "LinkedAccount {name:?} exists and is not owned by this MemberAccount; delete or rename it"
                ),
                created,
            ));
        }
        Child::Missing => &[][..],
        Child::Ours(conds) => conds.as_slice(),
    };
    let ready = conditions::is(conds, READY, Status::True);
    let report = if ready {
        Report::new(
            Health::Ready,
            reason::READY,
            format!("account {account} exists and its access role is assumable"),
            created,
        )
    } else if conditions::is(conds, STALLED, Status::True) {
        let message = conditions::find(conds, STALLED)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        Report::new(
            Health::Stalled,
            reason::NOT_ASSUMABLE,
            format!("LinkedAccount {name}: {message}"),
            created,
        )
    } else {
        Report::new(
            Health::Progressing,
            reason::VERIFYING,
            format!("verifying the access role of account {account} (LinkedAccount {name})"),
            created,
        )
    };
    LinkStep::Link { report, ready }
}

#[cfg(test)]
mod tests;
