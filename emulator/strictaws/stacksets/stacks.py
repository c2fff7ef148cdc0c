"""Plain stacks (CreateStack / UpdateStack) that take time, as StackSet operations do.

moto creates or updates a stack synchronously. With `Timing.stack_seconds` above zero the stack
then reads `CREATE_IN_PROGRESS` / `UPDATE_IN_PROGRESS` for that long and only afterwards the status
moto gave it (`CREATE_COMPLETE`, `ROLLBACK_COMPLETE`, ...); an UpdateStack while the stack is still
in progress is refused, as AWS refuses it. Time is evaluated lazily, like operations: every
request first settles the stacks whose time is up. Zero (the default) leaves moto's behaviour.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any

from moto.cloudformation.models import cloudformation_backends

from ..errors import validation
from ..identity import account_of
from ..protocol import AwsRequest, Reply

Forward = Callable[[], Reply]
_IN_PROGRESS = {"CreateStack": "CREATE_IN_PROGRESS", "UpdateStack": "UPDATE_IN_PROGRESS"}


class PlainStacks:
    def __init__(self, seconds: Callable[[], float]) -> None:
        self._seconds = seconds
        # (deadline, seq, stack, status to show once the deadline has passed)
        self._pending: list[tuple[float, int, Any, str]] = []
        self._seq = itertools.count()

    def reset(self) -> None:
        self._pending = []

    def advance(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        while self._pending and self._pending[0][0] <= now:
            _, _, stack, final = heapq.heappop(self._pending)
            stack.status = final

    def handle(self, action: str, req: AwsRequest, forward: Forward) -> Reply:
        name = req.params().get("StackName", "")
        if action == "UpdateStack":
            stack = _find(req, name)
            if stack is not None and stack.status.endswith("_IN_PROGRESS"):
                raise validation(f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated.")
        reply = forward()
        seconds = self._seconds()
        if reply.status != 200 or seconds <= 0:
            return reply
        stack = _find(req, name)
        if stack is not None:
            heapq.heappush(self._pending, (time.monotonic() + seconds, next(self._seq), stack, stack.status))
            stack.status = _IN_PROGRESS[action]
        return reply


def handlers(current: Callable[[], PlainStacks]) -> dict[str, Callable[[AwsRequest, Forward], Reply]]:
    """Handlers that find the current PlainStacks on every call (a reset replaces it)."""

    def timed(action: str) -> Callable[[AwsRequest, Forward], Reply]:
        return lambda req, forward: current().handle(action, req, forward)

    return {f"cloudformation:{action}": timed(action) for action in _IN_PROGRESS}


def _find(req: AwsRequest, name: str) -> Any:
    backend = cloudformation_backends[account_of(req)][req.region]
    for stack in backend.stacks.values():
        if name in (stack.name, stack.stack_id):
            return stack
    return None
