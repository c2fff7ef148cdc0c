"""DetectStackSetDrift: an operation like the others that compares each deployed role with the
template; a hand edit in the member account drifts it, a re-deployment brings it back."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from conftest import HUB, error_code
from helpers import (
    add_execution_role,
    instances,
    member_iam,
    new_organization,
    operation,
    role_template,
    set_timing,
    trust,
    wait_done,
)

NAME = "drifting"
CAPS = ["CAPABILITY_NAMED_IAM"]
ROLE = "linked-role"


def template() -> str:
    """The helpers' role, with a session limit and an inline deny policy as well."""
    document = json.loads(role_template(ROLE))
    properties = document["Resources"]["LinkedRole"]["Properties"]
    properties["MaxSessionDuration"] = 3600
    properties["Policies"] = [
        {
            "PolicyName": "deny",
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Deny", "Action": "iam:CreateUser", "Resource": "*"}],
            },
        }
    ]
    return json.dumps(document)


@pytest.fixture
def deployed(aws):
    """Three accounts with the template deployed and CURRENT."""
    members = new_organization(aws, 3)
    for account in members:
        add_execution_role(aws, account)
    set_timing(aws, 0.05, 0.01)
    cf = aws.client("cloudformation")
    cf.create_stack_set(StackSetName=NAME, TemplateBody=template(), Capabilities=CAPS)
    op = cf.create_stack_instances(
        StackSetName=NAME,
        Accounts=members,
        Regions=["us-east-1"],
        OperationId="create-1",
        OperationPreferences={"MaxConcurrentCount": 3, "FailureToleranceCount": 2},
    )["OperationId"]
    assert wait_done(cf, NAME, op)["Status"] == "SUCCEEDED"
    return cf, members


def drift_of(cf) -> dict[str, str]:
    return {key.split("/")[0]: row["DriftStatus"] for key, row in instances(cf, NAME).items()}


def detect(cf, operation_id: str) -> dict:
    op = cf.detect_stack_set_drift(StackSetName=NAME, OperationId=operation_id)["OperationId"]
    assert op == operation_id
    return wait_done(cf, NAME, op)


def test_instances_are_not_checked_until_drift_is_detected_and_then_in_sync(deployed):
    cf, members = deployed
    assert set(drift_of(cf).values()) == {"NOT_CHECKED"}
    done = detect(cf, "drift-1")
    assert (done["Action"], done["Status"]) == ("DETECT_DRIFT", "SUCCEEDED")
    details = done["StackSetDriftDetectionDetails"]
    assert details["DriftStatus"] == "IN_SYNC"
    assert (details["TotalStackInstancesCount"], details["DriftedStackInstancesCount"]) == (3, 0)
    rows = instances(cf, NAME)
    assert {r["DriftStatus"] for r in rows.values()} == {"IN_SYNC"}
    assert all("LastDriftCheckTimestamp" in r for r in rows.values())
    # Drift detection deploys nothing: the instances keep their status and last operation.
    assert {r["LastOperationId"] for r in rows.values()} == {"create-1"}
    assert {r["Status"] for r in rows.values()} == {"CURRENT"}
    listed = cf.list_stack_set_operations(StackSetName=NAME)["Summaries"]
    assert [o["Action"] for o in listed] == ["DETECT_DRIFT", "CREATE"]


@pytest.mark.parametrize(
    "edit",
    ["trust policy", "inline policy", "managed policy", "session limit", "deleted"],
)
def test_a_hand_edit_in_the_member_account_drifts_and_an_update_brings_it_back(aws, deployed, edit):
    cf, members = deployed
    iam = member_iam(aws, members[1])
    if edit == "trust policy":
        iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=json.dumps(trust("arn:aws:iam::999999999999:root")))
    elif edit == "inline policy":
        iam.delete_role_policy(RoleName=ROLE, PolicyName="deny")
    elif edit == "managed policy":
        arn = iam.create_policy(
            PolicyName="admin",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ),
        )["Policy"]["Arn"]
        iam.attach_role_policy(RoleName=ROLE, PolicyArn=arn)
    elif edit == "session limit":
        iam.update_role(RoleName=ROLE, MaxSessionDuration=43200)
    else:
        iam.delete_role_policy(RoleName=ROLE, PolicyName="deny")
        iam.delete_role(RoleName=ROLE)
    done = detect(cf, "drift-1")
    details = done["StackSetDriftDetectionDetails"]
    assert (details["DriftStatus"], details["DriftedStackInstancesCount"]) == ("DRIFTED", 1)
    assert drift_of(cf) == {members[0]: "IN_SYNC", members[1]: "DRIFTED", members[2]: "IN_SYNC"}
    # Filtering by drift status finds exactly the drifted one.
    drifted = cf.list_stack_instances(
        StackSetName=NAME, Filters=[{"Name": "DRIFT_STATUS", "Values": "DRIFTED"}]
    )["Summaries"]
    assert [s["Account"] for s in drifted] == [members[1]]

    if edit == "deleted":
        return  # moto's stack update does not re-create a deleted resource
    update = cf.update_stack_instances(
        StackSetName=NAME, Accounts=[members[1]], Regions=["us-east-1"], OperationId="update-1"
    )["OperationId"]
    assert wait_done(cf, NAME, update)["Status"] == "SUCCEEDED"
    assert drift_of(cf)[members[1]] == "IN_SYNC"
    # A fresh check agrees: the update wrote the template over the hand edit.
    assert detect(cf, "drift-2")["StackSetDriftDetectionDetails"]["DriftStatus"] == "IN_SYNC"
    assert set(drift_of(cf).values()) == {"IN_SYNC"}


def test_drift_detection_is_one_operation_at_a_time(aws, deployed):
    cf, members = deployed
    set_timing(aws, 0.5, 0.01)
    cf.update_stack_instances(StackSetName=NAME, Accounts=members, Regions=["us-east-1"], OperationId="update-1")
    with pytest.raises(ClientError) as excinfo:
        cf.detect_stack_set_drift(StackSetName=NAME, OperationId="drift-1")
    assert error_code(excinfo) == "OperationInProgressException"
    wait_done(cf, NAME, "update-1")
    cf.detect_stack_set_drift(StackSetName=NAME, OperationId="drift-1")
    assert operation(cf, NAME, "drift-1")["Status"] == "RUNNING"
    # Meanwhile the instances read as before: CURRENT, last touched by the create.
    rows = instances(cf, NAME)
    assert {(r["Status"], r["LastOperationId"]) for r in rows.values()} == {("CURRENT", "update-1")}
    details = operation(cf, NAME, "drift-1")["StackSetDriftDetectionDetails"]
    assert details["DriftDetectionStatus"] == "IN_PROGRESS"
    with pytest.raises(ClientError) as excinfo:
        cf.update_stack_instances(StackSetName=NAME, Accounts=members, Regions=["us-east-1"], OperationId="update-2")
    assert error_code(excinfo) == "OperationInProgressException"
    # The same OperationId again is the same operation; another action under it is refused.
    assert cf.detect_stack_set_drift(StackSetName=NAME, OperationId="drift-1")["OperationId"] == "drift-1"
    assert wait_done(cf, NAME, "drift-1")["Status"] == "SUCCEEDED"
    with pytest.raises(ClientError) as excinfo:
        cf.update_stack_instances(StackSetName=NAME, Accounts=members, Regions=["us-east-1"], OperationId="drift-1")
    assert error_code(excinfo) == "OperationIdAlreadyExistsException"


def test_call_as_delegated_admin_needs_a_registered_delegated_administrator(aws):
    (member,) = new_organization(aws, 1)
    org = aws.client("organizations")
    org.enable_aws_service_access(ServicePrincipal="member.org.stacksets.cloudformation.amazonaws.com")
    member_cf_creds = _member_credentials(aws, member)
    cf = aws.client("cloudformation", member_cf_creds)
    member_org = aws.client("organizations", member_cf_creds)
    # Not registered: every StackSet call with CallAs=DELEGATED_ADMIN is refused, and the
    # member cannot even list the delegated administrators.
    for call in (
        lambda: cf.describe_stack_set(StackSetName="any", CallAs="DELEGATED_ADMIN"),
        lambda: cf.list_stack_instances(StackSetName="any", CallAs="DELEGATED_ADMIN"),
    ):
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_code(excinfo) == "ValidationError"
        assert "not a delegated administrator" in str(excinfo.value)
    with pytest.raises(ClientError) as excinfo:
        member_org.list_delegated_administrators(
            ServicePrincipal="member.org.stacksets.cloudformation.amazonaws.com"
        )
    assert error_code(excinfo) == "AccessDeniedException"
    assert org.list_delegated_administrators(
        ServicePrincipal="member.org.stacksets.cloudformation.amazonaws.com"
    )["DelegatedAdministrators"] == []

    org.register_delegated_administrator(
        AccountId=member, ServicePrincipal="member.org.stacksets.cloudformation.amazonaws.com"
    )
    listed = member_org.list_delegated_administrators(
        ServicePrincipal="member.org.stacksets.cloudformation.amazonaws.com"
    )["DelegatedAdministrators"]
    assert [a["Id"] for a in listed] == [member]
    with pytest.raises(ClientError) as excinfo:
        cf.describe_stack_set(StackSetName="any", CallAs="DELEGATED_ADMIN")
    assert error_code(excinfo) == "StackSetNotFoundException"


def _member_credentials(aws, account):
    from helpers import credentials_for

    return credentials_for(aws, f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole")


def test_a_delegated_administrator_reads_the_organization_and_other_members_are_denied(aws):
    members = new_organization(aws, 2)
    org = aws.client("organizations")
    root = org.list_roots()["Roots"][0]["Id"]
    admin, other = (aws.client("organizations", _member_credentials(aws, m)) for m in members)
    org.register_delegated_administrator(
        AccountId=members[0], ServicePrincipal="member.org.stacksets.cloudformation.amazonaws.com"
    )
    assert admin.list_roots()["Roots"][0]["Id"] == root
    listed = {a["Id"] for a in admin.list_accounts_for_parent(ParentId=root)["Accounts"]}
    assert set(members) <= listed
    assert admin.list_parents(ChildId=members[1])["Parents"][0]["Id"] == root
    assert admin.describe_organization()["Organization"]["MasterAccountId"] == HUB
    with pytest.raises(ClientError) as excinfo:
        other.list_roots()
    assert error_code(excinfo) == "AccessDeniedException"
