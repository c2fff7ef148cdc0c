//! Creation: finds, resumes or starts the CreateAccount request, exactly once. The order of
//! reads and the one call are [`decide::creation`]'s; this module performs them and records the
//! request ID with a status write the moment CreateAccount answers.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{info, warn};

use super::decide::creation::{
    self, CreateAnswer, CreationStep, Forgotten, Proof, REJECTED_RECHECK, Recorded, Then,
};
use super::decide::{Identity, Report, Seen};
use super::{Error, Pass, decided, identity};
use crate::api::MemberAccountStatus;
use crate::aws::Accounts;
use crate::aws::accounts::CreateAccountState;

/// How the creation phase ended.
#[derive(Debug)]
pub(super) enum Creation {
    /// The account exists and is this object's: its ID.
    Done(String),
    /// Not yet (or not at all): come back as the action says.
    Wait(Action),
}

/// Never calls CreateAccount while a request of this object may still be running or its
/// account may exist.
pub(super) async fn create(pass: &mut Pass<'_>) -> Result<Creation, Error> {
    let ctx = pass.ctx;
    let who = identity(pass.member, &ctx.settings.cluster_id);
    let name = pass.member.name_any();
    let poll = ctx.settings.poll_interval;
    let (generation, now) = (pass.generation(), pass.now);
    let step = next_step(ctx.accounts.as_ref(), &who, generation, now, &mut pass.next).await?;
    match step {
        // next_step makes every read and forgets on the way; neither comes back.
        CreationStep::Look(lookup) => Err(Error::Undecided(Some(lookup))),
        CreationStep::Forget(_) => Err(Error::Undecided(None)),
        CreationStep::Done { account, proof } => {
            let request = pass
                .next
                .create_account_request_id
                .clone()
                .unwrap_or_default();
            match proof {
                Proof::Request => info!(%name, %account, %request, "account created"),
                Proof::OwnerTag => {
                    info!(%name, %account, "recovered the account with this e-mail and owner tag");
                }
            }
            Ok(Creation::Done(account))
        }
        CreationStep::Report { report, then } => {
            pass.report(&report).await?;
            Ok(Creation::Wait(match then {
                Then::Poll => Action::requeue(poll),
                Then::Change => Action::await_change(),
                Then::After(after) => Action::requeue(after),
            }))
        }
        CreationStep::Follow(request) => {
            info!(%name, request = %request.id, "resumed a CreateAccount request in progress");
            pass.report(&Report::creating(&request.id)).await?;
            Ok(Creation::Wait(Action::requeue(poll)))
        }
        CreationStep::PollQuietly => Ok(Creation::Wait(Action::requeue(poll))),
        CreationStep::Create => start(pass).await,
    }
}

/// The next step of creation that is neither a read nor a forgotten request: the reads are
/// made against `accounts`, and `status` follows what the steps say (the request's state as
/// read, a forgotten request cleared, a followed or recovered request recorded).
async fn next_step(
    accounts: &dyn Accounts,
    who: &Identity,
    generation: Option<i64>,
    now: k8s_openapi::jiff::Timestamp,
    status: &mut MemberAccountStatus,
) -> Result<CreationStep, Error> {
    let step = decided(accounts, who, |seen| {
        loop {
            if let Some(request) = &seen.request {
                status.create_account_state = Some(request.state.to_string());
            }
            let recorded = Recorded::new(status, generation, now);
            match creation::creation(&recorded, seen, who) {
                CreationStep::Look(lookup) => return Err(lookup),
                CreationStep::Forget(why) => forget(status, seen, &why, who),
                step => return Ok(step),
            }
        }
    })
    .await?;
    match &step {
        CreationStep::Follow(request) => {
            status.create_account_request_id = Some(request.id.clone());
            status.create_account_state = Some(request.state.to_string());
        }
        CreationStep::Done {
            proof: Proof::OwnerTag,
            ..
        } => {
            // The owner tag, not a request, proved it: a recorded request (one that FAILED
            // with EMAIL_ALREADY_EXISTS because of this very account) is not its request.
            status.create_account_request_id = None;
            status.create_account_state = Some(CreateAccountState::Succeeded.to_string());
        }
        _ => {}
    }
    Ok(step)
}

/// Sets a recorded request aside: creation goes on as if it had never been seen.
fn forget(status: &mut MemberAccountStatus, seen: &mut Seen, why: &Forgotten, who: &Identity) {
    let request = status.create_account_request_id.take().unwrap_or_default();
    status.create_account_state = None;
    seen.request = None;
    let owner = &who.owner;
    match why {
        Forgotten::MadeAnotherAccount(account) => {
            warn!(%owner, %account, %request, "the request made an account for another e-mail; it is not this object's");
        }
        Forgotten::TransientFailure | Forgotten::FailedBeforeSpecChange => {
            info!(%owner, %request, reason = ?why, "a new CreateAccount request may follow");
        }
    }
}

/// Calls CreateAccount once and records its request before anything waits on it.
async fn start(pass: &mut Pass<'_>) -> Result<Creation, Error> {
    let ctx = pass.ctx;
    let who = identity(pass.member, &ctx.settings.cluster_id);
    let new = creation::new_account(&pass.member.spec, &who);
    let result = ctx.accounts.create_account(&new).await;
    match creation::answered(result) {
        CreateAnswer::Recorded(request) => {
            pass.next.create_account_request_id = Some(request.id.clone());
            pass.next.create_account_state = Some(request.state.to_string());
            pass.save().await?;
            info!(name = %pass.member.name_any(), request = %request.id, "CreateAccount requested");
            pass.report(&Report::creating(&request.id)).await?;
            Ok(Creation::Wait(Action::requeue(ctx.settings.poll_interval)))
        }
        CreateAnswer::RetryReported(report, e) => {
            pass.report(&report).await?;
            Err(e.into())
        }
        CreateAnswer::Retry(e) => Err(e.into()),
        CreateAnswer::Rejected(report) => {
            pass.report(&report).await?;
            Ok(Creation::Wait(Action::requeue(REJECTED_RECHECK)))
        }
    }
}

#[cfg(test)]
mod tests {
    //! Creation's reads and decisions together, against the in-memory AWS: what the emulator
    //! tests show end to end, without a cluster.

    use std::sync::Arc;

    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::aws::accounts::NewAccount;
    use crate::aws::fake::FakeAws;
    use crate::controller::member_account::decide::wanted_tags;

    fn who() -> Identity {
        Identity {
            email: "dev@example.com".into(),
            account_name: "dev".into(),
            owner: "team-a/dev".into(),
            cluster: "cluster-1".into(),
        }
    }

    /// A CreateAccount call as this object makes it (or someone else, with `owner` `None`).
    fn new_account(email: &str, owner: Option<&str>) -> NewAccount {
        NewAccount {
            name: "dev".into(),
            email: email.into(),
            role_name: "OrganizationAccountAccessRole".into(),
            billing_allowed: true,
            tags: owner.map_or_else(Default::default, |o| {
                let who = Identity {
                    owner: o.into(),
                    ..who()
                };
                wanted_tags(&Default::default(), &who)
            }),
        }
    }

    async fn step(aws: &Arc<FakeAws>, status: &mut MemberAccountStatus) -> CreationStep {
        next_step(aws.as_ref(), &who(), Some(1), Timestamp::UNIX_EPOCH, status)
            .await
            .expect("decided")
    }

    fn creations(aws: &FakeAws) -> usize {
        let calls = aws.calls();
        calls
            .iter()
            .filter(|c| **c == "organizations:CreateAccount")
            .count()
    }

    #[tokio::test]
    async fn an_account_whose_create_answer_was_lost_is_adopted_without_a_second_call() {
        let aws = Arc::new(FakeAws::new());
        aws.create_account(&new_account("dev@example.com", Some("team-a/dev")))
            .await
            .expect("created");
        let mut status = MemberAccountStatus::default();
        let step = step(&aws, &mut status).await;
        assert!(
            matches!(
                step,
                CreationStep::Done {
                    proof: Proof::OwnerTag,
                    ..
                }
            ),
            "{step:?}"
        );
        assert_eq!(status.create_account_state.as_deref(), Some("SUCCEEDED"));
        assert_eq!(creations(&aws), 1);
    }

    #[tokio::test]
    async fn an_account_someone_else_made_with_the_e_mail_is_reported() {
        let aws = Arc::new(FakeAws::new());
        aws.create_account(&new_account("Dev@Example.com", None))
            .await
            .expect("created");
        let mut status = MemberAccountStatus::default();
        let CreationStep::Report { report, .. } = step(&aws, &mut status).await else {
            panic!("reported")
        };
        assert_eq!(report.reason, "EmailAlreadyExists");
        assert_eq!(creations(&aws), 1);
    }

    #[tokio::test]
    async fn a_request_running_under_the_name_is_followed_and_recorded() {
        let aws = Arc::new(FakeAws::new());
        aws.state().hold_creations = true;
        let running = aws
            .create_account(&new_account("dev@example.com", Some("team-a/dev")))
            .await
            .expect("requested");
        let mut status = MemberAccountStatus::default();
        assert_eq!(
            step(&aws, &mut status).await,
            CreationStep::Follow(running.clone())
        );
        assert_eq!(status.create_account_request_id, Some(running.id.clone()));
        // The next pass polls the recorded request; once it succeeds the account is adopted.
        aws.finish_creations();
        assert!(matches!(
            step(&aws, &mut status).await,
            CreationStep::Done {
                proof: Proof::Request,
                ..
            }
        ));
        assert_eq!(creations(&aws), 1);
    }

    #[tokio::test]
    async fn a_recorded_request_for_another_e_mail_is_forgotten_and_creation_starts_over() {
        let aws = Arc::new(FakeAws::new());
        let other = aws
            .create_account(&new_account("other@example.com", None))
            .await
            .expect("created");
        let mut status = MemberAccountStatus {
            create_account_request_id: Some(other.id),
            ..MemberAccountStatus::default()
        };
        assert_eq!(step(&aws, &mut status).await, CreationStep::Create);
        assert_eq!(status.create_account_request_id, None);
        assert_eq!(
            aws.calls(),
            [
                "organizations:CreateAccount",
                "organizations:DescribeCreateAccountStatus",
                "organizations:DescribeAccount",
                "organizations:ListAccounts",
                "organizations:ListCreateAccountStatus",
            ]
        );
    }

    /// Issue 14: the first request made the account, its answer was lost, and a second request
    /// (a failover) FAILED with EMAIL_ALREADY_EXISTS because of it: the account is recovered by
    /// its owner tag, not reported as someone else's, and no third request is sent.
    #[tokio::test]
    async fn a_second_request_failed_by_our_own_account_recovers_it() {
        let aws = Arc::new(FakeAws::new());
        let ours = new_account("dev@example.com", Some("team-a/dev"));
        let first = aws.create_account(&ours).await.expect("first");
        let second = aws.create_account(&ours).await.expect("second");
        let mut status = MemberAccountStatus {
            create_account_request_id: Some(second.id),
            create_account_state: Some("FAILED".into()),
            ..MemberAccountStatus::default()
        };
        let made = aws.create_request(&first.id).await.expect("first request");
        assert_eq!(
            step(&aws, &mut status).await,
            CreationStep::Done {
                account: made.account_id.expect("first made the account"),
                proof: Proof::OwnerTag,
            }
        );
        assert_eq!(status.create_account_request_id, None);
        assert_eq!(status.create_account_state.as_deref(), Some("SUCCEEDED"));
        assert_eq!(creations(&aws), 2, "no third request");
    }

    #[tokio::test]
    async fn a_read_that_fails_ends_the_pass_before_any_create_account() {
        let aws = Arc::new(FakeAws::new());
        aws.fail(
            "organizations:ListCreateAccountStatus",
            crate::aws::ErrorClass::Transient,
            "ServiceException",
        );
        let mut status = MemberAccountStatus::default();
        let result = next_step(
            aws.as_ref(),
            &who(),
            Some(1),
            Timestamp::UNIX_EPOCH,
            &mut status,
        )
        .await;
        assert!(matches!(result, Err(Error::Aws(_))), "{result:?}");
        assert_eq!(creations(&aws), 0);
    }
}
