"""Account creation and closing as AWS does them: asynchronous requests, unique e-mails, injected
failure reasons, held responses and the CloseAccount quota."""

from __future__ import annotations

import threading
import time

import pytest
from botocore.exceptions import ClientError
from conftest import error_code, wait_for


@pytest.fixture
def org(aws):
    client = aws.client("organizations")
    client.create_organization(FeatureSet="ALL")
    return client


def _create(org, email, name="acct"):
    return org.create_account(AccountName=name, Email=email)["CreateAccountStatus"]


def _status(org, request_id):
    return org.describe_create_account_status(CreateAccountRequestId=request_id)["CreateAccountStatus"]


def test_a_request_is_in_progress_then_succeeds_with_the_account(aws, org):
    aws.control("PUT", "/_strict/organizations", {"create_seconds": 0.5})
    request = _create(org, "slow@example.com")
    assert request["State"] == "IN_PROGRESS"
    assert "AccountId" not in request
    assert _status(org, request["Id"])["State"] == "IN_PROGRESS"
    done = wait_for(lambda: (s := _status(org, request["Id"]))["State"] == "SUCCEEDED" and s, timeout=5)
    account = org.describe_account(AccountId=done["AccountId"])["Account"]
    assert account["Email"] == "slow@example.com"


def test_a_used_email_fails_the_request_with_email_already_exists(aws, org):
    first = _create(org, "twice@example.com")
    assert _status(org, first["Id"])["State"] == "SUCCEEDED"
    second = _create(org, "Twice@example.com")
    failed = _status(org, second["Id"])
    assert (failed["State"], failed["FailureReason"]) == ("FAILED", "EMAIL_ALREADY_EXISTS")
    emails = [a["Email"] for a in org.list_accounts()["Accounts"]]
    assert emails.count("twice@example.com") == 1
    _, state = aws.control("GET", "/_strict/organizations")
    assert state["create_calls"]["twice@example.com"] == 2


def test_injected_failure_reasons_and_listing(aws, org):
    aws.control("PUT", "/_strict/organizations", {"failures": {"limit@example.com": "ACCOUNT_LIMIT_EXCEEDED"}})
    request = _create(org, "limit@example.com", name="limited")
    assert _status(org, request["Id"])["FailureReason"] == "ACCOUNT_LIMIT_EXCEEDED"
    listed = org.list_create_account_status(States=["FAILED"])["CreateAccountStatuses"]
    assert [(r["AccountName"], r["FailureReason"]) for r in listed] == [("limited", "ACCOUNT_LIMIT_EXCEEDED")]
    aws.control("PUT", "/_strict/organizations", {"failures": {"limit@example.com": None}})
    assert _status(org, _create(org, "limit@example.com")["Id"])["State"] == "SUCCEEDED"


def test_in_progress_requests_are_listed_by_state(aws, org):
    aws.control("PUT", "/_strict/organizations", {"create_seconds": 30})
    request = _create(org, "pending@example.com", name="pending")
    listed = org.list_create_account_status(States=["IN_PROGRESS"])["CreateAccountStatuses"]
    assert [r["Id"] for r in listed] == [request["Id"]]
    succeeded = org.list_create_account_status(States=["SUCCEEDED"])["CreateAccountStatuses"]
    assert request["Id"] not in [r["Id"] for r in succeeded]


def test_a_held_response_arrives_late_but_the_account_exists_at_once(aws, org):
    aws.control("PUT", "/_strict/organizations", {"hold_seconds": {"held@example.com": 2}})
    started = time.monotonic()
    result = {}
    caller = threading.Thread(target=lambda: result.update(_create(org, "held@example.com")))
    caller.start()
    wait_for(lambda: any(a["Email"] == "held@example.com" for a in org.list_accounts()["Accounts"]), timeout=2)
    assert caller.is_alive(), "other calls are answered while the response is held"
    caller.join(10)
    assert time.monotonic() - started >= 2
    assert result["State"] == "SUCCEEDED"


def test_close_account_is_pending_closure_and_limited_by_a_quota(aws, org):
    a = _status(org, _create(org, "close-a@example.com")["Id"])["AccountId"]
    b = _status(org, _create(org, "close-b@example.com")["Id"])["AccountId"]
    aws.control("PUT", "/_strict/organizations", {"close_quota": 1})
    org.close_account(AccountId=a)
    assert org.describe_account(AccountId=a)["Account"]["Status"] == "PENDING_CLOSURE"
    with pytest.raises(ClientError) as excinfo:
        org.close_account(AccountId=a)
    assert error_code(excinfo) == "AccountAlreadyClosedException"
    with pytest.raises(ClientError) as excinfo:
        org.close_account(AccountId=b)
    assert error_code(excinfo) == "ConstraintViolationException"
    assert excinfo.value.response.get("Reason") == "CLOSE_ACCOUNT_QUOTA_EXCEEDED"
    assert org.describe_account(AccountId=b)["Account"]["Status"] == "ACTIVE"
    aws.control("PUT", "/_strict/organizations", {"close_quota": None})
    org.close_account(AccountId=b)


def test_settings_are_validated(aws):
    status, body = aws.control("PUT", "/_strict/organizations", {"close_quota": -1})
    assert status == 400 and "close_quota" in body["error"]
    status, body = aws.control("PUT", "/_strict/organizations", {"failures": {"x@example.com": 3}})
    assert status == 400


def test_a_closed_account_is_pending_closure_then_suspended_after_suspend_seconds(aws, org):
    a = _status(org, _create(org, "suspend-a@example.com")["Id"])["AccountId"]
    status, body = aws.control("PUT", "/_strict/organizations", {"suspend_seconds": 1})
    assert status == 200 and body["suspend_seconds"] == 1
    org.close_account(AccountId=a)
    described = org.describe_account(AccountId=a)["Account"]
    assert (described["Status"], described["State"]) == ("PENDING_CLOSURE", "PENDING_CLOSURE")
    listed = {x["Id"]: x["Status"] for x in org.list_accounts()["Accounts"]}
    assert listed[a] == "PENDING_CLOSURE"
    wait_for(lambda: org.describe_account(AccountId=a)["Account"]["Status"] == "SUSPENDED", timeout=5)
    described = org.describe_account(AccountId=a)["Account"]
    assert described["State"] == "SUSPENDED"
    with pytest.raises(ClientError) as excinfo:
        org.close_account(AccountId=a)
    assert error_code(excinfo) == "AccountAlreadyClosedException"


def test_suspend_seconds_null_keeps_closed_accounts_pending_and_bad_values_are_refused(aws, org):
    a = _status(org, _create(org, "suspend-b@example.com")["Id"])["AccountId"]
    aws.control("PUT", "/_strict/organizations", {"suspend_seconds": None})
    org.close_account(AccountId=a)
    time.sleep(0.3)
    assert org.describe_account(AccountId=a)["Account"]["Status"] == "PENDING_CLOSURE"
    # Turning the delay back on settles what has waited long enough on the next call.
    aws.control("PUT", "/_strict/organizations", {"suspend_seconds": 0})
    assert org.describe_account(AccountId=a)["Account"]["Status"] == "SUSPENDED"
    status, body = aws.control("PUT", "/_strict/organizations", {"suspend_seconds": -1})
    assert status == 400 and "suspend_seconds" in body["error"]
    status, body = aws.control("GET", "/_strict/organizations")
    assert body["suspend_seconds"] == 0


def test_the_default_keeps_a_closed_account_pending_for_a_while(aws, org):
    status, body = aws.control("GET", "/_strict/organizations")
    assert body["suspend_seconds"] == 60
    a = _status(org, _create(org, "suspend-c@example.com")["Id"])["AccountId"]
    org.close_account(AccountId=a)
    assert org.describe_account(AccountId=a)["Account"]["State"] == "PENDING_CLOSURE"
