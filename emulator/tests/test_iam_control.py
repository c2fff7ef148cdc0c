"""`/_strict/iam/roles`: a role put into a member account without assuming into it, as the
integration tests deploy roles; the strict AssumeRole sees it like any other role."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from conftest import HUB, error_code
from helpers import member_iam, new_organization, trust

ROLES = "/_strict/iam/roles"


def test_a_put_role_is_assumable_updatable_and_deletable(aws):
    (account,) = new_organization(aws, 1)
    arn = f"arn:aws:iam::{account}:role/linked"
    status, role = aws.control(
        "PUT", ROLES, {"account": account, "name": "linked", "trust_policy": trust(HUB, external_id="ext-1")}
    )
    assert status == 200
    assert role == {
        "exists": True,
        "arn": arn,
        "max_session_duration": 3600,
        "trust_policy": trust(HUB, external_id="ext-1"),
    }
    sts = aws.client("sts")
    sts.assume_role(RoleArn=arn, RoleSessionName="tests", ExternalId="ext-1")
    # IAM in the account sees the same role.
    assert member_iam(aws, account).get_role(RoleName="linked")["Role"]["Arn"] == arn

    # A second PUT replaces the trust policy (and the session limit, when given).
    aws.control(
        "PUT",
        ROLES,
        {"account": account, "name": "linked", "trust_policy": trust(HUB, external_id="ext-2"),
         "max_session_duration": 7200},
    )
    with pytest.raises(ClientError) as excinfo:
        sts.assume_role(RoleArn=arn, RoleSessionName="tests", ExternalId="ext-1")
    assert error_code(excinfo) == "AccessDenied"
    sts.assume_role(RoleArn=arn, RoleSessionName="tests", ExternalId="ext-2", DurationSeconds=7200)
    status, role = aws.control("GET", f"{ROLES}?account={account}&name=linked")
    assert (status, role["max_session_duration"]) == (200, 7200)
    assert json.dumps(role["trust_policy"]).count("ext-2") == 1

    assert aws.control("DELETE", f"{ROLES}?account={account}&name=linked") == (200, {"deleted": True})
    assert aws.control("DELETE", f"{ROLES}?account={account}&name=linked") == (200, {"deleted": False})
    assert aws.control("GET", f"{ROLES}?account={account}&name=linked") == (200, {"exists": False})
    with pytest.raises(ClientError) as excinfo:
        sts.assume_role(RoleArn=arn, RoleSessionName="tests", ExternalId="ext-2")
    assert error_code(excinfo) == "AccessDenied"


def test_a_role_deployed_by_iam_is_described(aws):
    (account,) = new_organization(aws, 1)
    member_iam(aws, account).create_role(
        RoleName="by-hand", AssumeRolePolicyDocument=json.dumps(trust(HUB)), MaxSessionDuration=5400
    )
    status, role = aws.control("GET", f"{ROLES}?account={account}&name=by-hand")
    assert status == 200
    assert (role["max_session_duration"], role["trust_policy"]) == (5400, trust(HUB))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"{ROLES}?account=12&name=x", None),
        ("GET", f"{ROLES}?account={HUB}", None),
        ("DELETE", ROLES, None),
        ("PUT", ROLES, {"account": HUB, "name": "x"}),
        ("PUT", ROLES, {"account": HUB, "name": "x", "trust_policy": "{}"}),
        ("PUT", ROLES, {"account": HUB, "name": "x", "trust_policy": {}, "max_session_duration": 60}),
        ("PUT", ROLES, {"account": HUB, "name": "x", "trust_policy": {}, "path": "/"}),
    ],
)
def test_bad_role_requests_are_refused(aws, method, path, body):
    status, answer = aws.control(method, path, body)
    assert status == 400, answer
    assert answer["error"]
