"""Organizations calls that move accounts, watched so StackSet automatic deployment can follow them."""

from __future__ import annotations

import json
from collections.abc import Callable

from .identity import account_of
from .orgs import org_backend_of, parent_of
from .protocol import AwsRequest, Reply
from .stacksets.engine import StackSetEngine

Forward = Callable[[], Reply]


class MembershipWatch:
    def __init__(self, engine: StackSetEngine):
        self.engine = engine

    def handlers(self) -> dict[str, Callable[[AwsRequest, Forward], Reply]]:
        return {
            "organizations:CreateAccount": self.create_account,
            "organizations:MoveAccount": self.move_account,
            "organizations:RemoveAccountFromOrganization": self.remove_account,
        }

    def create_account(self, req: AwsRequest, forward: Forward) -> Reply:
        reply = forward()
        org = org_backend_of(account_of(req))
        if reply.status == 200 and org is not None:
            status = json.loads(reply.body).get("CreateAccountStatus", {})
            account = status.get("AccountId")
            if account and status.get("State") == "SUCCEEDED":
                self.engine.on_membership_change(org, account, None, parent_of(org, account))
        return reply

    def move_account(self, req: AwsRequest, forward: Forward) -> Reply:
        return self._watch(req, forward, gone=False)

    def remove_account(self, req: AwsRequest, forward: Forward) -> Reply:
        return self._watch(req, forward, gone=True)

    def _watch(self, req: AwsRequest, forward: Forward, gone: bool) -> Reply:
        account = str(req.params().get("AccountId", ""))
        org = org_backend_of(account_of(req))
        before = parent_of(org, account) if org is not None else None
        reply = forward()
        if reply.status == 200 and org is not None:
            after = None if gone else parent_of(org, account)
            if after != before:
                self.engine.on_membership_change(org, account, before, after)
        return reply
