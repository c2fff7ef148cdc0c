"""Shared test building blocks: organizations, member credentials, templates, operations."""

from __future__ import annotations

import json
from typing import Any

from conftest import HUB, Emulator, wait_for

EXECUTION_ROLE = "AWSCloudFormationStackSetExecutionRole"


def trust(principal: str, external_id: str | None = None, effect: str = "Allow") -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": effect,
        "Principal": {"AWS": principal},
        "Action": "sts:AssumeRole",
    }
    if external_id is not None:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return {"Version": "2012-10-17", "Statement": [statement]}


def role_template(role_name: str = "linked-role", external_id: str = "ext-1") -> str:
    """A StackSet template with one named role trusting the hub with an ExternalId parameter."""
    return json.dumps(
        {
            "Parameters": {"ExternalId": {"Type": "String", "Default": external_id}},
            "Resources": {
                "LinkedRole": {
                    "Type": "AWS::IAM::Role",
                    "Properties": {
                        "RoleName": role_name,
                        "AssumeRolePolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Principal": {"AWS": f"arn:aws:iam::{HUB}:root"},
                                    "Action": "sts:AssumeRole",
                                    "Condition": {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}},
                                }
                            ],
                        },
                    },
                }
            },
        }
    )


def set_timing(aws: Emulator, base: float, per_wave: float) -> None:
    """StackSet operations take `base` seconds plus `per_wave` per wave."""
    status, _ = aws.control(
        "PUT", "/_strict/stacksets/timing", {"base_seconds": base, "seconds_per_wave": per_wave}
    )
    assert status == 200


def new_organization(aws: Emulator, members: int) -> list[str]:
    org = aws.client("organizations")
    org.create_organization(FeatureSet="ALL")
    return [
        org.create_account(AccountName=f"member{i}", Email=f"member{i}@example.com")["CreateAccountStatus"][
            "AccountId"
        ]
        for i in range(members)
    ]


def credentials_for(aws: Emulator, role_arn: str, **kwargs: Any) -> dict[str, str]:
    c = aws.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="tests", **kwargs)["Credentials"]
    return {
        "aws_access_key_id": c["AccessKeyId"],
        "aws_secret_access_key": c["SecretAccessKey"],
        "aws_session_token": c["SessionToken"],
    }


def member_iam(aws: Emulator, account: str) -> Any:
    """An IAM client acting inside a member account (through OrganizationAccountAccessRole)."""
    creds = credentials_for(aws, f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole")
    return aws.client("iam", creds)


def add_execution_role(aws: Emulator, account: str) -> None:
    member_iam(aws, account).create_role(
        RoleName=EXECUTION_ROLE,
        AssumeRolePolicyDocument=json.dumps(trust(f"arn:aws:iam::{HUB}:root")),
    )


def operation(cf: Any, stack_set: str, operation_id: str) -> dict[str, Any]:
    return cf.describe_stack_set_operation(StackSetName=stack_set, OperationId=operation_id)[
        "StackSetOperation"
    ]


def wait_done(cf: Any, stack_set: str, operation_id: str, timeout: float = 10.0) -> dict[str, Any]:
    return wait_for(
        lambda: (op := operation(cf, stack_set, operation_id))["Status"] not in ("RUNNING", "QUEUED") and op,
        timeout=timeout,
    )


def instances(cf: Any, stack_set: str) -> dict[str, dict[str, Any]]:
    """Stack instances by "account/region"."""
    return {
        f"{s['Account']}/{s['Region']}": s
        for page in cf.get_paginator("list_stack_instances").paginate(StackSetName=stack_set)
        for s in page["Summaries"]
    }


def results(cf: Any, stack_set: str, operation_id: str) -> dict[str, dict[str, Any]]:
    summaries = cf.list_stack_set_operation_results(StackSetName=stack_set, OperationId=operation_id)[
        "Summaries"
    ]
    return {f"{s['Account']}/{s['Region']}": s for s in summaries}
