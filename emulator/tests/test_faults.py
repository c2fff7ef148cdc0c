"""Injected throttling, outages, random server errors and slow answers."""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

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


def _failures(sts, calls):
    """Which of `calls` GetCallerIdentity calls failed, and with what code."""
    out = []
    for _ in range(calls):
        try:
            sts.get_caller_identity()
            out.append(None)
        except ClientError as err:
            out.append((err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"]))
    return out


def test_random_server_errors_hit_a_seeded_fraction_of_the_matched_calls(aws):
    sts = aws.client("sts")
    rules = {"seed": 7, "rules": {"sts:GetCallerIdentity": {"rate": 0.3}}}
    status, body = aws.control("PUT", "/_strict/errors", rules)
    assert status == 200 and body["rules"] == {"sts:GetCallerIdentity": {"rate": 0.3, "status": 500}}
    first = _failures(sts, 200)
    failed = [f for f in first if f is not None]
    assert set(failed) == {("InternalFailure", 500)}
    assert 35 <= len(failed) <= 85, len(failed)  # 30 % of 200, loosely
    aws.client("iam").list_roles()  # other operations are not matched
    _, body = aws.control("GET", "/_strict/errors")
    assert body["injected"] == {"sts:GetCallerIdentity": len(failed)}
    _, counts = aws.control("GET", "/_strict/requests")
    assert counts["outcomes"]["sts:GetCallerIdentity"]["error"] == len(failed)
    assert counts["outcomes"]["iam:ListRoles"]["error"] == 0

    # The same seed replays the same calls failing; configuring again restarts the sequence.
    aws.control("PUT", "/_strict/errors", rules)
    assert _failures(sts, 200) == first
    aws.control("PUT", "/_strict/errors", {**rules, "seed": 8})
    assert _failures(sts, 200) != first

    aws.control("DELETE", "/_strict/errors")
    assert _failures(sts, 20) == [None] * 20


def test_random_server_errors_speak_each_service(aws):
    aws.control("PUT", "/_strict/errors", {"rules": {"sts:*": {"rate": 1, "status": 503}, "*": {"rate": 1}}})
    assert _failures(aws.client("sts"), 1) == [("ServiceUnavailable", 503)]
    with pytest.raises(ClientError) as excinfo:
        aws.client("organizations").describe_organization()
    assert error_code(excinfo) == "ServiceException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    with pytest.raises(ClientError) as excinfo:
        aws.client("cloudformation").list_stack_sets()
    assert error_code(excinfo) == "InternalFailure"
    # A reset clears the rules.
    aws.control("POST", "/_strict/reset")
    aws.client("sts").get_caller_identity()


def test_slow_answers_come_late_but_take_effect(aws):
    org = aws.client("organizations")
    org.create_organization(FeatureSet="ALL")
    status, body = aws.control(
        "PUT", "/_strict/latency", {"seed": 1, "rules": {"organizations:CreateAccount": {"seconds": 1.5}}}
    )
    assert status == 200 and body["rules"] == {"organizations:CreateAccount": {"seconds": 1.5, "rate": 1.0}}
    impatient = aws._session.client(
        "organizations",
        endpoint_url=aws.url,
        region_name="us-east-1",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=0.5),
    )
    with pytest.raises(ReadTimeoutError):
        impatient.create_account(AccountName="slow", Email="slow@example.com")
    # The call was carried out although its answer never arrived.
    wait_for(
        lambda: any(a["Email"] == "slow@example.com" for a in org.list_accounts()["Accounts"]), timeout=5
    )

    # Other calls are answered meanwhile: the delay does not hold the emulator's lock.
    started = time.monotonic()
    slow = threading.Thread(target=lambda: org.create_account(AccountName="s2", Email="s2@example.com"))
    slow.start()
    time.sleep(0.2)
    org.describe_organization()
    assert time.monotonic() - started < 1.2
    slow.join()
    assert time.monotonic() - started >= 1.5
    _, body = aws.control("GET", "/_strict/latency")
    assert body["delayed"] == {"organizations:CreateAccount": 2}


def test_slow_answers_hit_a_seeded_fraction(aws):
    sts = aws.client("sts")
    rules = {"seed": 3, "rules": {"sts:*": {"seconds": 0.3, "rate": 0.25}}}
    aws.control("PUT", "/_strict/latency", rules)

    def pattern():
        out = []
        for _ in range(16):
            started = time.monotonic()
            sts.get_caller_identity()
            out.append(time.monotonic() - started >= 0.3)
        return out

    first = pattern()
    assert 1 <= sum(first) <= 10, first
    aws.control("PUT", "/_strict/latency", rules)
    assert pattern() == first
    aws.control("DELETE", "/_strict/latency")
    started = time.monotonic()
    sts.get_caller_identity()
    assert time.monotonic() - started < 0.3


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/_strict/errors", {"rules": {"sts:*": {"rate": 1.5}}}, "at most 1"),
        ("/_strict/errors", {"rules": {"sts:*": {"rate": 0}}}, "greater than 0"),
        ("/_strict/errors", {"rules": {"sts:*": {"rate": 0.1, "status": 404}}}, "500 or 503"),
        ("/_strict/errors", {"rules": {"sts": {"rate": 0.1}}}, "service:Operation"),
        ("/_strict/errors", {"seed": "x", "rules": {}}, "integer"),
        ("/_strict/latency", {"rules": {"*": {"rate": 0.5}}}, '"seconds"'),
        ("/_strict/latency", {"rules": {"*": {"seconds": 0}}}, "greater than 0"),
        ("/_strict/latency", {"rules": {"*": {"seconds": 601}}}, "at most 600"),
        ("/_strict/latency", {"rules": {"*": {"seconds": 1, "jitter": 1}}}, "unknown field"),
    ],
)
def test_fault_rules_are_validated(aws, path, body, message):
    status, answer = aws.control("PUT", path, body)
    assert status == 400 and message in answer["error"], answer
