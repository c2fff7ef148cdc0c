"""How a StackSet operation unfolds over time: regions, waves of accounts, failure tolerance.

Pure functions of the operation's targets and preferences (StackSetOperationPreferences):
- concurrency per region: MaxConcurrentCount, or MaxConcurrentPercentage of the region's accounts
  rounded down but at least 1; default 1. Under ConcurrencyMode STRICT_FAILURE_TOLERANCE (the
  default) it is further capped at tolerance + 1, as AWS does; SOFT_FAILURE_TOLERANCE lifts the cap.
- failure tolerance per region: FailureToleranceCount, or FailureTolerancePercentage of the region's
  accounts rounded down; default 0.
- regions run one after another (RegionOrder first, then the order of the request) unless
  RegionConcurrencyType is PARALLEL.
- duration: base_seconds + seconds_per_wave * waves, where waves are counted along the longest
  path (summed over regions when sequential, the largest region when parallel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import validation

STRICT = "STRICT_FAILURE_TOLERANCE"
SOFT = "SOFT_FAILURE_TOLERANCE"


@dataclass(frozen=True)
class Timing:
    base_seconds: float = 0.2
    seconds_per_wave: float = 0.05
    # How long a plain CreateStack / UpdateStack stays in progress (stacks.py).
    stack_seconds: float = 0.0


@dataclass(frozen=True)
class Wave:
    region: str
    accounts: tuple[str, ...]
    start: float  # seconds after the operation started
    end: float


@dataclass
class Plan:
    regions: list[str]
    accounts: dict[str, list[str]]  # region -> accounts, in execution order
    tolerance: dict[str, int]
    waves: list[Wave] = field(default_factory=list)
    duration: float = 0.0
    parallel: bool = False
    # (account, region) -> seconds after the start at which its wave begins
    starts: dict[tuple[str, str], float] = field(default_factory=dict)


def validate_preferences(prefs: dict[str, Any]) -> None:
    if "MaxConcurrentCount" in prefs and "MaxConcurrentPercentage" in prefs:
        raise validation(
            "You can specify either MaxConcurrentCount or MaxConcurrentPercentage, but not both."
        )
    if "FailureToleranceCount" in prefs and "FailureTolerancePercentage" in prefs:
        raise validation(
            "You can specify either FailureToleranceCount or FailureTolerancePercentage, but not both."
        )
    _bounded(prefs, "MaxConcurrentCount", 1, None)
    _bounded(prefs, "MaxConcurrentPercentage", 1, 100)
    _bounded(prefs, "FailureToleranceCount", 0, None)
    _bounded(prefs, "FailureTolerancePercentage", 0, 100)
    if prefs.get("RegionConcurrencyType", "SEQUENTIAL") not in ("SEQUENTIAL", "PARALLEL"):
        raise validation("RegionConcurrencyType must be SEQUENTIAL or PARALLEL.")
    if prefs.get("ConcurrencyMode", STRICT) not in (STRICT, SOFT):
        raise validation(f"ConcurrencyMode must be {STRICT} or {SOFT}.")


def _bounded(prefs: dict[str, Any], name: str, low: int, high: int | None) -> None:
    if name not in prefs:
        return
    value = prefs[name]
    if not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise validation(f"{name} must be {bound}.")


def failure_tolerance(prefs: dict[str, Any], accounts: int) -> int:
    if "FailureTolerancePercentage" in prefs:
        return math.floor(prefs["FailureTolerancePercentage"] * accounts / 100)
    return int(prefs.get("FailureToleranceCount", 0))


def concurrency(prefs: dict[str, Any], accounts: int) -> int:
    if "MaxConcurrentPercentage" in prefs:
        wanted = max(1, math.floor(prefs["MaxConcurrentPercentage"] * accounts / 100))
    else:
        wanted = int(prefs.get("MaxConcurrentCount", 1))
    if prefs.get("ConcurrencyMode", STRICT) == STRICT:
        wanted = min(wanted, failure_tolerance(prefs, accounts) + 1)
    return max(1, wanted)


def region_order(regions: list[str], prefs: dict[str, Any]) -> list[str]:
    first = [r for r in prefs.get("RegionOrder", []) if r in regions]
    return list(dict.fromkeys(first + regions))


def make_plan(targets: list[tuple[str, str]], prefs: dict[str, Any], timing: Timing) -> Plan:
    """`targets` are (account, region) pairs in request order."""
    accounts: dict[str, list[str]] = {}
    for account, region in targets:
        accounts.setdefault(region, []).append(account)
    regions = region_order(list(accounts), prefs)
    plan = Plan(
        regions=regions,
        accounts={r: accounts[r] for r in regions},
        tolerance={r: failure_tolerance(prefs, len(accounts[r])) for r in regions},
        parallel=prefs.get("RegionConcurrencyType") == "PARALLEL",
    )
    clock = timing.base_seconds
    longest = clock
    for region in regions:
        members = accounts[region]
        size = concurrency(prefs, len(members))
        t = timing.base_seconds if plan.parallel else clock
        for i in range(0, len(members), size):
            wave = Wave(region, tuple(members[i : i + size]), t, t + timing.seconds_per_wave)
            plan.waves.append(wave)
            plan.starts.update(((account, region), t) for account in wave.accounts)
            t += timing.seconds_per_wave
        clock = t
        longest = max(longest, t)
    plan.duration = longest
    return plan
