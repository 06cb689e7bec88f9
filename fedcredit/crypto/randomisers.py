"""Randomisers of the key owner's next encryptions, made ahead of time in the background.

Almost all of a Paillier encryption's cost is its randomiser (``r**n``), which does not
depend on the message. The bank knows when it will encrypt next (the next tree's
gradients) and how many; while it waits for the holder it fills a stock with the worker
processes (or the Dask engine), so that on the critical path each encryption is a few
multiplications. Each randomiser is used once and never leaves the bank.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .parallel import map_ordered

if TYPE_CHECKING:
    from .private import PrivateKey

#: randomisers per background task: small, so that when the bank starts encrypting, the
#: few tasks still in flight do not hold its workers for long
CHUNK = 512

#: memory the stock may hold: a million rows of 2048-bit Paillier randomisers would take
#: 620 MB and push the bank past its 1.5 GB budget; this keeps ~210k (Paillier) or ~370k
#: (OU), the rest of a larger tree is encrypted as before
MAX_STOCK_BYTES = 128 << 20


class RandomiserStock:
    """Up to ``target`` randomisers of ``key``'s scheme, made by one background thread."""

    def __init__(self, key: PrivateKey):
        self.key = key
        self._a: list = []
        self._b: list = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._target = 0
        self._stop = threading.Event()
        self._pause = threading.Event()

    def __len__(self) -> int:
        return len(self._a)

    def fill_to(self, target: int, workers: int) -> None:
        """Make randomisers in the background until ``target`` are ready (never more)."""
        with self._lock:
            self._target = max(self._target, int(target))
            self._pause.clear()
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._fill, args=(workers,), daemon=True,
                                            name="fedcredit-randomisers")
            self._thread.start()

    def _fill(self, workers: int) -> None:
        try:
            self._fill_until_stopped(workers)
        except Exception:  # noqa: BLE001 - workers gone after close(): nothing is owed
            if not self._stop.is_set():
                raise

    def _fill_until_stopped(self, workers: int) -> None:
        secret = self.key.to_bytes()
        while not (self._stop.is_set() or self._pause.is_set()):
            with self._lock:
                missing = self._target - len(self._a)
            if missing <= 0:
                return
            sizes = [CHUNK] * (missing // CHUNK) + ([missing % CHUNK] if missing % CHUNK else [])
            for data in map_ordered(_worker_randomisers, sizes, workers, secret):
                a, b = self.key._randomisers_from_bytes(data)
                with self._lock:
                    self._a.extend(a)
                    self._b.extend(b)
                if self._stop.is_set() or self._pause.is_set():
                    return

    def take(self, count: int) -> tuple[list, list] | None:
        """Exactly ``count`` randomisers, removed from the stock, or None if fewer are ready."""
        with self._lock:
            if len(self._a) < count:
                return None
            a, b = self._a[:count], self._b[:count]
            del self._a[:count], self._b[:count]
            self._target = max(0, self._target - count)
            return a, b

    def pause(self) -> None:
        """Stop making more (the workers are wanted for encryption now); ``fill_to`` resumes."""
        self._pause.set()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._a, self._b, self._target = [], [], 0


def _worker_randomisers(count: int, secret: bytes) -> bytes:
    from .private import _worker_key

    key = _worker_key(secret)
    return key._randomisers_to_bytes(key._randomisers_local(count))
