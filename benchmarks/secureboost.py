#!/usr/bin/env python
"""SecureBoost speed: fedcredit against SecretFlow SGB in one run, plus scaling and a time budget.

    python benchmarks/secureboost.py --json benchmarks/results/secureboost.json
    python benchmarks/secureboost.py --schemes paillier,ou --peer secretflow \
        --peers-dir PEERS --scale 100000

1. The race (same work as the peers' published figures): default_credit, 30,000 rows,
   5 trees, depth 3, 32 bins, learning rate 0.3, 2048-bit keys, both parties as separate
   processes over gRPC with mutual TLS on localhost (``fedcredit.simulation``), fit time only.
   SecretFlow 1.14 SGB runs on the same data in the same run (``--peers-dir``, or
   ``$FEDCREDIT_PEERS_DIR``: a directory with ``install_peer.sh`` and ``secretflow_sgb.py``,
   which install SecretFlow in a venv of its own and run its SGB), in its
   production mode (two processes, gRPC); the ratio is what counts on a shared machine.
2. Where the time goes: the bank's and the holder's per-phase totals (encrypt and upload,
   histograms, packing, re-randomisation, decryption, split finding).
3. Scaling: synthetic data with 20 holder features, depth 5: seconds per tree and peak memory
   of each party at the sizes given by ``--scale``.

Writes JSON and a Markdown table next to it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedcredit.crypto import SCHEMES  # noqa: E402
from fedcredit.datasets import find_data_dir, write_credit_data  # noqa: E402
from fedcredit.simulation import SimulationConfig, run  # noqa: E402

PEERS_ENV = "FEDCREDIT_PEERS_DIR"


def fedcredit_race(scheme: str, data_dir: Path, trees: int, depth: int) -> dict:
    cfg = SimulationConfig(
        bank_csv=str(data_dir / "default_credit_hetero_guest.csv"),
        holder_csv=str(data_dir / "default_credit_hetero_host.csv"), id_column="id",
        label_column="y", test_size=0, trees=trees, depth=depth, bins=32, learning_rate=0.3,
        key_bits=2048, he_scheme=scheme, verbose=False, holder_stats=True,
        bank_only_trees=0)  # the same work as the peer: every tree federated
    s = run(cfg)
    return {k: s.get(k) for k in ("fit_seconds", "align_seconds", "rows_aligned",
                                  "time_budget_bank", "time_budget_holder", "peak_rss_mb",
                                  "bank_peak_rss_mb")}


def secretflow(peers: Path | None, scheme: str, trees: int, depth: int) -> dict:
    if peers is None:
        return {"error": f"no peers directory: pass --peers-dir or set ${PEERS_ENV}"}
    install = peers / "install_peer.sh"
    if not install.exists():
        return {"error": f"{install} not found"}
    venv = subprocess.run([str(install), "secretflow"], capture_output=True, text=True)
    if venv.returncode:
        return {"error": "could not install secretflow: " + venv.stderr[-300:]}
    py = Path(venv.stdout.strip().splitlines()[-1]) / "bin" / "python"
    cmd = [str(py), "secretflow_sgb.py", "--mode", "prod", "--trees", str(trees), "--depth",
           str(depth), "--bins", "32", "--key", "2048", "--schema", scheme]
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=peers, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t
    lines = [ln for ln in out.stdout.splitlines() if "fit_s" in ln]
    if not lines:
        return {"error": "secretflow run failed: " + out.stderr[-300:], "wall_seconds": wall}
    d = json.loads(lines[-1])
    d["wall_seconds"] = wall
    return d


def scaling(rows: int, scheme: str, trees: int, depth: int, holder_features: int) -> dict:
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="fedcredit-scale-") as tmp:
        tmp = Path(tmp)
        write_credit_data(tmp, rows=rows, seed=11, overlap=1.0)
        holder = pd.read_csv(tmp / "holder.csv", nrows=0)
        keep = ["uscc"] + [c for c in holder.columns if c != "uscc"][:holder_features]
        h = pd.read_csv(tmp / "holder.csv", usecols=keep)
        h.to_csv(tmp / "holder20.csv", index=False)
        del h
        cfg = SimulationConfig(
            bank_csv=str(tmp / "bank.csv"), holder_csv=str(tmp / "holder20.csv"),
            id_column="uscc", label_column="label", test_size=0, trees=trees, depth=depth,
            bins=32, learning_rate=0.3, key_bits=2048, he_scheme=scheme, verbose=False,
            holder_stats=True, bank_only_trees=0)
        s = run(cfg)
    return {"rows": rows, "holder_features": holder_features, "depth": depth, "trees": trees,
            "seconds_per_tree": s["fit_seconds"] / trees, "fit_seconds": s["fit_seconds"],
            "align_seconds": s["align_seconds"], "holder_peak_rss_mb": s.get("peak_rss_mb"),
            "bank_peak_rss_mb": s.get("bank_peak_rss_mb"),
            "time_budget_bank": s.get("time_budget_bank"),
            "time_budget_holder": s.get("time_budget_holder")}


def markdown(res: dict) -> str:
    out = [f"# SecureBoost benchmark ({res['machine']}, {res['cores']} cores, {res['date']})", "",
           "## Race: default_credit 30,000 rows, 5 trees, depth 3, 32 bins, lr 0.3, 2048-bit", "",
           "| scheme | fedcredit fit (s) | SecretFlow fit (s) | ratio |", "| --- | --- | --- | --- |"]
    for scheme, r in res["race"].items():
        sf = r.get("secretflow", {})
        sf_fit = sf.get("fit_s")
        ratio = f"{r['fedcredit']['fit_seconds'] / sf_fit:.2f}" if sf_fit else "n/a"
        out.append(f"| {scheme} | {r['fedcredit']['fit_seconds']:.1f} | "
                   f"{sf_fit if sf_fit is not None else sf.get('error', 'not run')} | {ratio} |")
    out += ["", "## Where the time goes (seconds, whole fit)", ""]
    for scheme, r in res["race"].items():
        tb = {**(r["fedcredit"].get("time_budget_bank") or {}),
              **(r["fedcredit"].get("time_budget_holder") or {})}
        out.append(f"**{scheme}**: " + ", ".join(f"{k} {v:.2f}" for k, v in tb.items()))
        out.append("")
    if res.get("scaling"):
        out += ["## Scaling (synthetic, 20 holder features, depth 5)", "",
                "| rows | s/tree | holder peak MB | bank peak MB |", "| --- | --- | --- | --- |"]
        for r in res["scaling"]:
            out.append(f"| {r['rows']:,} | {r['seconds_per_tree']:.1f} | "
                       f"{r['holder_peak_rss_mb']:.0f} | {r['bank_peak_rss_mb']:.0f} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default="benchmarks/results/secureboost.json")
    ap.add_argument("--schemes", default="paillier", help=f"comma-separated from {SCHEMES}")
    ap.add_argument("--peer", default="secretflow", choices=["secretflow", "none"])
    ap.add_argument("--peers-dir", default=os.environ.get(PEERS_ENV),
                    help=f"where the peers' install and run scripts are (${PEERS_ENV})")
    ap.add_argument("--trees", type=int, default=5)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--scale", default="", help="comma-separated row counts, e.g. 100000,1000000")
    ap.add_argument("--scale-trees", type=int, default=2)
    ap.add_argument("--no-race", action="store_true", help="only the scaling runs")
    a = ap.parse_args(argv)
    data_dir = find_data_dir()
    res = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d %H:%M"), "race": {}, "scaling": []}
    for scheme in ([] if a.no_race else a.schemes.split(",")):
        entry = {"fedcredit": fedcredit_race(scheme, data_dir, a.trees, a.depth)}
        if a.peer == "secretflow":
            peers = Path(a.peers_dir) if a.peers_dir else None
            entry["secretflow"] = secretflow(peers, scheme, a.trees, a.depth)
            sf = entry["secretflow"].get("fit_s")
            if sf:
                entry["ratio"] = entry["fedcredit"]["fit_seconds"] / sf
        res["race"][scheme] = entry
        print(json.dumps({scheme: {k: v for k, v in entry.items()}}, default=str)[:600])
    for rows in [int(x) for x in a.scale.split(",") if x]:
        r = scaling(rows, a.schemes.split(",")[0], a.scale_trees, 5, 20)
        res["scaling"].append(r)
        print(json.dumps(r)[:400])
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
