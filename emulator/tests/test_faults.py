"""Injected throttling and outages."""

from __future__ import annotations

import socket
import time
import urllib.parse

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from conftest import error_code, wait_for


def test_throttling_by_rate(aws):
    sts = aws.client("sts")
    status, _ = aws.control("PUT", "/_strict/throttle", {"sts:GetCallerIdentity": {"rate": 5, "burst": 2}})
    assert status == 200
    sts.get_caller_identity()
    sts.get_caller_identity()
    with pytest.raises(ClientError) as excinfo:
        sts.get_caller_identity()
    assert error_code(excinfo) == "Throttling"
    assert excinfo.value.response["Error"]["Message"] == "Rate exceeded"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    aws.client("iam").list_roles()  # other operations are not limited
    time.sleep(0.25)  # at 5/s one token is back after 0.2 s
    sts.get_caller_identity()

    _, counts = aws.control("GET", "/_strict/requests")
    assert counts["outcomes"]["sts:GetCallerIdentity"] == {"ok": 3, "error": 0, "throttled": 1}


def test_organizations_throttling_error(aws):
    org = aws.client("organizations")
    org.create_organization(FeatureSet="ALL")
    aws.control("PUT", "/_strict/throttle", {"organizations:*": {"rate": 0.01, "burst": 1}})
    org.describe_organization()
    with pytest.raises(ClientError) as excinfo:
        org.create_account(AccountName="x", Email="x@example.com")
    assert error_code(excinfo) == "TooManyRequestsException"
    aws.control("DELETE", "/_strict/throttle")
    org.create_account(AccountName="x", Email="x@example.com")


def test_outage_error_mode(aws):
    sts = aws.client("sts")
    status, body = aws.control("POST", "/_strict/outage", {"seconds": 30, "mode": "error"})
    assert status == 200 and body["mode"] == "error"
    with pytest.raises(ClientError) as excinfo:
        sts.get_caller_identity()
    assert error_code(excinfo) == "ServiceUnavailable"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert aws.control("GET", "/_strict/health")[0] == 200  # the control API stays up
    aws.control("DELETE", "/_strict/outage")
    sts.get_caller_identity()

    aws.control("POST", "/_strict/outage", {"seconds": 0.3, "mode": "error"})
    with pytest.raises(ClientError):
        sts.get_caller_identity()
    wait_for(lambda: _succeeds(sts.get_caller_identity), timeout=5)


def _succeeds(call):
    try:
        call()
        return True
    except ClientError:
        return False


def _port_open(url):
    parts = urllib.parse.urlparse(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return True
    except OSError:
        return False


def test_outage_refuse_mode(aws):
    started = time.monotonic()
    status, _ = aws.control("POST", "/_strict/outage", {"seconds": 1.0, "mode": "refuse"})
    assert status == 200
    wait_for(lambda: not _port_open(aws.url), timeout=3)
    with pytest.raises(EndpointConnectionError):
        aws.client("sts").get_caller_identity()
    wait_for(lambda: _port_open(aws.url), timeout=10)
    assert time.monotonic() - started >= 0.9
    assert aws.control("GET", "/_strict/health")[0] == 200
    aws.client("sts").get_caller_identity()
