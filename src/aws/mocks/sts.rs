use super::clients;
use super::wire::{Wire, query_error, query_ok};
use crate::aws::sts::Secret;
use crate::aws::{ErrorClass, HubIdentity, RoleVerifier, VerifyRequest};

const ROLE: &str = "arn:aws:iam::111111111111:role/Hub";

fn request(external_id: &Secret) -> VerifyRequest<'_> {
    VerifyRequest {
        role_arn: ROLE,
        external_id,
        session_name: "al-team-a-prod",
        duration_seconds: 900,
    }
}

#[tokio::test]
async fn verify_assumes_the_role_and_asks_the_session_who_it_is() {
    let wire = Wire::default();
    let credentials = "<Credentials><AccessKeyId>ASIASESSION</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken><Expiration>2030-01-01T00:00:00Z</Expiration></Credentials>";
    let identity = "<Account>111111111111</Account><Arn>arn:aws:sts::111111111111:assumed-role/Hub/al-team-a-prod</Arn><UserId>AROA:al-team-a-prod</UserId>";
    wire.reply("AssumeRole", 200, query_ok("AssumeRole", credentials))
        .reply(
            "GetCallerIdentity",
            200,
            query_ok("GetCallerIdentity", identity),
        );
    let (aws, calls) = clients(&wire);
    let secret = Secret::new("ext-id");
    let caller = aws.verify(request(&secret)).await.unwrap();
    assert_eq!(caller.account, "111111111111");
    assert!(caller.arn.ends_with("assumed-role/Hub/al-team-a-prod"));
    let sent = wire.sent();
    for fragment in [
        "RoleArn=arn%3Aaws%3Aiam%3A%3A111111111111%3Arole%2FHub",
        "ExternalId=ext-id",
        "RoleSessionName=al-team-a-prod",
        "DurationSeconds=900",
    ] {
        assert!(
            sent[0].body.contains(fragment),
            "{fragment} not in {}",
            sent[0].body
        );
    }
    // The hub signs AssumeRole; the assumed session signs GetCallerIdentity.
    assert!(sent[0].authorization.contains("Credential=AKIAHUB/"));
    assert!(sent[1].authorization.contains("Credential=ASIASESSION/"));
    assert_eq!(
        calls.calls(),
        ["sts:AssumeRole=ok", "sts:GetCallerIdentity=ok"]
    );
}

#[tokio::test]
async fn a_refused_assume_role_is_access_denied_and_stops_there() {
    let wire = Wire::default();
    let denied = query_error(
        "AccessDenied",
        "User is not authorized to perform: sts:AssumeRole",
    );
    wire.reply("AssumeRole", 403, denied);
    let (aws, calls) = clients(&wire);
    let secret = Secret::new("wrong-external-id");
    let err = aws.verify(request(&secret)).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::AccessDenied);
    assert_eq!(err.code.as_deref(), Some("AccessDenied"));
    assert!(!err.to_string().contains("wrong-external-id"), "{err}");
    assert_eq!(calls.calls(), ["sts:AssumeRole=access_denied"]);
}

#[tokio::test]
async fn the_hub_is_the_account_and_session_of_the_hub_credentials() {
    let wire = Wire::default();
    let identity = "<Account>000000000000</Account><Arn>arn:aws:sts::000000000000:assumed-role/operator/pod-1</Arn><UserId>AROA:pod-1</UserId>";
    wire.reply(
        "GetCallerIdentity",
        200,
        query_ok("GetCallerIdentity", identity),
    );
    let (aws, calls) = clients(&wire);
    let caller = aws.caller().await.unwrap();
    assert_eq!(caller.account, "000000000000");
    assert_eq!(
        caller.arn,
        "arn:aws:sts::000000000000:assumed-role/operator/pod-1"
    );
    assert_eq!(calls.calls(), ["sts:GetCallerIdentity=ok"]);
}
