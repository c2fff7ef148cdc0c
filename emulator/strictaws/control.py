"""The control API under /_strict/: JSON in, JSON out. See emulator/README.md for the endpoints."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from moto.iam.models import iam_backends

from .faults import DelayRule, ErrorRule, SeededRules
from .identity import ACCOUNT_ID_RE, PARTITION, find_role_by_name
from .protocol import Reply
from .stacksets.engine import ACTIONS
from .stacksets.plan import Timing

if TYPE_CHECKING:
    from .app import StrictApp

_KEY_RE = re.compile(r"\*|[a-z0-9-]+:(\*|[A-Za-z0-9]+)")
_MAX_OUTAGE_SECONDS = 3600
_MAX_DELAY_SECONDS = 600


class BadRequest(Exception):
    pass


Route = Callable[[Any], tuple[int, Any]]


class ControlApi:
    def __init__(self, app: StrictApp):
        self.app = app
        self.routes: dict[str, dict[str, Route]] = {
            "/_strict/health": {"GET": lambda _: (200, {"status": "ok"})},
            "/_strict/reset": {"POST": self.reset},
            "/_strict/requests": {"GET": self.get_requests, "DELETE": self.delete_requests},
            "/_strict/requests/log": {"GET": self.get_request_log, "PUT": self.put_request_log},
            "/_strict/stacksets/timing": {"GET": self.get_timing, "PUT": self.put_timing},
            "/_strict/stacksets/failures": {
                "GET": self.get_failures,
                "PUT": self.put_failures,
                "DELETE": self.delete_failures,
            },
            "/_strict/stacksets/operations": {"GET": self.get_operations},
            "/_strict/throttle": {
                "GET": self.get_throttle,
                "PUT": self.put_throttle,
                "DELETE": self.delete_throttle,
            },
            "/_strict/outage": {
                "GET": self.get_outage,
                "POST": self.post_outage,
                "DELETE": self.delete_outage,
            },
            "/_strict/errors": {
                "GET": self.get_errors,
                "PUT": self.put_errors,
                "DELETE": lambda _: self.delete_seeded(self.app.errors),
            },
            "/_strict/latency": {
                "GET": self.get_latency,
                "PUT": self.put_latency,
                "DELETE": lambda _: self.delete_seeded(self.app.latency),
            },
            "/_strict/sts": {"GET": self.get_sts, "PUT": self.put_sts},
            "/_strict/organizations": {"GET": self.get_organizations, "PUT": self.put_organizations},
            "/_strict/iam/roles": {"GET": self.get_role, "PUT": self.put_role, "DELETE": self.delete_role},
        }

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "").rstrip("/")
        method = environ.get("REQUEST_METHOD", "GET")
        methods = self.routes.get(path)
        if methods is None:
            return _json(404, {"error": f"no control endpoint {path}"}).send(start_response)
        route = methods.get(method)
        if route is None:
            allowed = ", ".join(sorted(methods))
            return _json(405, {"error": f"{method} not allowed on {path}; use {allowed}"}).send(
                start_response
            )
        try:
            body = _read_json(environ) if method in ("PUT", "POST") else _read_query(environ)
            with self.app.lock:
                status, payload = route(body)
        except BadRequest as err:
            return _json(400, {"error": str(err)}).send(start_response)
        return _json(status, payload).send(start_response)

    # --- endpoints --------------------------------------------------------------------------

    def reset(self, _: Any) -> tuple[int, Any]:
        self.app.reset_moto()
        self.app.reset_strict()
        return 200, {"status": "ok"}

    def get_requests(self, _: Any) -> tuple[int, Any]:
        return 200, self.app.requests.snapshot()

    def delete_requests(self, _: Any) -> tuple[int, Any]:
        self.app.requests.reset()
        return 200, self.app.requests.snapshot()

    def get_request_log(self, _: Any) -> tuple[int, Any]:
        return 200, self.app.requests.log()

    def put_request_log(self, body: Any) -> tuple[int, Any]:
        values = _object(body, allowed={"enabled"})
        enabled = values.get("enabled")
        if not isinstance(enabled, bool):
            raise BadRequest('"enabled" must be true or false')
        self.app.requests.set_logging(enabled)
        return self.get_request_log(None)

    def get_timing(self, _: Any) -> tuple[int, Any]:
        t = self.app.stacksets.timing
        return 200, {
            "base_seconds": t.base_seconds,
            "seconds_per_wave": t.seconds_per_wave,
            "stack_seconds": t.stack_seconds,
        }

    def put_timing(self, body: Any) -> tuple[int, Any]:
        values = _object(body, allowed={"base_seconds", "seconds_per_wave", "stack_seconds"})
        current = self.app.stacksets.timing
        merged = {
            "base_seconds": current.base_seconds,
            "seconds_per_wave": current.seconds_per_wave,
            "stack_seconds": current.stack_seconds,
        }
        for key, value in values.items():
            merged[key] = _number(value, key, low=0.0)
        self.app.stacksets.timing = Timing(**merged)
        return self.get_timing(None)

    def get_failures(self, _: Any) -> tuple[int, Any]:
        engine = self.app.stacksets
        return 200, {"accounts": dict(engine.failures), "actions": sorted(engine.failure_actions)}

    def put_failures(self, body: Any) -> tuple[int, Any]:
        values = _object(body, allowed={"accounts", "actions"})
        accounts = values.get("accounts")
        if not isinstance(accounts, dict):
            raise BadRequest('"accounts" must be an object of account id -> failure reason')
        for account, reason in accounts.items():
            if not ACCOUNT_ID_RE.fullmatch(account):
                raise BadRequest(f"{account!r} is not a 12-digit account id")
            if not isinstance(reason, str) or not reason:
                raise BadRequest(f"the reason for {account} must be a non-empty string")
        actions = values.get("actions", list(ACTIONS))
        if not isinstance(actions, list) or not actions or any(a not in ACTIONS for a in actions):
            raise BadRequest(f'"actions" must be a non-empty list drawn from {list(ACTIONS)}')
        self.app.stacksets.failures = dict(accounts)
        self.app.stacksets.failure_actions = set(actions)
        return self.get_failures(None)

    def delete_failures(self, _: Any) -> tuple[int, Any]:
        self.app.stacksets.failures = {}
        self.app.stacksets.failure_actions = set(ACTIONS)
        return self.get_failures(None)

    def get_operations(self, _: Any) -> tuple[int, Any]:
        self.app.stacksets.advance()
        return 200, {"operations": self.app.stacksets.all_operations()}

    def get_throttle(self, _: Any) -> tuple[int, Any]:
        return 200, self.app.throttle.describe()

    def put_throttle(self, body: Any) -> tuple[int, Any]:
        limits = {}
        for key, spec in _object(body).items():
            if not _KEY_RE.fullmatch(key):
                raise BadRequest(f'{key!r} is not "*", "service:*" or "service:Operation"')
            spec = _object(spec, allowed={"rate", "burst"}, what=key)
            if "rate" not in spec:
                raise BadRequest(f'{key}: "rate" (requests per second) is required')
            rate = _number(spec["rate"], f"{key}.rate", low=0.0, exclusive=True)
            burst = _number(spec.get("burst", max(1.0, rate)), f"{key}.burst", low=1.0)
            limits[key] = (rate, burst)
        self.app.throttle.configure(limits)
        return self.get_throttle(None)

    def delete_throttle(self, _: Any) -> tuple[int, Any]:
        self.app.throttle.configure({})
        return self.get_throttle(None)

    def get_outage(self, _: Any) -> tuple[int, Any]:
        return 200, self.app.outage.describe()

    def post_outage(self, body: Any) -> tuple[int, Any]:
        values = _object(body, allowed={"seconds", "mode"})
        if "seconds" not in values:
            raise BadRequest('"seconds" is required')
        seconds = _number(values["seconds"], "seconds", low=0.0, exclusive=True)
        if seconds > _MAX_OUTAGE_SECONDS:
            raise BadRequest(f'"seconds" must be at most {_MAX_OUTAGE_SECONDS}')
        mode = values.get("mode", "error")
        if mode not in ("error", "refuse"):
            raise BadRequest('"mode" must be "error" or "refuse"')
        self.app.outage.start(seconds, mode)
        return 200, self.app.outage.describe()

    def delete_outage(self, _: Any) -> tuple[int, Any]:
        self.app.outage.clear()
        return 200, self.app.outage.describe()

    def get_errors(self, _: Any) -> tuple[int, Any]:
        return 200, self.app.errors.describe()

    def put_errors(self, body: Any) -> tuple[int, Any]:
        """Replaces the rules: `{"seed": 7, "rules": {"*": {"rate": 0.05, "status": 500}}}`."""

        def rule(key: str, spec: dict[str, Any]) -> ErrorRule:
            status = spec.get("status", 500)
            if status not in (500, 503):
                raise BadRequest(f"{key}.status must be 500 or 503")
            return ErrorRule(rate=_fraction(spec, key), status=status)

        self.app.errors.configure(*_seeded_rules(body, {"rate", "status"}, rule))
        return self.get_errors(None)

    def get_latency(self, _: Any) -> tuple[int, Any]:
        return 200, self.app.latency.describe()

    def put_latency(self, body: Any) -> tuple[int, Any]:
        """Replaces the rules: `{"seed": 7, "rules": {"sts:*": {"seconds": 15, "rate": 1}}}`."""

        def rule(key: str, spec: dict[str, Any]) -> DelayRule:
            if "seconds" not in spec:
                raise BadRequest(f'{key}: "seconds" (the delay) is required')
            seconds = _number(spec["seconds"], f"{key}.seconds", low=0.0, exclusive=True)
            if seconds > _MAX_DELAY_SECONDS:
                raise BadRequest(f"{key}.seconds must be at most {_MAX_DELAY_SECONDS}")
            return DelayRule(seconds=seconds, rate=_fraction(spec, key))

        self.app.latency.configure(*_seeded_rules(body, {"seconds", "rate"}, rule))
        return self.get_latency(None)

    def delete_seeded(self, rules: SeededRules[Any]) -> tuple[int, Any]:
        rules.configure({}, seed=0)
        return 200, rules.describe()

    def get_organizations(self, _: Any) -> tuple[int, Any]:
        f = self.app.accounts
        return 200, {
            "create_seconds": f.settings.create_seconds,
            "failures": dict(f.settings.failures),
            "hold_seconds": dict(f.settings.hold_seconds),
            "close_quota": f.settings.close_quota,
            "suspend_seconds": f.settings.suspend_seconds,
            "create_calls": dict(f.create_calls),
            "closed": f.closed,
        }

    def put_organizations(self, body: Any) -> tuple[int, Any]:
        """Merges the given settings; `failures` and `hold_seconds` merge by e-mail (a null
        value removes one), `close_quota` null lifts the quota, `suspend_seconds` null keeps closed
        accounts PENDING_CLOSURE."""
        values = _object(
            body, allowed={"create_seconds", "failures", "hold_seconds", "close_quota", "suspend_seconds"}
        )
        settings = self.app.accounts.settings
        if "create_seconds" in values:
            settings.create_seconds = _number(values["create_seconds"], "create_seconds", low=0.0)
        for email, reason in _object(values.get("failures", {}), what="failures").items():
            if reason is None:
                settings.failures.pop(email.lower(), None)
            elif isinstance(reason, str) and reason:
                settings.failures[email.lower()] = reason
            else:
                raise BadRequest(f"failures.{email} must be a FailureReason string or null")
        for email, seconds in _object(values.get("hold_seconds", {}), what="hold_seconds").items():
            if seconds is None:
                settings.hold_seconds.pop(email.lower(), None)
            else:
                settings.hold_seconds[email.lower()] = _number(seconds, f"hold_seconds.{email}", low=0.0)
        if "close_quota" in values:
            quota = values["close_quota"]
            if quota is not None and (isinstance(quota, bool) or not isinstance(quota, int) or quota < 0):
                raise BadRequest("close_quota must be a non-negative integer or null")
            settings.close_quota = quota
        if "suspend_seconds" in values:
            seconds = values["suspend_seconds"]
            settings.suspend_seconds = None if seconds is None else _number(seconds, "suspend_seconds", low=0.0)
        return self.get_organizations(None)

    def get_sts(self, _: Any) -> tuple[int, Any]:
        return 200, {"role_propagation_seconds": self.app.sts.propagation_seconds}

    def put_sts(self, body: Any) -> tuple[int, Any]:
        values = _object(body, allowed={"role_propagation_seconds"})
        if "role_propagation_seconds" in values:
            self.app.sts.propagation_seconds = _number(
                values["role_propagation_seconds"], "role_propagation_seconds", low=0.0
            )
        return self.get_sts(None)

    # --- IAM roles in any account (what an administrator deploys by hand) --------------------

    def get_role(self, query: Any) -> tuple[int, Any]:
        account, name = _role_key(query)
        role = find_role_by_name(account, name)
        if role is None:
            return 200, {"exists": False}
        return 200, _describe_role(role)

    def put_role(self, body: Any) -> tuple[int, Any]:
        """Creates the role, or gives an existing one the new trust policy (and session limit)."""
        values = _object(body, allowed={"account", "name", "trust_policy", "max_session_duration"})
        account, name = _role_key(values)
        policy = values.get("trust_policy")
        if not isinstance(policy, dict):
            raise BadRequest('"trust_policy" must be a JSON object (a policy document)')
        document = json.dumps(policy)
        duration = values.get("max_session_duration")
        if duration is not None:
            duration = int(_number(duration, "max_session_duration", low=3600))
            if duration > 43200:
                raise BadRequest('"max_session_duration" must be at most 43200')
        role = find_role_by_name(account, name)
        if role is None:
            role = iam_backends[account][PARTITION].create_role(
                role_name=name, assume_role_policy_document=document, path="/",
                permissions_boundary=None, description="", tags=[],
                max_session_duration=str(duration or 3600),
            )
        else:
            role.assume_role_policy_document = document
            if duration is not None:
                role.max_session_duration = str(duration)
        return 200, _describe_role(role)

    def delete_role(self, query: Any) -> tuple[int, Any]:
        account, name = _role_key(query)
        role = find_role_by_name(account, name)
        if role is None:
            return 200, {"deleted": False}
        del iam_backends[account][PARTITION].roles[role.id]
        return 200, {"deleted": True}


def _role_key(values: dict[str, Any]) -> tuple[str, str]:
    account, name = values.get("account"), values.get("name")
    if not isinstance(account, str) or not ACCOUNT_ID_RE.fullmatch(account):
        raise BadRequest('"account" must be a 12-digit account id')
    if not isinstance(name, str) or not name:
        raise BadRequest('"name" (the role name) is required')
    return account, name


def _describe_role(role: Any) -> dict[str, Any]:
    policy = role.assume_role_policy_document
    for decode in (lambda p: p, urllib.parse.unquote):
        if not isinstance(policy, str):
            break
        try:
            policy = json.loads(decode(policy))
        except ValueError:
            pass
    return {
        "exists": True,
        "arn": role.arn,
        "max_session_duration": int(role.max_session_duration or 3600),
        "trust_policy": policy,
    }


def _seeded_rules(
    body: Any, allowed: set[str], rule: Callable[[str, dict[str, Any]], Any]
) -> tuple[dict[str, Any], int]:
    """`{"seed": int, "rules": {key: spec}}` read into (rules, seed), each spec by `rule`."""
    values = _object(body, allowed={"seed", "rules"})
    seed = values.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise BadRequest('"seed" must be an integer')
    rules = {}
    for key, spec in _object(values.get("rules", {}), what="rules").items():
        if not _KEY_RE.fullmatch(key):
            raise BadRequest(f'{key!r} is not "*", "service:*" or "service:Operation"')
        rules[key] = rule(key, _object(spec, allowed=allowed, what=key))
    return rules, seed


def _fraction(spec: dict[str, Any], key: str) -> float:
    rate = _number(spec.get("rate", 1.0), f"{key}.rate", low=0.0, exclusive=True)
    if rate > 1:
        raise BadRequest(f"{key}.rate is a fraction of the calls: at most 1")
    return rate


def _read_query(environ: dict[str, Any]) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))


def _read_json(environ: dict[str, Any]) -> Any:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as err:
        raise BadRequest(f"invalid JSON: {err}") from None


def _object(value: Any, allowed: set[str] | None = None, what: str = "body") -> dict[str, Any]:
    if value is None and what == "body":
        raise BadRequest("a JSON object body is required")
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    if allowed is not None:
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise BadRequest(f"{what}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    return value


def _number(value: Any, name: str, low: float, exclusive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{name} must be a number")
    if value < low or (exclusive and value == low):
        raise BadRequest(f"{name} must be {'greater than' if exclusive else 'at least'} {low:g}")
    return float(value)


def _json(status: int, payload: Any) -> Reply:
    body = json.dumps(payload).encode()
    return Reply(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body)
