"""AssumeRole answers AccessDenied unless the role exists and its trust policy admits the caller."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from conftest import HUB, error_code
from helpers import credentials_for, member_iam, new_organization, trust


@pytest.fixture
def member(aws):
    (account,) = new_organization(aws, 1)
    return account


def make_role(aws, account, name, policy, **kwargs):
    member_iam(aws, account).create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(policy), **kwargs)
    return f"arn:aws:iam::{account}:role/{name}"


def assume(aws, role_arn, **kwargs):
    return aws.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="tests", **kwargs)


def denied(aws, role_arn, **kwargs):
    with pytest.raises(ClientError) as excinfo:
        assume(aws, role_arn, **kwargs)
    assert error_code(excinfo) == "AccessDenied"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    message = excinfo.value.response["Error"]["Message"]
    assert "is not authorized to perform: sts:AssumeRole on resource: " + role_arn in message
    return message


def test_missing_role_is_denied(aws, member):
    message = denied(aws, f"arn:aws:iam::{member}:role/does-not-exist")
    assert message.startswith(f"User: arn:aws:sts::{HUB}:")


def test_role_trusting_another_account_is_denied(aws, member):
    role = make_role(aws, member, "trusts-other", trust("arn:aws:iam::210987654321:root"))
    denied(aws, role)


def test_external_id_must_match(aws, member):
    role = make_role(aws, member, "linked", trust(f"arn:aws:iam::{HUB}:root", external_id="right-id"))
    denied(aws, role)
    denied(aws, role, ExternalId="wrong-id")
    assume(aws, role, ExternalId="right-id")


def test_string_like_external_id_condition(aws, member):
    policy = trust(HUB)
    policy["Statement"][0]["Condition"] = {"StringLike": {"sts:ExternalId": "tenant-*"}}
    role = make_role(aws, member, "linked-like", policy)
    denied(aws, role, ExternalId="other-1")
    assume(aws, role, ExternalId="tenant-42")


def test_success_returns_credentials_of_the_target_account(aws, member):
    role = make_role(aws, member, "linked", trust(f"arn:aws:iam::{HUB}:root", external_id="ext-1"))
    creds = credentials_for(aws, role, ExternalId="ext-1")
    identity = aws.client("sts", creds).get_caller_identity()
    assert identity["Account"] == member
    assert identity["Arn"] == f"arn:aws:sts::{member}:assumed-role/linked/tests"


def test_explicit_deny_wins(aws, member):
    policy = trust(f"arn:aws:iam::{HUB}:root")
    policy["Statement"].append(
        {
            "Effect": "Deny",
            "Principal": {"AWS": HUB},
            "Action": "sts:*",
            "Condition": {"Null": {"sts:ExternalId": "true"}},
        }
    )
    role = make_role(aws, member, "deny-without-id", policy)
    denied(aws, role)
    assume(aws, role, ExternalId="any-id")


def test_trust_naming_a_role_admits_only_that_role(aws, member):
    hub_role = make_hub_role(aws, "operator")
    role = make_role(aws, member, "for-operator", trust(hub_role))
    denied(aws, role)  # the default hub identity is not that role
    operator = aws.client("sts", credentials_for(aws, hub_role))
    operator.assume_role(RoleArn=role, RoleSessionName="chained")


def make_hub_role(aws, name):
    aws.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust(HUB)))
    return f"arn:aws:iam::{HUB}:role/{name}"


def test_duration_above_max_session_duration_is_rejected(aws, member):
    role = make_role(aws, member, "short", trust(HUB), MaxSessionDuration=3600)
    with pytest.raises(ClientError) as excinfo:
        assume(aws, role, DurationSeconds=7200)
    assert error_code(excinfo) == "ValidationError"
    assert "MaxSessionDuration" in excinfo.value.response["Error"]["Message"]
    assume(aws, role, DurationSeconds=3600)


def test_role_propagation_delay_is_injectable(aws, member):
    role = make_role(aws, member, "fresh", trust(HUB))
    status, _ = aws.control("PUT", "/_strict/sts", {"role_propagation_seconds": 60})
    assert status == 200
    denied(aws, role)
    aws.control("PUT", "/_strict/sts", {"role_propagation_seconds": 0})
    assume(aws, role)
