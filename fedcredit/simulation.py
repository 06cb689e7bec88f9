"""Simulations on one machine: the harness behind ``fedcredit simulate``, ``fedcredit demo``
and ``benchmarks/``.

The bank side reads only the bank CSV; each holder runs as a separate gRPC process with mutual
TLS (:class:`EphemeralHolder`, the process ``python -m fedcredit.holder.ephemeral``) and reads
only its own CSV (several holder CSVs: one process each, named after its file, and a
SecureBoost model trained with all of them). For the baselines the simulator itself reads
every table (it is a research tool): the bank's features alone and the joined table, with the
same hyper-parameters.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import write_atomic, write_with
from .crypto.engine import engine_scope
from .datasets import load_csv_table
from .errors import InvalidInput
from .holder.devca import make_dev_certs
from .metrics import auc, ks
from .models import HeteroLogisticRegression, HeteroWOE, SecureBoostClassifier
from .models.holders import holder_kwargs
from .protocol import BankSession, align
from .protocol.alignment.bank import align_many
from .transport import connect

MODELS = ("secureboost", "lr", "woe")


@dataclass
class SimulationConfig:
    bank_csv: str
    holder_csv: str | list[str]  # one holder's CSV, or one per holder
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
    bank_only_trees: int | None = None  # SecureBoost's first trees on bank features; None: default
    align: str = "all"  # several holders: train on the enterprises all serve, or "any" one
    engine: str = "local"  # "dask": each party's crypto on its own LocalCluster of n_jobs
    #: further SecureBoost parameters (e.g. goss_top_rate), set on the model as given
    model_params: dict = field(default_factory=dict)

    @property
    def holder_csvs(self) -> list[str]:
        return [self.holder_csv] if isinstance(self.holder_csv, str) else list(self.holder_csv)


def holder_names(csvs: list[str]) -> list[str]:
    """One name per holder CSV: the file's stem (``holder_a.csv`` -> ``holder_a``), numbered
    where two stems are the same; a single holder keeps the simulator's usual name."""
    if len(csvs) == 1:
        return ["simulated-holder"]
    stems = [Path(c).stem or "holder" for c in csvs]
    return [s if stems.count(s) == 1 else f"{s}-{k + 1}" for k, s in enumerate(stems)]


class EphemeralHolder:
    """Start a throwaway holder process serving one CSV; a context manager giving its address.

    >>> with EphemeralHolder("holder.csv", "uscc", tls_dir) as h:     # doctest: +SKIP
    ...     channel = fedcredit.connect(h.address, tls_dir=tls_dir)
    """

    def __init__(self, csv, id_column: str, tls_dir, *, allow_insecure_keys: bool = False,
                 min_node_samples: int = 20, startup_timeout: float = 120.0,
                 stats_out=None, name: str = "simulated-holder", engine: str = "local",
                 workers: int | None = None):
        self.args = [sys.executable, "-m", "fedcredit.holder.ephemeral", "--csv", str(csv),
                     "--id-column", id_column, "--tls-dir", str(tls_dir),
                     "--min-node-samples", str(min_node_samples), "--name", name]
        if allow_insecure_keys:
            self.args.append("--allow-insecure-keys")
        if stats_out:
            self.args += ["--stats-out", str(stats_out)]
        if engine != "local":
            self.args += ["--engine", engine]
        if workers:
            self.args += ["--workers", str(int(workers))]
        self.tls_dir = tls_dir
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.address = ""

    def __enter__(self) -> EphemeralHolder:
        self._tmp = tempfile.TemporaryDirectory(prefix="fedcredit-holder-")
        port_file = Path(self._tmp.name) / "port"
        self._log = open(Path(self._tmp.name) / "holder.log", "w+")
        self.proc = proc = subprocess.Popen(self.args + ["--port-file", str(port_file)],
                                            stdin=subprocess.PIPE, stdout=self._log,
                                            stderr=subprocess.STDOUT)
        deadline = time.time() + self.startup_timeout
        while not port_file.exists():
            if proc.poll() is not None or time.time() > deadline:
                self._log.seek(0)
                tail = self._log.read()[-2000:]
                self.__exit__(None, None, None)
                raise RuntimeError(f"the holder process did not start:\n{tail}")
            time.sleep(0.05)
        self.address = f"127.0.0.1:{port_file.read_text().strip()}"
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()  # the child's cue that its parent is gone
                self.proc.terminate()
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
        if getattr(self, "_log", None):
            self._log.close()
        if getattr(self, "_tmp", None):
            self._tmp.cleanup()


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
    csvs = cfg.holder_csvs
    if not csvs:
        raise InvalidInput("--holder-csv: at least one holder table is needed")
    if cfg.engine not in ("local", "dask"):
        raise InvalidInput(f"--engine must be 'local' or 'dask', got {cfg.engine!r}")
    if cfg.align not in ("all", "any"):
        raise InvalidInput(f"--align must be 'all' or 'any', got {cfg.align!r}")
    if cfg.align == "any" and cfg.model not in ("secureboost", "lr"):
        raise InvalidInput("--align any trains --model secureboost or lr")
    names = holder_names(csvs)
    with tempfile.TemporaryDirectory(prefix="fedcredit-sim-") as tmp:
        tls_dir = Path(tmp) / "tls"
        make_dev_certs(tls_dir)
        stats_paths = [Path(tmp) / f"holder_stats_{k}.json" for k in range(len(csvs))]
        with ExitStack() as stack:  # the holders stop (and write their stats) first
            holders = [stack.enter_context(EphemeralHolder(
                csv, cfg.id_column, tls_dir, allow_insecure_keys=cfg.insecure_key, name=name,
                stats_out=stats_paths[k] if cfg.holder_stats else None, engine=cfg.engine,
                workers=cfg.n_jobs))
                for k, (csv, name) in enumerate(zip(csvs, names))]
            engine = stack.enter_context(engine_scope(cfg.engine, cfg.n_jobs))
            channels = [connect(h.address, tls_dir=tls_dir) for h in holders]
            for ch in channels:
                stack.callback(ch.close)
            summary["rows_bank"] = len(bank)
            summary["engine"] = cfg.engine
            if cfg.test_size == 0 and len(csvs) == 1:  # no split to draw: the model's own
                Xa, ya = bank, y  # alignment is the only one (one PSI, not two: at 10M
                tr, te = np.arange(len(bank)), np.arange(0)  # rows that is 13 minutes)
                model = _FIT[cfg.model](cfg, summary, Xa, ya, tr, te, channels, engine)
                summary["align_seconds"] = model.alignment_seconds_
                summary["rows_aligned"] = summary["rows_train"] = model.n_aligned_
                summary["rows_test"] = 0
                p_fed = None
            else:
                Xa, ya, tr, te = _aligned_split(cfg, summary, bank, y, channels, names)
                model = _FIT[cfg.model](cfg, summary, Xa, ya, tr, te, channels, engine)
                p_fed = None if cfg.model == "woe" else _predict(model, summary, Xa.iloc[te],
                                                                   channels)
        if cfg.holder_stats:  # one holder: its stats; several: a list, in order
            stats = [json.loads(p.read_text()) for p in stats_paths if p.exists()]
            if len(csvs) == 1 and stats:
                summary.update(stats[0])
            elif stats:
                summary["holders_stats"] = stats
    if cfg.model == "secureboost":
        import resource

        summary["bank_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if p_fed is None:
        summary["auc"] = summary["ks"] = None
    else:
        _compare(cfg, summary, Xa, ya, tr, te, p_fed)
    if cfg.json_out:
        _write_json(summary, cfg.json_out)
    return summary


def format_table(summary: dict) -> str:
    """The summary as the table ``fedcredit simulate`` and ``fedcredit demo`` print."""
    if summary.get("model") == "woe" and "iv" in summary:
        rows = [f"{'party':<8}{'feature':<40}{'IV':>8}"]
        items = [(p, f, v) for p in ("bank", "holder") for f, v in summary["iv"][p].items()]
        for p, f, v in sorted(items, key=lambda r: -r[2]):
            rows.append(f"{p:<8}{f:<40}{v:>8.4f}")
        return "\n".join(rows)
    if not summary.get("auc"):
        return (f"trained on {summary['rows_aligned']} aligned rows in "
                f"{summary['fit_seconds']:.1f} s")
    rows = [f"{'model':<14}{'AUC':>8}{'KS':>8}"]
    for k, label in (("bank_only", "bank only"), ("federated", "federated"),
                     ("centralized", "centralized")):
        rows.append(f"{label:<14}{summary['auc'][k]:>8.4f}{summary['ks'][k]:>8.4f}")
    return "\n".join(rows)


# -- data ---------------------------------------------------------------------------------

def _load_bank(cfg: SimulationConfig) -> tuple[pd.DataFrame, np.ndarray]:
    bank = load_csv_table(cfg.bank_csv, cfg.id_column)
    if cfg.label_column not in bank.columns:
        raise InvalidInput(f"{cfg.bank_csv}: no label column {cfg.label_column!r}")
    y = bank.pop(cfg.label_column).to_numpy()
    return bank, y


def _aligned_split(cfg: SimulationConfig, summary: dict, bank: pd.DataFrame, y: np.ndarray,
                   channels, names: list[str]):
    """Align once for the train/test split (the models align again, on the training rows)."""
    t0 = time.perf_counter()
    sessions = [BankSession(ch, "align") for ch in channels]
    try:
        aligned = align_many(sessions, bank.index.tolist(), cfg.align == "any")[0] \
            if len(sessions) > 1 else align(sessions[0], bank.index.tolist())
    finally:
        for session in sessions:
            session.close()
    summary["align_seconds"] = time.perf_counter() - t0
    summary["rows_aligned"] = len(aligned)
    if len(channels) > 1:
        summary["holders"] = names
    Xa, ya = bank.iloc[aligned.bank_positions], y[aligned.bank_positions]
    return (Xa, ya, *_split(len(Xa), ya, cfg))


def _split(n: int, y: np.ndarray, cfg: SimulationConfig) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(n)
    if cfg.test_size == 0:
        return idx, idx[:0]
    from sklearn.model_selection import train_test_split

    tr, te = train_test_split(idx, test_size=cfg.test_size, random_state=cfg.random_state,
                              stratify=y)
    return np.sort(tr), np.sort(te)


# -- federated models: fit on the training rows; the fitted estimator ----------------------

def _fit_secureboost(cfg: SimulationConfig, summary: dict, Xa, ya, tr, te, channels,
                     engine=None):
    model = SecureBoostClassifier(
        n_estimators=cfg.trees, max_depth=cfg.depth, learning_rate=cfg.learning_rate,
        max_bin=cfg.bins, min_child_samples=cfg.min_child_samples,
        reg_lambda=cfg.reg_lambda, key_bits=cfg.key_bits,
        insecure_key=cfg.insecure_key, he_scheme=cfg.he_scheme,
        random_state=cfg.random_state, verbose=cfg.verbose, n_jobs=cfg.n_jobs,
        engine=engine or "local")
    if cfg.bank_only_trees is not None:
        model.set_params(bank_only_trees=cfg.bank_only_trees)
    if cfg.model_params:
        model.set_params(**cfg.model_params)
    summary["bank_only_trees"] = int(model.bank_only_trees)
    model.fit(Xa.iloc[tr], ya[tr], **holder_kwargs(channels),
              align=cfg.align if len(channels) > 1 else "all")
    summary["fit_seconds"] = model.fit_seconds_
    summary["time_budget_bank"] = model.time_budget_
    summary["rows_train"] = int(len(tr))
    summary["rows_test"] = int(len(te))
    summary["feature_importance"] = model.feature_importance("gain").round(6).to_dict()
    return model


def _fit_lr(cfg: SimulationConfig, summary: dict, Xa, ya, tr, te, channels,
            engine=None):
    model = HeteroLogisticRegression(key_bits=cfg.key_bits, insecure_key=cfg.insecure_key,
                                     he_scheme=cfg.he_scheme, n_jobs=cfg.n_jobs,
                                     random_state=cfg.random_state, verbose=cfg.verbose)
    model.fit(Xa.iloc[tr], ya[tr], **holder_kwargs(channels),
              **({"align": cfg.align} if len(channels) > 1 else {}))
    summary["fit_seconds"] = model.fit_seconds_
    summary["time_budget_bank"] = model.time_budget_
    summary["rows_train"], summary["rows_test"] = int(len(tr)), int(len(te))
    summary["epochs"] = model.n_iter_
    summary["coefficients"] = model.coefficients().round(6).to_dict()
    return model


def _fit_woe(cfg: SimulationConfig, summary: dict, Xa, ya, tr, te, channels,
             engine=None):
    """WOE/IV of every feature of both parties on the training rows (nothing to score)."""
    t0 = time.perf_counter()
    woe = HeteroWOE(max_bin=cfg.bins, key_bits=cfg.key_bits, insecure_key=cfg.insecure_key,
                    he_scheme=cfg.he_scheme, n_jobs=cfg.n_jobs, random_state=cfg.random_state)
    woe.fit(Xa.iloc[tr], ya[tr], **holder_kwargs(channels))
    summary["fit_seconds"] = time.perf_counter() - t0
    summary["rows_train"] = int(len(tr))
    summary["iv"] = {"bank": {k: v for k, v in woe.iv_.items() if woe.party_[k] == "bank"},
                     "holder": {k.removeprefix("holder:"): v for k, v in woe.iv_.items()
                                if woe.party_[k] == "holder"}}
    summary["selected"] = woe.selected_
    return woe


def _predict(model, summary: dict, X_te, channels):
    if not len(X_te):
        return None
    t1 = time.perf_counter()
    p = model.predict_proba(X_te, **holder_kwargs(channels))[:, 1]
    summary["predict_seconds"] = time.perf_counter() - t1
    return p


_FIT = {"secureboost": _fit_secureboost, "lr": _fit_lr, "woe": _fit_woe}


# -- baselines: the same kind of model, centrally, on the bank's table and on the joined one -

def _lgbm(X_tr, y_tr, X_te, cfg: SimulationConfig) -> np.ndarray:
    """LightGBM with the same trees, depth, bins, learning rate and regularisation."""
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
    return np.asarray(m.predict_proba(Xte))[:, 1]


def _sklearn_lr(X_tr, y_tr, X_te, cfg: SimulationConfig) -> np.ndarray:
    """scikit-learn LR, standardised like the federated one (training mean/std, one-hot)."""
    from sklearn.linear_model import LogisticRegression

    from .binning import FeaturePrep

    prep = FeaturePrep().fit(X_tr)
    m = LogisticRegression(C=1.0, max_iter=5000).fit(prep.transform(X_tr), y_tr)
    return m.predict_proba(prep.transform(X_te))[:, 1]


_BASELINE = {"secureboost": _lgbm, "lr": _sklearn_lr}


def _compare(cfg: SimulationConfig, summary: dict, Xa, ya, tr, te, p_fed) -> None:
    """AUC/KS of the federated scores against the bank-only and centralized baselines."""
    y_te = ya[te]
    joined = Xa
    for k, csv in enumerate(cfg.holder_csvs):
        prefix = "holder_" if len(cfg.holder_csvs) == 1 else f"holder{k + 1}_"
        joined = joined.join(load_csv_table(csv, cfg.id_column).add_prefix(prefix), how="left")
    baseline = _BASELINE[cfg.model]
    if Xa.shape[1]:
        p_bank = baseline(Xa.iloc[tr], ya[tr], Xa.iloc[te], cfg)
    else:  # ids and labels only: the bank alone knows the default rate, nothing more
        p_bank = np.full(len(te), float(ya[tr].mean()))
    p_cent = baseline(joined.iloc[tr], ya[tr], joined.iloc[te], cfg)
    summary["auc"] = {"federated": auc(y_te, p_fed), "bank_only": auc(y_te, p_bank),
                      "centralized": auc(y_te, p_cent)}
    summary["ks"] = {"federated": ks(y_te, p_fed), "bank_only": ks(y_te, p_bank),
                     "centralized": ks(y_te, p_cent)}
    if cfg.predictions_out:
        scores = pd.DataFrame({cfg.id_column: Xa.index[te], "score": p_fed})
        path = Path(cfg.predictions_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_with(path, lambda tmp: scores.to_csv(tmp, index=False))


def _write_json(summary: dict, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(summary, indent=2, default=float) + "\n")
