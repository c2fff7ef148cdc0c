use std::collections::BTreeMap;

use super::clients;
use super::wire::{Wire, json_error};
use crate::aws::accounts::{AccountState, CreateAccountState, NewAccount};
use crate::aws::{Accounts, ErrorClass};

#[tokio::test]
async fn create_account_sends_the_request_and_answers_in_progress() {
    let wire = Wire::default();
    let status =
        r#"{"CreateAccountStatus":{"Id":"car-1","State":"IN_PROGRESS","AccountName":"sandbox"}}"#;
    wire.reply("CreateAccount", 200, status.into());
    let (aws, calls) = clients(&wire);
    let new = NewAccount {
        name: "sandbox".into(),
        email: "sandbox@example.com".into(),
        role_name: "OrganizationAccountAccessRole".into(),
        billing_allowed: false,
        tags: BTreeMap::from([("owner".into(), "team-a/sandbox".into())]),
    };
    let request = aws.create_account(&new).await.unwrap();
    assert_eq!(request.id, "car-1");
    assert_eq!(request.state, CreateAccountState::InProgress);
    assert_eq!(request.account_name.as_deref(), Some("sandbox"));
    let sent = wire.body_of("CreateAccount");
    for fragment in [
        r#""AccountName":"sandbox""#,
        r#""Email":"sandbox@example.com""#,
        r#""RoleName":"OrganizationAccountAccessRole""#,
        r#""IamUserAccessToBilling":"DENY""#,
        r#""Tags":[{"Key":"owner","Value":"team-a/sandbox"}]"#,
    ] {
        assert!(sent.contains(fragment), "{fragment} not in {sent}");
    }
    assert_eq!(calls.calls(), ["organizations:CreateAccount=ok"]);
}

#[tokio::test]
async fn a_rate_limited_create_account_is_throttled_keeps_its_reason_and_is_not_retried() {
    let wire = Wire::default();
    let limited = json_error(
        "ConstraintViolationException",
        "too many accounts created recently",
        Some("ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED"),
    );
    wire.reply("CreateAccount", 400, limited);
    let (aws, calls) = clients(&wire);
    let err = aws
        .create_account(&NewAccount::default())
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Throttled);
    assert_eq!(err.code.as_deref(), Some("ConstraintViolationException"));
    assert_eq!(
        err.reason.as_deref(),
        Some("ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED")
    );
    assert!(
        err.message
            .starts_with("ACCOUNT_CREATION_RATE_LIMIT_EXCEEDED: "),
        "{err}"
    );
    assert_eq!(calls.calls(), ["organizations:CreateAccount=throttled"]);
    assert_eq!(wire.sent().len(), 1, "CreateAccount is never retried");
}

#[tokio::test]
async fn create_requests_report_their_account_or_failure() {
    let wire = Wire::default();
    let succeeded =
        r#"{"CreateAccountStatus":{"Id":"car-1","State":"SUCCEEDED","AccountId":"111111111111"}}"#;
    let failed = r#"{"CreateAccountStatus":{"Id":"car-2","State":"FAILED","FailureReason":"EMAIL_ALREADY_EXISTS"}}"#;
    wire.reply_when(
        "DescribeCreateAccountStatus",
        "car-1",
        200,
        succeeded.into(),
    )
    .reply_when("DescribeCreateAccountStatus", "car-2", 200, failed.into());
    let (aws, _) = clients(&wire);
    let done = aws.create_request("car-1").await.unwrap();
    assert_eq!(done.state, CreateAccountState::Succeeded);
    assert_eq!(done.account_id.as_deref(), Some("111111111111"));
    let refused = aws.create_request("car-2").await.unwrap();
    assert_eq!(refused.state, CreateAccountState::Failed);
    assert_eq!(
        refused.failure_reason.as_deref(),
        Some("EMAIL_ALREADY_EXISTS")
    );
}

#[tokio::test]
async fn accounts_are_found_by_e_mail_across_pages() {
    let wire = Wire::default();
    let first = r#"{"Accounts":[{"Id":"111111111111","Email":"other@example.com","State":"ACTIVE"}],"NextToken":"page-2"}"#;
    // Older endpoints and emulators answer `Status` only.
    let second = r#"{"Accounts":[{"Id":"222222222222","Name":"dev","Email":"Dev@Example.com","Status":"SUSPENDED"}]}"#;
    wire.reply_when("ListAccounts", "page-2", 200, second.into())
        .reply("ListAccounts", 200, first.into());
    let (aws, calls) = clients(&wire);
    let found = aws.account_by_email("dev@example.com").await.unwrap();
    let found = found.expect("the account on the second page");
    assert_eq!(found.id, "222222222222");
    assert_eq!(found.state, Some(AccountState::Suspended));
    assert_eq!(
        calls.calls(),
        [
            "organizations:ListAccounts=ok",
            "organizations:ListAccounts=ok"
        ]
    );
}

#[tokio::test]
async fn tags_are_read_across_pages() {
    let wire = Wire::default();
    let first = r#"{"Tags":[{"Key":"team","Value":"a"}],"NextToken":"page-2"}"#;
    let second = r#"{"Tags":[{"Key":"owner","Value":"team-a/sandbox"}]}"#;
    wire.reply_when("ListTagsForResource", "page-2", 200, second.into())
        .reply("ListTagsForResource", 200, first.into());
    let (aws, _) = clients(&wire);
    let tags = aws.tags("111111111111").await.unwrap();
    assert_eq!(
        tags,
        BTreeMap::from([
            ("owner".into(), "team-a/sandbox".into()),
            ("team".into(), "a".into())
        ])
    );
    assert!(
        wire.sent()[0]
            .body
            .contains(r#""ResourceId":"111111111111""#)
    );
}

#[tokio::test]
async fn close_account_refusals_are_classified() {
    let wire = Wire::default();
    let quota = json_error(
        "ConstraintViolationException",
        "You have exceeded close account quota for the past 30 days.",
        Some("CLOSE_ACCOUNT_QUOTA_EXCEEDED"),
    );
    let closed = json_error(
        "AccountAlreadyClosedException",
        "You have already closed the account.",
        None,
    );
    wire.reply_when("CloseAccount", "111111111111", 400, quota)
        .reply_when("CloseAccount", "222222222222", 400, closed)
        .reply_when("CloseAccount", "333333333333", 200, "{}".into());
    let (aws, calls) = clients(&wire);
    let err = aws.close_account("111111111111").await.unwrap_err();
    assert_eq!(err.class, ErrorClass::QuotaExceeded);
    assert!(
        err.to_string().contains("CLOSE_ACCOUNT_QUOTA_EXCEEDED"),
        "{err}"
    );
    let err = aws.close_account("222222222222").await.unwrap_err();
    assert_eq!(err.class, ErrorClass::AlreadyClosed);
    aws.close_account("333333333333").await.unwrap();
    assert_eq!(
        calls.calls(),
        [
            "organizations:CloseAccount=quota_exceeded",
            "organizations:CloseAccount=already_closed",
            "organizations:CloseAccount=ok"
        ]
    );
}
