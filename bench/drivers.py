"""The two alternatives, run on the same emulator as the operator (benchmark-only code):

(a) one resource per account, the pattern of Crossplane's StackSetInstance and Terraform's
    `aws_cloudformation_stack_set_instance`: one StackSet operation per account, and since a
    StackSet runs one operation at a time, the accounts are serialized;
(b) the console wizard: per account, assume OrganizationAccountAccessRole, CreateStack, wait.

Both deploy the same one-role template as the operator's built-in one (under other role names, so
the approaches do not collide) into the first `sample` accounts; their cost is linear in the
accounts, so run.py also states the time extrapolated to N (marked as such)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from env import HUB, Environment, log
from fleet import Fleet
from measure import Window

CAPS = ["CAPABILITY_NAMED_IAM"]
RETRIES = Config(retries={"max_attempts": 10, "mode": "standard"})


def role_template(role_name: str) -> str:
    return json.dumps({
        "Parameters": {"ExternalId": {"Type": "String", "NoEcho": True, "Default": "bench-driver-external-id"}},
        "Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {
            "RoleName": role_name,
            "MaxSessionDuration": 3600,
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{HUB}:root"}, "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}}]}}}},
    })


def per_account_operations(env: Environment, fleet: Fleet, sample: int) -> dict[str, Any]:
    cf = boto3.client("cloudformation", region_name="us-east-1", config=RETRIES)
    name = "bench-per-account"
    cf.create_stack_set(StackSetName=name, TemplateBody=role_template("BenchPerAccountRole"),
                        Capabilities=CAPS, PermissionModel="SELF_MANAGED")
    accounts = fleet.accounts[:sample]
    window = Window(env)
    conflicts = 0
    for account in accounts:
        op_id = str(uuid.uuid4())
        while True:
            try:
                cf.create_stack_instances(StackSetName=name, Accounts=[account], Regions=["us-east-1"],
                                          OperationId=op_id)
                break
            except ClientError as err:
                if err.response["Error"]["Code"] != "OperationInProgressException":
                    raise
                conflicts += 1
                time.sleep(0.05)
        while True:
            status = cf.describe_stack_set_operation(StackSetName=name, OperationId=op_id)["StackSetOperation"]["Status"]
            if status not in ("RUNNING", "QUEUED"):
                break
            time.sleep(0.05)
        if status != "SUCCEEDED":
            raise SystemExit(f"per-account operation for {account}: {status}")
    result = window.close()
    result.update({"accounts": len(accounts), "in_progress_conflicts": conflicts,
                   "seconds_per_account": round(result["seconds"] / len(accounts), 3)})
    log(f"(a) one operation per account: {len(accounts)} accounts in {result['seconds']} s")
    return result


def console_wizard(env: Environment, fleet: Fleet, sample: int) -> dict[str, Any]:
    sts = boto3.client("sts", region_name="us-east-1", config=RETRIES)
    body = role_template("BenchWizardRole")
    accounts = fleet.accounts[:sample]
    window = Window(env)
    for account in accounts:
        creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
                                RoleSessionName="console")["Credentials"]
        cf = boto3.client("cloudformation", region_name="us-east-1", config=RETRIES,
                          aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                          aws_session_token=creds["SessionToken"])
        cf.create_stack(StackName="account-linker-role", TemplateBody=body, Capabilities=CAPS)
        while True:
            status = cf.describe_stacks(StackName="account-linker-role")["Stacks"][0]["StackStatus"]
            if not status.endswith("_IN_PROGRESS"):
                break
            time.sleep(0.05)
        if status != "CREATE_COMPLETE":
            raise SystemExit(f"wizard stack in {account}: {status}")
    result = window.close()
    result.update({"accounts": len(accounts), "seconds_per_account": round(result["seconds"] / len(accounts), 3)})
    log(f"(b) console wizard: {len(accounts)} accounts in {result['seconds']} s")
    return result
