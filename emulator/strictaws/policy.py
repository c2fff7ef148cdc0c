"""Evaluation of a role's trust policy for sts:AssumeRole, a faithful subset of IAM's rules.

Modelled: Effect Allow/Deny (an explicit Deny wins), Principal / NotPrincipal with "*" or an `AWS`
entry (account id, account root ARN, IAM user or role ARN, assumed-role session ARN), Action /
NotAction with wildcards, and Condition blocks (all operators and keys must hold; several values
of one key are alternatives). Condition operators: String(Not)Equals, String(Not)EqualsIgnoreCase,
String(Not)Like, Arn(Not)Equals, Arn(Not)Like, Null, each with the IfExists suffix and the
ForAnyValue/ForAllValues qualifiers. Condition keys: sts:ExternalId, sts:RoleSessionName,
aws:PrincipalArn, aws:PrincipalAccount. A statement with any other key or operator never applies
(so it cannot allow, and cannot deny either).

Not modelled: the caller's own identity policies, SCPs, permission boundaries, session policies,
Service/Federated principals (they never match an IAM caller), principal IDs of deleted roles.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from .identity import ACCOUNT_ID_RE, Caller

ALLOW = "Allow"
DENY = "Deny"
NO_MATCH = "NoMatch"

_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


def parse_document(document: str | dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(document, dict):
        return document
    text = document.strip()
    if text.startswith("%"):
        text = unquote(text)
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def evaluate(document: dict[str, Any], caller: Caller, action: str, context: dict[str, str | None]) -> str:
    """ALLOW, DENY (explicit) or NO_MATCH (implicit deny) for `caller` performing `action`."""
    keys = {k.lower(): v for k, v in context.items()}
    keys.setdefault("aws:principalarn", caller.principal_arn)
    keys.setdefault("aws:principalaccount", caller.account)
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    decision = NO_MATCH
    for st in statements:
        if not isinstance(st, dict) or not _applies(st, caller, action, keys):
            continue
        if st.get("Effect") == DENY:
            return DENY
        if st.get("Effect") == ALLOW:
            decision = ALLOW
    return decision


def _applies(st: dict[str, Any], caller: Caller, action: str, keys: dict[str, str | None]) -> bool:
    if "Principal" in st:
        if not principal_matches(st["Principal"], caller):
            return False
    elif "NotPrincipal" in st:
        if principal_matches(st["NotPrincipal"], caller):
            return False
    else:
        return False
    if "Action" in st:
        if not any(_glob(a, action, fold=True) for a in _listify(st["Action"])):
            return False
    elif "NotAction" in st:
        if any(_glob(a, action, fold=True) for a in _listify(st["NotAction"])):
            return False
    else:
        return False
    return conditions_hold(st.get("Condition") or {}, keys)


def principal_matches(principal: Any, caller: Caller) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict) or "AWS" not in principal:
        return False
    for p in _listify(principal["AWS"]):
        if p == "*":
            return True
        if ACCOUNT_ID_RE.fullmatch(p):
            if p == caller.account:
                return True
        elif p == f"arn:aws:iam::{caller.account}:root":
            return True
        elif p == caller.arn or (caller.role_arn is not None and p == caller.role_arn):
            return True
    return False


def conditions_hold(conditions: dict[str, Any], keys: dict[str, str | None]) -> bool:
    for raw_op, block in conditions.items():
        if not isinstance(block, dict):
            return False
        qualifier, _, op = raw_op.rpartition(":")
        if qualifier not in ("", "ForAnyValue", "ForAllValues"):
            return False
        if_exists = op.endswith("IfExists")
        if if_exists:
            op = op[: -len("IfExists")]
        for key, expected in block.items():
            if key.lower() not in keys:
                return False  # a key this subset does not model
            actual = keys[key.lower()]
            wanted = [_as_text(v) for v in _listify(expected)]
            if op == "Null":
                if (actual is None) != (wanted[:1] == ["true"]):
                    return False
                continue
            if actual is None:
                if not (if_exists or op in _NEGATED or qualifier == "ForAllValues"):
                    return False
                continue
            verdict = _compare(op, actual, wanted)
            if verdict is None or not verdict:
                return False
    return True


def _compare(op: str, actual: str, wanted: list[str]) -> bool | None:
    if op in ("StringEquals", "ArnEquals"):
        return actual in wanted
    if op in ("StringNotEquals", "ArnNotEquals"):
        return actual not in wanted
    if op == "StringEqualsIgnoreCase":
        return actual.lower() in (w.lower() for w in wanted)
    if op == "StringNotEqualsIgnoreCase":
        return actual.lower() not in (w.lower() for w in wanted)
    if op in ("StringLike", "ArnLike"):
        return any(_glob(w, actual) for w in wanted)
    if op in ("StringNotLike", "ArnNotLike"):
        return not any(_glob(w, actual) for w in wanted)
    return None


def _glob(pattern: str, value: str, fold: bool = False) -> bool:
    if fold:
        pattern, value = pattern.lower(), value.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def _listify(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list) else [value]


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
