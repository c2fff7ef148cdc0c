"""Request counting, reset, control API validation, and the wire shape of errors."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from botocore.exceptions import ClientError

from conftest import error_code


def test_counting_and_reset(aws):
    sts = aws.client("sts")
    org = aws.client("organizations")
    sts.get_caller_identity()
    sts.get_caller_identity()
    org.create_organization(FeatureSet="ALL")
    with pytest.raises(ClientError):
        sts.assume_role(RoleArn="arn:aws:iam::111111111111:role/missing", RoleSessionName="tests")
    status, body = aws.control("GET", "/_strict/requests")
    assert status == 200
    assert body["counts"] == {
        "organizations:CreateOrganization": 1,
        "sts:AssumeRole": 1,
        "sts:GetCallerIdentity": 2,
    }
    assert body["outcomes"]["sts:AssumeRole"] == {"ok": 0, "error": 1, "throttled": 0}

    assert aws.control("DELETE", "/_strict/requests")[1]["counts"] == {}
    sts.get_caller_identity()
    assert aws.control("GET", "/_strict/requests")[1]["counts"] == {"sts:GetCallerIdentity": 1}

    aws.control("PUT", "/_strict/throttle", {"*": {"rate": 1, "burst": 1}})
    assert aws.control("POST", "/_strict/reset")[0] == 200
    assert aws.control("GET", "/_strict/requests")[1]["counts"] == {}
    assert aws.control("GET", "/_strict/throttle")[1] == {}
    with pytest.raises(ClientError) as excinfo:
        org.describe_organization()  # moto's state is gone too
    assert error_code(excinfo) == "AWSOrganizationsNotInUseException"


@pytest.mark.parametrize(
    ("method", "path", "raw", "status"),
    [
        ("PUT", "/_strict/throttle", b"{not json", 400),
        ("PUT", "/_strict/throttle", b'{"sts:AssumeRole": {"rate": -1}}', 400),
        ("PUT", "/_strict/throttle", b'{"bad key": {"rate": 1}}', 400),
        ("PUT", "/_strict/stacksets/timing", b'{"base_seconds": "slow"}', 400),
        ("PUT", "/_strict/stacksets/timing", b'{"per_wave": 1}', 400),
        ("PUT", "/_strict/stacksets/failures", b'{"accounts": {"12": "x"}}', 400),
        ("PUT", "/_strict/stacksets/failures", b'{"accounts": {}, "actions": ["EXPLODE"]}', 400),
        ("POST", "/_strict/outage", b'{"seconds": 5, "mode": "flaky"}', 400),
        ("POST", "/_strict/outage", b"", 400),
        ("GET", "/_strict/nothing-here", None, 404),
        ("POST", "/_strict/requests", None, 405),
    ],
)
def test_control_rejects_bad_input(aws, method, path, raw, status):
    code, body = aws.control(method, path, raw=raw)
    assert code == status
    assert body["error"]


def test_control_round_trips(aws):
    assert aws.control("PUT", "/_strict/stacksets/timing", {"seconds_per_wave": 0.5})[1] == {
        "base_seconds": 0.2,
        "seconds_per_wave": 0.5,
        "stack_seconds": 0.0,
    }
    failures = {"accounts": {"111111111111": "nope"}, "actions": ["CREATE"]}
    assert aws.control("PUT", "/_strict/stacksets/failures", failures)[1] == failures
    assert aws.control("DELETE", "/_strict/stacksets/failures")[1]["accounts"] == {}
    assert aws.control("GET", "/_strict/stacksets/operations")[1] == {"operations": []}


def _raw(aws, service, body, headers):
    auth = (
        f"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20250101/us-east-1/{service}/aws4_request, "
        "SignedHeaders=host, Signature=0000"
    )
    request = urllib.request.Request(
        aws.url + "/", data=body, method="POST", headers={"Authorization": auth, **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_query_protocol_error_shape(aws):
    status, _, body = _raw(
        aws,
        "sts",
        b"Action=AssumeRole&Version=2011-06-15&RoleSessionName=tests"
        b"&RoleArn=arn%3Aaws%3Aiam%3A%3A111111111111%3Arole%2Fmissing",
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    assert status == 403
    root = ET.fromstring(body)
    assert root.tag == "ErrorResponse"
    assert root.findtext("Error/Type") == "Sender"
    assert root.findtext("Error/Code") == "AccessDenied"
    assert "not authorized to perform: sts:AssumeRole" in root.findtext("Error/Message")
    assert root.findtext("RequestId")


def test_json_protocol_error_shape(aws):
    aws.control(
        "PUT", "/_strict/throttle", {"organizations:DescribeOrganization": {"rate": 0.01, "burst": 1}}
    )
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AWSOrganizationsV20161128.DescribeOrganization",
    }
    _raw(aws, "organizations", b"{}", headers)
    status, response_headers, body = _raw(aws, "organizations", b"{}", headers)
    assert status == 400
    lowered = {k.lower(): v for k, v in response_headers.items()}
    assert lowered["x-amzn-errortype"] == "TooManyRequestsException"
    assert json.loads(body)["__type"] == "TooManyRequestsException"
    _, counts = aws.control("GET", "/_strict/requests")
    assert counts["outcomes"]["organizations:DescribeOrganization"]["throttled"] == 1


def test_the_request_log_names_the_caller_and_the_time(aws):
    assert aws.control("GET", "/_strict/requests/log")[1] == {"enabled": False, "entries": []}
    aws.client("sts").get_caller_identity()  # before the log starts: not logged
    assert aws.control("PUT", "/_strict/requests/log", {"enabled": True})[1]["entries"] == []
    before = time.time()
    replica_b = {"aws_access_key_id": "replica-b", "aws_secret_access_key": "x"}
    aws.client("sts", credentials=replica_b).get_caller_identity()
    entries = aws.control("GET", "/_strict/requests/log")[1]["entries"]
    assert [(e["key"], e["access_key"], e["outcome"]) for e in entries] == [
        ("sts:GetCallerIdentity", "replica-b", "ok")
    ]
    assert before <= entries[0]["started"] <= entries[0]["finished"] <= time.time()

    aws.control("DELETE", "/_strict/requests")
    assert aws.control("GET", "/_strict/requests/log")[1] == {"enabled": True, "entries": []}
    assert aws.control("PUT", "/_strict/requests/log", {"enabled": False})[1]["enabled"] is False
    assert aws.control("PUT", "/_strict/requests/log", {"enabled": "yes"})[0] == 400
