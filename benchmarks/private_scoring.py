#!/usr/bin/env python
"""Private (Fed-EINI style) vs plain (leaf-mask) SecureBoost scoring: latency and throughput.

    python benchmarks/private_scoring.py --json benchmarks/results/private_scoring.json

Trains one model (default 50 trees, depth 3) on synthetic USCC-keyed data with 1024-bit
training keys (training speed is not measured here), then scores against a real holder gRPC
server with mutual TLS on 127.0.0.1, with the scoring key size of ``--key-bits``: the
latency of one enterprise per call (p50/p95 over ``--calls`` calls, one cached scoring
session, as online scoring runs) and the throughput of one batch. Writes JSON and, next to
it, a Markdown table (``.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fedcredit.datasets import make_credit_data  # noqa: E402
from fedcredit.holder.devca import make_dev_certs  # noqa: E402
from fedcredit.models import SecureBoostClassifier  # noqa: E402
from fedcredit.models.secureboost.private_scoring import (  # noqa: E402
    private_decision_function,
    private_path_bits,
)
from fedcredit.protocol import HolderPolicy, PassiveParty  # noqa: E402
from fedcredit.transport import HolderServer, connect  # noqa: E402


def _latency(fn, X, calls: int) -> dict:
    fn(X.iloc[[0]])  # warm: session, key, tables
    times = []
    for i in range(calls):
        t = time.perf_counter()
        fn(X.iloc[[1 + i % (len(X) - 1)]])
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def _throughput(fn, X) -> dict:
    t = time.perf_counter()
    fn(X)
    dt = time.perf_counter() - t
    return {"batch": len(X), "batch_seconds": round(dt, 3),
            "per_second": round(len(X) / dt, 1)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--trees", type=int, default=50)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--key-bits", type=int, default=2048, help="scoring key size")
    ap.add_argument("--scheme", default="paillier")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--jobs", type=int, default=1, help="bank worker processes")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/private_scoring.json"))
    a = ap.parse_args(argv)
    bank, holder = make_credit_data(rows=a.rows, seed=7, overlap=0.9)
    bank, holder = bank.set_index("uscc"), holder.set_index("uscc")
    y = bank.pop("label").to_numpy()
    party = PassiveParty(holder, policy=HolderPolicy(allow_insecure_keys=True,
                                                     min_node_samples=20))
    with tempfile.TemporaryDirectory() as tls:
        make_dev_certs(tls)
        server = HolderServer(party, "127.0.0.1:0", tls_dir=tls).start()
        try:
            ch = connect(server.address, tls_dir=tls)
            t = time.perf_counter()
            model = SecureBoostClassifier(n_estimators=a.trees, max_depth=a.depth, max_bin=16,
                                          learning_rate=0.1, key_bits=1024, insecure_key=True,
                                          n_jobs=a.jobs, verbose=False, he_scheme=a.scheme)
            model.fit(bank, y, ch)
            fit_s = time.perf_counter() - t
            model.set_params(key_bits=a.key_bits, insecure_key=a.key_bits < 2048)
            X = bank[bank.index.isin(holder.index)]
            plain = lambda Z: model.decision_function(Z, ch)  # noqa: E731
            private = lambda Z: private_decision_function(model, Z, ch)  # noqa: E731
            diff = float(np.max(np.abs(plain(X.iloc[:200]) - private(X.iloc[:200]))))
            out = {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "transport": "gRPC, mutual TLS, 127.0.0.1",
                "model": {"trees": a.trees, "depth": a.depth, "scheme": a.scheme,
                          "scoring_key_bits": a.key_bits, "fit_seconds": round(fit_s, 1),
                          "federated_trees": sum(1 for i in model.tree_ids_ if i >= 0),
                          "leaves": sum(len(t.leaves) for t in model.trees_),
                          "private_path_bits": round(private_path_bits(model), 1)},
                "max_abs_score_difference": diff,
                "plain": {**_latency(plain, X, a.calls), **_throughput(plain, X.iloc[:a.batch])},
                "private": {**_latency(private, X, a.calls),
                            **_throughput(private, X.iloc[:a.batch])},
            }
        finally:
            server.stop(0)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(out, indent=2) + "\n")
    a.json.with_suffix(".md").write_text(markdown(out))
    print(markdown(out))
    return out


def markdown(r: dict) -> str:
    mdl = r["model"]
    lines = [
        f"# Private vs plain SecureBoost scoring ({mdl['trees']} trees, depth {mdl['depth']})",
        "",
        f"{r['transport']}; scoring key {mdl['scheme']} {mdl['scoring_key_bits']} bits; "
        f"{mdl['federated_trees']} federated trees, {mdl['leaves']} leaves, "
        f"{mdl['private_path_bits']} path bits; {r['machine']['cpus']} CPUs (shared). "
        f"Largest score difference: {r['max_abs_score_difference']:.2e}.",
        "",
        "| mode | one enterprise p50 (ms) | p95 (ms) | batch | batch (s) | enterprises/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode in ("plain", "private"):
        x = r[mode]
        lines.append(f"| {mode} | {x['p50_ms']} | {x['p95_ms']} | {x['batch']} | "
                     f"{x['batch_seconds']} | {x['per_second']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
