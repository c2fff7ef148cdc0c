"""StackSet operations take time, one at a time, and fail per account."""

from __future__ import annotations

from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from conftest import error_code
from helpers import (
    add_execution_role,
    credentials_for,
    instances,
    member_iam,
    new_organization,
    operation,
    results,
    role_template,
    wait_done,
)

NAME = "linked-accounts"
CAPS = ["CAPABILITY_NAMED_IAM"]


def set_timing(aws, base, per_wave):
    status, _ = aws.control(
        "PUT", "/_strict/stacksets/timing", {"base_seconds": base, "seconds_per_wave": per_wave}
    )
    assert status == 200


@pytest.fixture
def members(aws):
    accounts = new_organization(aws, 3)
    for account in accounts:
        add_execution_role(aws, account)
    return accounts


@pytest.fixture
def cf(aws, members):
    client = aws.client("cloudformation")
    client.create_stack_set(StackSetName=NAME, TemplateBody=role_template(), Capabilities=CAPS)
    return client


def test_operation_is_running_then_succeeds(aws, members, cf):
    set_timing(aws, 0.6, 0.05)
    op_id = cf.create_stack_instances(
        StackSetName=NAME, Accounts=members, Regions=["us-east-1"], OperationId="create-1"
    )["OperationId"]
    assert op_id == "create-1"

    assert operation(cf, NAME, op_id)["Status"] == "RUNNING"
    listed = cf.list_stack_set_operations(StackSetName=NAME)["Summaries"]
    assert [(o["OperationId"], o["Status"]) for o in listed] == [("create-1", "RUNNING")]
    pending = instances(cf, NAME)
    assert len(pending) == 3
    assert {s["Status"] for s in pending.values()} == {"OUTDATED"}
    assert {s["StackInstanceStatus"]["DetailedStatus"] for s in pending.values()} <= {"PENDING", "RUNNING"}
    assert {r["Status"] for r in results(cf, NAME, op_id).values()} <= {"PENDING", "RUNNING"}
    # Nothing is deployed before the operation's time is up.
    with pytest.raises(ClientError):
        member_iam(aws, members[0]).get_role(RoleName="linked-role")

    done = wait_done(cf, NAME, op_id)
    assert done["Status"] == "SUCCEEDED"
    assert done["EndTimestamp"] - done["CreationTimestamp"] >= timedelta(seconds=0.6)
    current = instances(cf, NAME)
    assert {s["Status"] for s in current.values()} == {"CURRENT"}
    assert {s["LastOperationId"] for s in current.values()} == {"create-1"}
    assert {r["Status"] for r in results(cf, NAME, op_id).values()} == {"SUCCEEDED"}
    # The template really deployed: the role trusts the hub with the template's ExternalId.
    creds = credentials_for(aws, f"arn:aws:iam::{members[0]}:role/linked-role", ExternalId="ext-1")
    assert aws.client("sts", creds).get_caller_identity()["Account"] == members[0]


def planned_duration(aws, operation_id):
    _, body = aws.control("GET", "/_strict/stacksets/operations")
    (op,) = [o for o in body["operations"] if o["operation_id"] == operation_id]
    return op["duration_seconds"]


@pytest.mark.parametrize(
    ("preferences", "regions", "waves"),
    [
        ({}, ["us-east-1"], 3),  # default MaxConcurrentCount is 1
        ({"MaxConcurrentCount": 2, "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE"}, ["us-east-1"], 2),
        ({"MaxConcurrentCount": 3, "FailureToleranceCount": 2}, ["us-east-1"], 1),
        ({"MaxConcurrentCount": 3}, ["us-east-1"], 3),  # strict mode caps concurrency at tolerance + 1
        ({"MaxConcurrentPercentage": 50, "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE"}, ["us-east-1"], 3),
        ({"MaxConcurrentPercentage": 100, "FailureTolerancePercentage": 100}, ["us-east-1", "eu-west-1"], 2),
        (
            {
                "MaxConcurrentPercentage": 100,
                "FailureTolerancePercentage": 100,
                "RegionConcurrencyType": "PARALLEL",
            },
            ["us-east-1", "eu-west-1"],
            1,
        ),
    ],
)
def test_duration_follows_waves(aws, members, cf, preferences, regions, waves):
    set_timing(aws, 0.05, 0.1)
    op_id = cf.create_stack_instances(
        StackSetName=NAME, Accounts=members, Regions=regions, OperationPreferences=preferences
    )["OperationId"]
    assert planned_duration(aws, op_id) == pytest.approx(0.05 + 0.1 * waves)
    done = wait_done(cf, NAME, op_id)
    assert done["EndTimestamp"] - done["CreationTimestamp"] >= timedelta(seconds=0.05 + 0.1 * waves - 0.005)


def test_duration_grows_with_accounts(aws, cf):
    org = aws.client("organizations")
    more = [
        org.create_account(AccountName=f"extra{i}", Email=f"extra{i}@example.com")["CreateAccountStatus"][
            "AccountId"
        ]
        for i in range(4)
    ]
    set_timing(aws, 0.05, 0.01)
    prefs = {
        "MaxConcurrentCount": 2,
        "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE",
        "FailureTolerancePercentage": 100,
    }
    small = cf.create_stack_instances(
        StackSetName=NAME, Accounts=more[:2], Regions=["us-east-1"], OperationPreferences=prefs
    )
    wait_done(cf, NAME, small["OperationId"])
    large = cf.create_stack_instances(
        StackSetName=NAME, Accounts=more, Regions=["us-west-2"], OperationPreferences=prefs
    )
    assert planned_duration(aws, small["OperationId"]) == pytest.approx(0.06)
    assert planned_duration(aws, large["OperationId"]) == pytest.approx(0.07)


def test_second_operation_while_running_is_rejected(aws, members, cf):
    set_timing(aws, 0.6, 0.05)
    first = cf.create_stack_instances(StackSetName=NAME, Accounts=members[:1], Regions=["us-east-1"])[
        "OperationId"
    ]
    with pytest.raises(ClientError) as excinfo:
        cf.create_stack_instances(StackSetName=NAME, Accounts=members[1:], Regions=["us-east-1"])
    assert error_code(excinfo) == "OperationInProgressException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    with pytest.raises(ClientError) as excinfo:
        cf.update_stack_set(StackSetName=NAME, UsePreviousTemplate=True, Capabilities=CAPS)
    assert error_code(excinfo) == "OperationInProgressException"
    wait_done(cf, NAME, first)
    set_timing(aws, 0.05, 0.01)
    second = cf.create_stack_instances(StackSetName=NAME, Accounts=members[1:], Regions=["us-east-1"])[
        "OperationId"
    ]
    assert wait_done(cf, NAME, second)["Status"] == "SUCCEEDED"


def test_repeated_operation_id_starts_nothing(aws, members, cf):
    set_timing(aws, 0.6, 0.05)
    kwargs = {"StackSetName": NAME, "Accounts": members, "Regions": ["us-east-1"], "OperationId": "once"}
    assert cf.create_stack_instances(**kwargs)["OperationId"] == "once"
    assert cf.create_stack_instances(**kwargs)["OperationId"] == "once"  # a retry while RUNNING
    wait_done(cf, NAME, "once")
    assert cf.create_stack_instances(**kwargs)["OperationId"] == "once"  # and after it finished
    assert [o["OperationId"] for o in cf.list_stack_set_operations(StackSetName=NAME)["Summaries"]] == [
        "once"
    ]
    _, body = aws.control("GET", "/_strict/stacksets/operations")
    assert [o["action"] for o in body["operations"]] == ["CREATE"]
    with pytest.raises(ClientError) as excinfo:
        cf.delete_stack_instances(
            StackSetName=NAME, Accounts=members, Regions=["us-east-1"], RetainStacks=False, OperationId="once"
        )
    assert error_code(excinfo) == "OperationIdAlreadyExistsException"


def fail_accounts(aws, reasons):
    status, _ = aws.control("PUT", "/_strict/stacksets/failures", {"accounts": reasons})
    assert status == 200


def test_failed_account_within_tolerance(aws, members, cf):
    fail_accounts(aws, {members[1]: "Simulated: the account is quarantined"})
    op_id = cf.create_stack_instances(
        StackSetName=NAME,
        Accounts=members,
        Regions=["us-east-1"],
        OperationPreferences={"FailureToleranceCount": 1},
    )["OperationId"]
    done = wait_done(cf, NAME, op_id)
    assert done["Status"] == "SUCCEEDED"
    assert done["StatusDetails"]["FailedStackInstancesCount"] == 1
    listed = instances(cf, NAME)
    failed = listed[f"{members[1]}/us-east-1"]
    assert (failed["Status"], failed["StackInstanceStatus"]["DetailedStatus"]) == ("OUTDATED", "FAILED")
    assert failed["StatusReason"] == "Simulated: the account is quarantined"
    for account in (members[0], members[2]):
        assert listed[f"{account}/us-east-1"]["Status"] == "CURRENT"
    outcome = results(cf, NAME, op_id)
    assert outcome[f"{members[1]}/us-east-1"]["Status"] == "FAILED"
    assert outcome[f"{members[1]}/us-east-1"]["StatusReason"] == "Simulated: the account is quarantined"

    # Once the fault is gone, an update retries the failed instance.
    aws.control("DELETE", "/_strict/stacksets/failures")
    update = cf.update_stack_set(StackSetName=NAME, UsePreviousTemplate=True, Capabilities=CAPS)[
        "OperationId"
    ]
    assert wait_done(cf, NAME, update)["Status"] == "SUCCEEDED"
    assert {s["Status"] for s in instances(cf, NAME).values()} == {"CURRENT"}


def test_failures_beyond_tolerance_cancel_the_rest(aws, members, cf):
    fail_accounts(aws, {members[0]: "Simulated failure"})
    op_id = cf.create_stack_instances(
        StackSetName=NAME, Accounts=members, Regions=["us-east-1", "eu-west-1"]
    )["OperationId"]
    done = wait_done(cf, NAME, op_id)
    assert done["Status"] == "FAILED"
    outcome = results(cf, NAME, op_id)
    assert outcome[f"{members[0]}/us-east-1"]["Status"] == "FAILED"
    cancelled = [k for k, r in outcome.items() if r["Status"] == "CANCELLED"]
    assert sorted(cancelled) == sorted(
        [f"{a}/us-east-1" for a in members[1:]] + [f"{a}/eu-west-1" for a in members]
    )
    listed = instances(cf, NAME)
    assert listed[f"{members[2]}/eu-west-1"]["StackInstanceStatus"]["DetailedStatus"] == "CANCELLED"
    assert listed[f"{members[0]}/us-east-1"]["StackInstanceStatus"]["DetailedStatus"] == "FAILED"


def test_template_collision_fails_only_that_instance(aws, members, cf):
    # A named IAM role is global: the second region of each account collides with the first.
    op_id = cf.create_stack_instances(
        StackSetName=NAME,
        Accounts=members[:1],
        Regions=["us-east-1", "eu-west-1"],
        OperationPreferences={"RegionConcurrencyType": "PARALLEL"},
    )["OperationId"]
    done = wait_done(cf, NAME, op_id)
    assert done["Status"] == "FAILED"  # eu-west-1 exceeded its tolerance of 0
    listed = instances(cf, NAME)
    assert listed[f"{members[0]}/us-east-1"]["Status"] == "CURRENT"
    collided = listed[f"{members[0]}/eu-west-1"]
    assert collided["StackInstanceStatus"]["DetailedStatus"] == "FAILED"
    assert "already exists" in collided["StatusReason"]
    # The failed stack was rolled back; the first region's role is intact.
    assert member_iam(aws, members[0]).get_role(RoleName="linked-role")["Role"]["RoleName"] == "linked-role"


def test_self_managed_needs_the_execution_role(aws, members, cf):
    org = aws.client("organizations")
    bare = org.create_account(AccountName="bare", Email="bare@example.com")["CreateAccountStatus"][
        "AccountId"
    ]
    op_id = cf.create_stack_instances(
        StackSetName=NAME,
        Accounts=[members[0], bare],
        Regions=["us-east-1"],
        OperationPreferences={"FailureToleranceCount": 1},
    )["OperationId"]
    assert wait_done(cf, NAME, op_id)["Status"] == "SUCCEEDED"
    failed = instances(cf, NAME)[f"{bare}/us-east-1"]
    assert failed["StackInstanceStatus"]["DetailedStatus"] == "FAILED"
    assert failed["StatusReason"] == (
        f"Account {bare} should have 'AWSCloudFormationStackSetExecutionRole' role with trust relationship "
        "to Role 'AWSCloudFormationStackSetAdministrationRole'."
    )


def test_managed_execution_queues_operations(aws, members):
    cf = aws.client("cloudformation")
    cf.create_stack_set(
        StackSetName="managed",
        TemplateBody=role_template(),
        Capabilities=CAPS,
        ManagedExecution={"Active": True},
    )
    set_timing(aws, 0.4, 0.05)
    first = cf.create_stack_instances(StackSetName="managed", Accounts=members[:1], Regions=["us-east-1"])[
        "OperationId"
    ]
    second = cf.create_stack_instances(StackSetName="managed", Accounts=members[1:], Regions=["us-east-1"])[
        "OperationId"
    ]
    assert operation(cf, "managed", first)["Status"] == "RUNNING"
    assert operation(cf, "managed", second)["Status"] == "QUEUED"
    assert cf.describe_stack_set(StackSetName="managed")["StackSet"]["ManagedExecution"] == {"Active": True}
    done_first = wait_done(cf, "managed", first)
    done_second = wait_done(cf, "managed", second)
    assert (done_first["Status"], done_second["Status"]) == ("SUCCEEDED", "SUCCEEDED")
    assert done_second["EndTimestamp"] >= done_first["EndTimestamp"] + timedelta(seconds=0.4)


def test_update_rotates_external_id_and_delete_removes(aws, members, cf):
    set_timing(aws, 0.05, 0.01)
    prefs = {"MaxConcurrentPercentage": 100, "FailureTolerancePercentage": 100}
    create = cf.create_stack_instances(
        StackSetName=NAME, Accounts=members, Regions=["us-east-1"], OperationPreferences=prefs
    )
    wait_done(cf, NAME, create["OperationId"])
    role = f"arn:aws:iam::{members[0]}:role/linked-role"
    credentials_for(aws, role, ExternalId="ext-1")

    update = cf.update_stack_instances(
        StackSetName=NAME,
        Accounts=members[:1],
        Regions=["us-east-1"],
        ParameterOverrides=[{"ParameterKey": "ExternalId", "ParameterValue": "ext-2"}],
    )
    assert wait_done(cf, NAME, update["OperationId"])["Status"] == "SUCCEEDED"
    described = cf.describe_stack_instance(
        StackSetName=NAME, StackInstanceAccount=members[0], StackInstanceRegion="us-east-1"
    )
    assert described["StackInstance"]["ParameterOverrides"] == [
        {"ParameterKey": "ExternalId", "ParameterValue": "ext-2"}
    ]
    with pytest.raises(ClientError):
        credentials_for(aws, role, ExternalId="ext-1")
    credentials_for(aws, role, ExternalId="ext-2")

    with pytest.raises(ClientError) as excinfo:
        cf.delete_stack_set(StackSetName=NAME)
    assert error_code(excinfo) == "StackSetNotEmptyException"
    delete = cf.delete_stack_instances(
        StackSetName=NAME,
        Accounts=members,
        Regions=["us-east-1"],
        RetainStacks=False,
        OperationPreferences=prefs,
    )
    assert wait_done(cf, NAME, delete["OperationId"])["Status"] == "SUCCEEDED"
    assert instances(cf, NAME) == {}
    with pytest.raises(ClientError):
        member_iam(aws, members[0]).get_role(RoleName="linked-role")
    cf.delete_stack_set(StackSetName=NAME)
    with pytest.raises(ClientError) as excinfo:
        cf.describe_stack_set(StackSetName=NAME)
    assert error_code(excinfo) == "StackSetNotFoundException"


def test_update_stack_instances_of_missing_instance_is_rejected(aws, members, cf):
    with pytest.raises(ClientError) as excinfo:
        cf.update_stack_instances(StackSetName=NAME, Accounts=members[:1], Regions=["us-east-1"])
    assert error_code(excinfo) == "StackInstanceNotFoundException"


def test_stack_set_needs_iam_capability(aws):
    cf = aws.client("cloudformation")
    with pytest.raises(ClientError) as excinfo:
        cf.create_stack_set(StackSetName="no-caps", TemplateBody=role_template())
    assert error_code(excinfo) == "InsufficientCapabilitiesException"
    cf.create_stack_set(StackSetName="no-caps", TemplateBody=role_template(), Capabilities=CAPS)
    with pytest.raises(ClientError) as excinfo:
        cf.create_stack_set(StackSetName="no-caps", TemplateBody=role_template(), Capabilities=CAPS)
    assert error_code(excinfo) == "NameAlreadyExistsException"


def test_failed_delete_is_inoperable_until_retained(aws, members, cf):
    set_timing(aws, 0.05, 0.01)
    prefs = {"MaxConcurrentPercentage": 100, "FailureTolerancePercentage": 100}
    create = cf.create_stack_instances(
        StackSetName=NAME, Accounts=members, Regions=["us-east-1"], OperationPreferences=prefs
    )
    wait_done(cf, NAME, create["OperationId"])
    page = cf.list_stack_instances(StackSetName=NAME, MaxResults=2)
    assert len(page["Summaries"]) == 2 and page["NextToken"]

    aws.control(
        "PUT", "/_strict/stacksets/failures", {"accounts": {members[0]: "Stuck"}, "actions": ["DELETE"]}
    )
    delete = cf.delete_stack_instances(
        StackSetName=NAME,
        Accounts=members,
        Regions=["us-east-1"],
        RetainStacks=False,
        OperationPreferences=prefs,
    )
    assert wait_done(cf, NAME, delete["OperationId"])["Status"] == "SUCCEEDED"
    (stuck,) = instances(cf, NAME).values()
    assert (stuck["Account"], stuck["Status"], stuck["StatusReason"]) == (members[0], "INOPERABLE", "Stuck")

    update = cf.update_stack_set(StackSetName=NAME, UsePreviousTemplate=True, Capabilities=CAPS)
    wait_done(cf, NAME, update["OperationId"])
    assert results(cf, NAME, update["OperationId"]) == {}  # updates skip inoperable instances
    retain = cf.delete_stack_instances(
        StackSetName=NAME, Accounts=members[:1], Regions=["us-east-1"], RetainStacks=True
    )
    assert wait_done(cf, NAME, retain["OperationId"])["Status"] == "SUCCEEDED"
    assert instances(cf, NAME) == {}
    # A retained stack keeps its resources.
    assert member_iam(aws, members[0]).get_role(RoleName="linked-role")
