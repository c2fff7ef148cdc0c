"""Indexes over moto's linear scans, so that one call costs the same at 10,000 accounts as at 10.

moto finds things by walking lists: the account behind an access key by asking every account's
IAM backend (on every request, twice for STS), an organization's account by id by walking all
accounts (DescribeAccount, tags, policy attachment on every CreateAccount), an assumed-role session
by walking the account's sessions, and each `backends[account]` access copies the list of all
accounts. At 5,000 accounts that made every STS call cost tens of milliseconds.

Each index here answers exactly what the scan answered, and stays right because it is kept by the
containers it indexes (a dict or list subclass installed in place of moto's own container, which
records every insertion and removal) rather than by guessing when moto changes them; a container
replaced wholesale (moto's reset re-runs `__init__`) is wrapped again. Lookups also verify their
hit against the live container, so an index can never answer from a backend that was reset.
`install()` is idempotent and runs when the app is imported.
"""

from __future__ import annotations

import copy
import re
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterable
from typing import Any

import moto.backends
import moto.iam.models as iam_models
from moto.cloudformation.models import Stack
from moto.core import base_backend
from moto.core.base_backend import BackendDict
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iam.models import IAMBackend, iam_backends
from moto.organizations import utils as org_utils
from moto.organizations.exceptions import AccountNotFoundException
from moto.organizations.models import OrganizationsBackend
from moto.sts.models import STSBackend
from moto.utilities.utils import PARTITION_NAMES

_installed = False


# --- access key -> account ---------------------------------------------------------------------

# access key id -> the IAM backends' key dicts holding it (normally exactly one), weakly: a backend
# dropped by a reset must not be kept alive by the index.
_KEY_OWNERS: dict[str, list[weakref.ref[_KeyDict]]] = {}


class _KeyDict(dict):  # type: ignore[type-arg]
    """An IAM backend's `access_keys`, registering every key it holds in `_KEY_OWNERS`."""

    def __init__(self, backend: Any, items: Iterable[tuple[str, Any]] = ()):
        super().__init__()
        self.backend = backend
        for key, value in items:
            self[key] = value

    def _add(self, key: str) -> None:
        owners = _KEY_OWNERS.setdefault(key, [])
        if not any(o() is self for o in owners):
            owners.append(weakref.ref(self))

    def _drop(self, key: str) -> None:
        owners = _KEY_OWNERS.get(key)
        if owners is not None:
            owners[:] = [o for o in owners if o() is not self]
            if not owners:
                del _KEY_OWNERS[key]

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._add(key)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._drop(key)

    def pop(self, key: str, *default: Any) -> Any:
        present = key in self
        value = super().pop(key, *default)
        if present:
            self._drop(key)
        return value

    def popitem(self) -> tuple[str, Any]:
        key, value = super().popitem()
        self._drop(key)
        return key, value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return super().__getitem__(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        for key in list(self):
            self._drop(key)
        super().clear()

    def live(self) -> bool:
        """Whether this is still the key dict of the backend moto serves for its account."""
        backend = self.backend
        regional = dict.get(iam_backends, backend.account_id)
        if regional is None:
            return False
        # moto asks the backends of the partitions only.
        return backend.access_keys is self and any(dict.get(regional, p) is backend for p in PARTITION_NAMES)


def _wrap_access_keys(backend: Any) -> None:
    keys = backend.__dict__.get("access_keys")
    if keys is not None and not isinstance(keys, _KeyDict):
        backend.access_keys = _KeyDict(backend, keys.items())


def get_account_id_from(access_key: str) -> str:
    """moto's `get_account_id_from` (the account whose IAM holds this key, else the default
    account) without asking every account."""
    for ref in _KEY_OWNERS.get(access_key, ()):
        owner = ref()
        if owner is not None and access_key in owner and owner.live():
            return owner.backend.account_id
    return DEFAULT_ACCOUNT_ID


def forget_dead_keys() -> None:
    """Drop the index entries of backends a reset replaced (called on every reset)."""
    for key, owners in list(_KEY_OWNERS.items()):
        owners[:] = [o for o in owners if (d := o()) is not None and key in d and d.live()]
        if not owners:
            del _KEY_OWNERS[key]


# --- assumed-role sessions ---------------------------------------------------------------------


class _IndexedList(list):  # type: ignore[type-arg]
    """A list that keeps a dict from `key(item)` to the first such item.

    Appends update the index in place; any other change marks it stale, to be rebuilt on the next
    lookup. Items' keys must not change while they are in the list.
    """

    def __init__(self, items: Iterable[Any] = ()):
        super().__init__(items)
        self._index: dict[Any, Any] | None = None

    def key(self, item: Any) -> Any:
        raise NotImplementedError

    def _stale(self) -> None:
        self._index = None

    def _built(self) -> dict[Any, Any]:
        if self._index is None:
            index: dict[Any, Any] = {}
            for item in self:
                index.setdefault(self.key(item), item)
            self._index = index
        return self._index

    def find(self, key: Any) -> Any | None:
        return self._built().get(key)

    def append(self, item: Any) -> None:
        super().append(item)
        if self._index is not None:
            self._index.setdefault(self.key(item), item)


def _stale_after(name: str) -> Any:
    original = getattr(list, name)

    def method(self: _IndexedList, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        self._stale()
        return result

    method.__name__ = name
    return method


for _name in (
    "extend", "insert", "remove", "pop", "clear", "sort", "reverse",
    "__setitem__", "__delitem__", "__iadd__", "__imul__",
):
    setattr(_IndexedList, _name, _stale_after(_name))


class _SessionList(_IndexedList):
    def key(self, item: Any) -> Any:
        return item.access_key_id


def _get_assumed_role_from_access_key(self: Any, access_key_id: str) -> Any | None:
    sessions = self.assumed_roles
    if not isinstance(sessions, _SessionList):
        sessions = self.assumed_roles = _SessionList(sessions)
    return sessions.find(access_key_id)


# --- Organizations accounts --------------------------------------------------------------------


class _AccountList(_IndexedList):
    """An organization's accounts, indexed by id and counting e-mail addresses (case-folded)."""

    def __init__(self, items: Iterable[Any] = ()):
        super().__init__(items)
        self._emails: Counter[str] | None = None

    def key(self, item: Any) -> Any:
        return item.id

    def _stale(self) -> None:
        super()._stale()
        self._emails = None

    def append(self, item: Any) -> None:
        super().append(item)
        if self._emails is not None:
            self._emails[str(item.email).lower()] += 1

    def email_in_use(self, email: str) -> bool:
        if self._emails is None:
            self._emails = Counter(str(a.email).lower() for a in self)
        return self._emails.get(email.lower(), 0) > 0


def _accounts_get(self: Any) -> Any:
    state = self.__dict__
    if "_strict_accounts" not in state:  # a backend made before install()
        state["_strict_accounts"] = _AccountList(state.pop("accounts", []))
    return state["_strict_accounts"]


def _accounts_set(self: Any, value: Any) -> None:
    self.__dict__["_strict_accounts"] = value if isinstance(value, _AccountList) else _AccountList(value)


def account_by_id(org: Any, account_id: str) -> Any | None:
    """The organization's account with this id, or None (moto's first match)."""
    accounts = org.accounts
    if isinstance(accounts, _AccountList):
        return accounts.find(account_id)
    return next((a for a in accounts if a.id == account_id), None)


def email_in_use(org: Any, email: str) -> bool:
    accounts = org.accounts
    if isinstance(accounts, _AccountList):
        return accounts.email_in_use(email)
    return any(str(a.email).lower() == email.lower() for a in accounts)


def _get_account_by_id(self: Any, account_id: str) -> Any:
    account = account_by_id(self, account_id)
    if account is None:
        raise AccountNotFoundException
    return account


def _is_account_id(target: str) -> bool:
    """moto's attach_policy tests roots and OUs first, then accounts (prefix matches)."""
    if re.compile(org_utils.ROOT_ID_REGEX).match(target) or re.compile(org_utils.OU_ID_REGEX).match(target):
        return False
    return bool(re.compile(org_utils.ACCOUNT_ID_REGEX).match(target))


def _wrap_org_methods() -> None:
    attach = OrganizationsBackend.attach_policy
    for_tagging = OrganizationsBackend._get_resource_for_tagging

    def attach_policy(self: Any, **kwargs: Any) -> None:
        target = kwargs["TargetId"]
        if not _is_account_id(target):
            return attach(self, **kwargs)
        policy = self.get_policy_by_id(kwargs["PolicyId"])
        account = account_by_id(self, target)
        if account is None:
            raise AccountNotFoundException
        if policy not in account.attached_policies:
            account.attached_policies.append(policy)
            policy.attachments.append(account)
        return None

    def get_resource_for_tagging(self: Any, resource_id: str) -> Any:
        if org_utils.fullmatch(re.compile(org_utils.ACCOUNT_ID_REGEX), resource_id) and not (
            org_utils.fullmatch(re.compile(org_utils.OU_ID_REGEX), resource_id)
            or org_utils.fullmatch(org_utils.ROOT_ID_REGEX, resource_id)
        ):
            account = account_by_id(self, resource_id)
            if account is not None:
                return account
        return for_tagging(self, resource_id)

    OrganizationsBackend.attach_policy = attach_policy  # type: ignore[method-assign]
    OrganizationsBackend._get_resource_for_tagging = get_resource_for_tagging  # type: ignore[method-assign]
    OrganizationsBackend.get_account_by_id = _get_account_by_id  # type: ignore[method-assign]


# --- backends by account -----------------------------------------------------------------------


def _wrap_backend_dict() -> None:
    def create_account_specific_backend(self: Any, account_id: str) -> None:
        """moto's, with a dict lookup where moto copies the list of every account (on every
        `backends[account]`) to look for this one."""
        if dict.__contains__(self, account_id) and any(b is self for b in BackendDict._instances):
            return
        with base_backend.backend_lock:
            if not dict.__contains__(self, account_id):
                self[account_id] = base_backend.AccountSpecificBackend(
                    service_name=self.service_name,
                    account_id=account_id,
                    backend=self.backend,
                    use_boto3_regions=self._use_boto3_regions,
                    additional_regions=self._additional_regions,
                )
            if self not in BackendDict._instances:
                BackendDict._instances.append(self)

    BackendDict._create_account_specific_backend = create_account_specific_backend  # type: ignore[method-assign]


# --- templates ---------------------------------------------------------------------------------

_TEMPLATES: OrderedDict[str, Any] = OrderedDict()
_TEMPLATES_KEPT = 32


def _wrap_template_parsing() -> None:
    parse = Stack.parse_template

    def parse_template(template: str) -> dict[str, Any]:
        """moto parses every stack's template with the pure-Python YAML parser (a JSON template
        too); a StackSet deploys one template to thousands of stacks. Each stack gets its own copy."""
        if not isinstance(template, str):
            return parse(template)
        parsed = _TEMPLATES.get(template)
        if parsed is None:
            parsed = parse(template)
            _TEMPLATES[template] = parsed
            while len(_TEMPLATES) > _TEMPLATES_KEPT:
                _TEMPLATES.popitem(last=False)
        else:
            _TEMPLATES.move_to_end(template)
        return copy.deepcopy(parsed)

    Stack.parse_template = staticmethod(parse_template)  # type: ignore[method-assign]


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True

    # moto lists its own package directory (one stat per service) on every request.
    modules = tuple(moto.backends.list_of_moto_modules())
    moto.backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]

    iam_init = IAMBackend.__init__

    def iam_backend_init(self: Any, *args: Any, **kwargs: Any) -> None:
        iam_init(self, *args, **kwargs)
        _wrap_access_keys(self)

    IAMBackend.__init__ = iam_backend_init  # type: ignore[method-assign]
    for _, _, backend in iam_backends.iter_backends():
        _wrap_access_keys(backend)
    iam_models.get_account_id_from = get_account_id_from

    STSBackend.get_assumed_role_from_access_key = _get_assumed_role_from_access_key  # type: ignore[method-assign]

    OrganizationsBackend.accounts = property(_accounts_get, _accounts_set)  # type: ignore[attr-defined]
    _wrap_org_methods()
    _wrap_backend_dict()
    _wrap_template_parsing()
