"""Counts of AWS calls by `service:Operation`, in total and per outcome (ok / error / throttled),
and, when enabled, a log of every call: who made it (access key) and when, so a test can tell
which of several operator replicas made a call and whether it held the lease then."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict

OUTCOMES = ("ok", "error", "throttled")


class RequestCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._outcomes: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._log: list[dict[str, object]] | None = None

    def record(self, key: str, outcome: str, access_key: str = "", started: float | None = None) -> None:
        with self._lock:
            self._counts[key] += 1
            self._outcomes[key][outcome] += 1
            if self._log is not None:
                finished = time.time()
                self._log.append({
                    "key": key,
                    "outcome": outcome,
                    "access_key": access_key,
                    "started": finished if started is None else started,
                    "finished": finished,
                })

    def set_logging(self, enabled: bool) -> None:
        """Starts (with an empty log) or stops the request log; off by default, as it grows."""
        with self._lock:
            self._log = [] if enabled else None

    def log(self) -> dict[str, object]:
        with self._lock:
            return {"enabled": self._log is not None, "entries": list(self._log or [])}

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "counts": dict(sorted(self._counts.items())),
                "outcomes": {
                    key: {o: self._outcomes[key][o] for o in OUTCOMES} for key in sorted(self._outcomes)
                },
            }

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._outcomes.clear()
            if self._log is not None:
                self._log.clear()
