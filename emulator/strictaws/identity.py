"""Who is calling: the account and principal behind a request's access key, as moto attributes them.

moto maps an access key to an account by looking it up in every account's IAM backend (temporary
keys from AssumeRole live in the role's account); unknown keys belong to the default account
123456789012. The principal ARN is the one moto's GetCallerIdentity would answer, so error messages
and trust evaluation agree with what the caller sees of itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from moto.iam.models import iam_backends
from moto.sts.models import sts_backends

from .protocol import AwsRequest
from .speed import get_account_id_from

PARTITION = "aws"
ACCOUNT_ID_RE = re.compile(r"\d{12}")


@dataclass(frozen=True)
class Caller:
    account: str
    arn: str
    # For assumed-role sessions: the IAM role's ARN (trust policies name roles, not sessions).
    role_arn: str | None = None

    @property
    def principal_arn(self) -> str:
        """The value of the `aws:PrincipalArn` condition key."""
        return self.role_arn or self.arn


def account_of(req: AwsRequest) -> str:
    """The account moto will act in for this request (same precedence as moto's)."""
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    if "x-moto-account-id" in req.headers:
        return req.headers["x-moto-account-id"]
    return get_account_id_from(req.access_key or "AKIAEXAMPLE")


def caller_of(req: AwsRequest) -> Caller:
    account = account_of(req)
    key = req.access_key or "AKIAEXAMPLE"
    sts = sts_backends[account][PARTITION]
    _, arn, _ = sts.get_caller_identity(key, req.region)
    assumed = sts.get_assumed_role_from_access_key(key)
    return Caller(account=account, arn=arn, role_arn=assumed.role_arn if assumed else None)


def _roles(account: str) -> Iterator[Any]:
    # Checked first so that looking at an unknown account does not create a backend for it.
    if account in iam_backends:
        yield from iam_backends[account][PARTITION].roles.values()


def find_role(account: str, role_arn: str) -> Any | None:
    """The IAM role with exactly this ARN in `account`."""
    return next((role for role in _roles(account) if role.arn == role_arn), None)


def find_role_by_name(account: str, name: str) -> Any | None:
    return next((role for role in _roles(account) if role.name == name), None)
