"""Where the time goes: named wall-clock totals, for the benchmarks' time budgets."""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from contextlib import contextmanager


class Stopwatch:
    """Accumulates seconds per phase; ``with watch("encrypt"): ...``."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.totals[name] += time.perf_counter() - t

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in sorted(self.totals.items())}
