"""Injectable faults: per-operation rate limits (token buckets) and timed outages."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


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
