#!/usr/bin/env python
"""ECDH-PSI speed in each group (X25519, ristretto255): both parties in one process, one run.

    python benchmarks/psi.py --ids 100000 --json benchmarks/results/psi_100k.json
    python benchmarks/psi.py --ids 1000000 --overlap 0.6 --json benchmarks/results/psi_1m.json

The groups run alternately (``--repeat`` rounds of one run each), so their ratio is a
same-run figure on this shared machine.

Each party holds ``--ids`` USCC-shaped ids, ``--overlap`` of them shared. Steps, in protocol
order: bank blind, holder double-blind, holder shuffled points, bank intersect, holder
resolve. A step's rate is ids per party over that step's seconds; ``end_to_end`` is ids per
party over the sum of all steps (the worker pool is started before timing, and its start-up
time is reported apart). With ``--repeat N`` the fastest of N runs is reported (the machine's
load average is recorded too: other work on the cores slows every step). Both parties share this machine's cores here; on two machines the
holder's and the bank's steps would each have all of theirs. Writes JSON and, next to it, a
Markdown table (``.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sys
import time
from pathlib import Path

import cryptography

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fedcredit.crypto.parallel import resolve_workers  # noqa: E402
from fedcredit.psi import GROUPS, PsiBank, PsiHolder, new_salt  # noqa: E402
from fedcredit.psi import _sodium  # noqa: E402

STEPS = ("bank_blind", "holder_double_blind", "holder_shuffled_points", "bank_intersect",
         "holder_resolve")


def make_ids(n: int, overlap: float, seed: int) -> tuple[list[str], list[str], int]:
    """Two id lists of ``n`` each sharing ``round(overlap * n)``, each in its own order."""
    shared = round(overlap * n)
    rng = random.Random(seed)
    # 18 characters like a USCC: "91" + region + serial (unique by construction)
    bank = [f"91{330000 + i % 9000:06d}{i:010d}" for i in range(n)]
    holder = bank[:shared] + [f"92{330000 + i % 9000:06d}{i:010d}" for i in range(n - shared)]
    rng.shuffle(bank)
    rng.shuffle(holder)
    return bank, holder, shared


def start_pool(workers: int) -> float:
    """Seconds to start the worker pool (once per process), kept out of the timed steps."""
    t = time.perf_counter()
    PsiBank(new_salt(), workers=workers).blind([f"warm-{i}" for i in range(2 * 8192)])
    return time.perf_counter() - t


def per_core_cost(group_name: str, sample: int = 4096) -> dict:
    """CPU microseconds per id of each kernel on one core (CPU time: robust to other load)."""
    from fedcredit.psi import group

    ids = [f"91{i:016d}" for i in range(sample)]
    _, encoded = group.encode_ids(ids)
    prefix = group.hash_prefix(new_salt(), group_name)
    k = group.random_scalar(group_name)
    t = time.process_time()
    points = group.hash_and_blind(encoded, prefix, k, 1, group_name)
    hashed = time.process_time() - t
    t = time.process_time()
    group.blind_points(points, k, 1, group=group_name)
    blinded = time.process_time() - t
    return {"hash_and_blind_us": 1e6 * hashed / sample, "blind_us": 1e6 * blinded / sample}


def run(n: int, overlap: float, workers: int, seed: int, group_name: str) -> dict:
    bank_ids, holder_ids, shared = make_ids(n, overlap, seed)
    salt = new_salt()
    sec: dict[str, float] = {}

    def timed(name, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        sec[name] = time.perf_counter() - t0
        return out

    bank = PsiBank(salt, workers=workers, group=group_name)
    holder = PsiHolder(salt, holder_ids, workers=workers, group=group_name)
    msg1 = timed("bank_blind", bank.blind, bank_ids)
    msg2a = timed("holder_double_blind", holder.double_blind, msg1)
    msg2b = timed("holder_shuffled_points", holder.shuffled_points)
    result = timed("bank_intersect", bank.intersect, msg2a, msg2b)
    order = sorted(result.ids)
    positions = result.holder_positions_for(order)
    answered = timed("holder_resolve", holder.resolve, positions)
    if len(result) != shared or answered != order:
        raise SystemExit(f"wrong intersection: {len(result)} found, {shared} expected")

    total = sum(sec.values())
    return {
        "group": group_name,
        "ids_per_party": n,
        "overlap": overlap,
        "intersection": len(result),
        "workers": workers,
        "seconds": sec,
        "ids_per_s": {k: n / v for k, v in sec.items()},
        "total_s": total,
        "end_to_end_ids_per_s": n / total,
        "bytes_sent": {"bank_to_holder": len(msg1) + 4 * len(positions),
                       "holder_to_bank": len(msg2a) + len(msg2b)},
    }


def markdown(res: dict) -> str:
    groups = list(res["groups"])
    first = res["groups"][groups[0]]
    lines = [f"# ECDH-PSI, {first['ids_per_party']:,} ids per party",
             "",
             f"overlap {first['overlap']:.0%} ({first['intersection']:,} shared), "
             f"{first['workers']} worker(s) on {res['machine']['cores']} core(s), libsodium "
             f"{res['machine']['libsodium']}, cryptography {res['machine']['cryptography']}; "
             f"pool start-up {res['pool_start_s']:.2f} s (not counted); fastest of "
             f"{res['repeat']} run(s) per group, the groups alternating; load average "
             f"{res['load_average_1min']['before']:.2f} before, "
             f"{res['load_average_1min']['after']:.2f} after",
             "",
             "| step | " + " | ".join(f"{g} s | {g} ids/s" for g in groups) + " |",
             "| --- |" + " ---: | ---: |" * len(groups)]
    for k in STEPS:
        lines.append(f"| {k} | " + " | ".join(
            f"{res['groups'][g]['seconds'][k]:.2f} | {res['groups'][g]['ids_per_s'][k]:,.0f}"
            for g in groups) + " |")
    lines.append("| **end to end** | " + " | ".join(
        f"**{res['groups'][g]['total_s']:.2f}** | "
        f"**{res['groups'][g]['end_to_end_ids_per_s']:,.0f}**" for g in groups) + " |")
    lines.append("")
    for g in groups:
        c = res["groups"][g]["per_core_cpu"]
        lines.append(f"- {g}, one core, CPU time per id: hash + blind "
                     f"{c['hash_and_blind_us']:.1f} us, blind {c['blind_us']:.1f} us (a party "
                     "does one of each per id)")
    if len(groups) == 2:
        a, b = (res["groups"][g]["total_s"] for g in groups)
        lines.append(f"- {groups[0]} takes {a / b:.2f}x the time of {groups[1]} (same run)")
    lines.append("")
    lines.append(f"bytes sent (each group): bank -> holder "
                 f"{first['bytes_sent']['bank_to_holder']:,}, holder -> bank "
                 f"{first['bytes_sent']['holder_to_bank']:,} (positions counted as 4 bytes "
                 "each); peak memory of the process holding both parties "
                 f"{res['main_process_max_rss_mib']:,.0f} MiB")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ids", type=int, default=100_000, help="ids per party")
    ap.add_argument("--overlap", type=float, default=0.5,
                    help="fraction of each party's ids that the other also holds")
    ap.add_argument("--workers", type=int, default=None,
                    help="worker processes (default: all cores; 1 = this process only)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic ids only")
    ap.add_argument("--repeat", type=int, default=1, help="runs; the fastest is reported")
    ap.add_argument("--group", nargs="+", default=list(GROUPS), choices=GROUPS,
                    help="PSI groups to run (default: all, alternating)")
    ap.add_argument("--json", type=Path, help="write results here (and a .md beside it)")
    args = ap.parse_args(argv)
    if args.ids < 1 or not 0.0 <= args.overlap <= 1.0:
        ap.error("--ids must be positive and --overlap within [0, 1]")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    workers = resolve_workers(args.workers)
    load_before = os.getloadavg()
    pool_start = start_pool(workers)
    runs: dict[str, list[dict]] = {g: [] for g in args.group}
    for _ in range(args.repeat):
        for g in args.group:
            runs[g].append(run(args.ids, args.overlap, workers, args.seed, g))
    res: dict = {"groups": {}}
    for g, rs in runs.items():
        best = min(rs, key=lambda r: r["total_s"])
        best["all_totals_s"] = [r["total_s"] for r in rs]
        best["per_core_cpu"] = per_core_cost(g)
        res["groups"][g] = best
    res["pool_start_s"] = pool_start
    res["main_process_max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["repeat"] = args.repeat
    res["load_average_1min"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    res["machine"] = {"cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count(),
                      "python": platform.python_version(), "platform": platform.platform(),
                      "libsodium": _sodium.version(), "cryptography": cryptography.__version__}
    res["command"] = "python benchmarks/psi.py " + " ".join(argv if argv is not None
                                                             else sys.argv[1:])
    md = markdown(res)
    print(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
        args.json.with_suffix(".md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
