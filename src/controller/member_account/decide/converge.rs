//! After creation: what brings the account to the spec (placement, tags), what is reported
//! about it (name, state), the child link, and which refusals of those calls are for good.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::{Health, Identity, Report, account_owner, aws_text, created, wanted_tags};
use crate::api::MemberAccountSpec;
use crate::api::conditions::{READY, STALLED};
use crate::api::member_account::reason;
use crate::aws::AwsError;
use crate::aws::accounts::{AccountInfo, AccountState};
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
mod tests {
    use super::super::fixtures::{account, who};
    use super::*;
    use crate::aws::ErrorClass;

    fn spec() -> MemberAccountSpec {
        serde_json::from_value(serde_json::json!({
            "accountName": "dev", "email": "dev@example.com", "parentId": "ou-ab12-aaaaaaaa",
            "tags": {"team": "a"},
        }))
        .unwrap()
    }

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn in_sync() -> BTreeMap<String, String> {
        tags(&[
            ("team", "a"),
            (crate::api::labels::OWNER_TAG, "team-a/dev"),
            (crate::api::labels::CLUSTER_TAG, "cluster-1"),
        ])
    }

    /// The plan for account 111 in `state` under `parent` with `actual` tags.
    fn plan_of(state: &str, parent: &str, actual: &BTreeMap<String, String>) -> Plan {
        let info = account("111", "dev@example.com", state);
        plan(&spec(), &who(), "111", &info, parent, actual)
    }

    // docs/memberaccount.md, "After creation".

    #[test]
    fn an_account_in_place_with_the_spec_s_tags_needs_nothing() {
        let p = plan_of("ACTIVE", "ou-ab12-aaaaaaaa", &in_sync());
        assert_eq!(p.move_from, None);
        assert!(p.tag.is_empty() && p.untag.is_empty());
        assert_eq!(p.not_active, None);
        assert_eq!(
            p.created,
            created("Created", "account 111 is ACTIVE under ou-ab12-aaaaaaaa")
        );
    }

    /// A forged `status.accountId`: the account's tags decide, and nothing is changed.
    #[test]
    fn an_account_tagged_for_someone_else_is_reported_not_changed() {
        use crate::api::labels::{CLUSTER_TAG, OWNER_TAG};
        assert_eq!(not_owned("111", &in_sync(), &who()), None);
        let legacy = tags(&[(OWNER_TAG, "team-a/dev")]);
        assert_eq!(
            not_owned("111", &legacy, &who()),
            None,
            "an earlier release's"
        );
        for foreign in [
            tags(&[(OWNER_TAG, "team-a/dev"), (CLUSTER_TAG, "cluster-2")]),
            tags(&[(OWNER_TAG, "team-b/dev"), (CLUSTER_TAG, "cluster-1")]),
            tags(&[("team", "a")]),
        ] {
            let report = not_owned("111", &foreign, &who()).expect("reported");
            assert_eq!(
                (report.health, report.reason.as_str()),
                (Health::Stalled, "AccountNotOwned")
            );
            assert!(
                report
                    .message
                    .starts_with("account 111 in status.accountId is not this MemberAccount's: "),
                "{}",
                report.message
            );
            assert_eq!(report.created.status, Status::False);
        }
    }

    #[test]
    fn another_parent_is_moved_from() {
        let p = plan_of("ACTIVE", "r-ab12", &in_sync());
        assert_eq!(p.move_from.as_deref(), Some("r-ab12"));
    }

    #[test]
    fn tags_converge_to_the_spec_plus_the_owner_tag() {
        let actual = tags(&[("team", "b"), ("by-hand", "x")]);
        let p = plan_of("ACTIVE", "ou-ab12-aaaaaaaa", &actual);
        assert_eq!(p.tag, in_sync());
        assert_eq!(p.untag, ["by-hand"]);
        let (set, remove) = tag_changes(&in_sync(), &in_sync());
        assert!(set.is_empty() && remove.is_empty());
        // An account of an earlier release gets the cluster tag.
        let legacy = tags(&[("team", "a"), (crate::api::labels::OWNER_TAG, "team-a/dev")]);
        let p = plan_of("ACTIVE", "ou-ab12-aaaaaaaa", &legacy);
        assert_eq!(
            p.tag,
            tags(&[(crate::api::labels::CLUSTER_TAG, "cluster-1")])
        );
        assert!(p.untag.is_empty());
    }

    #[test]
    fn a_changed_name_is_reported_not_applied() {
        let mut info = account("111", "dev@example.com", "ACTIVE");
        info.name = "old".into();
        let plan_for =
            |info: &AccountInfo| plan(&spec(), &who(), "111", info, "ou-ab12-aaaaaaaa", &in_sync());
        let p = plan_for(&info);
        assert_eq!(p.created.reason, "AccountNameNotApplied");
        assert_eq!(p.created.status, Status::True);
        // An account described without a name is not reported.
        info.name.clear();
        let p = plan_for(&info);
        assert_eq!(p.created.reason, "Created");
    }

    #[test]
    fn an_account_that_is_not_active_stalls() {
        for (state, stalls) in [
            ("ACTIVE", false),
            ("", false),
            ("SUSPENDED", true),
            ("PENDING_CLOSURE", true),
        ] {
            let p = plan_of(state, "ou-ab12-aaaaaaaa", &in_sync());
            assert_eq!(
                p.not_active.as_ref().map(|r| (r.health, r.reason.as_str())),
                stalls.then_some((Health::Stalled, "AccountNotActive")),
                "{state}"
            );
        }
    }

    fn child_conditions(ready: &str, stalled: &str) -> Vec<Condition> {
        let desired = [
            Cond::new(READY, status(ready), "R", "child says"),
            Cond::new(STALLED, status(stalled), "R", "child says"),
        ];
        conditions::merge(
            &[],
            &desired,
            &[],
            Some(1),
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        )
    }

    fn status(s: &str) -> Status {
        match s {
            "True" => Status::True,
            "False" => Status::False,
            _ => Status::Unknown,
        }
    }

    fn created_cond() -> Cond {
        created("Created", "account 111 is ACTIVE under ou")
    }

    #[test]
    fn the_child_link_follows_the_child_s_conditions() {
        for (child, health, reason, ready) in [
            (Child::Missing, Health::Progressing, "Verifying", false),
            (Child::Ours(vec![]), Health::Progressing, "Verifying", false),
            (
                Child::Ours(child_conditions("False", "False")),
                Health::Progressing,
                "Verifying",
                false,
            ),
            (
                Child::Ours(child_conditions("True", "False")),
                Health::Ready,
                "Ready",
                true,
            ),
            (
                Child::Ours(child_conditions("False", "True")),
                Health::Stalled,
                "AccessRoleNotAssumable",
                false,
            ),
        ] {
            let LinkStep::Link { report, ready: r } =
                link(true, "111", "dev", &child, created_cond())
            else {
                panic!("{child:?} is linked")
            };
            assert_eq!(
                (report.health, report.reason.as_str(), r),
                (health, reason, ready),
                "{child:?}"
            );
            assert_eq!(report.created, created_cond());
        }
        let LinkStep::Link { report, .. } = link(
            true,
            "111",
            "dev",
            &Child::Ours(child_conditions("False", "True")),
            created_cond(),
        ) else {
            unreachable!()
        };
        assert_eq!(report.message, "LinkedAccount dev: child says");
    }

    #[test]
    fn disabled_linking_deletes_only_this_object_s_child() {
        for (child, delete) in [
            (Child::Missing, false),
            (Child::Ours(vec![]), true),
            (Child::Foreign, false),
        ] {
            let LinkStep::Unlink { delete: d, report } =
                link(false, "111", "dev", &child, created_cond())
            else {
                panic!("{child:?} is unlinked")
            };
            assert_eq!(d, delete, "{child:?}");
            assert_eq!(
                (report.health, report.reason.as_str()),
                (Health::Ready, "Ready")
            );
        }
    }

    #[test]
    fn a_linked_account_of_the_same_name_that_is_not_the_child_has_its_own_reason() {
        let LinkStep::NameTaken(report) = link(true, "111", "dev", &Child::Foreign, created_cond())
        else {
            panic!("a foreign LinkedAccount is never overwritten")
        };
        assert_eq!(
            (report.health, report.reason.as_str()),
            (Health::Stalled, "LinkedAccountNameTaken")
        );
        assert!(report.message.contains("\"dev\""), "{}", report.message);
        assert_eq!(report.created, created_cond());
    }

    #[test]
    fn refusals_for_good_of_every_call_stall_with_a_reason_naming_the_step() {
        let table = [
            (
                Call::DescribeAccount,
                "DescribeAccount 111",
                "DescribeRejected",
            ),
            (Call::ListParents, "ListParents 111", "DescribeRejected"),
            (
                Call::ListTags,
                "ListTagsForResource 111",
                "DescribeRejected",
            ),
            (
                Call::MoveAccount,
                "MoveAccount 111 to ou-ab12-bbbbbbbb",
                "MoveRejected",
            ),
            (Call::TagResource, "TagResource 111", "TagRejected"),
            (Call::UntagResource, "UntagResource 111", "TagRejected"),
        ];
        for (call, names, reason) in table {
            for (class, code) in [
                (ErrorClass::AccessDenied, "AccessDeniedException"),
                (ErrorClass::Rejected, "TargetNotFoundException"),
                (ErrorClass::NotFound, "AccountNotFoundException"),
                (ErrorClass::QuotaExceeded, "TAG_POLICY_VIOLATION"),
            ] {
                let report = refused(call, "111", "ou-ab12-bbbbbbbb", &aws(class, code))
                    .unwrap_or_else(|| panic!("{call:?} {code} is reported"));
                assert_eq!(
                    (report.health, report.reason.as_str()),
                    (Health::Stalled, reason),
                    "{call:?} {code}"
                );
                assert!(
                    report.message.starts_with(&format!("{names}: {code}: no")),
                    "{}",
                    report.message
                );
                assert_eq!(report.created.status, Status::True);
            }
            // Passing trouble backs off and retries; the next pass finds the call working.
            for class in [
                ErrorClass::Throttled,
                ErrorClass::Transient,
                ErrorClass::Conflict,
                ErrorClass::InProgress,
            ] {
                assert_eq!(
                    refused(call, "111", "ou", &aws(class, "X")),
                    None,
                    "{call:?}"
                );
            }
        }
    }

    fn aws(class: ErrorClass, code: &str) -> AwsError {
        AwsError {
            operation: "organizations:MoveAccount",
            class,
            code: Some(code.into()),
            reason: None,
            message: "no".into(),
        }
    }

    #[test]
    fn a_refused_move_stalls_with_aws_s_message_and_throttling_backs_off() {
        let report = refused(
            Call::MoveAccount,
            "111",
            "ou-ab12-bbbbbbbb",
            &aws(ErrorClass::Rejected, "ParentNotFoundException"),
        )
        .expect("a refused move is reported");
        assert_eq!(report.health, Health::Stalled);
        assert_eq!(
            report.message,
            "MoveAccount 111 to ou-ab12-bbbbbbbb: ParentNotFoundException: no; looked at again periodically and on any change to this object"
        );
        assert_eq!(report.created.status, Status::True);
        for class in [ErrorClass::Throttled, ErrorClass::Transient] {
            assert_eq!(
                refused(Call::MoveAccount, "111", "ou", &aws(class, "X")),
                None
            );
        }
    }
}
