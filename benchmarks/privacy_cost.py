#!/usr/bin/env python
"""What the privacy mitigations cost: test AUC and fit time, each alone and all together.

    python benchmarks/privacy_cost.py --json benchmarks/results/privacy_cost.json
    python benchmarks/privacy_cost.py --data-dir DATA --extra-trees 20
    python benchmarks/privacy_cost.py --quick --json /tmp/privacy_cost.json   # development

On default_credit (the bank's ``default_credit_hetero_guest.csv`` with label ``y``, the
holder's ``default_credit_hetero_host.csv``, id column ``id``; ``--bank-csv`` and
``--holder-csv``, else both from ``--data-dir`` or ``$FEDCREDIT_DATA_DIR``, found as
``fedcredit.datasets.find_data_dir`` does), 70/30 stratified split with random_state 0, both
parties in one process (``PassiveParty`` behind ``InProcessChannel``), INSECURE 1024-bit keys
(``HolderPolicy(allow_insecure_keys=True)``; key size changes the time, not the model).

Per model, "today" is every mitigation off; then each mitigation alone; then every default on:

- SecureBoost (5 trees, depth 3, 32 bins, lr 0.3, 20 per leaf, lambda 0.1: the acceptance
  settings): the holder's minimum bin mass ``HolderPolicy.min_bin_samples`` (0 = off), the
  bank-only first trees ``SecureBoostClassifier(bank_only_trees=...)`` (0 = off), and the
  sibling floor ``TreeGrower.hide_small_siblings`` (False = off). ``--extra-trees 20`` adds
  today and all-defaults at 20 trees. Reference: centralized LightGBM with the same settings
  on the same split (as the acceptance's ``central_auc.py`` computes it), and bank-only.
- Hetero LR (4 epochs): ``HeteroLogisticRegression(warm_start="bank")`` (None = off), the
  holder's partial-score rounding ``protocol.logistic.math.SCORE_RESOLUTION`` (0 = off, at
  scoring only), and withholding plain LR's holder coefficients
  ``protocol.logistic.holder.REVEAL_STANDARD_COEFFICIENTS`` (True = off; changes a message,
  not the model). Reference: scikit-learn LR on the joined, standardised table.
- Scorecard (one shared ``HeteroWOE`` fit, LR 4 epochs): ``Scorecard(blind_woe=True)``
  (False = off), with the points' difference to today's card.

Fit seconds are wall time of ``fit`` (PSI alignment included), configurations run one after
another; on a shared machine they are noisy (the load average is recorded). Writes JSON and a
Markdown table next to it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedcredit.datasets import find_data_dir  # noqa: E402
from fedcredit.datasets.loaders import DEFAULT_CREDIT_FILES  # noqa: E402
from fedcredit.metrics import auc  # noqa: E402
from fedcredit.models import (  # noqa: E402
    HeteroLogisticRegression,
    HeteroWOE,
    Scorecard,
    SecureBoostClassifier,
)
from fedcredit.models.secureboost.grower import TreeGrower  # noqa: E402
from fedcredit.protocol import HolderPolicy, InProcessChannel, PassiveParty  # noqa: E402
from fedcredit.protocol.logistic import holder as lr_holder  # noqa: E402
from fedcredit.protocol.logistic import math as lr_math  # noqa: E402
from fedcredit.protocol.secureboost import holder as sb_holder  # noqa: E402

KEY_BITS = 1024  # INSECURE: benchmark of model quality only
TARGET = 0.003  # the goal: all defaults within this of today's AUC

# the shipped defaults, read from the code (before any switch is touched)
DEFAULTS = {
    "min_bin_samples": HolderPolicy().min_bin_samples,
    "bank_only_trees": SecureBoostClassifier().bank_only_trees,
    "hide_small_siblings": TreeGrower.hide_small_siblings,
    "warm_start": HeteroLogisticRegression().warm_start,
    "score_resolution": lr_math.SCORE_RESOLUTION,
    "reveal_standard_coefficients": lr_holder.REVEAL_STANDARD_COEFFICIENTS,
    "blind_woe": Scorecard().blind_woe,
}


# -- data -------------------------------------------------------------------------------------
def load(bank_csv: Path, holder_csv: Path, rows: int | None):
    bank = pd.read_csv(bank_csv, dtype={"id": str}).set_index("id")
    holder = pd.read_csv(holder_csv, dtype={"id": str}).set_index("id")
    if rows:
        bank = bank.iloc[:rows]
    y = bank.pop("y").to_numpy()
    from sklearn.model_selection import train_test_split

    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=0, stratify=y)
    return bank, holder, y, np.sort(tr), np.sort(te)


def lightgbm_reference(bank, holder, y, tr, te, trees: int) -> dict:
    """Centralized and bank-only LightGBM with the simulation's settings (the logic of the
    acceptance's ``central_auc.py``: holder columns prefixed, joined on id, categoricals)."""
    import lightgbm as lgb

    j = bank.join(holder.add_prefix("h0_"), how="left")
    for c in j.columns:
        if not pd.api.types.is_numeric_dtype(j[c]):
            j[c] = j[c].astype("category")

    def fit(cols):
        m = lgb.LGBMClassifier(n_estimators=trees, max_depth=3, num_leaves=8, learning_rate=0.3,
                               max_bin=32, min_child_samples=20, reg_lambda=0.1, verbose=-1)
        m.fit(j.iloc[tr][cols], y[tr])
        return float(auc(y[te], m.predict_proba(j.iloc[te][cols])[:, 1]))

    return {"centralized_lightgbm": fit(list(j.columns)),
            "bank_only_lightgbm": fit(list(bank.columns))}


def sklearn_lr_reference(bank, holder, y, tr, te) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    j = bank.join(holder.add_prefix("h_"), how="left")
    sc = StandardScaler().fit(j.iloc[tr])
    sk = LogisticRegression(C=1.0, max_iter=5000).fit(sc.transform(j.iloc[tr]), y[tr])
    return float(auc(y[te], sk.predict_proba(sc.transform(j.iloc[te]))[:, 1]))


# -- switches ---------------------------------------------------------------------------------
@contextlib.contextmanager
def switches(hide_small_siblings=None, score_resolution=None, reveal_coefficients=None):
    """Set the module/class switches for one configuration and put them back afterwards."""
    saved = (TreeGrower.hide_small_siblings, lr_math.SCORE_RESOLUTION,
             lr_holder.REVEAL_STANDARD_COEFFICIENTS)
    try:
        if hide_small_siblings is not None:
            TreeGrower.hide_small_siblings = bool(hide_small_siblings)
        if score_resolution is not None:
            lr_math.SCORE_RESOLUTION = float(score_resolution)
        if reveal_coefficients is not None:
            lr_holder.REVEAL_STANDARD_COEFFICIENTS = bool(reveal_coefficients)
        yield
    finally:
        (TreeGrower.hide_small_siblings, lr_math.SCORE_RESOLUTION,
         lr_holder.REVEAL_STANDARD_COEFFICIENTS) = saved


@contextlib.contextmanager
def count_disclosed():
    """Counts the holder's split candidates the bank learns (G, H) for (sent or derived),
    over all nodes: a direct view of what ``min_bin_samples`` withholds."""
    orig = sb_holder.disclose_layer
    tally = {"candidates_known": 0, "node_layers": 0}

    def wrapped(*args, **kw):
        known, derive = orig(*args, **kw)
        tally["candidates_known"] += int(sum(int(np.sum(v)) for v in known.values()))
        tally["node_layers"] += len(known)
        return known, derive

    sb_holder.disclose_layer = wrapped
    try:
        yield tally
    finally:
        sb_holder.disclose_layer = orig


def channel_for(holder: pd.DataFrame, **policy) -> InProcessChannel:
    return InProcessChannel(PassiveParty(holder, policy=HolderPolicy(
        allow_insecure_keys=True, min_key_bits=KEY_BITS, **policy)))


def load_avg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


# -- SecureBoost ------------------------------------------------------------------------------
def sb_configs() -> list[tuple[str, dict]]:
    off = {"min_bin_samples": 0, "bank_only_trees": 0, "hide_small_siblings": False}
    on = {k: DEFAULTS[k] for k in off}
    out = [("today (all off)", dict(off))]
    for k in off:
        out.append((f"{k}={on[k]} alone", {**off, k: on[k]}))
    out.append(("all defaults on", dict(on)))
    return out


def run_secureboost(bank, holder, y, tr, te, trees: int, jobs: int, setting: str,
                    cfg: dict) -> dict:
    ch = channel_for(holder, min_bin_samples=int(cfg["min_bin_samples"]))
    model = SecureBoostClassifier(
        n_estimators=trees, max_depth=3, learning_rate=0.3, max_bin=32, min_child_samples=20,
        reg_lambda=0.1, key_bits=KEY_BITS, insecure_key=True, verbose=False, n_jobs=jobs,
        bank_only_trees=min(int(cfg["bank_only_trees"]), trees - 1))
    with switches(hide_small_siblings=cfg["hide_small_siblings"]), count_disclosed() as tally:
        load0 = load_avg()
        t = time.perf_counter()
        model.fit(bank.iloc[tr], y[tr], holder=ch)
        fit = time.perf_counter() - t
        p = model.predict_proba(bank.iloc[te], holder=ch)[:, 1]
    model.close_scoring()
    holder_splits = sum(nd.owner == "holder" for t_ in model.trees_ for nd in t_.nodes)
    return {"model": f"SecureBoost {trees} trees", "setting": setting, "switches": cfg,
            "auc": float(auc(y[te], p)), "fit_seconds": fit, "load_avg_start": load0,
            "holder_splits": int(holder_splits), **tally}


# -- hetero LR --------------------------------------------------------------------------------
def lr_configs() -> list[tuple[str, dict]]:
    off = {"warm_start": None, "score_resolution": 0.0, "reveal_standard_coefficients": True}
    on = {k: DEFAULTS[k] for k in off}
    names = {"warm_start": f"warm_start={on['warm_start']!r} alone",
             "score_resolution": f"partial-score rounding 2^{np.log2(on['score_resolution']):.0f}"
                                 " alone" if on["score_resolution"] else "rounding alone",
             "reveal_standard_coefficients": "no holder coefficients alone"}
    out = [("today (all off)", dict(off))]
    for k in off:
        out.append((names[k], {**off, k: on[k]}))
    out.append(("all defaults on", dict(on)))
    return out


def run_lr(bank, holder, y, tr, te, epochs: int, jobs: int, setting: str, cfg: dict) -> dict:
    ch = channel_for(holder)
    model = HeteroLogisticRegression(max_iter=epochs, warm_start=cfg["warm_start"],
                                     key_bits=KEY_BITS, insecure_key=True, verbose=False,
                                     n_jobs=jobs)
    with switches(score_resolution=cfg["score_resolution"],
                  reveal_coefficients=cfg["reveal_standard_coefficients"]):
        load0 = load_avg()
        t = time.perf_counter()
        model.fit(bank.iloc[tr], y[tr], holder=ch)
        fit = time.perf_counter() - t
        p = model.predict_proba(bank.iloc[te], holder=ch)[:, 1]
    model.close_scoring()
    coef_h = np.asarray(getattr(model, "coef_holder_", []), dtype=np.float64)
    return {"model": f"Hetero LR {epochs} epochs", "setting": setting, "switches": cfg,
            "auc": float(auc(y[te], p)), "fit_seconds": fit, "load_avg_start": load0,
            "epochs_run": int(getattr(model, "n_iter_", epochs)),
            "holder_coefficients_received": int(np.isfinite(coef_h).sum()) if coef_h.size else 0}


# -- scorecard --------------------------------------------------------------------------------
def sc_configs() -> list[tuple[str, dict]]:
    off = {"blind_woe": False, "warm_start": None, "score_resolution": 0.0}
    on = {k: DEFAULTS[k] for k in off}
    return [("today (all off)", dict(off)),
            (f"blind_woe={on['blind_woe']} alone", {**off, "blind_woe": on["blind_woe"]}),
            ("all defaults on (blind_woe, warm_start, rounding)", dict(on))]


def run_scorecards(bank, holder, y, tr, te, epochs: int, jobs: int, configs, add
                   ) -> tuple[dict, list]:
    ch = channel_for(holder)
    t = time.perf_counter()
    woe = HeteroWOE(max_bin=20, key_bits=KEY_BITS, insecure_key=True, n_jobs=jobs).fit(
        bank.iloc[tr], y[tr], holder=ch)
    woe_info = {"woe_fit_seconds": time.perf_counter() - t, "features": len(woe.selected_),
                "holder_features": sum(woe.party_[f] == "holder" for f in woe.selected_)}
    rows, base = [], None
    for setting, cfg in configs:
        lr = HeteroLogisticRegression(max_iter=epochs, warm_start=cfg["warm_start"],
                                      key_bits=KEY_BITS, insecure_key=True, verbose=False,
                                      n_jobs=jobs)
        card = Scorecard(woe, base_score=600, base_odds=50, pdo=20, lr=lr,
                         blind_woe=cfg["blind_woe"])
        with switches(score_resolution=cfg["score_resolution"]):
            load0 = load_avg()
            t = time.perf_counter()
            card.fit(bank.iloc[tr], y[tr], holder=ch)
            fit = time.perf_counter() - t
            points = card.score(bank.iloc[te], holder=ch)
        card.close_scoring()
        table = card.points_table_.set_index(["Variable", "Bin"])["Points"]
        r = {"model": f"Scorecard (WOE + LR {epochs} epochs)", "setting": setting,
             "switches": cfg, "auc": float(auc(y[te], -points)), "fit_seconds": fit,
             "load_avg_start": load0}
        if base is None:
            base = (table, points)
        else:
            d_tab = (table - base[0].reindex(table.index)).abs()
            d_pts = np.abs(points - base[1])
            r.update(points_table_max_abs_diff=float(d_tab.max()),
                     points_table_mean_abs_diff=float(d_tab.mean()),
                     test_score_max_abs_diff=float(d_pts.max()),
                     test_score_mean_abs_diff=float(d_pts.mean()))
        rows.append(r)
        add(r)
    return woe_info, rows


# -- report -----------------------------------------------------------------------------------
def add_deltas(rows: list[dict]) -> None:
    today = {}
    for r in rows:
        if r["setting"].startswith("today"):
            today[r["model"]] = r["auc"]
    for r in rows:
        base = today.get(r["model"])
        r["delta_auc"] = None if base is None else r["auc"] - base


def markdown(res: dict) -> str:
    m = res["meta"]
    out = [f"# Privacy mitigations: AUC and fit-time cost (default_credit, {m['date']})", "",
           f"{m['rows_train']:,} train / {m['rows_test']:,} test rows (70/30 stratified, seed 0), "
           f"in process, INSECURE {KEY_BITS}-bit Paillier keys, {m['cores']} cores. "
           f"SecureBoost depth 3, 32 bins, lr 0.3; LR {m['lr_epochs']} epochs. "
           "**Fit seconds are noisy**: a shared machine, load average "
           f"{m['load_avg_start']} at the start and {m['load_avg_end']} at the end; "
           "configurations ran one after another.", ""]
    ref = res["reference"]
    out.append("References: " + ", ".join(f"{k.replace('_', ' ')} {v:.4f}"
                                           for k, v in ref.items()) + ".")
    out += ["", "| model | setting | test AUC | ΔAUC vs today | fit (s) | notes |",
            "| --- | --- | ---: | ---: | ---: | --- |"]
    for r in res["rows"]:
        d = r.get("delta_auc")
        notes = []
        if "holder_splits" in r:
            notes.append(f"{r['holder_splits']} holder splits, "
                         f"{r['candidates_known']:,} holder candidates disclosed")
        if "holder_coefficients_received" in r:
            notes.append(f"{r['holder_coefficients_received']} holder coefficients at the bank")
        if "points_table_max_abs_diff" in r:
            notes.append(f"points vs today: table max {r['points_table_max_abs_diff']:.3f}, "
                         f"test score max {r['test_score_max_abs_diff']:.3f} / mean "
                         f"{r['test_score_mean_abs_diff']:.3f}")
        out.append(f"| {r['model']} | {r['setting']} | {r['auc']:.4f} | "
                   f"{'' if d is None else f'{d:+.4f}'} | {r['fit_seconds']:.1f} | "
                   f"{'; '.join(notes)} |")
    out += ["", f"Target: all defaults within {TARGET} AUC of today."]
    for model, v in res["target"].items():
        out.append(f"- {model}: ΔAUC {v['delta_auc']:+.4f} → "
                   f"{'met' if v['met'] else 'NOT met'}")
    if res.get("woe"):
        w = res["woe"]
        out += ["", f"Scorecards share one HeteroWOE fit ({w['woe_fit_seconds']:.1f} s, "
                    f"{w['features']} features selected, {w['holder_features']} of the holder), "
                    "not included in their fit seconds."]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None,
                    help="folder with both CSVs (default $FEDCREDIT_DATA_DIR, or a shared/data "
                         "folder found as fedcredit.datasets.find_data_dir does)")
    ap.add_argument("--bank-csv", type=Path, default=None)
    ap.add_argument("--holder-csv", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/privacy_cost.json"))
    ap.add_argument("--trees", type=int, default=5)
    ap.add_argument("--extra-trees", type=int, default=0,
                    help="also today and all-defaults SecureBoost with this many trees")
    ap.add_argument("--lr-epochs", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes per party")
    ap.add_argument("--models", default="secureboost,lr,scorecard")
    ap.add_argument("--quick", action="store_true",
                    help="3,000 rows, 2 trees, 1 epoch: for development")
    a = ap.parse_args(argv)
    if a.bank_csv is None or a.holder_csv is None:
        d = find_data_dir(a.data_dir)
        a.bank_csv = a.bank_csv or d / DEFAULT_CREDIT_FILES[0]
        a.holder_csv = a.holder_csv or d / DEFAULT_CREDIT_FILES[1]
    rows = 3000 if a.quick else None
    if a.quick:
        a.trees, a.lr_epochs, a.extra_trees = 2, 1, 0
    models = set(a.models.split(","))
    bank, holder, y, tr, te = load(a.bank_csv, a.holder_csv, rows)
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                     "--untracked-files=no"],
                                    capture_output=True, text=True).stdout.strip())
    except OSError:
        commit, dirty = None, None
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor()
            or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
            "commit": commit, "working_tree_modified": dirty, "key_bits": KEY_BITS,
            "rows_train": int(len(tr)), "rows_test": int(len(te)), "trees": a.trees,
            "extra_trees": a.extra_trees, "lr_epochs": a.lr_epochs, "jobs": a.jobs,
            "quick": a.quick, "defaults": DEFAULTS, "load_avg_start": load_avg()}
    ref = {}
    res = {"meta": meta, "reference": ref, "rows": []}

    def secureboost(trees: int, settings=None) -> None:
        ref[f"centralized_lightgbm_{trees}_trees"], ref[f"bank_only_lightgbm_{trees}_trees"] = \
            lightgbm_reference(bank, holder, y, tr, te, trees).values()
        for setting, cfg in sb_configs():
            if settings is None or setting in settings:
                add(run_secureboost(bank, holder, y, tr, te, trees, a.jobs, setting, cfg))

    def add(r: dict) -> None:  # rows are saved as they come: a long run leaves partial results
        res["rows"].append(r)
        print(json.dumps(r, default=str), flush=True)
        save(res, a.json)

    if "secureboost" in models:
        secureboost(a.trees)
    if "lr" in models:
        ref["sklearn_lr"] = sklearn_lr_reference(bank, holder, y, tr, te)
        for setting, cfg in lr_configs():
            add(run_lr(bank, holder, y, tr, te, a.lr_epochs, a.jobs, setting, cfg))
    if "scorecard" in models:
        res["woe"], _ = run_scorecards(bank, holder, y, tr, te, a.lr_epochs, a.jobs,
                                             sc_configs(), add)
    if "secureboost" in models and a.extra_trees:
        secureboost(a.extra_trees, ("today (all off)", "all defaults on"))
    save(res, a.json)
    print(markdown(res))
    return 0


def save(res: dict, path: Path) -> None:
    add_deltas(res["rows"])
    res["target"] = {r["model"]: {"delta_auc": r["delta_auc"],
                                  "met": r["delta_auc"] >= -TARGET}
                     for r in res["rows"] if r["setting"].startswith("all defaults")
                     and r.get("delta_auc") is not None}
    res["meta"]["load_avg_end"] = load_avg()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2, default=str) + "\n")
    path.with_suffix(".md").write_text(markdown(res))


if __name__ == "__main__":
    sys.exit(main())
