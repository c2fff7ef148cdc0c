"""Who may list an organization's delegated administrators: the management account, or a member
that is a delegated administrator for some service; any other member gets AccessDeniedException,
as in AWS (so an unregistered StackSets administrator cannot even look itself up)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from moto.organizations.models import FakeDelegatedAdministrator

from .errors import AwsError
from .identity import account_of
from .orgs import STACKSETS_PRINCIPAL, org_backend_of
from .protocol import AwsRequest, Reply, request_id

Forward = Callable[[], Reply]

# moto does not know StackSets among the services that take a delegated administrator.
if STACKSETS_PRINCIPAL not in FakeDelegatedAdministrator.SUPPORTED_SERVICES:
    FakeDelegatedAdministrator.SUPPORTED_SERVICES.append(STACKSETS_PRINCIPAL)


def list_delegated_administrators(req: AwsRequest, forward: Forward) -> Reply:
    caller = account_of(req)
    org = org_backend_of(caller)
    if org is not None and org.org.master_account_id != caller:
        if not any(admin.account.id == caller for admin in org.admins):
            raise AwsError(
                "AccessDeniedException",
                "You don't have permissions to access this resource.",
                400,
            )
    if org is None or org.org.master_account_id == caller:
        return forward()
    # moto keeps the organization in the management account's backend: answer from there.
    listed = org.list_delegated_administrators(**req.params())
    return _json_reply(listed)


def _json_reply(payload: dict[str, Any]) -> Reply:
    body = json.dumps(payload, default=str).encode()
    headers = [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("x-amzn-RequestId", request_id()),
        ("Content-Length", str(len(body))),
    ]
    return Reply(200, headers, body)


def handlers() -> dict[str, Callable[[AwsRequest, Forward], Reply]]:
    return {"organizations:ListDelegatedAdministrators": list_delegated_administrators}
