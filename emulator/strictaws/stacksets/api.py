"""The CloudFormation StackSet operations the strict layer answers (or checks before moto does).

Instance and operation reads are answered entirely from the engine, so every operation ID a
caller sees is its own and moto's synchronous bookkeeping never shows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from moto.cloudformation.models import Stack, cloudformation_backends

from ..errors import AwsError, validation
from ..identity import ACCOUNT_ID_RE, account_of
from ..orgs import (
    STACKSETS_PRINCIPAL,
    OrgTree,
    is_stacksets_delegated_admin,
    org_backend_of,
    trusted_access_enabled,
)
from ..protocol import AwsRequest, Reply, result_reply
from .engine import StackSetEngine
from . import stacks
from .imports import import_stacks
from .model import DETECT_DRIFT, StackSetState, Target
from .plan import validate_preferences
from .templates import get_template_summary, needed_capability, template_from_url

Forward = Callable[[], Reply]

_OU_RE = re.compile(r"(ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}|r-[a-z0-9]{4,32})")
_OPERATION_ID_RE = re.compile(r"[a-zA-Z0-9][-a-zA-Z0-9]{0,127}")
_MAX_PAGE = 100


class StackSetApi:
    def __init__(self, engine: StackSetEngine):
        self.engine = engine

    def handlers(self) -> dict[str, Callable[[AwsRequest, Forward], Reply]]:
        ops = {
            "CreateStackSet": self.create_stack_set,
            "UpdateStackSet": self.update_stack_set,
            "DeleteStackSet": self.delete_stack_set,
            "DescribeStackSet": self.describe_stack_set,
            "ListStackSets": self.list_stack_sets,
            "CreateStackInstances": self.create_stack_instances,
            "UpdateStackInstances": self.update_stack_instances,
            "DeleteStackInstances": self.delete_stack_instances,
            "ListStackInstances": self.list_stack_instances,
            "DescribeStackInstance": self.describe_stack_instance,
            "ListStackSetOperations": self.list_stack_set_operations,
            "DescribeStackSetOperation": self.describe_stack_set_operation,
            "ListStackSetOperationResults": self.list_stack_set_operation_results,
            "StopStackSetOperation": self.stop_stack_set_operation,
            "DetectStackSetDrift": self.detect_stack_set_drift,
            "ActivateOrganizationsAccess": self.activate_organizations_access,
            "DeactivateOrganizationsAccess": self.deactivate_organizations_access,
            "DescribeOrganizationsAccess": self.describe_organizations_access,
            "GetTemplateSummary": get_template_summary,
            "ImportStacksToStackSet": lambda req, forward: import_stacks(self, req, forward),
        }
        checked = {f"cloudformation:{name}": _as_delegated_admin(handler) for name, handler in ops.items()}
        return {**checked, **stacks.handlers(lambda: self.engine.stacks)}

    # --- StackSets ------------------------------------------------------------------------

    def _state(self, req: AwsRequest) -> StackSetState:
        return self.engine.lookup(account_of(req), req.region, req.params().get("StackSetName", ""))

    def create_stack_set(self, req: AwsRequest, forward: Forward) -> Reply:
        p = req.params()
        account = account_of(req)
        name = p.get("StackSetName", "")
        backend = cloudformation_backends[account][req.region]
        if any(ss.name == name and ss.status != "DELETED" for ss in backend.stacksets.values()):
            raise AwsError("NameAlreadyExistsException", f"StackSet {name} already exists", 409)
        template = p.get("TemplateBody")
        if p.get("TemplateURL"):
            template = template_from_url(p["TemplateURL"], account)
        if template:
            check_capabilities(template, p.get("Capabilities") or [])
        if p.get("PermissionModel") == "SERVICE_MANAGED":
            check_service_managed(account, p.get("CallAs"))
        reply = forward()
        if reply.status == 200:
            state = self.engine.lookup(account, req.region, name)
            if template:
                state.moto.template = template  # moto reads the newest object whatever the version
            state.managed_execution = bool((p.get("ManagedExecution") or {}).get("Active"))
            state.auto_deployment = p.get("AutoDeployment")
            state.capabilities = list(p.get("Capabilities") or [])
        return reply

    def update_stack_set(self, req: AwsRequest, forward: Forward) -> Reply:
        p = req.params()
        state = self._state(req)
        prefs = _preferences(p)
        operation_id = _operation_id(p)
        if (repeated := self.engine.repeated(state, operation_id, "UPDATE")) is not None:
            return result_reply(req, {"OperationId": repeated.id})
        sources = [
            bool(p.get("TemplateBody")),
            bool(p.get("TemplateURL")),
            bool(p.get("UsePreviousTemplate")),
        ]
        if sum(sources) != 1:
            raise validation(
                "Exactly one of TemplateBody, TemplateURL or UsePreviousTemplate=true must be specified."
            )
        ss = state.moto
        template = p.get("TemplateBody")
        if p.get("TemplateURL"):
            template = template_from_url(p["TemplateURL"], state.account)
        capabilities = list(p.get("Capabilities") or [])
        check_capabilities(template or ss.template, capabilities)
        if ss.permission_model == "SERVICE_MANAGED":
            check_service_managed(state.account, p.get("CallAs"))
        if state.busy and not state.managed_execution:
            raise self.engine.in_progress_error(state)
        if p.get("Accounts") or p.get("DeploymentTargets"):
            targets = [t for t in self._targets(state, p) if t.key in state.instances]
        else:
            targets = [Target(a, r, meta.ou) for (a, r), meta in state.instances.items()]
        targets = [t for t in targets if not _inoperable(state, t)]
        cloudformation_backends[state.account][state.region].update_stack_set(
            stackset_name=ss.id,
            template=template,
            description=p.get("Description"),
            parameters=p.get("Parameters") or [],
            tags={t["Key"]: t["Value"] for t in p.get("Tags") or []},
            admin_role=p.get("AdministrationRoleARN"),
            execution_role=p.get("ExecutionRoleName"),
            accounts=[],
            regions=[],
            operation_id=operation_id,
        )
        ss.operations.clear()  # moto's synchronous bookkeeping; the engine keeps the real record
        state.capabilities = capabilities
        if "ManagedExecution" in p:
            state.managed_execution = bool(p["ManagedExecution"].get("Active"))
        if "AutoDeployment" in p:
            state.auto_deployment = p["AutoDeployment"]
        op = self.engine.submit(
            state, "UPDATE", targets, prefs, operation_id, deployment_targets=p.get("DeploymentTargets")
        )
        return result_reply(req, {"OperationId": op.id})

    def delete_stack_set(self, req: AwsRequest, forward: Forward) -> Reply:
        try:
            state = self._state(req)
        except AwsError:
            return forward()  # deleting an absent StackSet succeeds
        if state.busy:
            raise self.engine.in_progress_error(state)
        if state.instances:
            raise AwsError(
                "StackSetNotEmptyException",
                f"StackSet {state.name} still has stack instances; delete them before the StackSet.",
                409,
            )
        reply = forward()
        if reply.status == 200:
            self.engine.forget(state)
        return reply

    def describe_stack_set(self, req: AwsRequest, forward: Forward) -> Reply:
        state = self._state(req)
        ss = state.moto
        described: dict[str, Any] = {
            "StackSetName": ss.name,
            "StackSetId": ss.id,
            "Status": ss.status,
            "TemplateBody": ss.template,
            "Parameters": [
                {"ParameterKey": k, "ParameterValue": v} for k, v in (ss.parameters or {}).items()
            ],
            "Capabilities": state.capabilities,
            "Tags": [{"Key": k, "Value": v} for k, v in (ss.tags or {}).items()],
            "StackSetARN": ss.arn,
            "AdministrationRoleARN": ss.administration_role_arn,
            "ExecutionRoleName": ss.execution_role_name,
            "PermissionModel": ss.permission_model,
            "ManagedExecution": {"Active": state.managed_execution},
            "Regions": sorted({region for _, region in state.instances}),
        }
        if ss.description is not None:
            described["Description"] = ss.description
        if ss.permission_model == "SERVICE_MANAGED":
            described["AutoDeployment"] = state.auto_deployment or {"Enabled": False}
            described["OrganizationalUnitIds"] = sorted(
                ou for ou, regions in state.ou_regions.items() if regions
            )
        return result_reply(req, {"StackSet": described})

    def list_stack_sets(self, req: AwsRequest, forward: Forward) -> Reply:
        p = req.params()
        account = account_of(req)
        summaries = []
        for ss in cloudformation_backends[account][req.region].stacksets.values():
            if p.get("Status") and ss.status != p["Status"]:
                continue
            summary: dict[str, Any] = {
                "StackSetName": ss.name,
                "StackSetId": ss.id,
                "Status": ss.status,
                "PermissionModel": ss.permission_model,
                "DriftStatus": "NOT_CHECKED",
            }
            if ss.description is not None:
                summary["Description"] = ss.description
            state = self.engine.sets.get((account, req.region, ss.id))
            if state is not None:
                summary["ManagedExecution"] = {"Active": state.managed_execution}
                if ss.permission_model == "SERVICE_MANAGED":
                    summary["AutoDeployment"] = state.auto_deployment or {"Enabled": False}
            summaries.append(summary)
        return result_reply(req, _page(summaries, p))

    # --- stack instances -------------------------------------------------------------------

    def create_stack_instances(self, req: AwsRequest, forward: Forward) -> Reply:
        p = req.params()
        state = self._state(req)
        prefs = _preferences(p)
        operation_id = _operation_id(p)
        if (repeated := self.engine.repeated(state, operation_id, "CREATE")) is not None:
            return result_reply(req, {"OperationId": repeated.id})
        if state.permission_model == "SERVICE_MANAGED":
            check_service_managed(state.account, p.get("CallAs"))
        targets = self._targets(state, p)
        op = self.engine.submit(
            state,
            "CREATE",
            targets,
            prefs,
            operation_id,
            deployment_targets=p.get("DeploymentTargets"),
            overrides=p.get("ParameterOverrides"),
        )
        if state.permission_model == "SERVICE_MANAGED":
            for ou in p["DeploymentTargets"]["OrganizationalUnitIds"]:
                known = state.ou_regions.setdefault(ou, [])
                known.extend(r for r in p["Regions"] if r not in known)
        return result_reply(req, {"OperationId": op.id})

    def update_stack_instances(self, req: AwsRequest, forward: Forward) -> Reply:
        p = req.params()
        state = self._state(req)
        prefs = _preferences(p)
        operation_id = _operation_id(p)
        if (repeated := self.engine.repeated(state, operation_id, "UPDATE")) is not None:
            return result_reply(req, {"OperationId": repeated.id})
        if state.permission_model == "SERVICE_MANAGED":
            check_service_managed(state.account, p.get("CallAs"))
        targets = self._targets(state, p)
        if state.permission_model == "SERVICE_MANAGED":
            targets = [t for t in targets if t.key in state.instances]
        missing = [t for t in targets if t.key not in state.instances]
        if missing:
            raise AwsError(
                "StackInstanceNotFoundException",
                f"Stack instance for account {missing[0].account} in region {missing[0].region} "
                f"not found in StackSet {state.name}",
                404,
            )
        targets = [t for t in targets if not _inoperable(state, t)]
        op = self.engine.submit(
            state,
            "UPDATE",
            targets,
            prefs,
            operation_id,
            deployment_targets=p.get("DeploymentTargets"),
            overrides=p.get("ParameterOverrides"),
        )
        return result_reply(req, {"OperationId": op.id})

    def delete_stack_instances(self, req: AwsRequest, forward: Forward) -> Reply:
        p = req.params()
        state = self._state(req)
        prefs = _preferences(p)
        operation_id = _operation_id(p)
        if (repeated := self.engine.repeated(state, operation_id, "DELETE")) is not None:
            return result_reply(req, {"OperationId": repeated.id})
        if "RetainStacks" not in p:
            raise validation("RetainStacks must be specified.")
        targets = self._targets(state, p)
        ous = set((p.get("DeploymentTargets") or {}).get("OrganizationalUnitIds") or [])
        if state.permission_model == "SERVICE_MANAGED":
            check_service_managed(state.account, p.get("CallAs"))
            # Instances deployed through these OUs go too, even if their account has moved
            # since; an account filter still applies to them.
            spec = p.get("DeploymentTargets") or {}
            listed = set(spec.get("Accounts") or [])
            mode = spec.get("AccountFilterType", "NONE")

            def selected(account: str) -> bool:
                if mode == "INTERSECTION":
                    return account in listed
                if mode == "DIFFERENCE":
                    return account not in listed
                return True

            keys = {t.key for t in targets}
            targets += [
                Target(a, r, meta.ou)
                for (a, r), meta in state.instances.items()
                if meta.ou in ous and r in p["Regions"] and (a, r) not in keys and selected(a)
            ]
            targets = [t for t in targets if t.key in state.instances]
        op = self.engine.submit(
            state,
            "DELETE",
            targets,
            prefs,
            operation_id,
            retain_stacks=bool(p["RetainStacks"]),
            deployment_targets=p.get("DeploymentTargets"),
        )
        # Only a delete of whole OUs (no account filter) stops targeting them.
        if (p.get("DeploymentTargets") or {}).get("AccountFilterType", "NONE") == "NONE":
            for ou in ous & set(state.ou_regions):
                state.ou_regions[ou] = [r for r in state.ou_regions[ou] if r not in p["Regions"]]
        return result_reply(req, {"OperationId": op.id})

    def _targets(self, state: StackSetState, p: dict[str, Any]) -> list[Target]:
        """Account/region pairs named by Accounts or DeploymentTargets, region by region."""
        regions = p.get("Regions") or []
        if not regions:
            raise validation("Regions must contain at least one Region.")
        targets_spec = p.get("DeploymentTargets") or {}
        accounts = p.get("Accounts") or []
        if state.permission_model != "SERVICE_MANAGED":
            if targets_spec.get("OrganizationalUnitIds"):
                raise validation(
                    "StackSets with SELF_MANAGED permission model can only have accounts as target"
                )
            accounts = accounts or targets_spec.get("Accounts") or []
            if not accounts:
                raise validation("Accounts or DeploymentTargets.Accounts must be specified.")
            _check_accounts(accounts)
            return [Target(a, r) for r in regions for a in dict.fromkeys(accounts)]
        if accounts:
            raise validation(
                "StackSets with SERVICE_MANAGED permission model can only have OrganizationalUnit as target"
            )
        ous = targets_spec.get("OrganizationalUnitIds") or []
        if not ous:
            raise validation("OrganizationalUnitIds are required")
        for ou in ous:
            if not _OU_RE.fullmatch(ou):
                raise validation(
                    f"1 validation error detected: Value '[{ou}]' at "
                    "'deploymentTargets.organizationalUnitIds' failed to satisfy constraint: "
                    "Member must satisfy regular expression pattern: "
                    "^(ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}|r-[a-z0-9]{4,32})$"
                )
        listed = targets_spec.get("Accounts") or []
        _check_accounts(listed)
        org = org_backend_of(state.account)
        if org is None:
            raise validation("The StackSet's account is not part of an organization.")
        tree = OrgTree(org)
        members = tree.members_under(ous)
        mode = targets_spec.get("AccountFilterType", "NONE")
        if mode == "INTERSECTION":
            members = [(a, ou) for a, ou in members if a in listed]
        elif mode == "DIFFERENCE":
            members = [(a, ou) for a, ou in members if a not in listed]
        elif mode == "UNION":
            known = {a for a, _ in members}
            deployable = {a.id for a in tree.accounts if tree.deployable(a)}
            members += [(a, None) for a in listed if a not in known and a in deployable]
        elif mode != "NONE":
            raise validation("AccountFilterType must be NONE, INTERSECTION, DIFFERENCE or UNION.")
        return [Target(a, r, ou) for r in regions for a, ou in members]

    def list_stack_instances(self, req: AwsRequest, forward: Forward) -> Reply:
        p = req.params()
        state = self._state(req)
        account, region = p.get("StackInstanceAccount"), p.get("StackInstanceRegion")
        keys = [k for k in state.instances if (not account or k[0] == account) and (not region or k[1] == region)]
        if not p.get("Filters"):
            # Only the page is rendered: a full listing costs O(n), not O(n) per page.
            page = _page(keys, p)
            page["Summaries"] = self.engine.instance_rows(state, keys=page["Summaries"])
            for r in page["Summaries"]:
                r.pop("ParameterOverrides", None)
            return result_reply(req, page)
        rows = self.engine.instance_rows(state, keys=keys)
        for f in p.get("Filters") or []:
            name, value = f.get("Name"), f.get("Values")
            if name == "DETAILED_STATUS":
                rows = [r for r in rows if r["StackInstanceStatus"]["DetailedStatus"] == value]
            elif name == "LAST_OPERATION_ID":
                rows = [r for r in rows if r.get("LastOperationId") == value]
            elif name == "DRIFT_STATUS":
                rows = [r for r in rows if r["DriftStatus"] == value]
            else:
                raise validation(f"Unsupported filter name {name}")
        for r in rows:
            r.pop("ParameterOverrides", None)
        return result_reply(req, _page(rows, p))

    def describe_stack_instance(self, req: AwsRequest, forward: Forward) -> Reply:
        p = req.params()
        state = self._state(req)
        account, region = p.get("StackInstanceAccount"), p.get("StackInstanceRegion")
        if (account, region) in state.instances:
            (row,) = self.engine.instance_rows(state, keys=[(account, region)])
            return result_reply(req, {"StackInstance": row})
        raise AwsError(
            "StackInstanceNotFoundException",
            f"Stack instance for account {account} in region {region} not found in StackSet {state.name}",
            404,
        )

    # --- operations ----------------------------------------------------------------------------

    def list_stack_set_operations(self, req: AwsRequest, forward: Forward) -> Reply:
        state = self._state(req)
        newest_first = [self.engine.operation_summary(op) for op in reversed(state.operations)]
        return result_reply(req, _page(newest_first, req.params()))

    def describe_stack_set_operation(self, req: AwsRequest, forward: Forward) -> Reply:
        state = self._state(req)
        op = self.engine.operation(state, req.params().get("OperationId", ""))
        return result_reply(req, {"StackSetOperation": self.engine.operation_detail(state, op)})

    def list_stack_set_operation_results(self, req: AwsRequest, forward: Forward) -> Reply:
        p = req.params()
        state = self._state(req)
        op = self.engine.operation(state, p.get("OperationId", ""))
        rows = self.engine.operation_results(state, op)
        for f in p.get("Filters") or []:
            if f.get("Name") != "OPERATION_RESULT_STATUS":
                raise validation(f"Unsupported filter name {f.get('Name')}")
            rows = [r for r in rows if r["Status"] == f.get("Values")]
        return result_reply(req, _page(rows, p))

    def detect_stack_set_drift(self, req: AwsRequest, forward: Forward) -> Reply:
        """Drift detection is an operation like the others: one at a time, polled with
        DescribeStackSetOperation (Action DETECT_DRIFT); it compares every deployed instance."""
        p = req.params()
        state = self._state(req)
        prefs = _preferences(p)
        operation_id = _operation_id(p)
        if (repeated := self.engine.repeated(state, operation_id, DETECT_DRIFT)) is not None:
            return result_reply(req, {"OperationId": repeated.id})
        if state.permission_model == "SERVICE_MANAGED":
            check_service_managed(state.account, p.get("CallAs"))
        targets = [Target(a, r, meta.ou) for (a, r), meta in state.instances.items()]
        op = self.engine.submit(state, DETECT_DRIFT, targets, prefs, operation_id)
        return result_reply(req, {"OperationId": op.id})

    def stop_stack_set_operation(self, req: AwsRequest, forward: Forward) -> Reply:
        state = self._state(req)
        self.engine.stop(state, req.params().get("OperationId", ""))
        return result_reply(req, {})

    # --- trusted access with Organizations -----------------------------------------------

    def _management_org(self, req: AwsRequest) -> Any:
        account = account_of(req)
        org = org_backend_of(account)
        if org is None:
            raise AwsError("InvalidOperationException", f"Account {account} is not part of an organization.")
        if org.org.master_account_id != account:
            raise AwsError(
                "InvalidOperationException",
                "Only the management account of the organization can change trusted access.",
            )
        return org

    def activate_organizations_access(self, req: AwsRequest, forward: Forward) -> Reply:
        self._management_org(req).enable_aws_service_access(ServicePrincipal=STACKSETS_PRINCIPAL)
        return result_reply(req, {})

    def deactivate_organizations_access(self, req: AwsRequest, forward: Forward) -> Reply:
        self._management_org(req).disable_aws_service_access(ServicePrincipal=STACKSETS_PRINCIPAL)
        return result_reply(req, {})

    def describe_organizations_access(self, req: AwsRequest, forward: Forward) -> Reply:
        org = org_backend_of(account_of(req))
        enabled = org is not None and trusted_access_enabled(org)
        return result_reply(req, {"Status": "ENABLED" if enabled else "DISABLED"})


def _as_delegated_admin(handler: Callable[[AwsRequest, Forward], Reply]) -> Callable[[AwsRequest, Forward], Reply]:
    """`CallAs=DELEGATED_ADMIN` from an account that is not a registered delegated administrator
    for StackSets is refused on every StackSet call, as AWS does, before anything is looked at."""

    def checked(req: AwsRequest, forward: Forward) -> Reply:
        if req.params().get("CallAs") == "DELEGATED_ADMIN":
            account = account_of(req)
            org = org_backend_of(account)
            if org is None or not is_stacksets_delegated_admin(org, account):
                raise validation(
                    f"Account used is not a delegated administrator: {account} is not registered as a "
                    f"delegated administrator for {STACKSETS_PRINCIPAL}"
                )
        return handler(req, forward)

    return checked


def check_service_managed(account: str, call_as: str | None) -> None:
    org = org_backend_of(account)
    allowed = org is not None and (
        org.org.master_account_id == account
        or (call_as == "DELEGATED_ADMIN" and is_stacksets_delegated_admin(org, account))
    )
    if not allowed:
        raise validation(
            "You must be the master or delegated admin account of an organization before operating "
            "a SERVICE_MANAGED stack set"
        )
    if not trusted_access_enabled(org):
        raise validation("You must enable organizations access to operate a service managed stack set")


def check_capabilities(template: str, capabilities: list[str]) -> None:
    """IAM resources need CAPABILITY_IAM, named ones CAPABILITY_NAMED_IAM (InsufficientCapabilities)."""
    try:
        document = Stack.parse_template(template)
    except Exception:
        raise validation("Template format error: unsupported structure.") from None
    needed = needed_capability(document)
    granted = set(capabilities)
    if needed == "CAPABILITY_NAMED_IAM" and needed not in granted:
        raise AwsError("InsufficientCapabilitiesException", "Requires capabilities : [CAPABILITY_NAMED_IAM]")
    if needed == "CAPABILITY_IAM" and not granted & {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"}:
        raise AwsError("InsufficientCapabilitiesException", "Requires capabilities : [CAPABILITY_IAM]")


def _preferences(p: dict[str, Any]) -> dict[str, Any]:
    prefs = p.get("OperationPreferences") or {}
    validate_preferences(prefs)
    return prefs


def _operation_id(p: dict[str, Any]) -> str | None:
    operation_id = p.get("OperationId")
    if operation_id is not None and not _OPERATION_ID_RE.fullmatch(operation_id):
        raise validation(
            f"1 validation error detected: Value '{operation_id}' at 'operationId' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9][-a-zA-Z0-9]*"
        )
    return operation_id


def _check_accounts(accounts: list[str]) -> None:
    for account in accounts:
        if not ACCOUNT_ID_RE.fullmatch(account):
            raise validation(
                f"1 validation error detected: Value '[{account}]' at 'accounts' failed to satisfy "
                "constraint: Member must satisfy regular expression pattern: ^[0-9]{12}$"
            )


def _inoperable(state: StackSetState, target: Target) -> bool:
    meta = state.instances.get(target.key)
    return meta is not None and meta.problem is not None and meta.problem[0] == "INOPERABLE"


def _page(items: list[dict[str, Any]], p: dict[str, Any]) -> dict[str, Any]:
    size = p.get("MaxResults") or _MAX_PAGE
    if not 1 <= size <= _MAX_PAGE:
        raise validation(f"MaxResults must be between 1 and {_MAX_PAGE}.")
    token = p.get("NextToken")
    try:
        start = int(token) if token else 0
    except ValueError:
        raise AwsError("InvalidNextToken", "The NextToken is not valid.") from None
    result: dict[str, Any] = {"Summaries": items[start : start + size]}
    if start + size < len(items):
        result["NextToken"] = str(start + size)
    return result
