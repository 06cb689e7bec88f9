#!/usr/bin/env python
"""GOSS against every row: encryptions, fit time and test AUC.

    python benchmarks/goss.py --json benchmarks/results/goss.json

default_credit (30,000 rows, 21,000 trained, 9,000 test), SecureBoost 5 trees depth 3, every
tree federated, 2048-bit Paillier, the holder a separate process (``fedcredit.simulation``):
all rows, then GOSS (``goss_top_rate``, ``goss_other_rate``) at (0.2, 0.1) and (0.3, 0.2).
Per run: rows encrypted per tree, fit seconds, the bank's encrypt-and-upload seconds, test
AUC and its change against all rows. Writes JSON and a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fedcredit.datasets import find_data_dir  # noqa: E402
from fedcredit.simulation import SimulationConfig, run  # noqa: E402

SETTINGS = [None, (0.2, 0.1), (0.3, 0.2)]


def one(data: Path, goss, key_bits: int, trees: int) -> dict:
    params = {} if goss is None else {"goss_top_rate": goss[0], "goss_other_rate": goss[1]}
    cfg = SimulationConfig(
        bank_csv=str(data / "default_credit_hetero_guest.csv"),
        holder_csv=str(data / "default_credit_hetero_host.csv"), id_column="id",
        label_column="y", test_size=0.3, trees=trees, depth=3, bins=32, learning_rate=0.3,
        key_bits=key_bits, insecure_key=key_bits < 2048, verbose=False, bank_only_trees=0,
        model_params=params)
    s = run(cfg)
    n = int(s["rows_train"])
    share = 1.0 if goss is None else goss[0] + goss[1]
    return {"goss": goss, "rows_encrypted_per_tree": int(round(share * n)),
            "fit_seconds": round(s["fit_seconds"], 2),
            "bank_encrypt_and_upload": s["time_budget_bank"].get("bank_encrypt_and_upload"),
            "auc": round(s["auc"]["federated"], 6)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--trees", type=int, default=5)
    ap.add_argument("--json", help="write results here (and a .md beside it)")
    a = ap.parse_args(argv)
    data = find_data_dir()
    runs = []
    for goss in SETTINGS:
        runs.append(one(data, goss, a.key_bits, a.trees))
        print(runs[-1], flush=True)
    for r in runs:
        r["auc_change"] = round(r["auc"] - runs[0]["auc"], 6)
        r["fit_ratio"] = round(r["fit_seconds"] / runs[0]["fit_seconds"], 3)
    res = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "key_bits": a.key_bits, "trees": a.trees, "runs": runs}
    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")
        md = [f"GOSS, default_credit, {a.trees} trees depth 3, every tree federated, "
              f"{a.key_bits}-bit Paillier, {os.cpu_count()} CPUs (`python benchmarks/goss.py`)",
              "", "| sampling | rows encrypted per tree | fit s | fit ratio | encrypt+upload s "
              "| test AUC | AUC change |", "| --- | --- | --- | --- | --- | --- | --- |"]
        md += [f"| {'all rows' if r['goss'] is None else 'GOSS %s + %s' % tuple(r['goss'])} | "
               f"{r['rows_encrypted_per_tree']} | {r['fit_seconds']} | {r['fit_ratio']} | "
               f"{r['bank_encrypt_and_upload']} | {r['auc']} | {r['auc_change']:+.4f} |"
               for r in runs]
        out.with_suffix(".md").write_text("\n".join(md) + "\n")
    return res


if __name__ == "__main__":
    main()
