"""The decision log: one JSON line per enterprise decided — who asked, when, which model,
the probability, grade and coverage. Never a feature value, the bank's or the holder's.

Lines are appended with one ``write`` to a file opened ``O_APPEND``, so concurrent requests
never interleave inside a line and a crash leaves at most a missing last line.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path


class DecisionLog:
    """Append-only JSON lines at ``path`` (None: no log)."""

    def __init__(self, path=None):
        self.path = Path(path) if path else None
        self._fd: int | None = None
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)

    def write(self, *, caller: str, model_id: str, decisions: list[dict],
              seconds: float) -> None:
        if self._fd is None:
            return
        now = time.time()
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
        lines = "".join(json.dumps({
            "ts": ts, "caller": caller[:128], "model_id": model_id, "uscc": d["uscc"],
            "probability": d["probability"], "grade": d["grade"],
            "holder_covered": d["holder_covered"], "seconds": round(seconds, 6)},
            ensure_ascii=False) + "\n" for d in decisions).encode()
        with self._lock:
            os.write(self._fd, lines)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
