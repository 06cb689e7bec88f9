"""A short-lived holder process for ``fedcredit simulate`` and ``fedcredit demo``.

Serves one feature CSV over gRPC with mutual TLS, with consent granted for every enterprise
(simulations only; the operator's service is ``fedcredit holder serve``). It writes its port
to ``--port-file`` once listening and stops on SIGTERM, SIGINT or when its parent's stdin
closes.

    python -m fedcredit.holder.ephemeral --csv holder.csv --id-column uscc --tls-dir certs \\
        --port-file port.txt
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from ..datasets import load_csv_table
from ..protocol import HolderPolicy, PassiveParty
from ..transport import HolderServer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fedcredit.holder.ephemeral")
    ap.add_argument("--csv", required=True)
    ap.add_argument("--id-column", required=True)
    ap.add_argument("--tls-dir", required=True)
    ap.add_argument("--address", default="127.0.0.1:0")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--allow-insecure-keys", action="store_true")
    ap.add_argument("--min-node-samples", type=int, default=20)
    ap.add_argument("--name", default="simulated-holder")
    ap.add_argument("--stats-out", help="on exit, write the last training session's time "
                                        "budget and this process's peak memory (JSON)")
    a = ap.parse_args(argv)
    features = load_csv_table(a.csv, a.id_column)
    policy = HolderPolicy(allow_insecure_keys=a.allow_insecure_keys,
                          min_node_samples=a.min_node_samples,
                          max_trees_per_session=10_000)
    party = PassiveParty(features, name=a.name, policy=policy)
    server = HolderServer(party, a.address, tls_dir=a.tls_dir).start()
    port_file = Path(a.port_file)
    tmp = port_file.with_name(port_file.name + ".tmp")
    tmp.write_text(str(server.port))
    tmp.replace(port_file)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())

    def watch_parent():  # the parent closing our stdin means it is gone
        try:
            sys.stdin.read()
        except Exception:
            pass
        done.set()

    if not sys.stdin.isatty():
        threading.Thread(target=watch_parent, daemon=True).start()
    done.wait()
    server.stop(grace=2)
    if a.stats_out:
        import json
        import resource

        stats = {"time_budget_holder": party.last_timings,
                 "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        Path(a.stats_out).write_text(json.dumps(stats))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())


class EphemeralHolder:
    """Start :func:`main` as a separate process; a context manager giving its address.

    >>> with EphemeralHolder("holder.csv", "uscc", tls_dir) as h:     # doctest: +SKIP
    ...     channel = fedcredit.connect(h.address, tls_dir=tls_dir)
    """

    def __init__(self, csv, id_column: str, tls_dir, *, allow_insecure_keys: bool = False,
                 min_node_samples: int = 20, startup_timeout: float = 120.0,
                 stats_out=None):
        self.args = [sys.executable, "-m", "fedcredit.holder.ephemeral", "--csv", str(csv),
                     "--id-column", id_column, "--tls-dir", str(tls_dir),
                     "--min-node-samples", str(min_node_samples)]
        if allow_insecure_keys:
            self.args.append("--allow-insecure-keys")
        if stats_out:
            self.args += ["--stats-out", str(stats_out)]
        self.tls_dir = tls_dir
        self.startup_timeout = startup_timeout
        self.proc = None
        self.address = ""

    def __enter__(self) -> "EphemeralHolder":
        import subprocess
        import tempfile
        import time

        self._tmp = tempfile.TemporaryDirectory(prefix="fedcredit-holder-")
        port_file = Path(self._tmp.name) / "port"
        self._log = open(Path(self._tmp.name) / "holder.log", "w+")
        self.proc = subprocess.Popen(self.args + ["--port-file", str(port_file)],
                                     stdin=subprocess.PIPE, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + self.startup_timeout
        while not port_file.exists():
            if self.proc.poll() is not None or time.time() > deadline:
                self._log.seek(0)
                tail = self._log.read()[-2000:]
                self.__exit__(None, None, None)
                raise RuntimeError(f"the holder process did not start:\n{tail}")
            time.sleep(0.05)
        self.address = f"127.0.0.1:{port_file.read_text().strip()}"
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.terminate()
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
        if getattr(self, "_log", None):
            self._log.close()
        if getattr(self, "_tmp", None):
            self._tmp.cleanup()
