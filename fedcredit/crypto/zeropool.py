"""Fresh encryptions of zero made ahead of time, in a low-priority background thread.

Re-randomising a ciphertext costs one full exponentiation (``r**n mod n**2``: ~12 ms for
2048-bit Paillier), and the holder re-randomises every ciphertext it returns. The values do
not depend on the data, so a pool computes them while the holder waits for the bank
(decryption, split finding, the next tree's encryption) and hands them out when an answer
is packed. The thread runs at the lowest CPU priority, so on a shared machine it uses only
cycles nobody else wants; gmpy2 releases the GIL while it computes.
"""
from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque

import gmpy2


class ZeroPool:
    """Keeps up to ``capacity`` encryptions of zero ready for ``public_key``."""

    #: a full pool nobody draws from for this long stops its thread (an abandoned session)
    IDLE_SECONDS = 120.0

    def __init__(self, public_key, capacity: int = 2048, batch: int = 4):
        self._pk = weakref.ref(public_key)  # the pool must not keep a dropped key alive
        self.capacity = int(capacity)
        self._last_take = time.monotonic()
        self.batch = int(batch)
        self._ready: deque = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fedcredit-zero-pool",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:  # Linux: a thread is a task with its own nice value
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        gmpy2.set_context(gmpy2.context(allow_release_gil=True))
        while not self._stop.is_set():
            if len(self._ready) >= self.capacity:
                if time.monotonic() - self._last_take > self.IDLE_SECONDS:
                    return
                self._stop.wait(0.05)
                continue
            pk = self._pk()
            if pk is None:
                return
            zeros = pk._random_zeros_now(self.batch, threads=False)
            del pk
            with self._lock:
                self._ready.extend(zeros)

    def take(self, count: int) -> list:
        """Up to ``count`` ready zeros (possibly fewer; the caller makes the rest)."""
        with self._lock:
            self._last_take = time.monotonic()
            k = min(count, len(self._ready))
            return [self._ready.popleft() for _ in range(k)]

    def __len__(self) -> int:
        return len(self._ready)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
