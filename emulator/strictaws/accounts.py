"""Account creation and closing with AWS's rules, over moto's Organizations.

moto creates an account synchronously and accepts any e-mail twice; AWS answers CreateAccount with
an IN_PROGRESS request, rejects a used e-mail (the request FAILS with EMAIL_ALREADY_EXISTS) and can
fail a request for other reasons. CloseAccount leaves the account PENDING_CLOSURE (moto makes it
SUSPENDED at once) and is limited by a quota. This layer adds, per request:

- `create_seconds`: how long a request stays IN_PROGRESS (moto has created the account already; its
  ID is revealed when the request SUCCEEDS);
- injected failure reasons by e-mail (`FAILED` with that FailureReason);
- a hold: the CreateAccount response is delayed after the account was created, so a client can be
  killed between its call and its bookkeeping;
- a CloseAccount quota (ConstraintViolationException CLOSE_ACCOUNT_QUOTA_EXCEEDED once spent);
- `suspend_seconds`: how long a closed account stays PENDING_CLOSURE before it is SUSPENDED (both
  `Status` and `State`; null keeps it PENDING_CLOSURE until the setting changes);
- CreateAccount calls counted by e-mail.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .identity import account_of
from .orgs import org_backend_of
from .protocol import AwsRequest, Reply
from .speed import account_by_id, email_in_use

Forward = Callable[[], Reply]


@dataclass
class _Request:
    id: str
    name: str
    email: str
    requested: float
    ready_at: float
    account: str | None = None
    failure: str | None = None

    def row(self, now: float) -> dict[str, Any]:
        row: dict[str, Any] = {"Id": self.id, "AccountName": self.name, "RequestedTimestamp": self.requested}
        if now < self.ready_at:
            row["State"] = "IN_PROGRESS"
        elif self.failure is not None:
            row.update(State="FAILED", FailureReason=self.failure, CompletedTimestamp=self.ready_at)
        else:
            row.update(State="SUCCEEDED", AccountId=self.account, CompletedTimestamp=self.ready_at)
        return row


@dataclass
class AccountSettings:
    create_seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)
    hold_seconds: dict[str, float] = field(default_factory=dict)
    close_quota: int | None = None
    suspend_seconds: float | None = 60.0


class AccountFactory:
    def __init__(self, create_watch: Callable[[AwsRequest, Forward], Reply]):
        self._create_watch = create_watch
        self.settings = AccountSettings()
        self.requests: dict[str, _Request] = {}
        self.create_calls: Counter[str] = Counter()
        self.closed = 0
        # Closed accounts still PENDING_CLOSURE: account id -> (moto account, when it was closed).
        self.closing: dict[str, tuple[Any, float]] = {}
        self._holds = threading.local()

    def reset(self) -> None:
        self.settings = AccountSettings()
        self.requests.clear()
        self.create_calls.clear()
        self.closed = 0
        self.closing.clear()

    def handlers(self) -> dict[str, Callable[[AwsRequest, Forward], Reply]]:
        return {
            "organizations:CreateAccount": self.create_account,
            "organizations:DescribeCreateAccountStatus": self.describe_create_account_status,
            "organizations:ListCreateAccountStatus": self.list_create_account_status,
            "organizations:CloseAccount": self.close_account,
        }

    def settle(self, now: float | None = None) -> None:
        """Closed accounts whose `suspend_seconds` have passed become SUSPENDED (called before
        every AWS call, so every read sees the same state)."""
        seconds = self.settings.suspend_seconds
        if seconds is None or not self.closing:
            return
        now = time.time() if now is None else now
        for account, (member, closed_at) in list(self.closing.items()):
            if now - closed_at >= seconds:
                member.status = member.state = "SUSPENDED"
                del self.closing[account]

    def take_hold(self) -> float:
        """Seconds the current thread's response must wait (set by CreateAccount), once."""
        seconds = getattr(self._holds, "seconds", 0.0)
        self._holds.seconds = 0.0
        return seconds

    # --- handlers ---------------------------------------------------------------------------

    def create_account(self, req: AwsRequest, forward: Forward) -> Reply:
        params = req.params()
        email = str(params.get("Email", ""))
        name = str(params.get("AccountName", ""))
        self.create_calls[email.lower()] += 1
        now = time.time()
        org = org_backend_of(account_of(req))
        failure = self.settings.failures.get(email.lower())
        if failure is None and org is not None and email_in_use(org, email):
            failure = "EMAIL_ALREADY_EXISTS"
        if failure is not None or org is None:
            if org is None:
                reply = forward()  # moto answers AWSOrganizationsNotInUseException
                return reply
            request = _Request(
                id=f"car-{uuid.uuid4().hex}", name=name, email=email, requested=now,
                ready_at=now + self.settings.create_seconds, failure=failure,
            )
        else:
            reply = self._create_watch(req, forward)
            if reply.status != 200:
                return reply
            status = json.loads(reply.body).get("CreateAccountStatus", {})
            request = _Request(
                id=status["Id"], name=name, email=email, requested=now,
                ready_at=now + self.settings.create_seconds, account=status.get("AccountId"),
            )
        self.requests[request.id] = request
        self._holds.seconds = self.settings.hold_seconds.get(email.lower(), 0.0)
        return _json_reply({"CreateAccountStatus": request.row(now)})

    def describe_create_account_status(self, req: AwsRequest, forward: Forward) -> Reply:
        request = self.requests.get(str(req.params().get("CreateAccountRequestId", "")))
        if request is None:
            return forward()
        return _json_reply({"CreateAccountStatus": request.row(time.time())})

    def list_create_account_status(self, req: AwsRequest, forward: Forward) -> Reply:
        params = req.params()
        reply = forward()
        if reply.status != 200:
            return reply
        listed = json.loads(reply.body)
        now = time.time()
        states = set(params.get("States") or [])
        rows = []
        seen = set()
        for row in listed.get("CreateAccountStatuses", []):
            ours = self.requests.get(row.get("Id", ""))
            rows.append(ours.row(now) if ours is not None else row)
            seen.add(row.get("Id"))
        if not params.get("NextToken"):
            rows.extend(r.row(now) for r in self.requests.values() if r.id not in seen)
        listed["CreateAccountStatuses"] = [r for r in rows if not states or r["State"] in states]
        return _json_reply(listed)

    def close_account(self, req: AwsRequest, forward: Forward) -> Reply:
        account = str(req.params().get("AccountId", ""))
        org = org_backend_of(account_of(req))
        member = account_by_id(org, account) if org is not None else None
        if member is not None and member.status in ("PENDING_CLOSURE", "SUSPENDED"):
            return _json_error(
                "AccountAlreadyClosedException", "You have already closed the account.", status=400
            )
        quota = self.settings.close_quota
        if member is not None and quota is not None and self.closed >= quota:
            return _json_error(
                "ConstraintViolationException",
                "You have exceeded close account quota for the past 30 days.",
                reason="CLOSE_ACCOUNT_QUOTA_EXCEEDED",
            )
        reply = forward()
        if reply.status == 200 and member is not None:
            self.closed += 1
            member.status = member.state = "PENDING_CLOSURE"
            self.closing[account] = (member, time.time())
            self.settle()
        return reply


def _json_reply(payload: dict[str, Any]) -> Reply:
    body = json.dumps(payload).encode()
    return Reply(
        200,
        [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("x-amzn-RequestId", str(uuid.uuid4())),
            ("Content-Length", str(len(body))),
        ],
        body,
    )


def _json_error(code: str, message: str, status: int = 400, reason: str | None = None) -> Reply:
    payload: dict[str, Any] = {"__type": code, "Message": message}
    if reason is not None:
        payload["Reason"] = reason
    body = json.dumps(payload).encode()
    return Reply(
        status,
        [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("x-amzn-ErrorType", code),
            ("x-amzn-RequestId", str(uuid.uuid4())),
            ("Content-Length", str(len(body))),
        ],
        body,
    )
