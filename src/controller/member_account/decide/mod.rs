//! The pure decisions of the MemberAccount controller. The async modules read, ask one of
//! these, and perform the one side effect the answer names; every branch is a row of the tables
//! in docs/memberaccount.md and a `#[test]` here.
//!
//! - [`creation`]: the next step of the exactly-once CreateAccount protocol;
//! - [`adoption`]: whether the account in `spec.accountId` may become this object's;
//! - [`closure`]: which account, if any, deletion with `Close` may close or `Park` may park;
//! - [`converge`]: placement, tags, name, state, the child link, and refusals of those calls.

pub mod adoption;
pub mod closure;
pub mod converge;
pub mod creation;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::api::conditions::{ACCOUNT_CREATED, READY, RECONCILING, STALLED};
use crate::api::labels::{CLUSTER_TAG, OWNER_TAG};
use crate::api::member_account::reason;
use crate::aws::AwsError;
use crate::aws::accounts::{AccountInfo, CreateRequest};
use crate::controller::conditions::{Desired as Cond, Status};

/// How often an account with this object's e-mail but not its owner tag is looked at again
/// (tagging it in AWS adopts it; a change to the object looks at once).
pub const UNOWNED_RECHECK: Duration = Duration::from_secs(60);

/// Who the object is, as far as AWS can tell: what proves an account or a request its own.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub email: String,
    pub account_name: String,
    /// The owner tag's value.
    pub owner: String,
    /// This cluster's identity: the cluster tag's value.
    pub cluster: String,
}

/// An account with the spec's e-mail, and whether it carries this object's owner tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub id: String,
    pub owned: bool,
}

/// A read the decision needs before it can name a step. Each fills one field of [`Seen`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// DescribeCreateAccountStatus of the recorded request.
    Request(String),
    /// DescribeAccount (its e-mail proves a request's account ours; its state decides Close).
    Account(String),
    /// ListAccounts for the spec's e-mail, and that account's tags.
    ByEmail,
    /// ListCreateAccountStatus: a request in progress under the spec's account name.
    InProgress,
    /// ListTagsForResource of an account, right before a call that could harm it.
    Tags(String),
    /// ListParents of an account (where Park finds it).
    Parent(String),
}

/// What a pass has read from Organizations so far. `None`: not read yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub request: Option<CreateRequest>,
    /// DescribeAccount answers, by account ID.
    pub accounts: BTreeMap<String, AccountInfo>,
    /// `Some(None)`: no account has the e-mail.
    pub by_email: Option<Option<Found>>,
    /// `Some(None)`: no request in progress under the name.
    pub in_progress: Option<Option<CreateRequest>>,
    /// ListTagsForResource answers, by account ID.
    pub tags: BTreeMap<String, BTreeMap<String, String>>,
    /// ListParents answers, by account ID.
    pub parents: BTreeMap<String, String>,
}

/// How the kstatus trio reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Ready,
    Progressing,
    Stalled,
}

/// The conditions a pass writes: `Ready`, `Reconciling`, `Stalled` from one health, reason and
/// message, plus `AccountCreated`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub health: Health,
    pub reason: String,
    pub message: String,
    pub created: Cond,
}

impl Report {
    pub fn new(
        health: Health,
        reason: impl Into<String>,
        message: impl Into<String>,
        created: Cond,
    ) -> Self {
        Self {
            health,
            reason: reason.into(),
            message: message.into(),
            created,
        }
    }

    /// Stalled, with `AccountCreated=False` for the same reason and message.
    pub fn not_created(health: Health, reason: &str, message: &str) -> Self {
        Self::new(
            health,
            reason,
            message,
            Cond::new(ACCOUNT_CREATED, Status::False, reason, message),
        )
    }

    /// Reconciling while a CreateAccount request runs (`AccountCreated=Unknown`).
    pub fn creating(request_id: &str) -> Self {
        let message = format!("CreateAccount request {request_id} is in progress");
        Self::new(
            Health::Progressing,
            reason::CREATING,
            &message,
            Cond::new(ACCOUNT_CREATED, Status::Unknown, reason::CREATING, &message),
        )
    }

    pub fn conditions(&self) -> Vec<Cond> {
        let (ready, reconciling, stalled) = match self.health {
            Health::Ready => (Status::True, Status::False, Status::False),
            Health::Progressing => (Status::False, Status::True, Status::False),
            Health::Stalled => (Status::False, Status::False, Status::True),
        };
        let said = |s: Status| {
            if s == Status::True {
                self.message.as_str()
            } else {
                ""
            }
        };
        vec![
            Cond::new(READY, ready, &self.reason, &self.message),
            Cond::new(RECONCILING, reconciling, &self.reason, said(reconciling)),
            Cond::new(STALLED, stalled, &self.reason, said(stalled)),
            self.created.clone(),
        ]
    }
}

/// `AccountCreated=True` (the account exists) with a message.
pub fn created(reason: &str, message: impl Into<String>) -> Cond {
    Cond::new(ACCOUNT_CREATED, Status::True, reason, message)
}

/// The tags an account should carry: the spec's, the owner tag and the cluster tag.
pub fn wanted_tags(spec: &BTreeMap<String, String>, who: &Identity) -> BTreeMap<String, String> {
    let mut tags = spec.clone();
    tags.insert(OWNER_TAG.to_string(), who.owner.clone());
    tags.insert(CLUSTER_TAG.to_string(), who.cluster.clone());
    tags
}

/// Whether an account's tags make it this object's, and if not, whose they say it is. The owner
/// tag must name the object and the cluster tag this cluster; an account tagged by an earlier
/// release (the owner tag and no cluster tag at all) is this object's too, and gets the cluster
/// tag with the next tag sync. Status never takes part: this is read from AWS right before every
/// call that could harm the account.
pub fn account_owner(tags: &BTreeMap<String, String>, who: &Identity) -> Result<(), String> {
    let owner = tags.get(OWNER_TAG);
    match (owner, tags.get(CLUSTER_TAG)) {
        (None, _) => Err(format!("it carries no {OWNER_TAG} tag")),
        (Some(o), _) if *o != who.owner => Err(format!("its {OWNER_TAG} tag names {o}")),
        (Some(_), Some(c)) if *c != who.cluster => {
            Err(format!("its {CLUSTER_TAG} tag names another cluster ({c})"))
        }
        (Some(_), _) => Ok(()),
    }
}

/// Whether an account's tags make it this object's ([`account_owner`]).
pub fn owned(tags: &BTreeMap<String, String>, who: &Identity) -> bool {
    account_owner(tags, who).is_ok()
}

/// Whether an account's e-mail is the spec's: without case, and never an empty one.
pub fn same_email(account: &str, spec: &str) -> bool {
    crate::aws::accounts::same_email(account, spec)
}

/// AWS's code and message, once (some messages already start with the code).
pub fn aws_text(e: &AwsError) -> String {
    match &e.code {
        Some(code) if !e.message.starts_with(code.as_str()) => format!("{code}: {}", e.message),
        _ => e.message.clone(),
    }
}

/// The account a request made, when it is provably this object's: the request SUCCEEDED and the
/// account's e-mail (once described) is the spec's. `Err`: describe that account first.
fn request_account(
    request: &CreateRequest,
    seen: &Seen,
    who: &Identity,
) -> Result<Option<String>, Lookup> {
    let Some(account) = &request.account_id else {
        return Ok(None);
    };
    match seen.accounts.get(account) {
        None => Err(Lookup::Account(account.clone())),
        Some(info) => Ok(same_email(&info.email, &who.email).then(|| account.clone())),
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Small builders for the decision tables.

    use super::*;

    pub fn who() -> Identity {
        Identity {
            email: "dev@example.com".into(),
            account_name: "dev".into(),
            owner: crate::api::labels::owner("team-a", "dev"),
            cluster: "cluster-1".into(),
        }
    }

    /// The tags CreateAccount gives this object's account.
    pub fn ours() -> BTreeMap<String, String> {
        wanted_tags(&BTreeMap::new(), &who())
    }

    pub fn request(id: &str, state: &str, account: Option<&str>) -> CreateRequest {
        CreateRequest {
            id: id.into(),
            state: state.into(),
            account_id: account.map(Into::into),
            failure_reason: None,
            account_name: Some("dev".into()),
        }
    }

    pub fn failed(id: &str, reason: &str) -> CreateRequest {
        CreateRequest {
            failure_reason: Some(reason.into()),
            ..request(id, "FAILED", None)
        }
    }

    pub fn account(id: &str, email: &str, state: &str) -> AccountInfo {
        AccountInfo {
            id: id.into(),
            name: "dev".into(),
            email: email.into(),
            state: (!state.is_empty()).then(|| state.into()),
        }
    }

    pub fn described(infos: &[AccountInfo]) -> BTreeMap<String, AccountInfo> {
        infos.iter().map(|i| (i.id.clone(), i.clone())).collect()
    }

    pub fn found(id: &str, owned: bool) -> Option<Option<Found>> {
        Some(Some(Found {
            id: id.into(),
            owned,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_and_cluster_tags_are_wanted_and_prove_ownership() {
        let me = fixtures::who();
        let spec = BTreeMap::from([("team".to_string(), "a".to_string())]);
        let wanted = wanted_tags(&spec, &me);
        assert_eq!(wanted.len(), 3);
        assert_eq!(wanted[CLUSTER_TAG], "cluster-1");
        assert!(owned(&wanted, &me));
        assert!(!owned(&spec, &me));
        let other = Identity {
            owner: "team-b/dev".into(),
            ..me.clone()
        };
        assert!(!owned(&wanted, &other));
    }

    /// Owner tag and cluster tag, as another cluster, another object, an earlier release or
    /// nobody wrote them.
    #[test]
    fn tags_decide_whose_an_account_is() {
        let tag = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cases = [
            (
                tag(&[(OWNER_TAG, "team-a/dev"), (CLUSTER_TAG, "cluster-1")]),
                Ok(()),
            ),
            (tag(&[(OWNER_TAG, "team-a/dev")]), Ok(())),
            (
                tag(&[(OWNER_TAG, "team-a/dev"), (CLUSTER_TAG, "cluster-2")]),
                Err("its accountlinker.dev/cluster-id tag names another cluster (cluster-2)"),
            ),
            (
                tag(&[(OWNER_TAG, "team/a-dev"), (CLUSTER_TAG, "cluster-1")]),
                Err("its accountlinker.dev/member-account tag names team/a-dev"),
            ),
            (
                tag(&[(CLUSTER_TAG, "cluster-1")]),
                Err("it carries no accountlinker.dev/member-account tag"),
            ),
            (
                tag(&[]),
                Err("it carries no accountlinker.dev/member-account tag"),
            ),
        ];
        for (tags, want) in cases {
            let want = want.map_err(String::from);
            assert_eq!(account_owner(&tags, &fixtures::who()), want, "{tags:?}");
        }
    }

    #[test]
    fn an_account_is_matched_by_e_mail_without_case_and_never_by_an_empty_one() {
        assert!(same_email("Dev@Example.com", "dev@example.com"));
        assert!(!same_email("other@example.com", "dev@example.com"));
        assert!(!same_email("", "dev@example.com"));
        assert!(!same_email("", ""));
        assert!(!same_email("dev@example.com", ""));
    }

    #[test]
    fn reports_set_exactly_one_of_reconciling_and_stalled_unless_ready() {
        let created = created(reason::CREATED, "");
        for (health, trio) in [
            (Health::Ready, ["True", "False", "False"]),
            (Health::Progressing, ["False", "True", "False"]),
            (Health::Stalled, ["False", "False", "True"]),
        ] {
            let conds = Report::new(health, "R", "m", created.clone()).conditions();
            let got: Vec<&str> = conds[..3].iter().map(|c| c.status.as_str()).collect();
            assert_eq!(got, trio, "{health:?}");
            assert!(conds[..3].iter().all(|c| c.reason == "R"));
            assert_eq!(conds[3], created);
        }
    }

    #[test]
    fn aws_text_names_the_code_once() {
        let err = |code: Option<&str>, message: &str| AwsError {
            operation: "organizations:TagResource",
            class: crate::aws::ErrorClass::AccessDenied,
            code: code.map(Into::into),
            reason: None,
            message: message.into(),
        };
        assert_eq!(
            aws_text(&err(Some("AccessDeniedException"), "no")),
            "AccessDeniedException: no"
        );
        assert_eq!(
            aws_text(&err(
                Some("CLOSE_ACCOUNT_QUOTA_EXCEEDED"),
                "CLOSE_ACCOUNT_QUOTA_EXCEEDED: spent"
            )),
            "CLOSE_ACCOUNT_QUOTA_EXCEEDED: spent"
        );
        assert_eq!(aws_text(&err(None, "timeout")), "timeout");
    }
}
