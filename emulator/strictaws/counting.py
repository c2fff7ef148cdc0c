"""Counts of AWS calls by `service:Operation`, in total and per outcome (ok / error / throttled)."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict

OUTCOMES = ("ok", "error", "throttled")


class RequestCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._outcomes: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def record(self, key: str, outcome: str) -> None:
        with self._lock:
            self._counts[key] += 1
            self._outcomes[key][outcome] += 1

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
