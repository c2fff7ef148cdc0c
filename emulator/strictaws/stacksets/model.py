"""What the strict layer remembers about StackSets beyond moto: operations and instance states."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .plan import Plan

Key = tuple[str, str]  # (account, region)

# Operation statuses.
QUEUED, RUNNING, SUCCEEDED, FAILED, STOPPED = "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED"
# Per-account result statuses.
PENDING, CANCELLED = "PENDING", "CANCELLED"
CANCELLED_REASON = "Cancelled since failure tolerance has exceeded"
# The drift detection action and per-instance DriftStatus values.
DETECT_DRIFT = "DETECT_DRIFT"
DRIFTED, IN_SYNC, UNKNOWN, NOT_CHECKED = "DRIFTED", "IN_SYNC", "UNKNOWN", "NOT_CHECKED"


@dataclass
class Target:
    account: str
    region: str
    ou: str | None = None

    @property
    def key(self) -> Key:
        return (self.account, self.region)


@dataclass
class InstanceMeta:
    """Strict-layer facts about one stack instance (it may exist in moto or only here)."""

    overrides: list[dict[str, Any]] = field(default_factory=list)
    ou: str | None = None
    last_operation: str | None = None
    # (Status, DetailedStatus, StatusReason) after a failed or cancelled operation; None when CURRENT.
    problem: tuple[str, str, str] | None = None
    # (DriftStatus, when it was found) after DetectStackSetDrift looked; None: NOT_CHECKED.
    drift: tuple[str, datetime] | None = None


@dataclass
class Operation:
    id: str
    action: str  # CREATE | UPDATE | DELETE | DETECT_DRIFT
    targets: list[Target]
    preferences: dict[str, Any]
    plan: Plan
    created: datetime
    auto: bool = False
    retain_stacks: bool | None = None
    deployment_targets: dict[str, Any] | None = None
    overrides: list[dict[str, Any]] | None = None
    status: str = QUEUED
    started: float | None = None  # monotonic seconds
    started_wall: datetime | None = None
    ended: datetime | None = None
    results: dict[Key, tuple[str, str | None]] = field(default_factory=dict)
    status_reason: str | None = None
    # ImportStacksToStackSet: the stack each target adopts.
    stack_ids: dict[Key, str] = field(default_factory=dict)
    drift: dict[Key, str] = field(default_factory=dict)  # DETECT_DRIFT: what each target showed

    @property
    def deadline(self) -> float:
        assert self.started is not None
        return self.started + self.plan.duration

    def accounts(self) -> list[str]:
        return list(dict.fromkeys(t.account for t in self.targets))

    def regions(self) -> list[str]:
        return list(dict.fromkeys(t.region for t in self.targets))

    def live_status(self, key: Key, now: float) -> str:
        """PENDING or RUNNING for a target of an unfinished operation."""
        if self.status != RUNNING or self.started is None:
            return PENDING
        start = self.plan.starts.get(key)
        return RUNNING if start is not None and now - self.started >= start else PENDING


@dataclass
class StackSetState:
    account: str  # the administrator account
    region: str
    id: str
    name: str
    moto: Any  # moto's StackSet object
    managed_execution: bool = False
    capabilities: list[str] = field(default_factory=list)
    auto_deployment: dict[str, Any] | None = None
    ou_regions: dict[str, list[str]] = field(default_factory=dict)  # targeted OU -> regions
    instances: dict[Key, InstanceMeta] = field(default_factory=dict)
    operations: list[Operation] = field(default_factory=list)
    running: Operation | None = None
    queue: deque[Operation] = field(default_factory=deque)

    @property
    def permission_model(self) -> str:
        return self.moto.permission_model

    @property
    def busy(self) -> bool:
        return self.running is not None or bool(self.queue)

    def find_operation(self, operation_id: str) -> Operation | None:
        return next((op for op in self.operations if op.id == operation_id), None)
