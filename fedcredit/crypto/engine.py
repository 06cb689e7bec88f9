"""Where a party's heavy crypto runs: this machine's worker processes (``"local"``, the
default) or a Dask cluster (``"dask"``).

Every batch of encryptions, decryptions, PSI exponentiations and LR polynomial products goes
through :func:`fedcredit.crypto.parallel.map_ordered`; with an engine in use
(:func:`using_engine`) those tasks run on its workers instead. Tasks carry and return fixed-
width bytes or plain integers, never pickled ``mpz``; the private key travels as its
serialization and only to the party's own cluster. Dask's scheduler re-runs the tasks of a
worker that dies, so a lost worker costs time, not the result.

Why Dask ``distributed``: small, well kept, ships bytes without copies, speaks TLS with
mutual certificates, and its ``LocalCluster`` is the same API on one machine.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ..errors import InvalidInput

#: how often Dask may re-run a task whose worker died (beyond that the batch fails)
TASK_RETRIES = 3


class DaskEngine:
    """A party's Dask cluster: a scheduler address, or a ``LocalCluster`` it starts and owns.

    Every connection is TLS with mutual certificates. A ``LocalCluster`` uses a throwaway
    CA and certificate made in memory for it (``Security.temporary``: nothing else can join
    it). A scheduler at ``tls://`` is reached with ``ca.pem`` and ``<cert_name>.pem``/
    ``.key`` from ``tls_dir``: the party's cluster certificate, which its scheduler and
    workers also use and which must allow both server and client authentication.
    """

    kind = "dask"

    def __init__(self, scheduler: str | None = None, workers: int | None = None,
                 tls_dir: str | Path | None = None, cert_name: str = "bank"):
        try:
            from distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - the [dask] extra brings it
            raise InvalidInput("engine='dask' needs Dask: pip install 'fedcredit[dask]'") \
                from None
        from .parallel import default_workers

        self.cluster = None
        if scheduler:
            security = _security(Path(tls_dir), cert_name) if tls_dir else None
            if not str(scheduler).startswith(("tcp://", "tls://")):
                raise InvalidInput(f"a Dask scheduler address is tcp://host:port or "
                                   f"tls://host:port, got {scheduler!r}")
            if str(scheduler).startswith("tls://") and security is None:
                raise InvalidInput("a tls:// scheduler needs the party's certificates "
                                   "(tls_dir)")
            self.client = Client(scheduler, security=security, timeout=60)
        else:
            from distributed.security import Security

            n = int(workers or default_workers())
            if n < 1:
                raise InvalidInput(f"a Dask LocalCluster needs at least one worker, got {n}")
            security = Security.temporary()
            self.cluster = LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=None, protocol="tls://", security=security,
                silence_logs=40)
            self.client = Client(self.cluster, security=security)

    @property
    def workers(self) -> int:
        """Worker threads of the cluster now (tasks in flight are sized by it)."""
        info = self.client.scheduler_info().get("workers", {})
        return max(1, sum(int(w.get("nthreads", 1)) for w in info.values()))

    def map_ordered(self, fn: Callable, chunks: Sequence, *args,
                    lookahead: int | None = None) -> Iterator:
        """``fn(chunk, *args)`` per chunk on the cluster, results in order, at most
        ``lookahead`` (default two per worker thread) in flight."""
        shared = [self.client.scatter(a, broadcast=True, hash=False) if isinstance(a, bytes) else a
                  for a in args]  # the key once per worker, not once per task
        from .parallel import windowed

        yield from windowed(lambda c: self.client.submit(fn, c, *shared, pure=False,
                                                         retries=TASK_RETRIES),
                            chunks, lookahead or 2 * self.workers)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> DaskEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _security(tls_dir: Path, cert_name: str):
    from distributed.security import Security

    ca, cert, key = tls_dir / "ca.pem", tls_dir / f"{cert_name}.pem", tls_dir / f"{cert_name}.key"
    missing = [str(p) for p in (ca, cert, key) if not p.is_file()]
    if missing:
        raise InvalidInput(f"Dask TLS needs {', '.join(missing)}")
    return Security(tls_ca_file=str(ca), tls_client_cert=str(cert), tls_client_key=str(key),
                    tls_scheduler_cert=str(cert), tls_scheduler_key=str(key),
                    tls_worker_cert=str(cert), tls_worker_key=str(key), require_encryption=True)


def _shared(self, memo):  # an engine is a handle: copies of an estimator share it
    return self


DaskEngine.__deepcopy__ = _shared  # type: ignore[attr-defined]


def check_engine(spec) -> None:
    """Refuse an estimator's ``engine=`` that names no engine."""
    if isinstance(spec, DaskEngine) or spec in ("local", "dask"):
        return
    if isinstance(spec, str) and spec.startswith(("tcp://", "tls://")):
        return
    raise InvalidInput(f"engine must be 'local', 'dask' (a LocalCluster), a Dask scheduler "
                       f"address (tcp://host:port) or a DaskEngine, got {spec!r}")


@contextlib.contextmanager
def engine_scope(spec="local", workers: int | None = None, tls_dir=None,
                 cert_name: str = "bank"):
    """Run the block's worker tasks on the engine ``spec`` names: ``"local"`` (the worker
    processes), ``"dask"`` (a ``LocalCluster`` of ``workers`` started here and closed
    after), a scheduler address, or a :class:`DaskEngine` the caller owns."""
    from .parallel import using_engine

    check_engine(spec)
    if spec == "local":
        with using_engine(None):
            yield None
        return
    if isinstance(spec, DaskEngine):
        with using_engine(spec):
            yield spec
        return
    engine = DaskEngine(None if spec == "dask" else spec, workers, tls_dir, cert_name)
    try:
        with using_engine(engine):
            yield engine
    finally:
        engine.close()
