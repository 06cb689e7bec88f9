"""The throwaway holder process of ``fedcredit simulate`` and ``fedcredit demo`` (entry only).

Serves one feature CSV over gRPC with mutual TLS, consent granted for every enterprise
(simulations only; the operator's service is ``fedcredit holder serve``); writes its port to
``--port-file`` once listening; stops on SIGTERM, SIGINT or when its parent's stdin closes.
:class:`fedcredit.simulation.EphemeralHolder` starts it; the harness lives in that module.

    python -m fedcredit.holder.ephemeral --csv holder.csv --id-column uscc --tls-dir certs \\
        --port-file port.txt
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from ..atomic import write_atomic
from ..crypto.engine import engine_scope
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
    ap.add_argument("--engine", choices=("local", "dask"), default="local",
                    help="dask: PSI and batch crypto on a LocalCluster of --workers")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--stats-out", help="on exit, write the last training session's time "
                                        "budget and this process's peak memory (JSON)")
    a = ap.parse_args(argv)
    features = load_csv_table(a.csv, a.id_column)
    policy = HolderPolicy(allow_insecure_keys=a.allow_insecure_keys,
                          min_node_samples=a.min_node_samples,
                          max_trees_per_session=10_000)
    party = PassiveParty(features, name=a.name, policy=policy)
    with engine_scope(a.engine, a.workers):
        return _serve(a, party)


def _serve(a, party) -> int:
    server = HolderServer(party, a.address, tls_dir=a.tls_dir).start()
    write_atomic(a.port_file, str(server.port))
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
        write_atomic(a.stats_out, json.dumps(stats))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
