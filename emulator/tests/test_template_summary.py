"""GetTemplateSummary: parameters with NoEcho, by body or by versioned S3 URL, one source only."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from conftest import error_code
from helpers import role_template

BUCKET = "templates"


def template(no_echo) -> str:
    declaration = {"Type": "String"}
    if no_echo is not None:
        declaration["NoEcho"] = no_echo
    body = json.loads(role_template())
    body["Parameters"] = {"ExternalId": declaration, "Owner": {"Type": "String", "Default": "team"}}
    return json.dumps(body)


def parameters(summary):
    return {p["ParameterKey"]: p for p in summary["Parameters"]}


@pytest.mark.parametrize("no_echo, hidden", [(True, True), ("true", True), ("false", False), (None, False)])
def test_a_body_reports_no_echo_as_a_boolean(aws, no_echo, hidden):
    cf = aws.client("cloudformation")
    found = parameters(cf.get_template_summary(TemplateBody=template(no_echo)))
    assert found["ExternalId"]["NoEcho"] is hidden
    assert found["Owner"]["NoEcho"] is False
    assert found["Owner"]["DefaultValue"] == "team"


def test_a_summary_names_resource_types_and_capabilities(aws):
    summary = aws.client("cloudformation").get_template_summary(TemplateBody=template(True))
    assert summary["ResourceTypes"] == ["AWS::IAM::Role"]
    assert summary["Capabilities"] == ["CAPABILITY_NAMED_IAM"]


@pytest.fixture
def versions(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    hidden = s3.put_object(Bucket=BUCKET, Key="role.json", Body=template(True).encode())["VersionId"]
    shown = s3.put_object(Bucket=BUCKET, Key="role.json", Body=template(False).encode())["VersionId"]
    return hidden, shown


def url(version=None, key="role.json"):
    base = f"https://{BUCKET}.s3.us-east-1.amazonaws.com/{key}"
    return f"{base}?versionId={version}" if version else base


def test_a_url_reads_the_version_it_names(aws, versions):
    hidden, shown = versions
    cf = aws.client("cloudformation")
    assert parameters(cf.get_template_summary(TemplateURL=url(hidden)))["ExternalId"]["NoEcho"] is True
    assert parameters(cf.get_template_summary(TemplateURL=url(shown)))["ExternalId"]["NoEcho"] is False
    # Without a version: the newest object, as S3 serves it.
    assert parameters(cf.get_template_summary(TemplateURL=url()))["ExternalId"]["NoEcho"] is False
    path_style = f"https://s3.amazonaws.com/{BUCKET}/role.json?versionId={hidden}"
    assert parameters(cf.get_template_summary(TemplateURL=path_style))["ExternalId"]["NoEcho"] is True


@pytest.mark.parametrize(
    "source",
    [
        {"TemplateURL": url("no-such-version")},
        {"TemplateURL": url(key="missing.json")},
        {"TemplateURL": "https://example.com/role.json"},
        {"TemplateBody": "not: [a template"},
        {"TemplateBody": json.dumps({"Parameters": {}})},
        {},
        {"TemplateBody": template(True), "TemplateURL": url()},
    ],
)
def test_unreadable_or_ambiguous_sources_are_validation_errors(aws, versions, source):
    with pytest.raises(ClientError) as excinfo:
        aws.client("cloudformation").get_template_summary(**source)
    assert error_code(excinfo) == "ValidationError"


def test_a_summary_is_counted_and_creates_nothing(aws):
    cf = aws.client("cloudformation")
    aws.control("DELETE", "/_strict/requests")
    cf.get_template_summary(TemplateBody=template(True))
    _, counts = aws.control("GET", "/_strict/requests")
    assert counts["counts"]["cloudformation:GetTemplateSummary"] == 1
    assert cf.list_stack_sets()["Summaries"] == []


def test_stack_sets_deploy_the_version_a_url_names(aws, versions):
    hidden, shown = versions
    cf = aws.client("cloudformation")
    caps = ["CAPABILITY_NAMED_IAM"]
    cf.create_stack_set(StackSetName="by-url", TemplateURL=url(hidden), Capabilities=caps)

    def deployed_no_echo():
        body = cf.describe_stack_set(StackSetName="by-url")["StackSet"]["TemplateBody"]
        return json.loads(body)["Parameters"]["ExternalId"].get("NoEcho")

    assert deployed_no_echo() is True
    cf.update_stack_set(StackSetName="by-url", TemplateURL=url(shown), Capabilities=caps)
    assert deployed_no_echo() is False
