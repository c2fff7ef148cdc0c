"""Read-only helpers over moto's Organizations backend: membership, OU trees, trusted access."""

from __future__ import annotations

from typing import Any

from moto.organizations.models import organizations_backends

from .speed import account_by_id

PARTITION = "aws"
STACKSETS_PRINCIPAL = "member.org.stacksets.cloudformation.amazonaws.com"


def org_backend_of(account: str) -> Any | None:
    """The Organizations backend of the organization `account` belongs to (None outside one).

    moto keeps an organization in its management account's backend and records members in
    `organizations_backends.master_accounts`.
    """
    if account in organizations_backends:
        backend = organizations_backends[account][PARTITION]
        if backend.org is not None:
            return backend
    owner = organizations_backends.master_accounts.get(account)
    if owner is None:
        return None
    backend = organizations_backends[owner[0]][owner[1]]
    return backend if backend.org is not None else None


def trusted_access_enabled(org: Any) -> bool:
    return any(s.get("ServicePrincipal") == STACKSETS_PRINCIPAL for s in org.services)


def is_stacksets_delegated_admin(org: Any, account: str) -> bool:
    return any(admin.account.id == account and STACKSETS_PRINCIPAL in admin.services for admin in org.admins)


def parent_of(org: Any, account: str) -> str | None:
    """The parent (root or OU) of one of the organization's accounts, None if it has none."""
    member = account_by_id(org, account)
    return member.parent_id if member is not None else None


class OrgTree:
    """A snapshot of one organization's OU tree, for resolving deployment targets cheaply."""

    def __init__(self, org: Any):
        self.management = org.org.master_account_id
        self.root = org.org.root_id
        self._parent = {ou.id: ou.parent_id for ou in org.ou}
        self._org = org
        self._accounts: list[Any] | None = None

    @property
    def accounts(self) -> list[Any]:
        # Taken on first use only: most callers need the OUs, and copying every account costs O(n).
        if self._accounts is None:
            self._accounts = list(self._org.accounts)
        return self._accounts

    def parent_of(self, account: str) -> str | None:
        return parent_of(self._org, account)

    def ancestry(self, node: str | None) -> list[str]:
        """`node` and every OU above it, up to and including the root."""
        chain = []
        while node is not None and node not in chain:
            chain.append(node)
            node = self._parent.get(node)
        return chain

    def deployable(self, account: Any) -> bool:
        """Service-managed StackSets skip the management account and closed accounts."""
        return account.id != self.management and account.status == "ACTIVE"

    def members_under(self, ou_ids: list[str]) -> list[tuple[str, str]]:
        """(account, targeted OU) for deployable accounts anywhere below the given OUs, in order."""
        found: dict[str, str] = {}
        for account in self.accounts:
            if not self.deployable(account):
                continue
            chain = self.ancestry(account.parent_id)
            for ou in ou_ids:
                if ou in chain:
                    found.setdefault(account.id, ou)
                    break
        return list(found.items())
