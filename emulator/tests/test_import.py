"""ImportStacksToStackSet: existing per-account stacks become instances of a StackSet."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from conftest import HUB, error_code
from helpers import (
    add_execution_role,
    credentials_for,
    instances,
    member_iam,
    new_organization,
    operation,
    role_template,
    trust,
    wait_done,
)

NAME = "migrated"
STACK = "linked-role-stack"
CAPS = ["CAPABILITY_NAMED_IAM"]


def member_cf(aws, account):
    creds = credentials_for(aws, f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole")
    return aws.client("cloudformation", creds)


def put_stack(aws, account, template=None, external_id="old-token"):
    """The per-account stack, as the console wizard created it in `account`."""
    out = member_cf(aws, account).create_stack(
        StackName=STACK,
        TemplateBody=template or role_template(),
        Parameters=[{"ParameterKey": "ExternalId", "ParameterValue": external_id}],
        Capabilities=CAPS,
    )
    return out["StackId"]


def set_timing(aws, base, per_wave):
    status, _ = aws.control(
        "PUT", "/_strict/stacksets/timing", {"base_seconds": base, "seconds_per_wave": per_wave}
    )
    assert status == 200


@pytest.fixture
def members(aws):
    accounts = new_organization(aws, 4)
    for account in accounts:
        add_execution_role(aws, account)
    return accounts


@pytest.fixture
def cf(aws, members):
    client = aws.client("cloudformation")
    client.create_stack_set(StackSetName=NAME, TemplateBody=role_template(), Capabilities=CAPS)
    return client


def stack_count(aws, account):
    return len(member_cf(aws, account).describe_stacks()["Stacks"])


def import_ops(aws):
    _, body = aws.control("GET", "/_strict/stacksets/operations")
    return [op for op in body["operations"] if op["action"] == "IMPORT"]


def test_import_adopts_the_stacks_without_deploying_anything(aws, members, cf):
    set_timing(aws, 0.4, 0.05)
    ids = [put_stack(aws, a) for a in members]
    role_before = member_iam(aws, members[0]).get_role(RoleName="linked-role")["Role"]
    op_id = cf.import_stacks_to_stack_set(
        StackSetName=NAME,
        StackIds=ids,
        OperationId="import-1",
        OperationPreferences={"MaxConcurrentCount": 4},
    )["OperationId"]
    assert op_id == "import-1"
    assert operation(cf, NAME, op_id)["Status"] == "RUNNING"
    pending = instances(cf, NAME)
    assert {s["StackInstanceStatus"]["DetailedStatus"] for s in pending.values()} <= {"PENDING", "RUNNING"}

    done = wait_done(cf, NAME, op_id)
    assert (done["Status"], done["Action"]) == ("SUCCEEDED", "CREATE")
    listed = instances(cf, NAME)
    assert {k: (s["Status"], s["StackId"], s["LastOperationId"]) for k, s in listed.items()} == {
        f"{a}/us-east-1": ("CURRENT", stack_id, "import-1") for a, stack_id in zip(members, ids)
    }
    # Adopted as is: no second stack, the same role, still trusting the old token.
    assert stack_count(aws, members[0]) == 1
    role_after = member_iam(aws, members[0]).get_role(RoleName="linked-role")["Role"]
    assert role_after["RoleId"] == role_before["RoleId"]
    creds = credentials_for(aws, f"arn:aws:iam::{members[0]}:role/linked-role", ExternalId="old-token")
    assert aws.client("sts", creds).get_caller_identity()["Account"] == members[0]
    assert [op["operation_id"] for op in import_ops(aws)] == ["import-1"]


def test_an_update_after_import_gives_the_stacks_the_stack_sets_parameters(aws, members, cf):
    set_timing(aws, 0.05, 0.01)
    ids = [put_stack(aws, a) for a in members[:2]]
    cf.update_stack_set(
        StackSetName=NAME,
        UsePreviousTemplate=True,
        Capabilities=CAPS,
        Parameters=[{"ParameterKey": "ExternalId", "ParameterValue": "new-token"}],
    )
    wait_done(cf, NAME, cf.list_stack_set_operations(StackSetName=NAME)["Summaries"][0]["OperationId"])
    wait_done(cf, NAME, cf.import_stacks_to_stack_set(StackSetName=NAME, StackIds=ids)["OperationId"])
    update = cf.update_stack_instances(
        StackSetName=NAME,
        Accounts=members[:2],
        Regions=["us-east-1"],
        OperationPreferences={"MaxConcurrentCount": 2, "FailureToleranceCount": 1},
    )["OperationId"]
    assert wait_done(cf, NAME, update)["Status"] == "SUCCEEDED"
    assert stack_count(aws, members[0]) == 1
    # The StackSet's ExternalId now guards the role.
    creds = credentials_for(aws, f"arn:aws:iam::{members[1]}:role/linked-role", ExternalId="new-token")
    assert aws.client("sts", creds).get_caller_identity()["Account"] == members[1]


def test_a_stack_with_another_template_fails_import_alone(aws, members, cf):
    set_timing(aws, 0.05, 0.01)
    good = put_stack(aws, members[0])
    other = json.loads(role_template())
    other["Resources"]["LinkedRole"]["Properties"]["MaxSessionDuration"] = 7200
    bad = put_stack(aws, members[1], template=json.dumps(other))
    op_id = cf.import_stacks_to_stack_set(
        StackSetName=NAME,
        StackIds=[good, bad],
        OperationPreferences={"FailureToleranceCount": 1, "MaxConcurrentCount": 2},
    )["OperationId"]
    assert wait_done(cf, NAME, op_id)["Status"] == "SUCCEEDED"
    listed = instances(cf, NAME)
    assert listed[f"{members[0]}/us-east-1"]["Status"] == "CURRENT"
    failed = listed[f"{members[1]}/us-east-1"]
    assert (failed["Status"], failed["StackInstanceStatus"]["DetailedStatus"]) == ("OUTDATED", "FAILED_IMPORT")
    assert "does not match the template" in failed["StatusReason"]
    # The stack is left as it was.
    assert member_cf(aws, members[1]).describe_stacks(StackName=STACK)["Stacks"][0]["StackId"] == bad


def test_a_layout_change_is_not_a_mismatch(aws, members, cf):
    set_timing(aws, 0.05, 0.01)
    reformatted = json.dumps(json.loads(role_template()), indent=4, sort_keys=True)
    stack_id = put_stack(aws, members[0], template=reformatted)
    op_id = cf.import_stacks_to_stack_set(StackSetName=NAME, StackIds=[stack_id])["OperationId"]
    assert wait_done(cf, NAME, op_id)["Status"] == "SUCCEEDED"


def test_at_most_ten_stacks_inline(aws, members, cf):
    ids = [f"arn:aws:cloudformation:us-east-1:{members[0]}:stack/s{i}/{i:08d}" for i in range(11)]
    with pytest.raises(ClientError) as err:
        cf.import_stacks_to_stack_set(StackSetName=NAME, StackIds=ids)
    assert error_code(err) == "ValidationError"
    with pytest.raises(ClientError) as err:
        cf.import_stacks_to_stack_set(StackSetName=NAME)
    assert error_code(err) == "ValidationError"
    assert import_ops(aws) == []


def test_an_unknown_stack_is_refused_before_anything_starts(aws, members, cf):
    real = put_stack(aws, members[0])
    missing = f"arn:aws:cloudformation:us-east-1:{members[1]}:stack/{STACK}/00000000-0000"
    with pytest.raises(ClientError) as err:
        cf.import_stacks_to_stack_set(StackSetName=NAME, StackIds=[real, missing])
    assert error_code(err) == "StackNotFoundException"
    assert import_ops(aws) == []


def test_import_waits_for_the_running_operation_and_ids_are_idempotent(aws, members, cf):
    set_timing(aws, 0.5, 0.05)
    stack_id = put_stack(aws, members[0])
    cf.create_stack_instances(StackSetName=NAME, Accounts=members[1:2], Regions=["us-east-1"], OperationId="c1")
    with pytest.raises(ClientError) as err:
        cf.import_stacks_to_stack_set(StackSetName=NAME, StackIds=[stack_id], OperationId="i1")
    assert error_code(err) == "OperationInProgressException"
    wait_done(cf, NAME, "c1")
    first = cf.import_stacks_to_stack_set(StackSetName=NAME, StackIds=[stack_id], OperationId="i1")
    again = cf.import_stacks_to_stack_set(StackSetName=NAME, StackIds=[stack_id], OperationId="i1")
    assert first["OperationId"] == again["OperationId"] == "i1"
    assert len(import_ops(aws)) == 1
    wait_done(cf, NAME, "i1")
    with pytest.raises(ClientError) as err:
        cf.import_stacks_to_stack_set(StackSetName=NAME, StackIds=[stack_id], OperationId="i2")
    assert error_code(err) == "ValidationError"  # already an instance


def test_import_needs_the_execution_role(aws, members, cf):
    set_timing(aws, 0.05, 0.01)
    stack_id = put_stack(aws, members[0])
    member_iam(aws, members[0]).delete_role(RoleName="AWSCloudFormationStackSetExecutionRole")
    op_id = cf.import_stacks_to_stack_set(StackSetName=NAME, StackIds=[stack_id])["OperationId"]
    assert wait_done(cf, NAME, op_id)["Status"] == "FAILED"
    failed = instances(cf, NAME)[f"{members[0]}/us-east-1"]
    assert failed["StackInstanceStatus"]["DetailedStatus"] == "FAILED_IMPORT"
    assert "AWSCloudFormationStackSetExecutionRole" in failed["StatusReason"]


def test_a_self_managed_instance_in_the_management_account_needs_the_execution_role(aws, members, cf):
    set_timing(aws, 0.05, 0.01)
    op_id = cf.create_stack_instances(StackSetName=NAME, Accounts=[HUB], Regions=["us-east-1"])["OperationId"]
    assert wait_done(cf, NAME, op_id)["Status"] == "FAILED"
    assert instances(cf, NAME)[f"{HUB}/us-east-1"]["StackInstanceStatus"]["DetailedStatus"] == "FAILED"
    aws.client("iam").create_role(
        RoleName="AWSCloudFormationStackSetExecutionRole",
        AssumeRolePolicyDocument=json.dumps(trust(f"arn:aws:iam::{HUB}:root")),
    )
    cf.delete_stack_instances(StackSetName=NAME, Accounts=[HUB], Regions=["us-east-1"], RetainStacks=True)
    wait_done(cf, NAME, cf.list_stack_set_operations(StackSetName=NAME)["Summaries"][0]["OperationId"])
    op_id = cf.create_stack_instances(StackSetName=NAME, Accounts=[HUB], Regions=["us-east-1"])["OperationId"]
    assert wait_done(cf, NAME, op_id)["Status"] == "SUCCEEDED"
