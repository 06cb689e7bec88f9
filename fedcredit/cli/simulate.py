"""``fedcredit simulate``: both parties on this machine, the holder a separate gRPC process.

The bank side reads only the bank CSV; the holder process reads only the holder CSV. For the
baselines the simulator itself reads both (it is a research tool): LightGBM on the bank's
features alone and on the joined table, with the same trees, depth, bins and learning rate.
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..datasets import load_csv_table
from ..errors import InvalidInput
from ..holder.devca import make_dev_certs
from ..holder.ephemeral import EphemeralHolder
from ..metrics import auc, ks
from ..models import HeteroLogisticRegression, HeteroWOE, SecureBoostClassifier
from ..protocol import BankSession, align
from ..transport import connect

MODELS = ("secureboost", "lr", "woe")


@dataclass
class SimulationConfig:
    bank_csv: str
    holder_csv: str
    id_column: str
    label_column: str
    test_size: float = 0.3
    random_state: int = 0
    model: str = "secureboost"
    trees: int = 5
    depth: int = 3
    bins: int = 32
    learning_rate: float = 0.3
    key_bits: int = 2048
    insecure_key: bool = False
    he_scheme: str = "paillier"
    min_child_samples: int = 20
    reg_lambda: float = 0.1
    predictions_out: str | None = None
    json_out: str | None = None
    verbose: bool = True
    n_jobs: int | None = None
    holder_stats: bool = False  # collect the holder's time budget and peak memory


def _load_bank(cfg: SimulationConfig) -> tuple[pd.DataFrame, np.ndarray]:
    bank = load_csv_table(cfg.bank_csv, cfg.id_column)
    if cfg.label_column not in bank.columns:
        raise InvalidInput(f"{cfg.bank_csv}: no label column {cfg.label_column!r}")
    y = bank.pop(cfg.label_column).to_numpy()
    return bank, y


def _lgbm_auc_ks(X_tr, y_tr, X_te, y_te, cfg: SimulationConfig) -> tuple[float, float, np.ndarray]:
    import lightgbm as lgb

    def prep(X):
        X = X.copy()
        for c in X.columns:
            if not pd.api.types.is_numeric_dtype(X[c]):
                X[c] = X[c].astype("category")
        return X

    m = lgb.LGBMClassifier(n_estimators=cfg.trees, max_depth=cfg.depth,
                           num_leaves=2 ** cfg.depth, learning_rate=cfg.learning_rate,
                           max_bin=cfg.bins, min_child_samples=cfg.min_child_samples,
                           reg_lambda=cfg.reg_lambda, verbose=-1, random_state=cfg.random_state)
    Xtr, Xte = prep(X_tr), prep(X_te)
    cats = [c for c in Xtr.columns if isinstance(Xtr[c].dtype, pd.CategoricalDtype)]
    for c in cats:
        Xte[c] = pd.Categorical(Xte[c], categories=Xtr[c].cat.categories)
    m.fit(Xtr, y_tr)
    p = m.predict_proba(Xte)[:, 1]
    return auc(y_te, p), ks(y_te, p), p


def run(cfg: SimulationConfig) -> dict:
    """Run a simulation; returns the JSON summary (also written to ``cfg.json_out``)."""
    if cfg.model not in MODELS:
        raise InvalidInput(f"--model must be one of {MODELS}")
    if not 0 <= cfg.test_size < 1:
        raise InvalidInput("--test-size must be in [0, 1)")
    bank, y = _load_bank(cfg)
    summary: dict = {"model": cfg.model, "he_scheme": cfg.he_scheme, "key_bits": cfg.key_bits,
                     "trees": cfg.trees, "depth": cfg.depth, "bins": cfg.bins,
                     "learning_rate": cfg.learning_rate}
    with tempfile.TemporaryDirectory(prefix="fedcredit-sim-") as tmp:
        tls_dir = Path(tmp) / "tls"
        make_dev_certs(tls_dir)
        stats_path = Path(tmp) / "holder_stats.json"
        with EphemeralHolder(cfg.holder_csv, cfg.id_column, tls_dir,
                             allow_insecure_keys=cfg.insecure_key,
                             stats_out=stats_path if cfg.holder_stats else None) as holder:
            channel = connect(holder.address, tls_dir=tls_dir)
            try:
                t0 = time.perf_counter()
                session = BankSession(channel, "align")
                aligned = align(session, bank.index.tolist())
                session.close()
                summary["align_seconds"] = time.perf_counter() - t0
                summary["rows_bank"] = len(bank)
                summary["rows_aligned"] = len(aligned)
                Xa, ya = bank.iloc[aligned.bank_positions], y[aligned.bank_positions]
                tr, te = _split(len(Xa), ya, cfg)
                if cfg.model == "woe":
                    return _run_woe(cfg, summary, Xa.iloc[tr], ya[tr], channel)
                if cfg.model == "lr":
                    return _run_lr(cfg, summary, Xa, ya, tr, te, channel)
                model = SecureBoostClassifier(
                    n_estimators=cfg.trees, max_depth=cfg.depth, learning_rate=cfg.learning_rate,
                    max_bin=cfg.bins, min_child_samples=cfg.min_child_samples,
                    reg_lambda=cfg.reg_lambda, key_bits=cfg.key_bits,
                    insecure_key=cfg.insecure_key, he_scheme=cfg.he_scheme,
                    random_state=cfg.random_state, verbose=cfg.verbose, n_jobs=cfg.n_jobs)
                model.fit(Xa.iloc[tr], ya[tr], holder=channel)
                summary["fit_seconds"] = model.fit_seconds_
                summary["time_budget_bank"] = model.time_budget_
                summary["rows_train"] = int(len(tr))
                summary["rows_test"] = int(len(te))
                summary["feature_importance"] = model.feature_importance("gain").round(6).to_dict()
                if len(te):
                    t1 = time.perf_counter()
                    p_fed = model.predict_proba(Xa.iloc[te], holder=channel)[:, 1]
                    summary["predict_seconds"] = time.perf_counter() - t1
            finally:
                channel.close()
        if cfg.holder_stats and stats_path.exists():
            summary.update(json.loads(stats_path.read_text()))
    import resource

    summary["bank_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if len(te):
        y_te = ya[te]
        holder_df = load_csv_table(cfg.holder_csv, cfg.id_column)
        joined = Xa.join(holder_df.add_prefix("holder_"), how="left")
        a_bank, k_bank, _ = _lgbm_auc_ks(Xa.iloc[tr], ya[tr], Xa.iloc[te], y_te, cfg)
        a_cent, k_cent, _ = _lgbm_auc_ks(joined.iloc[tr], ya[tr], joined.iloc[te], y_te, cfg)
        summary["auc"] = {"federated": auc(y_te, p_fed), "bank_only": a_bank, "centralized": a_cent}
        summary["ks"] = {"federated": ks(y_te, p_fed), "bank_only": k_bank, "centralized": k_cent}
        if cfg.predictions_out:
            out = pd.DataFrame({cfg.id_column: Xa.index[te], "score": p_fed})
            _atomic_csv(out, cfg.predictions_out)
    else:
        summary["auc"] = summary["ks"] = None
    if cfg.json_out:
        path = Path(cfg.json_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2, default=float) + "\n")
        tmp.replace(path)
    return summary


def _write_json(summary: dict, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    tmp.replace(path)


def _run_woe(cfg: SimulationConfig, summary: dict, X, y, channel) -> dict:
    """WOE/IV of every feature of both parties on the training rows."""
    t0 = time.perf_counter()
    woe = HeteroWOE(max_bin=cfg.bins, key_bits=cfg.key_bits, insecure_key=cfg.insecure_key,
                    he_scheme=cfg.he_scheme, n_jobs=cfg.n_jobs, random_state=cfg.random_state)
    woe.fit(X, y, holder=channel)
    summary["fit_seconds"] = time.perf_counter() - t0
    summary["rows_train"] = int(len(y))
    summary["iv"] = {"bank": {k: v for k, v in woe.iv_.items() if woe.party_[k] == "bank"},
                     "holder": {k[len("holder:"):]: v for k, v in woe.iv_.items()
                                if woe.party_[k] == "holder"}}
    summary["selected"] = woe.selected_
    summary["auc"] = summary["ks"] = None
    if cfg.json_out:
        _write_json(summary, cfg.json_out)
    return summary


def _run_lr(cfg: SimulationConfig, summary: dict, Xa, ya, tr, te, channel) -> dict:
    """Federated LR against scikit-learn LR on the bank's features and on the joined table
    (each standardised the same way: mean/std of the training rows, one-hot categories)."""
    from sklearn.linear_model import LogisticRegression

    from ..binning import FeaturePrep

    model = HeteroLogisticRegression(key_bits=cfg.key_bits, insecure_key=cfg.insecure_key,
                                     he_scheme=cfg.he_scheme, n_jobs=cfg.n_jobs,
                                     random_state=cfg.random_state, verbose=cfg.verbose)
    model.fit(Xa.iloc[tr], ya[tr], holder=channel)
    summary["fit_seconds"] = model.fit_seconds_
    summary["time_budget_bank"] = model.time_budget_
    summary["rows_train"], summary["rows_test"] = int(len(tr)), int(len(te))
    summary["epochs"] = model.n_iter_
    summary["coefficients"] = model.coefficients().round(6).to_dict()
    if not len(te):
        summary["auc"] = summary["ks"] = None
        if cfg.json_out:
            _write_json(summary, cfg.json_out)
        return summary
    t1 = time.perf_counter()
    p_fed = model.predict_proba(Xa.iloc[te], holder=channel)[:, 1]
    summary["predict_seconds"] = time.perf_counter() - t1
    holder_df = load_csv_table(cfg.holder_csv, cfg.id_column)
    joined = Xa.join(holder_df.add_prefix("holder_"), how="left")

    def sk_lr(X):
        prep = FeaturePrep().fit(X.iloc[tr])
        m = LogisticRegression(C=1.0, max_iter=5000).fit(prep.transform(X.iloc[tr]), ya[tr])
        return m.predict_proba(prep.transform(X.iloc[te]))[:, 1]

    y_te = ya[te]
    p_bank, p_cent = sk_lr(Xa), sk_lr(joined)
    summary["auc"] = {"federated": auc(y_te, p_fed), "bank_only": auc(y_te, p_bank),
                      "centralized": auc(y_te, p_cent)}
    summary["ks"] = {"federated": ks(y_te, p_fed), "bank_only": ks(y_te, p_bank),
                     "centralized": ks(y_te, p_cent)}
    if cfg.predictions_out:
        _atomic_csv(pd.DataFrame({cfg.id_column: Xa.index[te], "score": p_fed}),
                    cfg.predictions_out)
    if cfg.json_out:
        _write_json(summary, cfg.json_out)
    return summary


def _split(n: int, y: np.ndarray, cfg: SimulationConfig) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(n)
    if cfg.test_size == 0:
        return idx, idx[:0]
    from sklearn.model_selection import train_test_split

    tr, te = train_test_split(idx, test_size=cfg.test_size, random_state=cfg.random_state,
                              stratify=y)
    return np.sort(tr), np.sort(te)


def _atomic_csv(df: pd.DataFrame, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)


def format_table(summary: dict) -> str:
    if summary.get("model") == "woe" and "iv" in summary:
        rows = [f"{'party':<8}{'feature':<40}{'IV':>8}"]
        items = [(p, f, v) for p in ("bank", "holder") for f, v in summary["iv"][p].items()]
        for p, f, v in sorted(items, key=lambda r: -r[2]):
            rows.append(f"{p:<8}{f:<40}{v:>8.4f}")
        return "\n".join(rows)
    if not summary.get("auc"):
        return f"trained on {summary['rows_aligned']} aligned rows in {summary['fit_seconds']:.1f} s"
    rows = [f"{'model':<14}{'AUC':>8}{'KS':>8}"]
    for k, label in (("bank_only", "bank only"), ("federated", "federated"),
                     ("centralized", "centralized")):
        rows.append(f"{label:<14}{summary['auc'][k]:>8.4f}{summary['ks'][k]:>8.4f}")
    return "\n".join(rows)
