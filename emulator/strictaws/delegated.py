"""Organizations reads from member accounts, as AWS answers them: the management account and
members that are a delegated administrator for some service may call them (the answer is the
organization's); any other member gets AccessDeniedException. moto keeps an organization in its
management account's backend only, so a delegated administrator's reads are answered from there
(a StackSets administrator resolves OUs and checks its own registration this way).
"""

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


def _paged(items_key: str, describe: Callable[[Any], dict[str, Any]], method: str) -> Callable[[Any, dict[str, Any]], Any]:
    def read(org: Any, p: dict[str, Any]) -> dict[str, Any]:
        items, token = getattr(org, method)(
            max_results=p.get("MaxResults"), next_token=p.get("NextToken"), parent_id=p.get("ParentId")
        )
        result: dict[str, Any] = {items_key: [describe(i) for i in items]}
        if token:
            result["NextToken"] = token
        return result

    return read


_READS: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    "DescribeOrganization": lambda org, p: org.describe_organization(),
    "ListRoots": lambda org, p: org.list_roots(),
    "ListChildren": lambda org, p: org.list_children(**p),
    "ListParents": lambda org, p: org.list_parents(**p),
    "DescribeAccount": lambda org, p: org.describe_account(**p),
    "ListDelegatedAdministrators": lambda org, p: org.list_delegated_administrators(**p),
    "ListAccountsForParent": _paged("Accounts", lambda a: a.describe(), "list_accounts_for_parent"),
    "ListOrganizationalUnitsForParent": _paged(
        "OrganizationalUnits",
        lambda ou: {"Id": ou.id, "Arn": ou.arn, "Name": ou.name},
        "list_organizational_units_for_parent",
    ),
}


def _read(action: str) -> Callable[[AwsRequest, Forward], Reply]:
    def handle(req: AwsRequest, forward: Forward) -> Reply:
        caller = account_of(req)
        org = org_backend_of(caller)
        if org is None or org.org.master_account_id == caller:
            return forward()
        if not any(admin.account.id == caller for admin in org.admins):
            raise AwsError("AccessDeniedException", "You don't have permissions to access this resource.", 400)
        return _json_reply(_READS[action](org, req.params()))

    return handle


def _json_reply(payload: dict[str, Any]) -> Reply:
    body = json.dumps(payload, default=str).encode()
    headers = [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("x-amzn-RequestId", request_id()),
        ("Content-Length", str(len(body))),
    ]
    return Reply(200, headers, body)


def handlers() -> dict[str, Callable[[AwsRequest, Forward], Reply]]:
    return {f"organizations:{action}": _read(action) for action in _READS}
