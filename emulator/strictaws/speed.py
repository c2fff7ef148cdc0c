"""Indexes over moto's linear scans, so that one call costs the same at 10,000 accounts as at 10.

moto finds things by walking lists: the account behind an access key by asking every account's
IAM backend (on every request, twice for STS), an organization's account by id by walking all
accounts (DescribeAccount, tags, policy attachment on every CreateAccount), an assumed-role session
by walking the account's sessions, and each `backends[account]` access copies the list of all
accounts. At 5,000 accounts that made every STS call cost tens of milliseconds. Every page of
ListAccountsForParent filtered and sorted all accounts of the organization, then walked them to
the token's account; the accounts are also kept by parent, in moto's order for that listing.

Each index here answers exactly what the scan answered, and stays right because it is kept by the
containers it indexes (a dict or list subclass installed in place of moto's own container, which
records every insertion and removal) rather than by guessing when moto changes them; a container
replaced wholesale (moto's reset re-runs `__init__`) is wrapped again. Lookups also verify their
hit against the live container, so an index can never answer from a backend that was reset.
`install()` is idempotent and runs when the app is imported.
"""

from __future__ import annotations

import bisect
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
from moto.core.exceptions import InvalidToken
from moto.iam.models import IAMBackend, iam_backends
from moto.organizations import utils as org_utils
from moto.organizations.exceptions import AccountNotFoundException
from moto.organizations.models import FakeAccount, OrganizationsBackend
from moto.sts.models import STSBackend
from moto.utilities.paginator import Paginator
from moto.utilities.utils import PARTITION_NAMES

_installed = False
# moto's ListAccountsForParent, as it was before install() (what the index must answer).
moto_list_accounts_for_parent: Any = None


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


class _Unindexable(Exception):
    pass


class _Parent:
    """The accounts under one parent in the order moto lists them (ListAccountsForParent sorts the
    organization's accounts under the parent by `create_time`, stably: ties keep the order of the
    account list). Each is kept under the key (create_time, place in the account list)."""

    __slots__ = ("keys", "items", "ids")

    def __init__(self) -> None:
        self.keys: list[tuple[Any, int]] = []
        self.items: list[Any] = []
        # str(account id) -> the keys of the accounts with that id here (normally one).
        self.ids: dict[str, list[tuple[Any, int]]] = {}

    def add(self, key: tuple[Any, int], account: Any) -> None:
        i = bisect.bisect_left(self.keys, key)
        self.keys.insert(i, key)
        self.items.insert(i, account)
        self.ids.setdefault(str(account.id), []).append(key)

    def drop(self, key: tuple[Any, int], account: Any) -> None:
        i = bisect.bisect_left(self.keys, key)
        if i >= len(self.keys) or self.keys[i] != key or self.items[i] is not account:
            raise _Unindexable
        del self.keys[i]
        del self.items[i]
        same = self.ids[str(account.id)]
        same.remove(key)
        if not same:
            del self.ids[str(account.id)]

    def start_of(self, account_id: str) -> int | None:
        """Where the first account with this id is (the paginator's token names the next one)."""
        keys = self.ids.get(account_id)
        if not keys:
            return None
        return bisect.bisect_left(self.keys, min(keys))


class _AccountList(_IndexedList):
    """An organization's accounts, indexed by id, counting e-mail addresses (case-folded) and, once
    ListAccountsForParent asked, by parent in moto's order for it.

    The index by parent follows appends and removals here, and moves: an account tells the lists
    that placed it when its `parent_id` or `create_time` changes (see `_watched`). Any other change
    to the list drops it, to be rebuilt on the next listing.
    """

    def __init__(self, items: Iterable[Any] = ()):
        super().__init__(items)
        self._emails: Counter[str] | None = None
        self._by_parent: dict[Any, _Parent] | None = None
        # id(account) -> (parent, key, account) as placed in _by_parent.
        self._placed: dict[int, tuple[Any, tuple[Any, int], Any]] = {}
        self._next_seq = 0

    def key(self, item: Any) -> Any:
        return item.id

    def __reduce_ex__(self, protocol: Any) -> Any:
        # A copy is a new list of (copies of) the accounts, indexed afresh: the indexes are keyed
        # by the identity of these accounts.
        return (type(self), (list(self),))

    def _stale(self) -> None:
        super()._stale()
        self._emails = None
        self._drop_by_parent()

    def _drop_by_parent(self) -> None:
        self._by_parent = None
        self._placed = {}

    def append(self, item: Any) -> None:
        super().append(item)
        if self._emails is not None:
            self._emails[str(item.email).lower()] += 1
        if self._by_parent is not None:
            seq = self._next_seq
            self._next_seq += 1
            try:
                self._place(item, seq)
            except (_Unindexable, TypeError, AttributeError):
                self._drop_by_parent()

    def remove(self, item: Any) -> None:
        i = list.index(self, item)  # the one list.remove removes (ValueError as it raises)
        removed = list.__getitem__(self, i)
        list.__delitem__(self, i)
        _IndexedList._stale(self)
        self._emails = None
        if self._by_parent is not None:
            try:
                self._unplace(removed)
            except (_Unindexable, KeyError, ValueError, TypeError):
                self._drop_by_parent()
        _unwatch(removed, self)

    def email_in_use(self, email: str) -> bool:
        if self._emails is None:
            self._emails = Counter(str(a.email).lower() for a in self)
        return self._emails.get(email.lower(), 0) > 0

    def _place(self, account: Any, seq: int) -> None:
        assert self._by_parent is not None
        if id(account) in self._placed:  # the same account twice: not indexed
            raise _Unindexable
        parent = account.parent_id
        key = (account.create_time, seq)
        bucket = self._by_parent.get(parent)
        if bucket is None:
            bucket = self._by_parent[parent] = _Parent()
        bucket.add(key, account)
        self._placed[id(account)] = (parent, key, account)
        _watch(account, self)

    def _unplace(self, account: Any) -> int:
        """Takes the account out of the index by parent; returns its place in the list order."""
        assert self._by_parent is not None
        placed = self._placed.get(id(account))
        if placed is None or placed[2] is not account:
            raise _Unindexable
        del self._placed[id(account)]
        parent, key, _ = placed
        bucket = self._by_parent[parent]
        bucket.drop(key, account)
        if not bucket.items:
            del self._by_parent[parent]
        return key[1]

    def _changed(self, account: Any) -> None:
        """An account's parent_id or create_time was set."""
        placed = self._placed.get(id(account))
        if self._by_parent is None or placed is None or placed[2] is not account:
            return
        try:
            self._place(account, self._unplace(account))
        except (_Unindexable, TypeError, AttributeError, KeyError, ValueError):
            self._drop_by_parent()

    def by_parent(self) -> dict[Any, _Parent] | None:
        """The index by parent, built now if need be; None if the list cannot be indexed (an account
        in it twice, create times that do not compare), for the caller to scan as moto does."""
        if self._by_parent is None:
            self._by_parent = {}
            try:
                for seq, account in enumerate(self):
                    self._place(account, seq)
            except (_Unindexable, TypeError, AttributeError):
                self._drop_by_parent()
                return None
            self._next_seq = len(self)
        return self._by_parent


def _watch(account: Any, owner: _AccountList) -> None:
    state = account.__dict__
    refs = state.get("_strict_lists", ())
    if not any(r() is owner for r in refs):
        state["_strict_lists"] = tuple(r for r in refs if r() is not None) + (weakref.ref(owner),)


def _unwatch(account: Any, owner: _AccountList) -> None:
    state = getattr(account, "__dict__", None)
    if state is not None and "_strict_lists" in state:
        state["_strict_lists"] = tuple(r for r in state["_strict_lists"] if r() is not None and r() is not owner)


def _watched(name: str) -> property:
    """An attribute of FakeAccount that, when set, tells the account lists that placed the account
    by it (moto's MoveAccount sets `parent_id`)."""
    slot = f"_strict_{name}"

    def get(self: Any) -> Any:
        state = self.__dict__
        if slot in state:
            return state[slot]
        if name in state:  # set before install()
            return state[name]
        raise AttributeError(name)

    def set_(self: Any, value: Any) -> None:
        state = self.__dict__
        state.pop(name, None)
        state[slot] = value
        for ref in state.get("_strict_lists", ()):
            owner = ref()
            if owner is not None:
                owner._changed(self)

    return property(get, set_)


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


def _list_accounts_for_parent(moto_list: Any) -> Any:
    config = org_utils.PAGINATION_MODEL["list_accounts_for_parent"]

    def list_accounts_for_parent(self: Any, *args: Any, **kwargs: Any) -> tuple[list[Any], str | None]:
        """moto's (its paginator over the accounts under the parent, sorted by create_time) from
        the index by parent: one page costs O(page + log n), not a scan and a sort of every account
        of the organization plus a scan to the token's account. Anything but moto's own way of
        calling it, or a list that cannot be indexed, is answered by moto."""
        accounts = self.accounts
        limit = kwargs.get("max_results") or config["limit_default"]
        if (
            args
            or "parent_id" not in kwargs
            or not kwargs.keys() <= {"max_results", "next_token", "parent_id"}
            or not isinstance(accounts, _AccountList)
            or config.get("unique_attribute") != "id"
            or type(limit) is not int
            or limit <= 0
        ):
            return moto_list(self, *args, **kwargs)
        # The same paginator moto builds: a token that does not decode, or was issued for another
        # parent, fails here as it does in moto (before the parent is looked at).
        paginator = Paginator(
            max_results=kwargs.get("max_results"),
            max_results_default=config["limit_default"],
            starting_token=kwargs.get("next_token"),
            unique_attribute=config["unique_attribute"],
            param_values_to_check={"parent_id": copy.deepcopy(kwargs["parent_id"])},
            fail_on_invalid_token=config.get("fail_on_invalid_token", True),
        )
        parent_id = self.validate_parent_id(kwargs["parent_id"])
        index = accounts.by_parent()
        if index is None:
            return moto_list(self, *args, **kwargs)
        bucket = index.get(parent_id) or _Parent()
        start, wanted = 0, None
        if paginator._starting_token:
            unique = (paginator._parsed_token or {}).get("uniqueAttributes")
            if not isinstance(unique, str):
                return moto_list(self, *args, **kwargs)
            wanted = unique.split("|")[0]
            found = bucket.start_of(wanted)
            if found is None:
                raise InvalidToken("Resource not found!")
            start = found
        end = min(start + limit, len(bucket.items))
        page = bucket.items[start:end]
        # Checked against the accounts themselves: an index that went wrong answers nothing.
        if any(a.parent_id != parent_id for a in page) or (wanted is not None and str(page[0].id) != wanted):
            accounts._drop_by_parent()
            return moto_list(self, *args, **kwargs)
        token = paginator._build_next_token(bucket.items[end]) if page and end < len(bucket.items) else None
        return page, token

    return list_accounts_for_parent


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
    global moto_list_accounts_for_parent
    moto_list_accounts_for_parent = OrganizationsBackend.list_accounts_for_parent
    OrganizationsBackend.list_accounts_for_parent = _list_accounts_for_parent(  # type: ignore[method-assign]
        moto_list_accounts_for_parent
    )
    for name in ("parent_id", "create_time"):
        setattr(FakeAccount, name, _watched(name))


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
