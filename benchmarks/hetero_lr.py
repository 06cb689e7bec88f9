#!/usr/bin/env python
"""Hetero logistic regression against scikit-learn on the shared default_credit split.

    python benchmarks/hetero_lr.py --key-bits 1024 --insecure-key --json benchmarks/results/hetero_lr.json

Both see the same rows (70/30 stratified, seed 0) and the same preprocessing (each party's
features standardised); the federated model trains over the in-process channel. Writes JSON
and a Markdown table next to it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fedcredit.datasets import load_default_credit  # noqa: E402
from fedcredit.metrics import auc  # noqa: E402
from fedcredit.models import HeteroLogisticRegression  # noqa: E402
from fedcredit.protocol import HolderPolicy, PassiveParty  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--key-bits", type=int, default=2048)
    ap.add_argument("--insecure-key", action="store_true")
    ap.add_argument("--max-iter", type=int, default=4)
    ap.add_argument("--json", default="benchmarks/results/hetero_lr.json")
    a = ap.parse_args(argv)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    guest, host = load_default_credit()
    y = guest["y"].to_numpy()
    bank = guest.drop(columns="y")
    holder = host.loc[bank.index]
    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=0, stratify=y)
    tr, te = np.sort(tr), np.sort(te)
    party = PassiveParty(holder, policy=HolderPolicy(allow_insecure_keys=a.insecure_key))
    t = time.perf_counter()
    model = HeteroLogisticRegression(key_bits=a.key_bits, insecure_key=a.insecure_key,
                                     verbose=False, max_iter=a.max_iter)
    model.fit(bank.iloc[tr], y[tr], holder=party)
    fit = time.perf_counter() - t
    a_fed = auc(y[te], model.predict_proba(bank.iloc[te], holder=party)[:, 1])
    joined = bank.join(holder.add_prefix("h_"))
    sc = StandardScaler().fit(joined.iloc[tr])
    sk = LogisticRegression(C=1.0, max_iter=5000).fit(sc.transform(joined.iloc[tr]), y[tr])
    a_sk = auc(y[te], sk.predict_proba(sc.transform(joined.iloc[te]))[:, 1])
    res = {"rows_train": int(len(tr)), "rows_test": int(len(te)), "key_bits": a.key_bits,
           "max_iter": a.max_iter, "fit_seconds": fit, "auc_federated": a_fed,
           "auc_sklearn": a_sk, "difference": a_fed - a_sk}
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    md = ["# Hetero LR vs scikit-learn (default_credit, 70/30)", "", "| metric | value |",
          "| --- | --- |"] + [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                               for k, v in res.items()]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
