"""CloudFormation templates read by body or S3 URL as AWS reads them, and GetTemplateSummary.

moto answers GetTemplateSummary itself, but more leniently than AWS: it reads the newest object
behind a TemplateURL whatever `versionId` the URL names, accepts several template sources at once,
and passes `NoEcho` through as the template spells it. Here:
- exactly one of `TemplateBody`, `TemplateURL`, `StackName`, `StackSetName` (else ValidationError);
- a TemplateURL is an `https://` S3 URL (path or virtual-hosted style); its `versionId` query
  parameter selects that object version, and a missing bucket, key or version is a ValidationError;
- `NoEcho` is answered as a boolean (CloudFormation accepts `true`/`"true"`);
- a body that is neither YAML nor JSON, or has no `Resources`, is "Template format error".
UpdateStackSet reads TemplateURLs through the same function, so a versioned URL deploys that
version.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

from moto.cloudformation.models import Stack, cloudformation_backends
from moto.s3.models import s3_backends

from ..errors import validation
from ..identity import PARTITION, account_of
from ..protocol import AwsRequest, Reply, result_reply

_NAMED_IAM_PROPERTIES = ("RoleName", "UserName", "GroupName", "ManagedPolicyName", "InstanceProfileName")


def template_from_url(url: str, account: str) -> str:
    """The template body an S3 TemplateURL names, at the version its `versionId` names."""
    parts = urlparse(url)
    host = parts.hostname or ""
    path = parts.path.lstrip("/")
    if parts.scheme != "https" or not host:
        raise validation(f"TemplateURL must be a supported URL: {url}")
    if host.startswith("s3") and (host.endswith(".amazonaws.com") or host == "s3"):
        bucket, _, key = path.partition("/")
    elif ".s3." in host or ".s3-" in host:
        bucket, key = host.split(".", 1)[0], path
    else:
        raise validation(f"TemplateURL must be an Amazon S3 URL: {url}")
    version = parse_qs(parts.query).get("versionId", [None])[0]
    try:
        found = s3_backends[account][PARTITION].get_object(bucket, key, version_id=version)
    except Exception:  # moto raises MissingBucket for an absent bucket
        found = None
    if found is None or not key:
        what = f"s3://{bucket}/{key}" + (f" version {version}" if version else "")
        raise validation(f"S3 error: Unable to get template from {what}: the object does not exist")
    return found.value.decode("utf-8")


def parse(template: str) -> dict[str, Any]:
    try:
        document = Stack.parse_template(template)
    except Exception:
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise validation("Template format error: At least one Resources member must be defined.")
    return document


def no_echo(declaration: dict[str, Any]) -> bool:
    value = declaration.get("NoEcho", False)
    return value is True or (isinstance(value, str) and value.lower() == "true")


def summary(template: str) -> dict[str, Any]:
    document = parse(template)
    parameters = []
    for name, declaration in (document.get("Parameters") or {}).items():
        declaration = declaration if isinstance(declaration, dict) else {}
        entry: dict[str, Any] = {
            "ParameterKey": name,
            "ParameterType": str(declaration.get("Type", "String")),
            "NoEcho": no_echo(declaration),
            "Description": str(declaration.get("Description", "")),
        }
        if "Default" in declaration:
            entry["DefaultValue"] = str(declaration["Default"])
        parameters.append(entry)
    resources = document["Resources"].values()
    types = sorted({str(r.get("Type", "")) for r in resources if isinstance(r, dict)})
    result: dict[str, Any] = {"Parameters": parameters, "ResourceTypes": types}
    if "AWSTemplateFormatVersion" in document:
        result["Version"] = str(document["AWSTemplateFormatVersion"])
    if "Description" in document:
        result["Description"] = str(document["Description"])
    if (needed := needed_capability(document)) is not None:
        result["Capabilities"] = [needed]
        result["CapabilitiesReason"] = "The template contains IAM resources."
    return result


def needed_capability(document: Any) -> str | None:
    """CAPABILITY_NAMED_IAM for named IAM resources, CAPABILITY_IAM for other IAM resources."""
    needed = None
    resources = document.get("Resources") if isinstance(document, dict) else None
    for resource in (resources or {}).values():
        if not isinstance(resource, dict) or not str(resource.get("Type", "")).startswith("AWS::IAM::"):
            continue
        properties = resource.get("Properties") or {}
        if any(name in properties for name in _NAMED_IAM_PROPERTIES):
            return "CAPABILITY_NAMED_IAM"
        needed = "CAPABILITY_IAM"
    return needed


def get_template_summary(req: AwsRequest, forward: Any) -> Reply:
    p = req.params()
    sources = [name for name in ("TemplateBody", "TemplateURL", "StackName", "StackSetName") if p.get(name)]
    if len(sources) != 1:
        raise validation("Specify exactly one of TemplateBody, TemplateURL, StackName or StackSetName.")
    account = account_of(req)
    if p.get("TemplateBody"):
        template = p["TemplateBody"]
    elif p.get("TemplateURL"):
        template = template_from_url(p["TemplateURL"], account)
    elif p.get("StackSetName"):
        backend = cloudformation_backends[account][req.region]
        found = [ss for ss in backend.stacksets.values() if ss.name == p["StackSetName"] and ss.status != "DELETED"]
        if not found:
            from ..errors import AwsError

            raise AwsError("StackSetNotFoundException", f"StackSet {p['StackSetName']} not found", 404)
        template = found[0].template
    else:
        return forward()
    return result_reply(req, summary(template))
