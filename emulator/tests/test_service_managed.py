"""Service-managed StackSets: trusted access, OU targets, and automatic deployment."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from conftest import HUB, error_code, wait_for
from helpers import instances, member_iam, new_organization, operation, role_template, wait_done

NAME = "org-linked"
CAPS = ["CAPABILITY_NAMED_IAM"]
PRINCIPAL = "member.org.stacksets.cloudformation.amazonaws.com"


def create_service_managed(cf, name=NAME, auto=True, retain=False):
    cf.create_stack_set(
        StackSetName=name,
        TemplateBody=role_template(),
        Capabilities=CAPS,
        PermissionModel="SERVICE_MANAGED",
        AutoDeployment={"Enabled": auto, "RetainStacksOnAccountRemoval": retain},
    )


def test_needs_trusted_access_then_accepts(aws):
    new_organization(aws, 1)
    cf = aws.client("cloudformation")
    assert cf.describe_organizations_access()["Status"] == "DISABLED"
    with pytest.raises(ClientError) as excinfo:
        create_service_managed(cf)
    assert error_code(excinfo) == "ValidationError"
    assert "organizations access" in excinfo.value.response["Error"]["Message"]

    cf.activate_organizations_access()
    assert cf.describe_organizations_access()["Status"] == "ENABLED"
    principals = aws.client("organizations").list_aws_service_access_for_organization()[
        "EnabledServicePrincipals"
    ]
    assert PRINCIPAL in [p["ServicePrincipal"] for p in principals]
    create_service_managed(cf)
    assert cf.describe_stack_set(StackSetName=NAME)["StackSet"]["PermissionModel"] == "SERVICE_MANAGED"

    cf.deactivate_organizations_access()
    assert cf.describe_organizations_access()["Status"] == "DISABLED"
    with pytest.raises(ClientError):
        create_service_managed(cf, name="second")
    aws.client("organizations").enable_aws_service_access(ServicePrincipal=PRINCIPAL)
    create_service_managed(cf, name="second")


def test_ou_targets_skip_the_management_account(aws):
    members = new_organization(aws, 2)
    org = aws.client("organizations")
    root = org.list_roots()["Roots"][0]["Id"]
    cf = aws.client("cloudformation")
    cf.activate_organizations_access()
    create_service_managed(cf, auto=False)
    op_id = cf.create_stack_instances(
        StackSetName=NAME,
        DeploymentTargets={"OrganizationalUnitIds": [root]},
        Regions=["us-east-1"],
        OperationPreferences={"MaxConcurrentPercentage": 100, "FailureTolerancePercentage": 100},
    )["OperationId"]
    assert wait_done(cf, NAME, op_id)["Status"] == "SUCCEEDED"
    listed = instances(cf, NAME)
    assert sorted(listed) == sorted(f"{a}/us-east-1" for a in members)
    assert HUB not in {s["Account"] for s in listed.values()}
    assert {s["OrganizationalUnitId"] for s in listed.values()} == {root}
    with pytest.raises(ClientError) as excinfo:
        cf.create_stack_instances(StackSetName=NAME, Accounts=members, Regions=["us-east-1"])
    assert error_code(excinfo) == "ValidationError"


def test_automatic_deployment_follows_account_moves(aws):
    new_organization(aws, 0)
    org = aws.client("organizations")
    root = org.list_roots()["Roots"][0]["Id"]
    target = org.create_organizational_unit(ParentId=root, Name="linked")["OrganizationalUnit"]["Id"]
    nested = org.create_organizational_unit(ParentId=target, Name="team")["OrganizationalUnit"]["Id"]
    cf = aws.client("cloudformation")
    cf.activate_organizations_access()
    create_service_managed(cf)
    first = cf.create_stack_instances(
        StackSetName=NAME, DeploymentTargets={"OrganizationalUnitIds": [target]}, Regions=["us-east-1"]
    )["OperationId"]
    wait_done(cf, NAME, first)
    assert instances(cf, NAME) == {}

    account = org.create_account(AccountName="late", Email="late@example.com")["CreateAccountStatus"][
        "AccountId"
    ]
    org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=nested)
    key = f"{account}/us-east-1"
    auto = [
        o for o in cf.list_stack_set_operations(StackSetName=NAME)["Summaries"] if o["OperationId"] != first
    ]
    assert [o["Action"] for o in auto] == ["CREATE"]
    wait_for(lambda: instances(cf, NAME).get(key, {}).get("Status") == "CURRENT")
    assert instances(cf, NAME)[key]["OrganizationalUnitId"] == target
    assert member_iam(aws, account).get_role(RoleName="linked-role")

    org.move_account(AccountId=account, SourceParentId=nested, DestinationParentId=root)
    wait_for(lambda: key not in instances(cf, NAME))
    with pytest.raises(ClientError):
        member_iam(aws, account).get_role(RoleName="linked-role")
    _, body = aws.control("GET", "/_strict/stacksets/operations")
    assert [(o["action"], o["auto_deployment"]) for o in body["operations"]] == [
        ("CREATE", False),
        ("CREATE", True),
        ("DELETE", True),
    ]


def test_automatic_deployment_queues_behind_a_running_operation(aws):
    (member,) = new_organization(aws, 1)
    org = aws.client("organizations")
    root = org.list_roots()["Roots"][0]["Id"]
    target = org.create_organizational_unit(ParentId=root, Name="linked")["OrganizationalUnit"]["Id"]
    cf = aws.client("cloudformation")
    cf.activate_organizations_access()
    create_service_managed(cf)
    aws.control("PUT", "/_strict/stacksets/timing", {"base_seconds": 0.5, "seconds_per_wave": 0.01})
    running = cf.create_stack_instances(
        StackSetName=NAME, DeploymentTargets={"OrganizationalUnitIds": [target]}, Regions=["us-east-1"]
    )["OperationId"]
    org.move_account(AccountId=member, SourceParentId=root, DestinationParentId=target)  # does not fail
    queued = [
        o for o in cf.list_stack_set_operations(StackSetName=NAME)["Summaries"] if o["OperationId"] != running
    ]
    assert [o["Status"] for o in queued] == ["QUEUED"]
    assert operation(cf, NAME, running)["Status"] == "RUNNING"
    assert wait_done(cf, NAME, queued[0]["OperationId"])["Status"] == "SUCCEEDED"
    assert instances(cf, NAME)[f"{member}/us-east-1"]["Status"] == "CURRENT"


def test_filtered_delete_removes_only_the_listed_accounts_and_keeps_the_ou_targeted(aws):
    members = new_organization(aws, 3)
    root = aws.client("organizations").list_roots()["Roots"][0]["Id"]
    cf = aws.client("cloudformation")
    cf.activate_organizations_access()
    create_service_managed(cf, auto=False)
    prefs = {"MaxConcurrentPercentage": 100, "FailureTolerancePercentage": 100}
    op_id = cf.create_stack_instances(
        StackSetName=NAME,
        DeploymentTargets={"OrganizationalUnitIds": [root]},
        Regions=["us-east-1"],
        OperationPreferences=prefs,
    )["OperationId"]
    assert wait_done(cf, NAME, op_id)["Status"] == "SUCCEEDED"
    op_id = cf.delete_stack_instances(
        StackSetName=NAME,
        DeploymentTargets={
            "OrganizationalUnitIds": [root],
            "Accounts": [members[0]],
            "AccountFilterType": "INTERSECTION",
        },
        Regions=["us-east-1"],
        RetainStacks=False,
        OperationPreferences=prefs,
    )["OperationId"]
    assert wait_done(cf, NAME, op_id)["Status"] == "SUCCEEDED"
    assert sorted(instances(cf, NAME)) == sorted(f"{a}/us-east-1" for a in members[1:])
    assert cf.describe_stack_set(StackSetName=NAME)["StackSet"]["OrganizationalUnitIds"] == [root]
