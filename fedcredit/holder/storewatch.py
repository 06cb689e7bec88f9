"""The holder's health follows its store: NOT_SERVING while the audit log cannot be written.

Every answer needs its audit record first, so a full or failing disk makes the holder unable
to answer anything. Rather than fail each request after doing its work (and keep telling
load balancers it is SERVING), the service marks itself NOT_SERVING at the first failed
write, refuses requests at once with UNAVAILABLE, and probes the store every few seconds;
the first write that succeeds is an ``audit_resumed`` record saying how long the store was
down and how many requests were refused meanwhile, and health returns to SERVING.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..errors import StoreUnavailable
from . import audit, store

log = logging.getLogger("fedcredit.holder.store")

#: seconds between two attempts to write to a store that failed
PROBE_SECONDS = 2.0


class StoreWatch:
    """Tracks whether the store can be written; switches the server's health with it."""

    def __init__(self, db_path, probe_seconds: float = PROBE_SECONDS):
        self.db_path = db_path
        self.probe_seconds = float(probe_seconds)
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._refused = 0
        self._reason = ""
        self._set_serving: Callable[[bool], None] = lambda serving: None
        self._stop = threading.Event()

    def attach(self, set_serving: Callable[[bool], None]) -> None:
        """Give the watch the server's health switch (the server is built after the core)."""
        self._set_serving = set_serving

    @property
    def healthy(self) -> bool:
        return self._down_since is None

    def check(self) -> None:
        """Refuse at once while the store is down (a request would fail at its audit)."""
        if self._down_since is not None:
            with self._lock:
                self._refused += 1
            raise StoreUnavailable(f"the holder cannot write its audit log ({self._reason}); "
                                   "it answers nothing until the operator frees the disk")

    def failed(self, error: BaseException) -> None:
        """A write failed: go NOT_SERVING and start probing (once per outage)."""
        with self._lock:
            self._refused += 1
            if self._down_since is not None:
                return
            self._down_since, self._reason = time.time(), str(error)
        log.error("audit log cannot be written: health NOT_SERVING until it can",
                  extra={"fields": {"reason": str(error)}})
        self._set_serving(False)
        threading.Thread(target=self._probe, daemon=True, name="holder-store-probe").start()

    def stop(self) -> None:
        self._stop.set()

    def _probe(self) -> None:
        while not self._stop.wait(self.probe_seconds):
            try:
                con = store.connect(self.db_path)
                try:
                    with self._lock:
                        down, refused = time.time() - (self._down_since or time.time()), \
                            self._refused
                    audit.record_operator(con, "audit_resumed",
                                          f"unavailable_seconds={down:.0f} refused={refused}")
                finally:
                    con.close()
            except StoreUnavailable:
                continue
            except Exception:  # a probe must never take the server down
                log.exception("store probe failed")
                continue
            with self._lock:
                self._down_since, self._refused, self._reason = None, 0, ""
            log.info("audit log writable again: health SERVING",
                     extra={"fields": {"unavailable_seconds": round(down), "refused": refused}})
            self._set_serving(True)
            return
