"""Process workers for encryption and decryption (gmpy2 holds the GIL between operations).

One pool per process, created on first use from a ``forkserver`` (safe next to gRPC's
threads, unlike a plain fork). A task carries the serialized private key; each worker
rebuilds the key and its fixed-base tables once and caches them by fingerprint, so a
session pays the table cost once per worker, not once per chunk.
"""
from __future__ import annotations

import atexit
import contextlib
import importlib.machinery
import multiprocessing as mp
import os
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Callable, Iterator, Sequence

_LOCK = threading.Lock()
_POOL: ProcessPoolExecutor | None = None
_POOL_SIZE = 0


def default_workers() -> int:
    """Workers to use when the caller does not say: every core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None) -> int:
    if workers is None or workers == 0:
        return default_workers()
    if workers < 0:  # scikit-learn convention: -1 = all cores
        return max(1, default_workers() + 1 + workers)
    return int(workers)


def get_pool(workers: int) -> ProcessPoolExecutor:
    global _POOL, _POOL_SIZE
    with _LOCK:
        if _POOL is None or _POOL_SIZE != workers:
            if _POOL is not None:
                _POOL.shutdown(wait=False, cancel_futures=True)
            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            ctx = mp.get_context(method)
            if method == "forkserver":
                ctx.set_forkserver_preload(["fedcredit.crypto"])
            _POOL = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            _POOL_SIZE = workers
        return _POOL


def shutdown_pool() -> None:
    global _POOL, _POOL_SIZE
    with _LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=True, cancel_futures=True)
        _POOL, _POOL_SIZE = None, 0


atexit.register(shutdown_pool)


@contextlib.contextmanager
def _no_main_reimport():
    """Stop new workers from re-running the caller's script.

    A worker started by spawn/forkserver re-imports ``__main__`` from its path, which runs
    an unguarded script (no ``if __name__ == "__main__"``) a second time. Our tasks live in
    fedcredit modules, so workers never need ``__main__``; a spec named "__main__" tells
    multiprocessing to leave it alone.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    try:
        yield
    finally:
        main.__spec__ = None


def _submit(pool: ProcessPoolExecutor, fn, *args) -> Future:
    with _no_main_reimport():  # workers start on demand, inside submit
        return pool.submit(fn, *args)


def map_ordered(fn: Callable, chunks: Sequence, workers: int, *args, lookahead: int | None = None
                ) -> Iterator:
    """Apply ``fn(chunk, *args)`` to each chunk in worker processes; yield results in order.

    At most ``lookahead`` chunks are in flight (default: 2 per worker), which bounds memory
    and lets the consumer (a gRPC stream) start on the first results while later ones run.
    """
    if workers <= 1 or len(chunks) <= 1:
        for c in chunks:
            yield fn(c, *args)
        return
    pool = get_pool(workers)
    ahead = lookahead or 2 * workers
    pending: list[Future] = []
    it = iter(chunks)
    for c in it:
        pending.append(_submit(pool, fn, c, *args))
        if len(pending) >= ahead:
            break
    while pending:
        fut = pending.pop(0)
        nxt = next(it, None)
        if nxt is not None:
            pending.append(_submit(pool, fn, nxt, *args))
        yield fut.result()
