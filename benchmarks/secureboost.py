#!/usr/bin/env python
"""SecureBoost speed: fedcredit against SecretFlow SGB in one run, plus scaling and a time budget.

    python benchmarks/secureboost.py --json benchmarks/results/secureboost.json
    python benchmarks/secureboost.py --schemes paillier,ou --peer secretflow \
        --peers-dir PEERS --scale 100000
    python benchmarks/secureboost.py --schemes ou,paillier --peers-dir PEERS --tile 300000 \
        --json benchmarks/results/secureboost_race_300k.json

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
4. The tiled race (``--tile N``): default_credit tiled to N rows (each copy's ids offset by a
   multiple of the largest id, continuous columns jittered by a uniform +-1 %, each party its
   own, seeded), ``--tile-trees`` trees of depth ``--tile-depth`` (5 and 5), both frameworks on
   the same files in the same run.

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


def tile(data_dir: Path, rows: int, out: Path, seed: int = 7) -> tuple[Path, Path]:
    """default_credit's guest and host files tiled to ``rows`` rows in ``out``.

    Copy c's ids are ``id + c * (max id + 1)``; every column with more than 32 distinct values
    (the continuous ones: amounts, balances, age) is multiplied by a uniform factor in
    [0.99, 1.01] per cell from copy 1 on, so copies are not exact duplicates; labels and
    categorical columns are copied as they are."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    paths = []
    for name in ("default_credit_hetero_guest.csv", "default_credit_hetero_host.csv"):
        base = pd.read_csv(data_dir / name)
        step = int(base["id"].max()) + 1
        copies = -(-rows // len(base))
        cont = [c for c in base.columns if c not in ("id", "y") and base[c].nunique() > 32]
        parts = []
        for c in range(copies):
            part = base.copy()
            part["id"] = part["id"] + c * step
            if c:
                for col in cont:
                    jitter = part[col] * rng.uniform(0.99, 1.01, len(part))
                    part[col] = jitter if part[col].dtype.kind == "f" else \
                        jitter.round().astype(part[col].dtype)
            parts.append(part)
        path = out / name
        pd.concat(parts).iloc[:rows].to_csv(path, index=False)
        paths.append(path)
    return paths[0], paths[1]


def fedcredit_race(scheme: str, guest: Path, host: Path, trees: int, depth: int) -> dict:
    cfg = SimulationConfig(
        bank_csv=str(guest), holder_csv=str(host), id_column="id",
        label_column="y", test_size=0, trees=trees, depth=depth, bins=32, learning_rate=0.3,
        key_bits=2048, he_scheme=scheme, verbose=False, holder_stats=True,
        bank_only_trees=0)  # the same work as the peer: every tree federated
    s = run(cfg)
    return {k: s.get(k) for k in ("fit_seconds", "align_seconds", "rows_aligned",
                                  "time_budget_bank", "time_budget_holder", "peak_rss_mb",
                                  "bank_peak_rss_mb")}


def secretflow(peers: Path | None, scheme: str, trees: int, depth: int,
               guest: Path | None = None, host: Path | None = None) -> dict:
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
    if guest is not None and host is not None:
        cmd += ["--guest", str(guest), "--host", str(host)]
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=peers, capture_output=True, text=True, timeout=5400)
    wall = time.perf_counter() - t
    lines = [ln for ln in out.stdout.splitlines() if "fit_s" in ln]
    if not lines:
        return {"error": "secretflow run failed: " + out.stderr[-300:], "wall_seconds": wall}
    d = json.loads(lines[-1])
    d["wall_seconds"] = wall
    return d


def make_scale_data(out: Path, rows: int, holder_features: int) -> None:
    """bank.csv and holder20.csv (ids and the first ``holder_features`` holder columns) in
    ``out``, a chunk at a time: bounded memory at ten million rows."""
    import pandas as pd

    write_credit_data(out, rows=rows, seed=11, overlap=1.0)
    holder = pd.read_csv(out / "holder.csv", nrows=0)
    keep = ["uscc"] + [c for c in holder.columns if c != "uscc"][:holder_features]
    first = True
    for part in pd.read_csv(out / "holder.csv", usecols=keep, chunksize=500_000):
        part[keep].to_csv(out / "holder20.csv", index=False, header=first, mode="w" if first
                          else "a")
        first = False
    (out / "holder.csv").unlink()


def scaling(rows: int, scheme: str, trees: int, depth: int, holder_features: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="fedcredit-scale-") as tmp:
        tmp = Path(tmp)
        # the data are made in a child process, so this (the bank's) process's peak memory
        # is the bank's own work, not the generator's and the column cut's
        subprocess.run([sys.executable, __file__, "--make-scale-data", str(tmp), str(rows),
                        str(holder_features)], check=True)
        cfg = SimulationConfig(
            bank_csv=str(tmp / "bank.csv"), holder_csv=str(tmp / "holder20.csv"),
            id_column="uscc", label_column="label", test_size=0, trees=trees, depth=depth,
            bins=32, learning_rate=0.3, key_bits=2048, he_scheme=scheme, verbose=False,
            holder_stats=True, bank_only_trees=0)
        s = run(cfg)
    return {"rows": rows, "scheme": scheme, "holder_features": holder_features, "depth": depth,
            "trees": trees,
            "seconds_per_tree": s["fit_seconds"] / trees, "fit_seconds": s["fit_seconds"],
            "align_seconds": s["align_seconds"], "holder_peak_rss_mb": s.get("peak_rss_mb"),
            "bank_peak_rss_mb": s.get("bank_peak_rss_mb"),
            "time_budget_bank": s.get("time_budget_bank"),
            "time_budget_holder": s.get("time_budget_holder")}


def race_table(races: dict) -> list[str]:
    out = ["| scheme | fedcredit fit (s) | fedcredit PSI (s) | SecretFlow fit (s) | ratio | "
           "AUC fedcredit / SecretFlow |", "| --- | --- | --- | --- | --- | --- |"]
    for scheme, r in races.items():
        sf = r.get("secretflow", {})
        sf_fit = sf.get("fit_s")
        ratio = f"{r['fedcredit']['fit_seconds'] / sf_fit:.2f}" if sf_fit else "n/a"
        sf_text = f"{sf_fit:.1f}" if sf_fit is not None else sf.get("error", "not run")
        auc = r["fedcredit"].get("train_auc")
        aucs = (f"{auc:.4f}" if auc is not None else "n/a") + " / " + (
            f"{sf['train_auc']:.4f}" if sf.get("train_auc") is not None else "n/a")
        out.append(f"| {scheme} | {r['fedcredit']['fit_seconds']:.1f} | "
                   f"{r['fedcredit'].get('align_seconds') or 0:.1f} | {sf_text} | {ratio} | "
                   f"{aucs} |")
    return out


def markdown(res: dict) -> str:
    out = [f"# SecureBoost benchmark ({res['machine']}, {res['cores']} cores, {res['date']})", ""]
    if res["race"]:
        out += ["## Race: default_credit 30,000 rows, 5 trees, depth 3, 32 bins, lr 0.3, "
                "2048-bit", ""] + race_table(res["race"])
    if res.get("tiled"):
        t = res["tiled"]
        out += ["", f"## Race: default_credit tiled to {t['rows']:,} rows, {t['trees']} trees, "
                f"depth {t['depth']}, 32 bins, lr 0.3, 2048-bit", ""] + race_table(t["race"])
    races = {**res["race"], **{f"{k} (tiled)": v for k, v in (res.get("tiled") or {}).get(
        "race", {}).items()}}
    out += ["", "## Where the time goes (seconds, whole fit)", ""]
    for scheme, r in races.items():
        tb = {**(r["fedcredit"].get("time_budget_bank") or {}),
              **(r["fedcredit"].get("time_budget_holder") or {})}
        out.append(f"**{scheme}**: " + ", ".join(f"{k} {v:.2f}" for k, v in tb.items()))
        out.append("")
    if res.get("scaling"):
        out += ["## Scaling (synthetic, 20 holder features, depth 5)", "",
                "| rows | scheme | trees | s/tree | PSI s | holder peak MB | bank peak MB |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in res["scaling"]:
            out.append(f"| {r['rows']:,} | {r.get('scheme', '')} | {r['trees']} | "
                       f"{r['seconds_per_tree']:.1f} | {r['align_seconds']:.1f} | "
                       f"{r['holder_peak_rss_mb']:.0f} | {r['bank_peak_rss_mb']:.0f} |")
    return "\n".join(out) + "\n"


def race_entry(peer: str, peers: Path | None, scheme: str, guest: Path, host: Path,
               trees: int, depth: int) -> dict:
    """fedcredit, then (with ``peer``) SecretFlow, on the same files; prints the entry."""
    entry = {"fedcredit": fedcredit_race(scheme, guest, host, trees, depth)}
    if peer == "secretflow":
        entry["secretflow"] = secretflow(peers, scheme, trees, depth, guest, host)
        sf = entry["secretflow"].get("fit_s")
        if sf:
            entry["ratio"] = entry["fedcredit"]["fit_seconds"] / sf
    print(json.dumps({scheme: entry}, default=str)[:600], flush=True)
    return entry


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--make-scale-data"]:  # the child process of scaling()
        make_scale_data(Path(argv[1]), int(argv[2]), int(argv[3]))
        return 0
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
    ap.add_argument("--no-race", action="store_true", help="no 30k race")
    ap.add_argument("--tile", type=int, default=0, help="also race on default_credit tiled to N")
    ap.add_argument("--tile-trees", type=int, default=5)
    ap.add_argument("--tile-depth", type=int, default=5)
    a = ap.parse_args(argv)
    data_dir = find_data_dir()
    res = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d %H:%M"), "race": {}, "scaling": []}
    peers = Path(a.peers_dir) if a.peers_dir else None
    guest = data_dir / "default_credit_hetero_guest.csv"
    host = data_dir / "default_credit_hetero_host.csv"
    for scheme in ([] if a.no_race else a.schemes.split(",")):
        res["race"][scheme] = race_entry(a.peer, peers, scheme, guest, host, a.trees, a.depth)
    if a.tile:
        with tempfile.TemporaryDirectory(prefix="fedcredit-tiled-") as tmp:
            tg, th = tile(data_dir, a.tile, Path(tmp))
            res["tiled"] = {"rows": a.tile, "trees": a.tile_trees, "depth": a.tile_depth,
                            "race": {}}
            for scheme in a.schemes.split(","):
                res["tiled"]["race"][scheme] = race_entry(a.peer, peers, scheme, tg, th,
                                                          a.tile_trees, a.tile_depth)
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
