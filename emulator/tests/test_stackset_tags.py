"""StackSet tags: what the operator's ownership checks read (DescribeStackSet) and write
(CreateStackSet, UpdateStackSet)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from conftest import error_code
from helpers import add_execution_role, new_organization, role_template, wait_done

NAME = "tagged"
CAPS = ["CAPABILITY_NAMED_IAM"]
OWNER = [
    {"Key": "accountlinker.dev/cluster-id", "Value": "cluster-1"},
    {"Key": "accountlinker.dev/namespace", "Value": "team-a"},
    {"Key": "accountlinker.dev/bulk-registration", "Value": "x"},
]


def described(cf):
    stack_set = cf.describe_stack_set(StackSetName=NAME)["StackSet"]
    return {t["Key"]: t["Value"] for t in stack_set.get("Tags", [])}, stack_set.get("Description")


@pytest.fixture
def cf(aws):
    members = new_organization(aws, 1)
    add_execution_role(aws, members[0])
    client = aws.client("cloudformation")
    client.members = members
    return client


def test_create_stack_set_keeps_tags_and_description(cf):
    cf.create_stack_set(
        StackSetName=NAME, TemplateBody=role_template(), Capabilities=CAPS, Tags=OWNER, Description="d"
    )
    tags, description = described(cf)
    assert tags == {t["Key"]: t["Value"] for t in OWNER}
    assert description == "d"


def test_untagged_stack_set_describes_no_tags(cf):
    cf.create_stack_set(StackSetName=NAME, TemplateBody=role_template(), Capabilities=CAPS)
    assert described(cf) == ({}, None)


def test_update_stack_set_with_tags_replaces_them_and_without_keeps_them(cf):
    cf.create_stack_set(StackSetName=NAME, TemplateBody=role_template(), Capabilities=CAPS)
    op = cf.update_stack_set(
        StackSetName=NAME, TemplateBody=role_template(), Capabilities=CAPS, Tags=OWNER, OperationId="tag-1"
    )["OperationId"]
    # The tags are the StackSet's as soon as the call is accepted, while the operation runs.
    assert described(cf)[0]["accountlinker.dev/cluster-id"] == "cluster-1"
    wait_done(cf, NAME, op)
    cf.update_stack_set(
        StackSetName=NAME, TemplateBody=role_template(), Capabilities=CAPS, OperationId="plain-1"
    )
    assert described(cf)[0] == {t["Key"]: t["Value"] for t in OWNER}
    other = [{"Key": "accountlinker.dev/cluster-id", "Value": "cluster-2"}]
    wait_done(cf, NAME, "plain-1")
    cf.update_stack_set(
        StackSetName=NAME, TemplateBody=role_template(), Capabilities=CAPS, Tags=other, OperationId="tag-2"
    )
    assert described(cf)[0] == {"accountlinker.dev/cluster-id": "cluster-2"}


def test_a_refused_update_changes_no_tag(aws, cf):
    aws.control("PUT", "/_strict/stacksets/timing", {"base_seconds": 5, "seconds_per_wave": 0})
    cf.create_stack_set(StackSetName=NAME, TemplateBody=role_template(), Capabilities=CAPS, Tags=OWNER)
    cf.create_stack_instances(
        StackSetName=NAME, Accounts=cf.members, Regions=["us-east-1"], OperationId="create-1"
    )
    with pytest.raises(ClientError) as refused:
        cf.update_stack_set(
            StackSetName=NAME,
            TemplateBody=role_template(),
            Capabilities=CAPS,
            Tags=[{"Key": "accountlinker.dev/cluster-id", "Value": "intruder"}],
            OperationId="tag-1",
        )
    assert error_code(refused) == "OperationInProgressException"
    assert described(cf)[0]["accountlinker.dev/cluster-id"] == "cluster-1"
