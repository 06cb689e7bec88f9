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
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor

import gmpy2

_LOCK = threading.Lock()
_POOL: ProcessPoolExecutor | None = None
_POOL_SIZE = 0


_THREADS: ThreadPoolExecutor | None = None
#: the engine tasks run on instead of the worker processes (:func:`using_engine`)
_ENGINE = None


@contextlib.contextmanager
def using_engine(engine):
    """Run this process's worker tasks on ``engine`` (a :class:`~fedcredit.crypto.engine.
    DaskEngine`; None: the local worker processes) inside the block. Process-wide: a
    party uses one engine at a time."""
    global _ENGINE
    previous, _ENGINE = _ENGINE, engine
    try:
        yield engine
    finally:
        _ENGINE = previous


def current_engine():
    return _ENGINE


def _release_gil_in_this_thread() -> None:
    gmpy2.set_context(gmpy2.context(allow_release_gil=True))


def thread_map(fn: Callable, items: Sequence) -> list:
    """``[fn(x) for x in items]`` on threads that let gmpy2 release the GIL.

    gmpy2 releases the GIL inside big-number operations when its context allows it, so
    threads run 4096-bit multiplications and ``powmod_base_list`` calls truly in parallel
    while sharing memory (no copying of ciphertexts to worker processes). Worth it for
    operations of several microseconds (Paillier mod n**2); for smaller ones the GIL
    hand-offs cost more than they save, and the process workers above are used instead.
    """
    global _THREADS
    if len(items) <= 1:
        return [fn(x) for x in items]
    with _LOCK:
        if _THREADS is None:
            _THREADS = ThreadPoolExecutor(max_workers=default_workers(),
                                          thread_name_prefix="fedcredit-crypto",
                                          initializer=_release_gil_in_this_thread)
    return list(_THREADS.map(fn, items))


def split_evenly(items: Sequence, parts: int | None = None) -> list[Sequence]:
    """Cut a sequence into ``parts`` (default: cores) contiguous, nearly equal pieces."""
    k = max(1, min(parts or default_workers(), len(items)))
    step = -(-len(items) // k) if items else 0
    return [items[i:i + step] for i in range(0, len(items), step)] if step else []


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
            _POOL = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                        initializer=_exit_with_parent,
                                        initargs=(os.getpid(),))
            _POOL_SIZE = workers
        return _POOL


#: how often a worker checks that the process which started it is still alive
PARENT_CHECK_SECONDS = 1.0


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when its parent is gone.

    A SIGKILLed holder or bank cannot shut its pool down, and a forkserver worker is not its
    child, so it would live on holding a key's tables; a daemon thread watches the parent's
    pid and exits the worker (``os._exit``: nothing of the dead parent's work is left to do).
    """
    launcher = os.getppid()  # the forkserver (or the parent itself, with spawn)

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_SECONDS)
            if os.getppid() != launcher:  # orphaned: the forkserver died with the parent
                os._exit(0)
            try:
                os.kill(parent, 0)
            except (ProcessLookupError, PermissionError):  # gone, or its pid reused
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="fedcredit-parent-watch").start()


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


def warm(fn: Callable, chunks: Sequence, workers: int, *args) -> list[Future]:
    """Submit tasks and return at once (their results are not needed, only their side
    effects in the workers, such as cached tables). Not on an engine: its workers build
    their tables with their first task."""
    if _ENGINE is not None:
        return []
    pool = get_pool(workers)
    return [_submit(pool, fn, c, *args) for c in chunks]


def map_ordered(fn: Callable, chunks: Sequence, workers: int, *args, lookahead: int | None = None
                ) -> Iterator:
    """Apply ``fn(chunk, *args)`` to each chunk in worker processes; yield results in order.

    At most ``lookahead`` chunks are in flight (default: 2 per worker), which bounds memory
    and lets the consumer (a gRPC stream) start on the first results while later ones run.
    With an engine in use (:func:`using_engine`) the tasks run on its workers.
    """
    if _ENGINE is not None and len(chunks) > 1:
        yield from _ENGINE.map_ordered(fn, chunks, *args, lookahead=lookahead)
        return
    if workers <= 1 or len(chunks) <= 1:
        for c in chunks:
            yield fn(c, *args)
        return
    pool = get_pool(workers)
    yield from windowed(lambda c: _submit(pool, fn, c, *args), chunks, lookahead or 2 * workers)


def windowed(submit: Callable, chunks: Sequence, ahead: int) -> Iterator:
    """``submit(chunk).result()`` for each chunk, in order, with at most ``ahead`` submitted
    and not yet consumed; what is still pending is cancelled when the consumer stops early
    (a process pool's or a Dask cluster's futures alike)."""
    it = iter(chunks)
    pending: list = []
    try:
        for c in it:
            pending.append(submit(c))
            if len(pending) >= ahead:
                break
        while pending:
            fut = pending.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                pending.append(submit(nxt))
            yield fut.result()
    finally:
        for f in pending:
            f.cancel()
