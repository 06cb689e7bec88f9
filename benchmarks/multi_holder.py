#!/usr/bin/env python
"""One bank, one to three holders on the same total features: fit time and AUC.

    python benchmarks/multi_holder.py --json benchmarks/results/multi_holder.json

default_credit (30,000 rows): the bank keeps its guest features, the ten host features go to
one holder, to two (5 + 5) or to three (4 + 3 + 3), each a separate holder process over gRPC
with mutual TLS on localhost (``fedcredit.simulation``, as ``fedcredit simulate --holder-csv
A --holder-csv B``). SecureBoost, 5 trees, depth 3, 32 bins, learning rate 0.3, every tree
federated, 2048-bit Paillier (``--key-bits``), 30 % test rows. Per run: fit seconds, test
AUC, and each holder's histogram seconds (from its time budget). The cost of the second
holder is the fit time it adds against its own histogram work: the holders compute side by
side and the bank encrypts each gradient once for all of them, so the fit grows by less than
the added holder's histograms (on this 2-core machine all parties share two cores).

With ``--model lr``: hetero logistic regression instead (scikit-learn-like defaults: 8 epochs,
Adam, Chebyshev sigmoid), the same splits, each step a chain through the holders (the bank
encrypts once, each holder contracts and seals to the next): fit seconds, test AUC, and the
bank's time budget; no coverage runs.

    python benchmarks/multi_holder.py --model lr --json benchmarks/results/multi_holder_lr.json

Then holders that cover different enterprises (``--coverage``, default 0.7: each of two
holders keeps an independent random 70 % of the host table's ids): the same model with
``align="all"`` (trained on the enterprises both serve, about 49 %) and ``align="any"``
(those either serves, about 91 %), both scored on the same test enterprises (30 % of the
bank's, those at least one holder serves). Writes JSON and a Markdown table next to it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fedcredit.datasets import find_data_dir  # noqa: E402
from fedcredit.simulation import EphemeralHolder, SimulationConfig, run  # noqa: E402

SPLITS = {1: [10], 2: [5, 5], 3: [4, 3, 3]}


def split_host(host_csv: Path, sizes: list[int], out: Path) -> list[str]:
    """The host table's features cut into consecutive groups, one CSV per holder."""
    host = pd.read_csv(host_csv, dtype={"id": str})
    cols = [c for c in host.columns if c != "id"]
    paths, at = [], 0
    for k, size in enumerate(sizes):
        path = out / f"holder{k + 1}.csv"
        host[["id", *cols[at:at + size]]].to_csv(path, index=False)
        paths.append(str(path))
        at += size
    return paths


def one_run(data: Path, tmp: Path, n_holders: int, key_bits: int, trees: int,
            model: str = "secureboost") -> dict:
    tables = split_host(data / "default_credit_hetero_host.csv", SPLITS[n_holders], tmp)
    cfg = SimulationConfig(
        bank_csv=str(data / "default_credit_hetero_guest.csv"),
        holder_csv=tables[0] if n_holders == 1 else tables, id_column="id", label_column="y",
        test_size=0.3, trees=trees, depth=3, bins=32, learning_rate=0.3, key_bits=key_bits,
        insecure_key=key_bits < 2048, verbose=False, holder_stats=True, bank_only_trees=0,
        model=model)
    s = run(cfg)
    if model == "lr":
        return {"holders": n_holders, "features_per_holder": SPLITS[n_holders],
                "fit_seconds": round(s["fit_seconds"], 2), "epochs": s.get("epochs"),
                "auc": round(s["auc"]["federated"], 6),
                "auc_centralized": round(s["auc"]["centralized"], 6),
                "time_budget_bank": s.get("time_budget_bank")}
    stats = [s] if n_holders == 1 else s.get("holders_stats", [])
    hist = [round(float(st.get("time_budget_holder", {}).get("holder_histograms", 0.0)), 2)
            for st in stats]
    return {"holders": n_holders, "features_per_holder": SPLITS[n_holders],
            "fit_seconds": round(s["fit_seconds"], 2), "auc": round(s["auc"]["federated"], 6),
            "auc_centralized": round(s["auc"]["centralized"], 6),
            "holder_histogram_seconds": hist,
            "bank_encrypt_and_upload": s["time_budget_bank"].get("bank_encrypt_and_upload")}


def coverage_runs(data: Path, tmp: Path, key_bits: int, trees: int, cover: float) -> list[dict]:
    """``align="all"`` against ``align="any"`` with two holders of partial coverage."""
    from sklearn.model_selection import train_test_split

    from fedcredit.holder.devca import make_dev_certs
    from fedcredit.metrics import auc
    from fedcredit.models import SecureBoostClassifier
    from fedcredit.transport import connect

    rng = np.random.default_rng(11)
    host = pd.read_csv(data / "default_credit_hetero_host.csv", dtype={"id": str})
    cols = [c for c in host.columns if c != "id"]
    tables = []
    for k, part in enumerate((cols[:5], cols[5:])):
        path = tmp / f"partial{k + 1}.csv"
        host.loc[rng.random(len(host)) < cover, ["id", *part]].to_csv(path, index=False)
        tables.append(path)
    bank = pd.read_csv(data / "default_credit_hetero_guest.csv", dtype={"id": str})
    bank = bank.set_index("id")
    y = bank.pop("y").to_numpy()
    tr, te = train_test_split(np.arange(len(bank)), test_size=0.3, random_state=0, stratify=y)
    served = set().union(*(set(pd.read_csv(t, dtype={"id": str})["id"]) for t in tables))
    te = np.array([i for i in np.sort(te) if bank.index[i] in served])
    tls = tmp / "tls"
    make_dev_certs(tls)
    out = []
    with EphemeralHolder(tables[0], "id", tls, allow_insecure_keys=key_bits < 2048,
                         name="holder1") as h1, \
            EphemeralHolder(tables[1], "id", tls, allow_insecure_keys=key_bits < 2048,
                            name="holder2") as h2:
        channels = [connect(h.address, tls_dir=tls) for h in (h1, h2)]
        try:
            for align in ("all", "any"):
                model = SecureBoostClassifier(
                    n_estimators=trees, max_depth=3, max_bin=32, learning_rate=0.3,
                    key_bits=key_bits, insecure_key=key_bits < 2048, verbose=False,
                    bank_only_trees=0)
                model.fit(bank.iloc[np.sort(tr)], y[np.sort(tr)], holders=channels, align=align)
                p = model.predict_proba(bank.iloc[te], holders=channels)[:, 1]
                out.append({"align": align, "coverage": cover,
                            "rows_trained": int(model.trees_[0].nodes[0].count),
                            "fit_seconds": round(model.fit_seconds_, 2),
                            "test_rows": int(len(te)), "auc": round(auc(y[te], p), 6)})
                print(out[-1], flush=True)
        finally:
            for ch in channels:
                ch.close()
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--trees", type=int, default=5)
    ap.add_argument("--model", choices=("secureboost", "lr"), default="secureboost")
    ap.add_argument("--coverage", type=float, default=0.7,
                    help="share of the host ids each holder keeps in the align= runs")
    ap.add_argument("--json", help="write results here (and a .md beside it)")
    a = ap.parse_args(argv)
    data = find_data_dir()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 2, 3):
            runs.append(one_run(data, Path(tmp), n, a.key_bits, a.trees, a.model))
            print(runs[-1], flush=True)
        if a.model == "lr":
            return write_lr(runs, a)
        coverage = coverage_runs(data, Path(tmp), a.key_bits, a.trees, a.coverage)
    one, two = runs[0], runs[1]
    added = two["fit_seconds"] - one["fit_seconds"]
    second_hist = two["holder_histogram_seconds"][1] if len(
        two["holder_histogram_seconds"]) > 1 else None
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "key_bits": a.key_bits, "trees": a.trees, "runs": runs,
               "partial_coverage": coverage,
               "second_holder": {"fit_seconds_added": round(added, 2),
                                 "its_histogram_seconds": second_hist,
                                 "fit_ratio_2_to_1": round(two["fit_seconds"]
                                                           / one["fit_seconds"], 3)}}
    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        md = ["| holders | features each | fit s | test AUC | centralized AUC | "
              "holder histograms s (each) |", "| --- | --- | --- | --- | --- | --- |"]
        md += [f"| {r['holders']} | {'+'.join(map(str, r['features_per_holder']))} | "
               f"{r['fit_seconds']} | {r['auc']} | {r['auc_centralized']} | "
               f"{', '.join(map(str, r['holder_histogram_seconds']))} |" for r in runs]
        sh = results["second_holder"]
        out.with_suffix(".md").write_text(
            f"SecureBoost with 1-3 holders, default_credit 30k, {a.trees} trees depth 3, "
            f"{a.key_bits}-bit Paillier, every tree federated, each party its own process "
            f"({os.cpu_count()} CPUs; `python benchmarks/multi_holder.py`)\n\n"
            + "\n".join(md) + f"\n\nThe second holder added {sh['fit_seconds_added']} s of "
            f"fit time (x{sh['fit_ratio_2_to_1']}) against {sh['its_histogram_seconds']} s of "
            "its own histogram work.\n\n"
            f"Two holders of {a.coverage:.0%} coverage each (independent), 5 features each; "
            "every model scored on the same test enterprises (those either holder serves):"
            "\n\n| align | rows trained | fit s | test rows | test AUC |\n"
            "| --- | --- | --- | --- | --- |\n"
            + "".join(f"| {r['align']} | {r['rows_trained']} | {r['fit_seconds']} | "
                      f"{r['test_rows']} | {r['auc']} |\n" for r in coverage))
    return results


def write_lr(runs: list[dict], a) -> dict:
    """The ``--model lr`` results: JSON and a Markdown table beside it."""
    one = runs[0]
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "model": "lr", "key_bits": a.key_bits, "runs": runs,
               "fit_ratio_to_one_holder": {r["holders"]: round(r["fit_seconds"]
                                                               / one["fit_seconds"], 3)
                                           for r in runs}}
    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        md = ["| holders | features each | epochs | fit s | x one holder | test AUC | "
              "centralized AUC |", "| --- | --- | --- | --- | --- | --- | --- |"]
        md += [f"| {r['holders']} | {'+'.join(map(str, r['features_per_holder']))} | "
               f"{r['epochs']} | {r['fit_seconds']} | "
               f"{results['fit_ratio_to_one_holder'][r['holders']]} | {r['auc']} | "
               f"{r['auc_centralized']} |" for r in runs]
        out.with_suffix(".md").write_text(
            f"Hetero LR with 1-3 holders, default_credit 30k (30 % test), {a.key_bits}-bit "
            f"Paillier, default LR settings, each party its own process over gRPC "
            f"({os.cpu_count()} CPUs; `python benchmarks/multi_holder.py --model lr`)\n\n"
            + "\n".join(md) + "\n")
    return results


if __name__ == "__main__":
    main()
