#!/usr/bin/env python
"""How much of the bank's encryption the randomiser stock takes off the critical path.

    python benchmarks/randomisers.py --json benchmarks/results/randomisers.json

default_credit (30,000 rows, 21,000 trained), SecureBoost 5 trees depth 3, every tree
federated, 2048-bit Paillier or OU (``--scheme``), the holder a separate process
(``fedcredit.simulation``), with ``PRECOMPUTE_RANDOMISERS`` off and on, alternately,
``--repeat`` times each. Per run: fit seconds, the bank's encrypt-and-upload seconds (its
critical path), how many of the encryptions used a randomiser made while the bank waited,
the holder's histogram seconds, test AUC (the same either way). On this 2-core machine both
parties share the cores, so the bank's idle time is short and the stock competes with the
holder; on its own machine the bank has the whole of the holder's time per tree to fill it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fedcredit.protocol.secureboost.bank as steps  # noqa: E402
from fedcredit.datasets import find_data_dir  # noqa: E402
from fedcredit.simulation import SimulationConfig, run  # noqa: E402


def one(data: Path, on: bool, key_bits: int, trees: int, scheme: str) -> dict:
    steps.PRECOMPUTE_RANDOMISERS = on
    cfg = SimulationConfig(
        bank_csv=str(data / "default_credit_hetero_guest.csv"),
        holder_csv=str(data / "default_credit_hetero_host.csv"), id_column="id",
        label_column="y", test_size=0.3, trees=trees, depth=3, bins=32, learning_rate=0.3,
        key_bits=key_bits, insecure_key=key_bits < 2048, he_scheme=scheme, verbose=False,
        bank_only_trees=0, holder_stats=True)
    s = run(cfg)
    tb = s["time_budget_bank"]
    return {"precompute": on, "fit_seconds": round(s["fit_seconds"], 2),
            "bank_encrypt_and_upload": tb.get("bank_encrypt_and_upload"),
            "encryptions_precomputed": int(tb.get("bank_encryptions_precomputed", 0)),
            "encryptions": trees * int(s["rows_train"]),
            "holder_histograms": s.get("time_budget_holder", {}).get("holder_histograms"),
            "auc": round(s["auc"]["federated"], 6)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--trees", type=int, default=5)
    ap.add_argument("--scheme", default="paillier", choices=["paillier", "ou"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", help="write results here (and a .md beside it)")
    a = ap.parse_args(argv)
    data = find_data_dir()
    runs = []
    for _ in range(a.repeat):
        for on in (False, True):
            runs.append(one(data, on, a.key_bits, a.trees, a.scheme))
            print(runs[-1], flush=True)

    def med(on: bool, key: str) -> float:
        return round(statistics.median(r[key] for r in runs if r["precompute"] == on), 2)

    summary = {k: {"off": med(False, k), "on": med(True, k)}
               for k in ("fit_seconds", "bank_encrypt_and_upload", "encryptions_precomputed")}
    share = summary["encryptions_precomputed"]["on"] / runs[0]["encryptions"]
    res = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
           "key_bits": a.key_bits, "scheme": a.scheme, "trees": a.trees, "runs": runs,
           "median": summary, "share_precomputed": round(share, 3)}
    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")
        md = [f"Randomisers made ahead, default_credit, {a.trees} trees depth 3, every tree "
              f"federated, {a.key_bits}-bit {a.scheme}, {os.cpu_count()} CPUs shared by both "
              f"parties, median of {a.repeat} (`python benchmarks/randomisers.py "
              f"--scheme {a.scheme}`)", "",
              "| | off | on |", "| --- | --- | --- |"]
        md += [f"| {k} | {v['off']} | {v['on']} |" for k, v in summary.items()]
        md += ["", f"{share:.1%} of the bank's encryptions used a randomiser made while it "
               "waited for the holder."]
        out.with_suffix(".md").write_text("\n".join(md) + "\n")
    return res


if __name__ == "__main__":
    main()
