"""The member accounts every scenario of one size shares: N accounts in one OU (the ServiceManaged
target, also listed for the SelfManaged registration) plus spares in the root (what `change at
scale` adds), each with the self-managed execution role. Created with the latency model off."""

from __future__ import annotations

import time
from dataclasses import dataclass

import boto3

from env import EXECUTION_ROLE, HUB, Environment, log


@dataclass
class Fleet:
    ou: str
    accounts: list[str]
    spares: list[str]
    seconds: float


def trust(principal: str, external_id: str | None = None) -> dict:
    statement: dict = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
    if external_id:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return {"Version": "2012-10-17", "Statement": [statement]}


def create(env: Environment, n: int, spares: int) -> Fleet:
    started = time.time()
    org = boto3.client("organizations", region_name="us-east-1")
    org.create_organization(FeatureSet="ALL")
    boto3.client("cloudformation", region_name="us-east-1").activate_organizations_access()
    root = org.list_roots()["Roots"][0]["Id"]
    ou = org.create_organizational_unit(ParentId=root, Name="bench-fleet")["OrganizationalUnit"]["Id"]
    ids: list[str] = []
    for i in range(n + spares):
        status = org.create_account(AccountName=f"bench-{i}", Email=f"bench-{i}@example.com")["CreateAccountStatus"]
        while status["State"] == "IN_PROGRESS":
            time.sleep(0.05)
            status = org.describe_create_account_status(CreateAccountRequestId=status["Id"])["CreateAccountStatus"]
        if status["State"] != "SUCCEEDED":
            raise SystemExit(f"CreateAccount bench-{i}: {status}")
        ids.append(status["AccountId"])
        if i < n:
            org.move_account(AccountId=status["AccountId"], SourceParentId=root, DestinationParentId=ou)
        if (i + 1) % 1000 == 0:
            log(f"fleet: {i + 1} of {n + spares} accounts ({time.time() - started:.0f} s)")
    policy = trust(f"arn:aws:iam::{HUB}:root")
    for account in ids:
        env.control("PUT", "/iam/roles", {"account": account, "name": EXECUTION_ROLE, "trust_policy": policy})
    seconds = round(time.time() - started, 1)
    log(f"fleet: {n} accounts in {ou} and {spares} spares in {seconds} s")
    return Fleet(ou=ou, accounts=ids[:n], spares=ids[n:], seconds=seconds)
