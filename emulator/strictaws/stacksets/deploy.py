"""Carrying out one account/region of a StackSet operation against moto's backends.

Each target is done on its own, so a failure stays that account's failure. Stacks are real stacks
in the target account and region (for both permission models), named `StackSet-<name>-<uuid>` as
AWS does; a stack whose creation fails is rolled back (deleted) like AWS does.

moto's stack update leaves IAM roles as they were (trust policy, MaxSessionDuration and inline
policies are not updated; MaxSessionDuration is even reset to 3600), so after an update the roles
of the template are brought in line with its resolved properties here. Without that, rotating an
ExternalId through a template update would never reach the role and AssumeRole would misjudge.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from moto.cloudformation.models import StackInstance, cloudformation_backends
from moto.cloudformation.parsing import clean_json

from ..identity import Caller, find_role_by_name
from ..policy import ALLOW, evaluate, parse_document

PARTITION = "aws"


class TargetFailed(Exception):
    """This account/region failed; the message is the instance's StatusReason."""


class StrictStackInstance(StackInstance):
    """A moto stack instance whose stack the strict layer deployed (with rollback) itself."""

    def __init__(self, stackset: Any, account: str, region: str, stack: Any, overrides: list[Any]):
        # Deliberately not calling moto's constructor: it deploys the stack without rolling back.
        self.account_id = account
        self.region_name = region
        self.stackset_id = stackset.id
        self.stack_name = stack.name
        self.name = stackset.name
        self.template = stackset.template
        self.parameters = overrides
        self.permission_model = stackset.permission_model
        self.stack = stack

    def delete(self) -> None:
        cloudformation_backends[self.account_id][self.region_name].delete_stack(self.stack.stack_id)


def describe_error(exc: BaseException) -> str:
    code = getattr(exc, "code", None) or getattr(exc, "error_type", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if isinstance(code, str) and code and not message.startswith(code):
        return f"{code}: {message}"
    return message


def effective_parameters(stackset: Any, overrides: list[dict[str, Any]]) -> dict[str, str]:
    params = dict(stackset.parameters or {})
    for item in overrides:
        if "ParameterValue" in item:
            params[item["ParameterKey"]] = item["ParameterValue"]
    return params


def execution_role_problem(stackset: Any, account: str) -> str | None:
    """Why a self-managed StackSet cannot act in `account`, or None."""
    if stackset.permission_model != "SELF_MANAGED":
        return None
    admin_arn = stackset.administration_role_arn
    admin_name = admin_arn.rsplit("/", 1)[-1]
    problem = (
        f"Account {account} should have '{stackset.execution_role_name}' role with trust "
        f"relationship to Role '{admin_name}'."
    )
    role = find_role_by_name(account, stackset.execution_role_name)
    if role is None:
        return problem
    document = parse_document(role.assume_role_policy_document)
    admin_account = admin_arn.split(":")[4]
    admin = Caller(
        account=admin_account,
        arn=f"arn:aws:sts::{admin_account}:assumed-role/{admin_name}/stacksets",
        role_arn=admin_arn,
    )
    context = {"sts:ExternalId": None, "sts:RoleSessionName": "stacksets"}
    if document is None or evaluate(document, admin, "sts:AssumeRole", context) != ALLOW:
        return problem
    return None


def create_instance(stackset: Any, account: str, region: str, overrides: list[dict[str, Any]]) -> Any:
    backend = cloudformation_backends[account][region]
    name = f"StackSet-{stackset.name}-{uuid.uuid4()}"
    params = effective_parameters(stackset, overrides)
    try:
        stack = backend.create_stack(name=name, template=stackset.template, parameters=params)
    except Exception as exc:
        _roll_back(backend, name)
        raise TargetFailed(describe_error(exc)) from exc
    instance = StrictStackInstance(stackset, account, region, stack, overrides)
    stackset.instances.stack_instances.append(instance)
    return instance


def _roll_back(backend: Any, stack_name: str) -> None:
    for stack_id, stack in list(backend.stacks.items()):
        if stack.name == stack_name:
            try:
                backend.delete_stack(stack_id)
            except Exception:
                backend.stacks.pop(stack_id, None)


def update_instance(stackset: Any, instance: Any, overrides: list[dict[str, Any]]) -> None:
    params = effective_parameters(stackset, overrides)
    try:
        instance.stack.update(stackset.template, parameters=params)
        _sync_roles(instance.stack)
    except Exception as exc:
        raise TargetFailed(describe_error(exc)) from exc
    instance.template = stackset.template
    instance.parameters = overrides


def delete_instance(stackset: Any, instance: Any, retain: bool) -> None:
    if not retain:
        try:
            instance.delete()
        except Exception as exc:
            raise TargetFailed(describe_error(exc)) from exc
    stackset.instances.stack_instances.remove(instance)


def _template_roles(stack: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Each IAM role the stack deployed, with the template's resolved properties for it."""
    resources = stack.template_dict.get("Resources", {}) or {}
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::IAM::Role":
            continue
        role = stack.resource_map._parsed_resources.get(logical_id)
        if role is None or not hasattr(role, "assume_role_policy_document"):
            continue
        yield role, clean_json(resource.get("Properties", {}) or {}, stack.resource_map)


def role_drift(role: Any, props: dict[str, Any]) -> list[str]:
    """What of `role` differs from the template's properties: trust policy, session limit,
    inline policies, managed policies attached beyond the template's (moto's stacks attach
    none, so an attached policy the template does not name is a hand edit), boundary."""
    differences = []
    if parse_document(role.assume_role_policy_document) != parse_document(props.get("AssumeRolePolicyDocument")):
        differences.append("AssumeRolePolicyDocument")
    if int(role.max_session_duration or 3600) != int(props.get("MaxSessionDuration", 3600)):
        differences.append("MaxSessionDuration")
    wanted = {p["PolicyName"]: parse_document(p["PolicyDocument"]) for p in props.get("Policies", []) or []}
    if {name: parse_document(doc) for name, doc in role.policies.items()} != wanted:
        differences.append("Policies")
    if set(role.managed_policies) - set(props.get("ManagedPolicyArns", []) or []):
        differences.append("ManagedPolicyArns")
    if (role.permissions_boundary_arn or None) != (props.get("PermissionsBoundary") or None):
        differences.append("PermissionsBoundary")
    return differences


def instance_drift(instance: Any) -> str:
    """DRIFTED when a role the instance's stack deployed was changed (or deleted) by hand."""
    from .model import DRIFTED, IN_SYNC

    account = instance.account_id
    for role, props in _template_roles(instance.stack):
        current = find_role_by_name(account, role.name)
        if current is None or role_drift(current, props):
            return DRIFTED
    return IN_SYNC


def _sync_roles(stack: Any) -> None:
    for role, props in _template_roles(stack):
        document = props.get("AssumeRolePolicyDocument")
        if document is not None:
            role.assume_role_policy_document = document if isinstance(document, str) else json.dumps(document)
        role.max_session_duration = props.get("MaxSessionDuration", 3600)
        role.description = props.get("Description", role.description)
        role.policies = {p["PolicyName"]: p["PolicyDocument"] for p in props.get("Policies", []) or []}
        role.permissions_boundary_arn = props.get("PermissionsBoundary") or None
        wanted = set(props.get("ManagedPolicyArns", []) or [])
        for arn, policy in list(role.managed_policies.items()):
            if arn not in wanted:
                policy.detach_from(role)
