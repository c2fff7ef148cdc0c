//! Adoption: whether the existing account in `spec.accountId` may become this object's. The
//! LinkPolicy gate has already permitted the ask (the right and the account in scope); this
//! decides on what Organizations says about the account itself, read right before the one
//! call that takes it (TagResource with the owner tags). No CreateAccount is ever made for an
//! object with `spec.accountId`.

use std::collections::BTreeMap;

use super::{Health, Identity, Report, same_email};
use crate::api::labels::{CLUSTER_TAG, OWNER_TAG};
use crate::api::member_account::reason;
use crate::aws::accounts::{AccountInfo, AccountState};
use crate::aws::{AwsError, ErrorClass};

/// What Organizations said about the account to adopt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub id: &'a str,
    /// The organization's management account.
    pub management: &'a str,
    pub info: &'a AccountInfo,
    pub tags: &'a BTreeMap<String, String>,
    /// `spec.email`, when given: it must be the account's.
    pub email: Option<&'a str>,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// Tag the account with these (the owner and cluster tags), then record it as adopted.
    Take(BTreeMap<String, String>),
    /// It already carries this object's owner tags (an earlier pass tagged it, and its status
    /// write was lost): record it as adopted.
    Ours,
    /// Never adopted as things stand: report, look again on the slow resync or a change.
    Refused(Report),
}

/// Whether `candidate` may be adopted by `who`.
pub fn adoption(candidate: &Candidate<'_>, who: &Identity) -> Adoption {
    let id = candidate.id;
    if id == candidate.management {
        return refused(
            id,
            "it is the organization's management account, which is never adopted (it cannot be moved, closed or linked like a member)",
        );
    }
    match &candidate.info.state {
        None | Some(AccountState::Active) => {}
        Some(state) => {
            return refused(id, &format!("it is {state}, not ACTIVE"));
        }
    }
    if let Some(email) = candidate.email
        && !same_email(&candidate.info.email, email)
    {
        return refused(
            id,
            &format!(
                "its e-mail is {:?}, not spec.email {email:?}",
                candidate.info.email
            ),
        );
    }
    let tags = candidate.tags;
    let owner = tags.get(OWNER_TAG);
    let cluster = tags.get(CLUSTER_TAG);
    match (owner, cluster) {
        (Some(o), c) if *o == who.owner && c.is_none_or(|c| *c == who.cluster) => {
            if c.is_none() {
                Adoption::Take(BTreeMap::from([(
                    CLUSTER_TAG.to_string(),
                    who.cluster.clone(),
                )]))
            } else {
                Adoption::Ours
            }
        }
        (None, None) => Adoption::Take(BTreeMap::from([
            (OWNER_TAG.to_string(), who.owner.clone()),
            (CLUSTER_TAG.to_string(), who.cluster.clone()),
        ])),
        (Some(o), Some(c)) if *o != who.owner => refused(
            id,
            &format!(
                "it carries another owner's tags ({OWNER_TAG}={o}, {CLUSTER_TAG}={c}); delete that owner's object with deletionPolicy Park, or remove its tags, first"
            ),
        ),
        (Some(o), _) if *o != who.owner => refused(
            id,
            &format!(
                "it carries another owner's tag ({OWNER_TAG}={o}); delete that owner's object with deletionPolicy Park, or remove its tag, first"
            ),
        ),
        (_, Some(c)) => refused(
            id,
            &format!(
                "its {CLUSTER_TAG} tag names another cluster ({c}); that cluster's operator manages it"
            ),
        ),
        // The owner tag names this object and the cluster tag is ours or absent: handled above.
        (Some(_), None) => Adoption::Ours,
    }
}

/// The report when DescribeAccount of the account to adopt was refused: not in this
/// organization (AccountNotFoundException) is an adoption refusal; other refusals for good are
/// `None` (reported like any DescribeAccount refusal); passing trouble is `None` too.
pub fn not_found(id: &str, e: &AwsError) -> Option<Report> {
    (e.class == ErrorClass::NotFound).then(|| {
        let why = format!(
            "Organizations does not know it in this organization ({})",
            super::aws_text(e)
        );
        refused_report(id, &why)
    })
}

fn refused(id: &str, why: &str) -> Adoption {
    Adoption::Refused(refused_report(id, why))
}

fn refused_report(id: &str, why: &str) -> Report {
    let message = format!(
        "account {id} is not adopted: {why}; it is not moved, tagged or linked; looked at again periodically and on any change to this object"
    );
    Report::not_created(Health::Stalled, reason::ADOPTION_REFUSED, &message)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{account, who};
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn decide(state: &str, email: Option<&str>, tags: &BTreeMap<String, String>) -> Adoption {
        let info = account("111111111111", "old@example.com", state);
        let candidate = Candidate {
            id: "111111111111",
            management: "000000000000",
            info: &info,
            tags,
            email,
        };
        adoption(&candidate, &who())
    }

    fn refusal(a: &Adoption) -> &str {
        match a {
            Adoption::Refused(r) => {
                assert_eq!(
                    (r.health, r.reason.as_str()),
                    (Health::Stalled, "AdoptionRefused")
                );
                assert!(r.message.contains(" is not adopted: "), "{}", r.message);
                &r.message
            }
            other => panic!("refused, got {other:?}"),
        }
    }

    // docs/memberaccount.md, "Adopting an existing account".

    #[test]
    fn an_untagged_active_account_is_taken_with_the_owner_tags() {
        let take = decide("ACTIVE", None, &tags(&[("team", "x")]));
        assert_eq!(
            take,
            Adoption::Take(tags(&[
                (OWNER_TAG, "team-a/dev"),
                (CLUSTER_TAG, "cluster-1")
            ]))
        );
        // The e-mail, when given, is compared without case.
        let take = decide("ACTIVE", Some("OLD@example.com"), &tags(&[]));
        assert!(matches!(take, Adoption::Take(_)), "{take:?}");
    }

    #[test]
    fn an_account_already_tagged_for_this_object_is_ours_without_a_call() {
        let ours = tags(&[(OWNER_TAG, "team-a/dev"), (CLUSTER_TAG, "cluster-1")]);
        assert_eq!(decide("ACTIVE", None, &ours), Adoption::Ours);
        // An earlier release's owner tag alone: the cluster tag is added.
        assert_eq!(
            decide("ACTIVE", None, &tags(&[(OWNER_TAG, "team-a/dev")])),
            Adoption::Take(tags(&[(CLUSTER_TAG, "cluster-1")]))
        );
    }

    #[test]
    fn another_owner_s_tags_refuse_adoption() {
        let table = [
            (
                tags(&[(OWNER_TAG, "team-b/dev"), (CLUSTER_TAG, "cluster-1")]),
                "another owner's tags (accountlinker.dev/member-account=team-b/dev",
            ),
            (
                tags(&[(OWNER_TAG, "team-b/dev")]),
                "another owner's tag (accountlinker.dev/member-account=team-b/dev)",
            ),
            (
                tags(&[(OWNER_TAG, "team-a/dev"), (CLUSTER_TAG, "cluster-2")]),
                "names another cluster (cluster-2)",
            ),
            (
                tags(&[(CLUSTER_TAG, "cluster-2")]),
                "names another cluster (cluster-2)",
            ),
        ];
        for (foreign, says) in table {
            let a = decide("ACTIVE", None, &foreign);
            assert!(refusal(&a).contains(says), "{foreign:?}: {a:?}");
        }
    }

    #[test]
    fn the_management_account_inactive_accounts_and_other_e_mails_are_refused() {
        let info = account("000000000000", "mgmt@example.com", "ACTIVE");
        let management = Candidate {
            id: "000000000000",
            management: "000000000000",
            info: &info,
            tags: &tags(&[]),
            email: None,
        };
        let a = adoption(&management, &who());
        assert!(refusal(&a).contains("management account"), "{a:?}");
        for state in ["SUSPENDED", "PENDING_CLOSURE"] {
            let a = decide(state, None, &tags(&[]));
            assert!(refusal(&a).contains(&format!("it is {state}, not ACTIVE")));
        }
        let a = decide("ACTIVE", Some("new@example.com"), &tags(&[]));
        assert!(
            refusal(&a).contains("not spec.email \"new@example.com\""),
            "{a:?}"
        );
    }

    #[test]
    fn an_account_outside_the_organization_is_an_adoption_refusal() {
        let e = |class, code: &str| AwsError {
            operation: "organizations:DescribeAccount",
            class,
            code: Some(code.into()),
            reason: None,
            message: "no".into(),
        };
        let report = not_found(
            "111111111111",
            &e(ErrorClass::NotFound, "AccountNotFoundException"),
        )
        .expect("reported");
        assert_eq!(report.reason, "AdoptionRefused");
        assert!(
            report
                .message
                .contains("does not know it in this organization")
        );
        assert_eq!(
            not_found("1", &e(ErrorClass::AccessDenied, "AccessDenied")),
            None
        );
        assert_eq!(
            not_found("1", &e(ErrorClass::Throttled, "Throttling")),
            None
        );
    }
}
