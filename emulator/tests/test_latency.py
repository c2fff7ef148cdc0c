"""The latency model the benchmark relies on: a StackSet operation takes a fixed cost plus a cost
per wave of MaxConcurrentCount instances; a plain stack stays in progress for a fixed time."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from conftest import error_code
from helpers import add_execution_role, new_organization, role_template, wait_done

CAPS = ["CAPABILITY_NAMED_IAM"]


def operations(aws):
    return aws.control("GET", "/_strict/stacksets/operations")[1]["operations"]


@pytest.mark.parametrize(
    ("accounts", "max_concurrent", "waves"), [(5, 2, 3), (5, 5, 1), (4, 1, 4)]
)
def test_operation_takes_fixed_cost_plus_cost_per_wave(aws, accounts, max_concurrent, waves):
    members = new_organization(aws, accounts)
    for account in members:
        add_execution_role(aws, account)
    aws.control("PUT", "/_strict/stacksets/timing", {"base_seconds": 0.3, "seconds_per_wave": 0.1})
    cf = aws.client("cloudformation")
    cf.create_stack_set(StackSetName="timed", TemplateBody=role_template(), Capabilities=CAPS)
    started = time.monotonic()
    op = cf.create_stack_instances(
        StackSetName="timed",
        Accounts=members,
        Regions=["us-east-1"],
        OperationPreferences={
            "MaxConcurrentCount": max_concurrent,
            "FailureToleranceCount": 0,
            "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE",
        },
    )["OperationId"]
    wait_done(cf, "timed", op)
    elapsed = time.monotonic() - started
    expected = 0.3 + 0.1 * waves
    [recorded] = operations(aws)
    assert recorded["duration_seconds"] == pytest.approx(expected)
    assert expected <= elapsed < expected + 1.0


def test_plain_stack_stays_in_progress_for_the_configured_time(aws):
    status, timing = aws.control("PUT", "/_strict/stacksets/timing", {"stack_seconds": 0.5})
    assert status == 200 and timing["stack_seconds"] == 0.5
    cf = aws.client("cloudformation")
    cf.create_stack(StackName="plain", TemplateBody=role_template("plain-role"), Capabilities=CAPS)
    assert cf.describe_stacks(StackName="plain")["Stacks"][0]["StackStatus"] == "CREATE_IN_PROGRESS"
    with pytest.raises(ClientError) as err:
        cf.update_stack(StackName="plain", TemplateBody=role_template("plain-role", "ext-2"), Capabilities=CAPS)
    assert error_code(err) == "ValidationError"
    assert "CREATE_IN_PROGRESS" in str(err.value)
    time.sleep(0.6)
    assert cf.describe_stacks(StackName="plain")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"

    cf.update_stack(StackName="plain", TemplateBody=role_template("plain-role", "ext-2"), Capabilities=CAPS)
    assert cf.describe_stacks(StackName="plain")["Stacks"][0]["StackStatus"] == "UPDATE_IN_PROGRESS"
    time.sleep(0.6)
    assert cf.describe_stacks(StackName="plain")["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"


def test_plain_stack_is_complete_at_once_by_default(aws):
    assert aws.control("GET", "/_strict/stacksets/timing")[1]["stack_seconds"] == 0.0
    cf = aws.client("cloudformation")
    cf.create_stack(StackName="plain", TemplateBody=role_template("plain-role"), Capabilities=CAPS)
    assert cf.describe_stacks(StackName="plain")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
