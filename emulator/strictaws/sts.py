"""Strict sts:AssumeRole: moto issues credentials for any role ARN; AWS checks the role and its trust.

The request reaches moto (which issues the credentials) only when:
- the role exists in the account its ARN names,
- its trust policy allows the caller sts:AssumeRole and no statement denies it (see policy.py),
- every condition, sts:ExternalId included, holds for the supplied values,
- the role is older than the configured propagation delay (IAM is eventually consistent; 0 by default),
- DurationSeconds is within 900..43200, the role's MaxSessionDuration, and 3600 for role chaining.
AccessDenied does not say which check failed, as in AWS.
"""

from __future__ import annotations

import re
from datetime import timedelta

from collections.abc import Callable

from moto import settings as moto_settings
from moto.core.utils import utcnow
from moto.iam.models import mark_account_as_visited
from moto.sts.models import sts_backends
from moto.sts.responses import TokenResponse
from moto.utilities.utils import get_partition

from .errors import AwsError, validation
from .identity import account_of, caller_of, find_role
from .policy import ALLOW, evaluate, parse_document
from .protocol import AwsRequest, Reply, moto_result_reply

_ROLE_ARN_RE = re.compile(r"arn:aws:iam::(\d{12}):role/.+")
_EXTERNAL_ID_RE = re.compile(r"[\w+=,.@:/-]{2,1224}")
# The access keys moto itself finds in an Authorization header.
_MOTO_KEY_RE = re.compile(r"[A-Z0-9]{20}")


class StsSettings:
    """Tunables of the STS checks (reset with the rest of the strict state)."""

    def __init__(self) -> None:
        self.propagation_seconds = 0.0


def check_assume_role(req: AwsRequest, settings: StsSettings) -> None:
    """Raise the error AWS would answer, or return to let moto issue the credentials."""
    role_arn = req.param("RoleArn") or ""
    external_id = req.param("ExternalId")
    duration = _duration(req.param("DurationSeconds"))
    if external_id is not None and not _EXTERNAL_ID_RE.fullmatch(external_id):
        raise validation(
            f"1 validation error detected: Value '{external_id}' at 'externalId' failed to satisfy "
            "constraint: Member must have length between 2 and 1224 and match [\\w+=,.@:/-]*"
        )
    match = _ROLE_ARN_RE.fullmatch(role_arn)
    if not match:
        raise validation(f"{role_arn} is invalid")
    caller = caller_of(req)
    denied = AwsError(
        "AccessDenied",
        f"User: {caller.arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
        status=403,
    )
    role = find_role(match.group(1), role_arn)
    if role is None:
        raise denied
    if settings.propagation_seconds > 0:
        if utcnow() - role.create_date < timedelta(seconds=settings.propagation_seconds):
            raise denied
    document = parse_document(role.assume_role_policy_document)
    if document is None:
        raise denied
    context = {
        "sts:ExternalId": external_id,
        "sts:RoleSessionName": req.param("RoleSessionName"),
    }
    if evaluate(document, caller, "sts:AssumeRole", context) != ALLOW:
        raise denied
    if duration is not None:
        if duration > int(role.max_session_duration or 3600):
            raise validation(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
            )
        if caller.role_arn is not None and duration > 3600:
            raise validation(
                "The requested DurationSeconds exceeds the 1 hour session limit "
                "for roles assumed by role chaining."
            )


def _duration(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise validation(f"Value '{raw}' at 'durationSeconds' is not a valid integer") from None
    if value < 900:
        raise validation(
            f"1 validation error detected: Value '{value}' at 'durationSeconds' failed to satisfy "
            "constraint: Member must have value greater than or equal to 900"
        )
    if value > 43200:
        raise validation(
            f"1 validation error detected: Value '{value}' at 'durationSeconds' failed to satisfy "
            "constraint: Member must have value less than or equal to 43200"
        )
    return value


def _moto_would_answer_plainly(req: AwsRequest) -> bool:
    """Whether moto would read this request as we do: query protocol, a key it finds in the
    Authorization header, and no IAM authorization of requests configured (INITIAL_NO_AUTH_ACTION_COUNT)."""
    return (
        req.protocol == "query"
        and _MOTO_KEY_RE.fullmatch(req.access_key) is not None
        and moto_settings.INITIAL_NO_AUTH_ACTION_COUNT == float("inf")
    )


def get_caller_identity(req: AwsRequest, forward: Callable[[], Reply]) -> Reply:
    """moto's GetCallerIdentity, answered without its web framework (half of every verification
    is this call): the same backend lookup, the same last-used mark on the key, the same fields."""
    if not _moto_would_answer_plainly(req):
        return forward()
    account = account_of(req)
    backend = sts_backends[account][get_partition(req.region)]
    user_id, arn, account_id = backend.get_caller_identity(req.access_key, req.region)
    mark_account_as_visited(account_id=account, access_key=req.access_key, service="sts", region=req.region)
    return moto_result_reply(req, {"UserId": user_id, "Account": account_id, "Arn": arn}, TokenResponse)


def assume_role(req: AwsRequest, forward: Callable[[], Reply]) -> Reply:
    """moto's AssumeRole, once `check_assume_role` has admitted it, without its web framework: the
    same backend call (new temporary key and session in the role's account), the same last-used
    mark on the caller's key, the same result. Anything moto would refuse goes to moto."""
    session = req.param("RoleSessionName")
    if not _moto_would_answer_plainly(req) or session is None or len(session) > 64:
        return forward()
    account = account_of(req)
    mark_account_as_visited(account_id=account, access_key=req.access_key, service="sts", region=req.region)
    backend = sts_backends[account][get_partition(req.region)]
    role = backend.assume_role(
        region_name=req.region,
        role_session_name=session,
        role_arn=req.param("RoleArn"),
        policy=req.param("Policy"),
        duration=int(req.param("DurationSeconds") or 3600),
        external_id=req.param("ExternalId"),
    )
    result = {
        "Credentials": role,
        "AssumedRoleUser": {"AssumedRoleId": role.user_id, "Arn": role.arn},
        "PackedPolicySize": 6,
    }
    return moto_result_reply(req, result, TokenResponse)
