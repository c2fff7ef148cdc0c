"""Injectable faults: per-operation rate limits (token buckets), timed outages, random server
errors and slow answers."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Generic, Protocol, TypeVar

_T = TypeVar("_T")


class _Rated(Protocol):
    @property
    def rate(self) -> float: ...


_R = TypeVar("_R", bound=_Rated)


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


@dataclass(frozen=True)
class DelayRule:
    seconds: float
    rate: float


class SeededRules(Generic[_R]):
    """Rules keyed like throttle limits (the most specific one decides), each hitting a seeded
    fraction (`rate`) of the calls it matches.

    The same seed and the same sequence of calls hit the same calls, so a failing test can be
    replayed; configuring again restarts the sequence. `counted` names the per-key hit counts in
    `describe()`.
    """

    def __init__(self, counted: str) -> None:
        self._lock = threading.Lock()
        self._counted = counted
        self._rules: dict[str, _R] = {}
        self._seed = 0
        self._random = random.Random(0)
        self._hits: Counter[str] = Counter()

    def configure(self, rules: dict[str, _R], seed: int) -> None:
        with self._lock:
            self._rules = dict(rules)
            self._seed = seed
            self._random = random.Random(seed)
            self._hits.clear()

    def describe(self) -> dict[str, object]:
        with self._lock:
            return {
                "seed": self._seed,
                "rules": {k: asdict(r) for k, r in self._rules.items()},
                self._counted: dict(sorted(self._hits.items())),
            }

    def hit(self, key: str) -> _R | None:
        """The rule that hits this call, or None when it goes through untouched."""
        with self._lock:
            rule = _rule(self._rules, key)
            if rule is None or self._random.random() >= rule.rate:
                return None
            self._hits[key] += 1
            return rule


def random_errors() -> SeededRules[ErrorRule]:
    """Random server errors: a call hit fails with HTTP `status` (5xx) before it is handled."""
    return SeededRules("injected")


def latency() -> SeededRules[DelayRule]:
    """Slow answers: a call hit is answered `seconds` late. The call takes effect at once; only
    its answer waits (outside the emulator's lock, so other calls go on meanwhile), so a client
    that gives up earlier sees a timeout for a call that was carried out, as with a slow AWS
    endpoint."""
    return SeededRules("delayed")
