"""ImportStacksToStackSet: existing stacks become stack instances, as an asynchronous operation.

What AWS enforces, and so does this layer:
- exactly one of `StackIds` (at most 10 inline) and `StackIdsUrl` (an S3 object, at most 200);
- each stack ID names a live stack (`StackNotFoundException` otherwise, before anything starts);
- a stack already an instance of the StackSet cannot be imported again (ValidationError);
- the import is one StackSet operation like the others: `OperationInProgressException` while
  another runs, its OperationId an idempotency token, failure tolerance and waves as usual;
- per stack, when the operation carries it out: a self-managed StackSet needs its execution role
  in the stack's account, and the stack's template must match the StackSet's; a mismatch fails
  that stack alone, and its instance stays with DetailedStatus FAILED_IMPORT.
An imported stack is adopted as it is: nothing is created or updated in the account (no second
role), and the instance takes the StackSet's parameters at its next update.
"""

from __future__ import annotations

import json
import re
from typing import Any

from moto.cloudformation.models import Stack, cloudformation_backends

from ..errors import AwsError, validation
from ..protocol import AwsRequest, Reply, result_reply
from . import deploy
from .model import Key, Operation, StackSetState, Target
from .templates import template_from_url

IMPORT = "IMPORT"
FAILED_IMPORT = "FAILED_IMPORT"
MAX_INLINE = 10
MAX_URL = 200

_STACK_ID_RE = re.compile(r"arn:aws[-a-z]*:cloudformation:([a-z0-9-]+):(\d{12}):stack/([^/]+)/(.+)")
_LIVE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE")


def import_stacks(api: Any, req: AwsRequest, forward: Any) -> Reply:
    """The ImportStacksToStackSet handler (`api` is the StackSetApi)."""
    from .api import _operation_id, _preferences, check_service_managed

    p = req.params()
    state = api._state(req)
    prefs = _preferences(p)
    operation_id = _operation_id(p)
    if (repeated := api.engine.repeated(state, operation_id, IMPORT)) is not None:
        return result_reply(req, {"OperationId": repeated.id})
    stack_ids = _stack_ids(p, state.account)
    ous = p.get("OrganizationalUnitIds") or []
    if state.permission_model == "SERVICE_MANAGED":
        check_service_managed(state.account, p.get("CallAs"))
        if not ous:
            raise validation("OrganizationalUnitIds are required to import stacks into a SERVICE_MANAGED StackSet.")
    targets: list[Target] = []
    found: dict[Key, str] = {}
    for stack_id in stack_ids:
        stack = find_stack(stack_id)
        target = Target(stack.account_id, stack.region_name, ous[0] if ous else None)
        if target.key in state.instances:
            raise validation(
                f"Stack instance for account {target.account} in region {target.region} already exists "
                f"in StackSet {state.name}."
            )
        if target.key in found:
            raise validation(f"Stacks {found[target.key]} and {stack_id} are in the same account and region.")
        found[target.key] = stack.stack_id
        targets.append(target)
    op = api.engine.submit(state, IMPORT, targets, prefs, operation_id)
    op.stack_ids = found
    return result_reply(req, {"OperationId": op.id})


def _stack_ids(p: dict[str, Any], account: str) -> list[str]:
    inline, url = p.get("StackIds") or [], p.get("StackIdsUrl")
    if bool(inline) == bool(url):
        raise validation("Specify either StackIds or StackIdsUrl.")
    if inline:
        if len(inline) > MAX_INLINE:
            raise validation(
                f"1 validation error detected: Value at 'stackIds' failed to satisfy constraint: "
                f"Member must have length less than or equal to {MAX_INLINE}"
            )
        return list(inline)
    body = template_from_url(url, account)
    try:
        listed = json.loads(body)
    except ValueError:
        listed = [line.strip() for line in body.replace(",", "\n").splitlines() if line.strip()]
    if not isinstance(listed, list) or not listed or len(listed) > MAX_URL:
        raise validation(f"StackIdsUrl must name a list of 1 to {MAX_URL} stack IDs.")
    return [str(s) for s in listed]


def find_stack(stack_id: str) -> Any:
    """The live stack `stack_id` names, in its own account and region."""
    match = _STACK_ID_RE.fullmatch(stack_id)
    stack = None
    if match is not None:
        region, account = match.group(1), match.group(2)
        stack = cloudformation_backends[account][region].stacks.get(stack_id)
    if stack is None or stack.status not in _LIVE:
        raise AwsError("StackNotFoundException", f"Stack with id {stack_id} does not exist", 404)
    return stack


def same_template(a: str, b: str) -> bool:
    """Templates match when they parse to the same document (JSON or YAML, any layout)."""
    try:
        return Stack.parse_template(a) == Stack.parse_template(b)
    except Exception:
        return a == b


def apply_import(state: StackSetState, op: Operation, key: Key, index: dict[Key, Any]) -> None:
    """Adopt the stack for `key` as an instance, or raise TargetFailed; nothing is deployed."""
    stackset = state.moto
    account, region = key
    if (problem := deploy.execution_role_problem(stackset, account)) is not None:
        raise deploy.TargetFailed(problem)
    stack_id = op.stack_ids.get(key)
    stack = cloudformation_backends[account][region].stacks.get(stack_id)
    if stack is None or stack.status not in _LIVE:
        raise deploy.TargetFailed(f"Stack with id {stack_id} does not exist")
    if not same_template(stack.template, stackset.template):
        raise deploy.TargetFailed(
            f"The template of stack {stack.name} does not match the template of StackSet {stackset.name}."
        )
    instance = deploy.StrictStackInstance(stackset, account, region, stack, [])
    stackset.instances.stack_instances.append(instance)
    index[key] = instance
