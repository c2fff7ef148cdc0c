"""Injectable faults: per-operation rate limits (token buckets), timed outages, random server
errors and slow answers."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TypeVar

_T = TypeVar("_T")


@dataclass
class _Bucket:
    rate: float
    burst: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now


class Throttle:
    """Token buckets keyed by `service:Operation`, `service:*` or `*`.

    A call spends one token from every bucket that applies to it; it is throttled (and spends
    nothing) when any of them is empty.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def configure(self, limits: dict[str, tuple[float, float]]) -> None:
        now = time.monotonic()
        with self._lock:
            self._buckets = {
                key: _Bucket(rate=rate, burst=burst, tokens=burst, stamp=now)
                for key, (rate, burst) in limits.items()
            }

    def describe(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {k: {"rate": b.rate, "burst": b.burst} for k, b in self._buckets.items()}

    def admit(self, key: str) -> bool:
        service = key.split(":", 1)[0]
        now = time.monotonic()
        with self._lock:
            buckets = [b for k in (key, f"{service}:*", "*") if (b := self._buckets.get(k)) is not None]
            for b in buckets:
                b.refill(now)
            if any(b.tokens < 1 for b in buckets):
                return False
            for b in buckets:
                b.tokens -= 1
            return True


class Outage:
    """A window during which every AWS call fails ("error") or the port is closed ("refuse")."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.mode = ""
        self.until = 0.0
        # Woken when a refuse-mode outage starts, so the server can close its socket.
        self.refuse_started = threading.Event()

    def start(self, seconds: float, mode: str) -> None:
        with self._lock:
            self.mode = mode
            self.until = time.monotonic() + seconds
        if mode == "refuse":
            self.refuse_started.set()

    def clear(self) -> None:
        with self._lock:
            self.mode = ""
            self.until = 0.0

    def active(self, mode: str) -> bool:
        with self._lock:
            return self.mode == mode and time.monotonic() < self.until

    def remaining(self) -> float:
        with self._lock:
            return max(0.0, self.until - time.monotonic()) if self.mode else 0.0

    def describe(self) -> dict[str, object]:
        left = self.remaining()
        return {"mode": self.mode if left > 0 else "", "remaining_seconds": round(left, 3)}


def _rule(rules: dict[str, _T], key: str) -> _T | None:
    """The most specific rule for `service:Operation`: itself, then `service:*`, then `*`."""
    service = key.split(":", 1)[0]
    for candidate in (key, f"{service}:*", "*"):
        if (rule := rules.get(candidate)) is not None:
            return rule
    return None


@dataclass(frozen=True)
class ErrorRule:
    rate: float
    status: int


class RandomErrors:
    """A seeded fraction of the calls each rule matches fails with HTTP 5xx before it is handled.

    The same seed and the same sequence of calls fail the same calls, so a failing test can be
    replayed. Rules are keyed like throttle limits; the most specific one decides.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, ErrorRule] = {}
        self._seed = 0
        self._random = random.Random(0)
        self._injected: Counter[str] = Counter()

    def configure(self, rules: dict[str, ErrorRule], seed: int) -> None:
        with self._lock:
            self._rules = dict(rules)
            self._seed = seed
            self._random = random.Random(seed)
            self._injected.clear()

    def describe(self) -> dict[str, object]:
        with self._lock:
            return {
                "seed": self._seed,
                "rules": {k: {"rate": r.rate, "status": r.status} for k, r in self._rules.items()},
                "injected": dict(sorted(self._injected.items())),
            }

    def pick(self, key: str) -> int | None:
        """The HTTP status this call fails with, or None when it goes through."""
        with self._lock:
            rule = _rule(self._rules, key)
            if rule is None or self._random.random() >= rule.rate:
                return None
            self._injected[key] += 1
            return rule.status


@dataclass(frozen=True)
class DelayRule:
    seconds: float
    rate: float


class Latency:
    """Slow answers: a seeded fraction of the calls each rule matches is answered `seconds` late.

    The call takes effect at once; only its answer waits (outside the emulator's lock, so other
    calls go on meanwhile). A client that gives up earlier sees a timeout although the call was
    carried out, as with a slow AWS endpoint.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, DelayRule] = {}
        self._seed = 0
        self._random = random.Random(0)
        self._delayed: Counter[str] = Counter()

    def configure(self, rules: dict[str, DelayRule], seed: int) -> None:
        with self._lock:
            self._rules = dict(rules)
            self._seed = seed
            self._random = random.Random(seed)
            self._delayed.clear()

    def describe(self) -> dict[str, object]:
        with self._lock:
            return {
                "seed": self._seed,
                "rules": {k: {"seconds": r.seconds, "rate": r.rate} for k, r in self._rules.items()},
                "delayed": dict(sorted(self._delayed.items())),
            }

    def delay(self, key: str) -> float:
        """Seconds the answer to this call waits (0 for most calls)."""
        with self._lock:
            rule = _rule(self._rules, key)
            if rule is None or self._random.random() >= rule.rate:
                return 0.0
            self._delayed[key] += 1
            return rule.seconds
