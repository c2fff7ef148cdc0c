"""The WSGI application: moto's server app behind the strict layer, plus the control API.

Every AWS call is counted, may meet an injected outage or rate limit, then goes to a strict handler
(which answers itself or checks and forwards) or straight to moto. AWS calls are handled one at a
time under one lock: moto's backends are not built for concurrent mutation, and serial handling
keeps StackSet timing deterministic. Calls are short, so this costs little.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.organizations.models import organizations_backends

from .accounts import AccountFactory
from .control import ControlApi
from .counting import RequestCounter
from .errors import AwsError
from .faults import Outage, Throttle, latency, random_errors
from .organizations import MembershipWatch
from . import delegated, speed
from .protocol import AwsRequest, Reply, error_reply
from .stacksets.api import StackSetApi
from .stacksets.engine import StackSetEngine
from .sts import StsSettings, assume_role, check_assume_role, get_caller_identity

Handler = Callable[[AwsRequest, Callable[[], Reply]], Reply]

speed.install()


class StrictApp:
    def __init__(self) -> None:
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.lock = threading.RLock()
        self.requests = RequestCounter()
        self.throttle = Throttle()
        self.outage = Outage()
        self.errors = random_errors()
        self.latency = latency()
        self.sts = StsSettings()
        self.stacksets = StackSetEngine()
        membership = MembershipWatch(self.stacksets)
        self.accounts = AccountFactory(membership.create_account)
        self.handlers: dict[str, Handler] = {
            "sts:AssumeRole": self._assume_role,
            "sts:GetCallerIdentity": get_caller_identity,
            **StackSetApi(self.stacksets).handlers(),
            **membership.handlers(),
            **self.accounts.handlers(),
            **delegated.handlers(),
        }
        self.control = ControlApi(self)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == "/_strict" or path.startswith("/_strict/"):
            return self.control(environ, start_response)
        if path.startswith("/moto-api"):
            with self.lock:
                reply = self.forward(environ)
                if path.startswith("/moto-api/reset") and environ.get("REQUEST_METHOD") == "POST":
                    self.reset_strict()
            return reply.send(start_response)
        started = time.time()
        req = AwsRequest.from_environ(environ)
        reply = self.handle(req, environ)
        self.requests.record(req.key, reply.outcome, req.access_key, started)
        # A held or slow response (outside the lock): the call took effect, its answer is late.
        slow = self.latency.hit(req.key)
        hold = self.accounts.take_hold() + (slow.seconds if slow else 0.0)
        if hold > 0:
            time.sleep(hold)
        return reply.send(start_response)

    def handle(self, req: AwsRequest, environ: dict[str, Any]) -> Reply:
        if self.outage.active("error"):
            return error_reply(
                req,
                AwsError(
                    "ServiceUnavailable", "Service is unavailable (injected outage).", 503, sender=False
                ),
            )
        injected = self.errors.hit(req.key)
        if injected is not None:
            return error_reply(req, server_error(req, injected.status))
        if not self.throttle.admit(req.key):
            return error_reply(req, throttling_error(req), outcome="throttled")
        with self.lock:
            self.stacksets.advance()
            self.accounts.settle()
            handler = self.handlers.get(req.key)
            try:
                if handler is None:
                    return self.forward(environ)
                return handler(req, lambda: self.forward(environ))
            except AwsError as err:
                return error_reply(req, err)
            except Exception:
                traceback.print_exc(file=sys.stderr)
                return error_reply(
                    req,
                    AwsError(
                        "InternalFailure", "The strict layer failed on this request.", 500, sender=False
                    ),
                )

    def _assume_role(self, req: AwsRequest, forward: Callable[[], Reply]) -> Reply:
        check_assume_role(req, self.sts)
        return assume_role(req, forward)

    def forward(self, environ: dict[str, Any]) -> Reply:
        """Run the request through moto and buffer its response."""
        captured: dict[str, Any] = {}
        chunks: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"] = status
            captured["headers"] = headers
            return chunks.append

        result = self.moto(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        body = b"".join(chunks)
        headers = [
            (k, v) for k, v in captured["headers"] if k.lower() not in ("content-length", "transfer-encoding")
        ]
        headers.append(("Content-Length", str(len(body))))
        return Reply(int(captured["status"].split()[0]), headers, body)

    def reset_moto(self) -> None:
        moto_api_backend.reset()
        # moto's reset leaves this map of member accounts behind.
        organizations_backends.master_accounts.clear()

    def reset_strict(self) -> None:
        organizations_backends.master_accounts.clear()
        speed.forget_dead_keys()
        self.stacksets.reset()
        self.accounts.reset()
        self.throttle.configure({})
        self.outage.clear()
        self.errors.configure({}, seed=0)
        self.latency.configure({}, seed=0)
        self.requests.reset()
        self.sts = StsSettings()


def throttling_error(req: AwsRequest) -> AwsError:
    if req.service == "organizations":
        return AwsError(
            "TooManyRequestsException", "Too many requests: the rate limit was exceeded. Try again later."
        )
    if req.protocol == "json":
        return AwsError("ThrottlingException", "Rate exceeded")
    return AwsError("Throttling", "Rate exceeded")


def server_error(req: AwsRequest, status: int) -> AwsError:
    """An injected server error, with the code the service answers it with."""
    if req.service == "organizations":
        code, message = "ServiceException", "AWS Organizations can't complete your request (injected)."
    elif status == 503:
        code, message = "ServiceUnavailable", "Service is unavailable (injected)."
    else:
        code, message = "InternalFailure", "We encountered an internal error (injected)."
    return AwsError(code, message, status, sender=False)
