#!/usr/bin/env python
"""The Dask engine's strong scaling on this machine, its per-layer split, and a projection.

    python benchmarks/dask_scaling.py --rows 60000 --json benchmarks/results/dask_scaling.json

Each party's share of a SecureBoost tree, timed alone (the two parties share two cores when
they train together, which would hide any scaling):

* the bank: encrypting one packed (g, h) per row (``encrypt_bytes_iter``), on the local
  worker processes and on a Dask ``LocalCluster`` (TLS) of 1 and 2 workers;
* the holder: one tree's histogram work at depth 2 of a depth-5 tree's shape (the root
  and two directly summed quarter-size nodes) over ``--features`` features of 32 bins,
  locally (its threads) and on 1 and 2 Dask workers (``ShardedCiphertexts``).

Strong-scaling efficiency is T(1 worker) / (2 T(2 workers)). The Dask layer is split into
shipping (the shards, once per tree), compute (the workers' task time, from Dask's task
stream), reduce (the holder multiplying the partial histograms) and the rest (scheduling
and transfer of the partials); from the per-row compute and the reduce per shard it projects
one depth-5 tree at 10M rows on 8 and 32 workers (about three row-sums per row per tree:
the root, then the smaller sibling of each pair per layer). Writes JSON and a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fedcredit.crypto import EncryptedHistogram, generate_keypair  # noqa: E402
from fedcredit.crypto.engine import DaskEngine  # noqa: E402
from fedcredit.crypto.parallel import using_engine  # noqa: E402
from fedcredit.crypto.sharded import ShardedCiphertexts  # noqa: E402

BINS = 32


def _encrypt(sk, values, workers: int) -> tuple[float, bytes]:
    list(sk.encrypt_bytes_iter(values[:4096], chunk=1024, workers=workers))  # tables built
    t = time.perf_counter()
    data = b"".join(sk.encrypt_bytes_iter(values, chunk=1024, workers=workers))
    return time.perf_counter() - t, data


def _layer_rows(n: int, rng) -> list[np.ndarray]:
    """The root, then two quarter-size nodes (the smaller siblings of a layer)."""
    perm = np.sort(rng.permutation(n)[: n // 2])
    return [np.arange(n), np.sort(perm[: n // 4]), np.sort(perm[n // 4:])]


def _local_hist(pk, cts, bins, sizes, offsets, nodes) -> float:
    t = time.perf_counter()
    for rows in nodes:
        h = EncryptedHistogram(pk, bins[rows], sizes, offsets)
        h.add(cts[rows])
        h.finish()
    return time.perf_counter() - t


def _dask_hist(engine, pk, cts, bins, sizes, offsets, nodes) -> dict:
    t0 = time.perf_counter()
    sharded = ShardedCiphertexts(engine, pk, cts, bins, sizes, offsets)
    engine.client.run(lambda: None)  # the scatter has landed
    ship = time.perf_counter() - t0
    reduce_s = 0.0
    real_add = pk.add

    def timed_add(a, b):
        nonlocal reduce_s
        t = time.perf_counter()
        out = real_add(a, b)
        reduce_s += time.perf_counter() - t
        return out

    from distributed import get_task_stream

    pk.add = timed_add  # type: ignore[method-assign]
    try:
        with get_task_stream(client=engine.client) as ts:
            t1 = time.perf_counter()
            for rows in nodes:
                sharded.histogram(rows)
            layer = time.perf_counter() - t1
    finally:
        del pk.add
    compute = sum(s["stop"] - s["start"] for task in ts.data for s in task["startstops"]
                  if s["action"] == "compute")
    rss = engine.client.run(_peak_rss_mb)  # each worker's peak, shards and kernels included
    return {"ship_seconds": round(ship, 3), "layer_seconds": round(layer, 3),
            "compute_seconds_total": round(compute, 3), "reduce_seconds": round(reduce_s, 3),
            "shards": len(sharded), "worker_peak_rss_mb": sorted(rss.values()),
            "other_seconds": round(max(0.0, layer - compute / engine.workers - reduce_s), 3)}


def _peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=60_000)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--json", help="write results here (and a .md beside it)")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(7)
    pk, sk = generate_keypair("paillier", bits=a.key_bits, insecure=a.key_bits < 2048)
    values = [int(v) for v in rng.integers(0, 2 ** 60, a.rows)]
    bins = rng.integers(0, BINS, size=(a.rows, a.features)).astype(np.uint8)
    sizes = np.full(a.features, BINS + 1)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    nodes = _layer_rows(a.rows, rng)
    res: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                 "rows": a.rows, "features": a.features, "key_bits": a.key_bits}
    t_local, data = _encrypt(sk, values, 2)
    cts = pk.from_bytes_batch(data)
    res["bank_encrypt_seconds"] = {"local_2_processes": round(t_local, 3)}
    res["holder_hist_seconds"] = {"local_threads": round(
        _local_hist(pk, cts, bins, sizes, offsets, nodes), 3)}
    res["dask_layer"] = {}
    for w in (1, 2):
        with DaskEngine(workers=w) as eng:
            with using_engine(eng):
                t, _ = _encrypt(sk, values, w if w > 1 else 2)
            res["bank_encrypt_seconds"][f"dask_{w}"] = round(t, 3)
            split = _dask_hist(eng, pk, cts, bins, sizes, offsets, nodes)
            res["holder_hist_seconds"][f"dask_{w}"] = split["layer_seconds"]
            res["dask_layer"][f"{w}_workers"] = split
        print(res, flush=True)
    enc, hist = res["bank_encrypt_seconds"], res["holder_hist_seconds"]
    res["efficiency_1_to_2"] = {
        "bank_encrypt": round(enc["dask_1"] / (2 * enc["dask_2"]), 3),
        "holder_histograms": round(hist["dask_1"] / (2 * hist["dask_2"]), 3)}
    one = res["dask_layer"]["1_workers"]
    row_sums = sum(len(r) for r in nodes)
    per_row = one["compute_seconds_total"] / row_sums  # worker seconds per row-sum
    reduce_per_shard = one["reduce_seconds"] / max(1, one["shards"] * len(nodes))
    ship_per_row = one["ship_seconds"] / a.rows
    proj = {}
    for workers in (8, 32):
        n = 10_000_000
        shards = max(workers, -(-n // 2 ** 18))
        tree_nodes = 1 + 2 + 4 + 8 + 16  # directly summed nodes of a depth-5 tree
        proj[f"{workers}_workers"] = round(3 * n * per_row / workers
                                           + shards * tree_nodes * reduce_per_shard
                                           + n * ship_per_row, 1)
    res["projected_holder_seconds_per_tree_10M"] = proj
    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")
        d1, d2 = res["dask_layer"]["1_workers"], res["dask_layer"]["2_workers"]
        md = [f"Dask strong scaling, {a.rows} rows, {a.features} holder features x {BINS} "
              f"bins, {a.key_bits}-bit Paillier, {os.cpu_count()} CPUs "
              "(`python benchmarks/dask_scaling.py`)", "",
              "| work | local | Dask 1 worker | Dask 2 workers | efficiency 1->2 |",
              "| --- | --- | --- | --- | --- |",
              f"| bank: encrypt every row | {enc['local_2_processes']} s (2 processes) | "
              f"{enc['dask_1']} s | {enc['dask_2']} s | "
              f"{res['efficiency_1_to_2']['bank_encrypt']} |",
              f"| holder: root + 2 quarter nodes | {hist['local_threads']} s (threads) | "
              f"{hist['dask_1']} s | {hist['dask_2']} s | "
              f"{res['efficiency_1_to_2']['holder_histograms']} |", "",
              "| Dask layer split | 1 worker | 2 workers |", "| --- | --- | --- |"]
        for k in ("ship_seconds", "compute_seconds_total", "reduce_seconds", "other_seconds",
                  "shards", "worker_peak_rss_mb"):
            md.append(f"| {k} | {d1[k]} | {d2[k]} |")
        md += ["", "Projected holder histogram seconds per depth-5 tree at 10M rows: "
               + ", ".join(f"{k.replace('_', ' ')}: {v} s" for k, v in proj.items())
               + " (per-row compute, per-shard reduce and shipping as measured here)."]
        out.with_suffix(".md").write_text("\n".join(md) + "\n")
    return res


if __name__ == "__main__":
    main()
