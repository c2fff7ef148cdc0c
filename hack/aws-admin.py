#!/usr/bin/env python3
"""What an AWS administrator does by hand, scripted against the emulator (or any endpoint
in AWS_ENDPOINT_URL): create the organization, OUs and member accounts, and put or delete the
hub's role in a member account. Used by `make demo` and by hand (the integration tests do the
same from Rust: tests/support/aws.rs).

Every command prints one JSON object on stdout.
"""
import argparse
import json
import sys
import time

import boto3
from botocore.exceptions import ClientError

ACCESS_ROLE = "OrganizationAccountAccessRole"
EXECUTION_ROLE = "AWSCloudFormationStackSetExecutionRole"


def org():
    return boto3.client("organizations", region_name="us-east-1")


def ensure_org(_args):
    client = org()
    try:
        client.create_organization(FeatureSet="ALL")
    except ClientError as err:
        if err.response["Error"]["Code"] != "AlreadyInOrganizationException":
            raise
    root = client.list_roots()["Roots"][0]["Id"]
    return {"rootId": root, "managementAccountId": client.describe_organization()["Organization"]["MasterAccountId"]}


def create_ou(args):
    client = org()
    parent = args.parent or client.list_roots()["Roots"][0]["Id"]
    for page in client.get_paginator("list_organizational_units_for_parent").paginate(ParentId=parent):
        for ou in page["OrganizationalUnits"]:
            if ou["Name"] == args.name:
                return {"ouId": ou["Id"]}
    return {"ouId": client.create_organizational_unit(ParentId=parent, Name=args.name)["OrganizationalUnit"]["Id"]}


def create_account(args):
    """An account with this e-mail: the existing one (running it again is harmless), or a new one."""
    client = org()
    for page in client.get_paginator("list_accounts").paginate(PaginationConfig={"PageSize": 20}):
        for account in page["Accounts"]:
            if account["Email"].lower() == args.email.lower():
                request = {"State": "SUCCEEDED", "AccountId": account["Id"]}
                break
        else:
            continue
        break
    else:
        request = client.create_account(AccountName=args.name, Email=args.email)["CreateAccountStatus"]
    deadline = time.time() + 60
    while request["State"] == "IN_PROGRESS" and time.time() < deadline:
        time.sleep(0.2)
        request = client.describe_create_account_status(CreateAccountRequestId=request["Id"])["CreateAccountStatus"]
    if request["State"] != "SUCCEEDED":
        raise SystemExit(f"CreateAccount {args.name}: {request}")
    account = request["AccountId"]
    if args.parent:
        current = client.list_parents(ChildId=account)["Parents"][0]["Id"]
        if current != args.parent:
            client.move_account(AccountId=account, SourceParentId=current, DestinationParentId=args.parent)
    return {"accountId": account}


def describe_account(args):
    client = org()
    account = client.describe_account(AccountId=args.account)["Account"]
    tags = client.list_tags_for_resource(ResourceId=args.account)["Tags"]
    return {
        "accountId": account["Id"],
        "name": account["Name"],
        "email": account["Email"],
        "status": account["Status"],
        "parentId": client.list_parents(ChildId=args.account)["Parents"][0]["Id"],
        "tags": {t["Key"]: t["Value"] for t in tags},
    }


def tag_account(args):
    tags = []
    for pair in args.tag:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--tag {pair!r}: expected KEY=VALUE")
        tags.append({"Key": key, "Value": value})
    org().tag_resource(ResourceId=args.account, Tags=tags)
    return {"accountId": args.account, "tagged": {t["Key"]: t["Value"] for t in tags}}


def account_by_email(args):
    client = org()
    for page in client.get_paginator("list_accounts").paginate(PaginationConfig={"PageSize": 20}):
        for account in page["Accounts"]:
            if account["Email"].lower() == args.email.lower():
                return {"accountId": account["Id"], "status": account["Status"]}
    return {"accountId": None}


def create_accounts(args):
    """Many accounts at once (one process): names and e-mails are `<prefix>-<n>`. Accounts whose
    e-mail already exists are reused, so running it again is harmless."""
    client = org()
    existing = {
        account["Email"]: account["Id"]
        for page in client.get_paginator("list_accounts").paginate(PaginationConfig={"PageSize": 20})
        for account in page["Accounts"]
    }
    emails = [f"{args.prefix}-{n}@example.com" for n in range(args.count)]
    requests = [
        {"State": "SUCCEEDED", "AccountId": existing[email]}
        if email in existing
        else client.create_account(AccountName=email.split("@")[0], Email=email)["CreateAccountStatus"]
        for email in emails
    ]
    accounts = []
    deadline = time.time() + 120
    for request in requests:
        while request["State"] == "IN_PROGRESS" and time.time() < deadline:
            time.sleep(0.1)
            request = client.describe_create_account_status(CreateAccountRequestId=request["Id"])[
                "CreateAccountStatus"
            ]
        if request["State"] != "SUCCEEDED":
            raise SystemExit(f"CreateAccount: {request}")
        accounts.append(request["AccountId"])
    if args.parent:
        root = client.list_roots()["Roots"][0]["Id"]
        for email, account in zip(emails, accounts):
            reused = email in existing
            current = client.list_parents(ChildId=account)["Parents"][0]["Id"] if reused else root
            if current != args.parent:
                client.move_account(AccountId=account, SourceParentId=current, DestinationParentId=args.parent)
    return {"accountIds": accounts}


def activate_trusted_access(_args):
    cf = boto3.client("cloudformation")
    cf.activate_organizations_access()
    return {"status": cf.describe_organizations_access()["Status"]}


def deactivate_trusted_access(_args):
    cf = boto3.client("cloudformation")
    cf.deactivate_organizations_access()
    return {"status": cf.describe_organizations_access()["Status"]}


def put_execution_role(args):
    """The self-managed StackSet execution role, trusting the hub's administration role."""
    iam = member_iam(args.account)
    policy = trust_policy(args.trust_account, None)
    try:
        iam.create_role(RoleName=EXECUTION_ROLE, AssumeRolePolicyDocument=policy)
    except ClientError as err:
        if err.response["Error"]["Code"] != "EntityAlreadyExists":
            raise
    return {"roleName": EXECUTION_ROLE}


def get_role(args):
    iam = member_iam(args.account)
    try:
        role = iam.get_role(RoleName=args.role_name)["Role"]
    except ClientError as err:
        if err.response["Error"]["Code"] != "NoSuchEntity":
            raise
        return {"exists": False}
    return {
        "exists": True,
        "maxSessionDuration": role.get("MaxSessionDuration"),
        "trustPolicy": role.get("AssumeRolePolicyDocument"),
    }


def stack_set_exists(args):
    cf = boto3.client("cloudformation")
    try:
        status = cf.describe_stack_set(StackSetName=args.name)["StackSet"]["Status"]
    except ClientError as err:
        if err.response["Error"]["Code"] != "StackSetNotFoundException":
            raise
        return {"exists": False}
    return {"exists": status != "DELETED"}


def member_iam(account):
    """IAM in a member account, through its OrganizationAccountAccessRole."""
    creds = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{ACCESS_ROLE}", RoleSessionName="account-linker-admin"
    )["Credentials"]
    return boto3.client(
        "iam",
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def trust_policy(trust_account, external_id):
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{trust_account}:root"},
        "Action": "sts:AssumeRole",
    }
    if external_id:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def put_role(args):
    iam = member_iam(args.account)
    policy = trust_policy(args.trust_account, args.external_id)
    try:
        role = iam.create_role(
            RoleName=args.role_name, AssumeRolePolicyDocument=policy, MaxSessionDuration=args.max_session
        )["Role"]
    except ClientError as err:
        if err.response["Error"]["Code"] != "EntityAlreadyExists":
            raise
        iam.update_assume_role_policy(RoleName=args.role_name, PolicyDocument=policy)
        role = iam.get_role(RoleName=args.role_name)["Role"]
    return {"roleArn": role["Arn"]}


def delete_role(args):
    iam = member_iam(args.account)
    try:
        iam.delete_role(RoleName=args.role_name)
    except ClientError as err:
        if err.response["Error"]["Code"] != "NoSuchEntity":
            raise
    return {"deleted": args.role_name}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ensure-org", help="create the organization if there is none").set_defaults(run=ensure_org)
    p = sub.add_parser("create-ou", help="create (or find) an OU by name")
    p.add_argument("--name", required=True)
    p.add_argument("--parent")
    p.set_defaults(run=create_ou)
    p = sub.add_parser("create-account", help="create a member account and wait for it")
    p.add_argument("--name", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--parent")
    p.set_defaults(run=create_account)
    p = sub.add_parser("create-accounts", help="create many member accounts and wait for them")
    p.add_argument("--prefix", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--parent")
    p.set_defaults(run=create_accounts)
    sub.add_parser(
        "activate-trusted-access", help="enable trusted access between StackSets and Organizations"
    ).set_defaults(run=activate_trusted_access)
    sub.add_parser(
        "deactivate-trusted-access", help="disable trusted access between StackSets and Organizations"
    ).set_defaults(run=deactivate_trusted_access)
    p = sub.add_parser("put-execution-role", help="create the self-managed StackSet execution role")
    p.add_argument("--account", required=True)
    p.add_argument("--trust-account", default="123456789012")
    p.set_defaults(run=put_execution_role)
    p = sub.add_parser("get-role", help="whether a role exists in a member account")
    p.add_argument("--account", required=True)
    p.add_argument("--role-name", default="AccountLinkerAccess")
    p.set_defaults(run=get_role)
    p = sub.add_parser("stack-set-exists", help="whether a StackSet exists")
    p.add_argument("--name", required=True)
    p.set_defaults(run=stack_set_exists)
    p = sub.add_parser("put-role", help="create or update a role in a member account")
    p.add_argument("--account", required=True)
    p.add_argument("--role-name", default="AccountLinkerAccess")
    p.add_argument("--trust-account", default="123456789012")
    p.add_argument("--external-id")
    p.add_argument("--max-session", type=int, default=3600)
    p.set_defaults(run=put_role)
    p = sub.add_parser("describe-account", help="an account's name, e-mail, status, parent and tags")
    p.add_argument("--account", required=True)
    p.set_defaults(run=describe_account)
    p = sub.add_parser("tag-account", help="tag an account (TagResource)")
    p.add_argument("--account", required=True)
    p.add_argument("--tag", action="append", required=True, metavar="KEY=VALUE")
    p.set_defaults(run=tag_account)
    p = sub.add_parser("account-by-email", help="the account with this e-mail, if any")
    p.add_argument("--email", required=True)
    p.set_defaults(run=account_by_email)
    p = sub.add_parser("delete-role", help="delete a role in a member account")
    p.add_argument("--account", required=True)
    p.add_argument("--role-name", default="AccountLinkerAccess")
    p.set_defaults(run=delete_role)
    args = parser.parse_args(argv)
    json.dump(args.run(args), sys.stdout)
    print()


if __name__ == "__main__":
    main()
