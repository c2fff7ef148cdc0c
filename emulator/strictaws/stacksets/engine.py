"""StackSet operations that take time: queueing, running, finishing, and what they look like meanwhile.

An operation is RUNNING for its planned duration (see plan.py) and is carried out when that time
is up, all at once, target by target; until then nothing changes in moto. Time is evaluated lazily:
every request first finishes the operations whose time is up, in deadline order, so results do not
depend on when anyone looks. A queued operation starts at the instant its predecessor ended.
"""

from __future__ import annotations

import heapq
import itertools
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from moto.cloudformation.models import cloudformation_backends

from ..errors import AwsError
from ..orgs import OrgTree, org_backend_of
from . import deploy
from .imports import FAILED_IMPORT, IMPORT, apply_import
from .model import (
    CANCELLED,
    CANCELLED_REASON,
    DETECT_DRIFT,
    DRIFTED,
    FAILED,
    IN_SYNC,
    NOT_CHECKED,
    UNKNOWN,
    PENDING,
    QUEUED,
    RUNNING,
    STOPPED,
    SUCCEEDED,
    InstanceMeta,
    Key,
    Operation,
    StackSetState,
    Target,
)
from .plan import Timing, make_plan
from .stacks import PlainStacks

ACTIONS = ("CREATE", "UPDATE", "DELETE")


def _now_wall() -> datetime:
    return datetime.now(timezone.utc)


def merge_overrides(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New ParameterOverrides replace the old ones; UsePreviousValue keeps a key's previous value."""
    previous = {o["ParameterKey"]: o for o in old}
    merged = []
    for item in new:
        key = item["ParameterKey"]
        if item.get("UsePreviousValue"):
            if key in previous:
                merged.append(previous[key])
        else:
            merged.append({"ParameterKey": key, "ParameterValue": item.get("ParameterValue", "")})
    return merged


class StackSetEngine:
    def __init__(self) -> None:
        self.timing = Timing()
        self.failures: dict[str, str] = {}
        self.failure_actions: set[str] = set(ACTIONS)
        self.sets: dict[tuple[str, str, str], StackSetState] = {}
        self._running: list[tuple[float, int, Operation, StackSetState]] = []
        self._seq = itertools.count()
        self.stacks = PlainStacks(lambda: self.timing.stack_seconds)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    # --- StackSets ---------------------------------------------------------------------------

    def lookup(self, account: str, region: str, name: str) -> StackSetState:
        try:
            stackset = cloudformation_backends[account][region].describe_stack_set(name)
        except Exception:
            raise AwsError("StackSetNotFoundException", f"StackSet {name} not found", 404) from None
        key = (account, region, stackset.id)
        state = self.sets.get(key)
        if state is None:
            state = self.sets[key] = StackSetState(account, region, stackset.id, stackset.name, stackset)
        return state

    def forget(self, state: StackSetState) -> None:
        self.sets.pop((state.account, state.region, state.id), None)

    def in_progress_error(self, state: StackSetState) -> AwsError:
        return AwsError(
            "OperationInProgressException",
            f"Another Operation on StackSet {state.moto.arn} is in progress",
            409,
        )

    # --- operations ---------------------------------------------------------------------------

    def repeated(self, state: StackSetState, operation_id: str | None, action: str) -> Operation | None:
        """The operation a repeated OperationId refers to (an idempotent retry starts nothing)."""
        if not operation_id:
            return None
        existing = state.find_operation(operation_id)
        if existing is None:
            return None
        if existing.action == action and not existing.auto:
            return existing
        raise AwsError(
            "OperationIdAlreadyExistsException",
            f"The operation ID {operation_id} already exists for StackSet {state.name}.",
            409,
        )

    def submit(
        self,
        state: StackSetState,
        action: str,
        targets: list[Target],
        preferences: dict[str, Any],
        operation_id: str | None,
        *,
        auto: bool = False,
        retain_stacks: bool | None = None,
        deployment_targets: dict[str, Any] | None = None,
        overrides: list[dict[str, Any]] | None = None,
    ) -> Operation:
        """Start (or queue) a new operation; callers first check `repeated` for a retried OperationId."""
        if state.busy and not (auto or state.managed_execution):
            raise self.in_progress_error(state)
        plan = make_plan([(t.account, t.region) for t in targets], {} if auto else preferences, self.timing)
        op = Operation(
            id=operation_id or str(uuid.uuid4()),
            action=action,
            targets=targets,
            preferences=preferences,
            plan=plan,
            created=_now_wall(),
            auto=auto,
            retain_stacks=retain_stacks,
            deployment_targets=deployment_targets,
            overrides=overrides,
        )
        op.results = {t.key: (PENDING, None) for t in targets}
        state.operations.append(op)
        if action in ("CREATE", IMPORT):
            for t in targets:
                meta = state.instances.setdefault(t.key, InstanceMeta(ou=t.ou))
                if overrides is not None:
                    meta.overrides = merge_overrides(meta.overrides, overrides)
        if state.busy:
            state.queue.append(op)
        else:
            self._start(state, op, time.monotonic())
        return op

    def _start(self, state: StackSetState, op: Operation, at: float) -> None:
        op.status = RUNNING
        op.started = at
        op.started_wall = _now_wall() - timedelta(seconds=max(0.0, time.monotonic() - at))
        state.running = op
        heapq.heappush(self._running, (op.deadline, next(self._seq), op, state))

    def advance(self, now: float | None = None) -> None:
        """Finish every operation whose time is up (and start what was queued behind it)."""
        now = time.monotonic() if now is None else now
        self.stacks.advance(now)
        while self._running and self._running[0][0] <= now:
            deadline, _, op, state = heapq.heappop(self._running)
            if state.running is not op:
                continue  # stopped meanwhile
            self._finish(state, op)
            state.running = None
            if state.queue:
                self._start(state, state.queue.popleft(), deadline)

    def stop(self, state: StackSetState, operation_id: str) -> None:
        op = self.operation(state, operation_id)
        if op.status == RUNNING:
            state.running = None
        elif op.status == QUEUED:
            state.queue.remove(op)
        else:
            raise AwsError("InvalidOperationException", f"Operation {operation_id} is not in progress.")
        for t in op.targets:
            self._cancel(state, op, t.key, "Cancelled by a StopStackSetOperation request")
        op.status = STOPPED
        op.ended = _now_wall()
        if state.running is None and state.queue:
            self._start(state, state.queue.popleft(), time.monotonic())

    def operation(self, state: StackSetState, operation_id: str) -> Operation:
        op = state.find_operation(operation_id)
        if op is None:
            raise AwsError("OperationNotFoundException", f"Operation {operation_id} not found", 404)
        return op

    def _finish(self, state: StackSetState, op: Operation) -> None:
        plan = op.plan
        index = {(i.account_id, i.region_name): i for i in state.moto.instances.stack_instances}
        ous = {t.key: t.ou for t in op.targets}
        reasons = []
        cancel_rest = False
        for region in plan.regions:
            failures = 0
            stopped = cancel_rest
            for wave in (w for w in plan.waves if w.region == region):
                for account in wave.accounts:
                    key = (account, region)
                    if stopped:
                        self._cancel(state, op, key, CANCELLED_REASON)
                    elif self._apply(state, op, key, index, ous.get(key)) is not None:
                        failures += 1
                if not stopped and failures > plan.tolerance[region]:
                    stopped = True
                    reasons.append(
                        f"{failures} of {len(plan.accounts[region])} stack instances failed in {region}, "
                        f"above the failure tolerance of {plan.tolerance[region]}"
                    )
            if stopped and not plan.parallel:
                cancel_rest = True
        op.status = FAILED if reasons else SUCCEEDED
        op.status_reason = "; ".join(reasons) or None
        assert op.started_wall is not None
        op.ended = op.started_wall + timedelta(seconds=plan.duration)

    def _apply(
        self, state: StackSetState, op: Operation, key: Key, index: dict[Key, Any], ou: str | None
    ) -> str | None:
        """Carry out one target; the failure reason, or None on success."""
        stackset = state.moto
        account, region = key
        retain = bool(op.retain_stacks)
        meta = state.instances.get(key)
        if op.action == DETECT_DRIFT:
            return self._detect(state, op, key, index)
        try:
            injected = self.failures.get(account)
            if (
                injected is not None
                and op.action in self.failure_actions
                and not (op.action == "DELETE" and retain)
            ):
                raise deploy.TargetFailed(injected)
            if op.action == "DELETE":
                instance = index.pop(key, None)
                if instance is not None:
                    if not retain and (problem := deploy.execution_role_problem(stackset, account)):
                        raise deploy.TargetFailed(problem)
                    deploy.delete_instance(stackset, instance, retain)
                state.instances.pop(key, None)
                op.results[key] = (SUCCEEDED, None)
                return None
            meta = state.instances.setdefault(key, InstanceMeta(ou=ou))
            if op.action == IMPORT:
                apply_import(state, op, key, index)
            elif (problem := deploy.execution_role_problem(stackset, account)) is not None:
                raise deploy.TargetFailed(problem)
            elif key not in index:
                index[key] = deploy.create_instance(stackset, account, region, meta.overrides)
            elif op.action == "UPDATE":
                overrides = meta.overrides
                if op.overrides is not None:
                    overrides = merge_overrides(meta.overrides, op.overrides)
                deploy.update_instance(stackset, index[key], overrides)
                meta.overrides = overrides
                if meta.drift is not None:
                    # The update wrote the template's properties over any hand edit.
                    meta.drift = (IN_SYNC, _now_wall())
            meta.problem = None
            meta.last_operation = op.id
            op.results[key] = (SUCCEEDED, None)
            return None
        except deploy.TargetFailed as exc:
            reason = str(exc)
            op.results[key] = (FAILED, reason)
            if meta is not None:
                detailed = FAILED_IMPORT if op.action == IMPORT else FAILED
                meta.problem = (
                    ("INOPERABLE", "INOPERABLE", reason)
                    if op.action == "DELETE"
                    else ("OUTDATED", detailed, reason)
                )
                meta.last_operation = op.id
            return reason

    def _detect(self, state: StackSetState, op: Operation, key: Key, index: dict[Key, Any]) -> str | None:
        """Compare one instance's deployed resources with its template; never changes the instance's
        status or LastOperationId (drift detection deploys nothing)."""
        meta = state.instances.get(key)
        instance = index.get(key)
        if meta is None or instance is None or meta.problem is not None:
            drift = UNKNOWN  # nothing (or nothing current) deployed to compare with
        else:
            drift = deploy.instance_drift(instance)
        if meta is not None:
            meta.drift = (drift, _now_wall())
        op.results[key] = (SUCCEEDED, None)
        op.drift[key] = drift
        return None

    def _cancel(self, state: StackSetState, op: Operation, key: Key, reason: str) -> None:
        op.results[key] = (CANCELLED, reason)
        meta = state.instances.get(key)
        if meta is not None:
            meta.problem = ("OUTDATED", CANCELLED, reason)
            meta.last_operation = op.id

    # --- what callers see ---------------------------------------------------------------------

    def instance_rows(
        self, state: StackSetState, now: float | None = None, keys: list[Key] | None = None
    ) -> list[dict[str, Any]]:
        """The rows of ListStackInstances, for all instances or only `keys` (known ones, in order)."""
        now = time.monotonic() if now is None else now
        live: dict[Key, tuple[str, str]] = {}
        for op in ([state.running] if state.running else []) + list(state.queue):
            if op.action == DETECT_DRIFT:
                continue  # drift detection leaves the instances' status and last operation alone
            for t in op.targets:
                live.setdefault(t.key, (op.live_status(t.key, now), op.id))
        stacks = {
            (i.account_id, i.region_name): i.stack.stack_id for i in state.moto.instances.stack_instances
        }
        rows = []
        for key in state.instances if keys is None else keys:
            meta = state.instances[key]
            row: dict[str, Any] = {"StackSetId": state.id, "Region": key[1], "Account": key[0]}
            if key in stacks:
                row["StackId"] = stacks[key]
            last = meta.last_operation
            if key in live:
                detailed, last = live[key]
                row["Status"] = "OUTDATED"
                row["StackInstanceStatus"] = {"DetailedStatus": detailed}
            elif meta.problem is not None:
                status, detailed, reason = meta.problem
                row["Status"] = status
                row["StatusReason"] = reason
                row["StackInstanceStatus"] = {"DetailedStatus": detailed}
            else:
                row["Status"] = "CURRENT"
                row["StackInstanceStatus"] = {"DetailedStatus": SUCCEEDED}
            if meta.ou:
                row["OrganizationalUnitId"] = meta.ou
            row["DriftStatus"] = meta.drift[0] if meta.drift else NOT_CHECKED
            if meta.drift:
                row["LastDriftCheckTimestamp"] = meta.drift[1]
            if last:
                row["LastOperationId"] = last
            row["ParameterOverrides"] = list(meta.overrides)
            rows.append(row)
        return rows

    def operation_summary(self, op: Operation) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "OperationId": op.id,
            # AWS reports an import as a CREATE; the control API says IMPORT.
            "Action": "CREATE" if op.action == IMPORT else op.action,
            "Status": op.status,
            "CreationTimestamp": op.created,
            "OperationPreferences": displayed_preferences(op.preferences),
        }
        if op.ended is not None:
            summary["EndTimestamp"] = op.ended
            failed = sum(1 for status, _ in op.results.values() if status == FAILED)
            summary["StatusDetails"] = {"FailedStackInstancesCount": failed}
        if op.status_reason:
            summary["StatusReason"] = op.status_reason
        return summary

    def operation_detail(self, state: StackSetState, op: Operation) -> dict[str, Any]:
        detail = self.operation_summary(op)
        detail["StackSetId"] = state.id
        detail["AdministrationRoleARN"] = state.moto.administration_role_arn
        detail["ExecutionRoleName"] = state.moto.execution_role_name
        if op.action == "DELETE":
            detail["RetainStacks"] = bool(op.retain_stacks)
        if op.deployment_targets:
            detail["DeploymentTargets"] = op.deployment_targets
        if op.action == DETECT_DRIFT:
            detail["StackSetDriftDetectionDetails"] = drift_details(op)
        return detail

    def operation_results(
        self, state: StackSetState, op: Operation, now: float | None = None
    ) -> list[dict[str, Any]]:
        now = time.monotonic() if now is None else now
        rows = []
        for t in op.targets:
            status, reason = op.results.get(t.key, (PENDING, None))
            if op.status in (RUNNING, QUEUED) and status == PENDING:
                status = op.live_status(t.key, now)
            row: dict[str, Any] = {"Account": t.account, "Region": t.region, "Status": status}
            if reason:
                row["StatusReason"] = reason
            if status in (SUCCEEDED, FAILED):
                row["AccountGateResult"] = {
                    "Status": "SKIPPED",
                    "StatusReason": (
                        f"Function not found: arn:aws:lambda:{t.region}:{t.account}:function:"
                        "AWSCloudFormationStackSetAccountGate"
                    ),
                }
            if t.ou:
                row["OrganizationalUnitId"] = t.ou
            rows.append(row)
        return rows

    def all_operations(self) -> list[dict[str, Any]]:
        """Every operation of every StackSet, oldest first, for the control API."""
        out = []
        for state in self.sets.values():
            for op in state.operations:
                out.append(
                    {
                        "stack_set_name": state.name,
                        "stack_set_id": state.id,
                        "account": state.account,
                        "region": state.region,
                        "operation_id": op.id,
                        "action": op.action,
                        "status": op.status,
                        "auto_deployment": op.auto,
                        "accounts": op.accounts(),
                        "regions": op.regions(),
                        "created": op.created.isoformat(),
                        "ended": op.ended.isoformat() if op.ended else None,
                        "duration_seconds": round(op.plan.duration, 6),
                        "results": {
                            f"{a}/{r}": {"status": s, "reason": reason}
                            for (a, r), (s, reason) in op.results.items()
                        },
                    }
                )
        out.sort(key=lambda o: o["created"])
        return out

    # --- automatic deployment -------------------------------------------------------------------

    def on_membership_change(self, org: Any, account: str, before: str | None, after: str | None) -> None:
        """An account was created in, moved between or removed from OUs of `org` (parents given)."""
        tree = OrgTree(org)
        if account == tree.management:
            return
        before_chain = tree.ancestry(before)
        after_chain = tree.ancestry(after)
        for state in list(self.sets.values()):
            auto = state.auto_deployment or {}
            if (
                state.permission_model != "SERVICE_MANAGED"
                or state.moto.status != "ACTIVE"
                or not auto.get("Enabled")
                or org_backend_of(state.account) is not org
            ):
                continue
            old = _targeted_regions(state, before_chain)
            new = _targeted_regions(state, after_chain)
            for region, ou in new.items():
                meta = state.instances.get((account, region))
                if region in old and meta is not None:
                    meta.ou = ou
            created = [
                Target(account, r, ou)
                for r, ou in new.items()
                if r not in old and (account, r) not in state.instances
            ]
            removed = [
                Target(account, r, ou)
                for r, ou in old.items()
                if r not in new and (account, r) in state.instances
            ]
            if created:
                self.submit(state, "CREATE", created, {}, None, auto=True)
            if removed:
                retain = bool(auto.get("RetainStacksOnAccountRemoval", False))
                self.submit(state, "DELETE", removed, {}, None, auto=True, retain_stacks=retain)


def _targeted_regions(state: StackSetState, chain: list[str]) -> dict[str, str]:
    """Regions an account below `chain` gets from the StackSet's OU targets, with the OU giving each."""
    regions: dict[str, str] = {}
    for ou in chain:
        for region in state.ou_regions.get(ou, []):
            regions.setdefault(region, ou)
    return regions


def drift_details(op: Operation) -> dict[str, Any]:
    """StackSetDriftDetectionDetails of a DETECT_DRIFT operation."""
    found = list(op.drift.values())
    total = len(op.targets)
    details: dict[str, Any] = {
        "TotalStackInstancesCount": total,
        "DriftedStackInstancesCount": found.count(DRIFTED),
        "InSyncStackInstancesCount": found.count(IN_SYNC),
        "InProgressStackInstancesCount": total - len(found) if op.status in (RUNNING, QUEUED) else 0,
        "FailedStackInstancesCount": found.count(UNKNOWN),
    }
    if op.status in (RUNNING, QUEUED):
        details["DriftDetectionStatus"] = "IN_PROGRESS"
        details["DriftStatus"] = NOT_CHECKED
    else:
        details["DriftDetectionStatus"] = "COMPLETED" if UNKNOWN not in found else "PARTIAL_SUCCESS"
        details["DriftStatus"] = DRIFTED if DRIFTED in found else IN_SYNC
        if op.ended is not None:
            details["LastDriftCheckTimestamp"] = op.ended
    return details


def displayed_preferences(prefs: dict[str, Any]) -> dict[str, Any]:
    shown = dict(prefs)
    shown.setdefault("RegionConcurrencyType", "SEQUENTIAL")
    shown.setdefault("RegionOrder", [])
    if "FailureTolerancePercentage" not in shown:
        shown.setdefault("FailureToleranceCount", 0)
    if "MaxConcurrentPercentage" not in shown:
        shown.setdefault("MaxConcurrentCount", 1)
    shown.setdefault("ConcurrencyMode", "STRICT_FAILURE_TOLERANCE")
    return shown
