"""``SecureBoostClassifier``: vertical federated gradient boosting with a scikit-learn surface.

>>> model = SecureBoostClassifier(n_estimators=5, max_depth=3)      # doctest: +SKIP
>>> model.fit(X_bank, y, holder=fedcredit.connect("holder:50051", tls_dir="certs"))
>>> model.predict_proba(X_new, holder=channel)[:, 1]

``X_bank`` is a pandas DataFrame indexed by enterprise id (USCC); the holder is found through
``holder`` (a channel from :func:`fedcredit.connect`, an ``InProcessChannel`` or a
``PassiveParty``). Training aligns ids by PSI, then trains on the intersection. The bank
keeps its own splits and leaf values; the holder keeps its thresholds under a model id.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ...binning import BinMapper
from ...crypto import FixedPoint, generate_keypair
from ...errors import InvalidInput, ProtocolError
from ...protocol.alignment.bank import align
from ...protocol.channel import Channel, InProcessChannel
from ...protocol.secureboost import bank as steps
from ...protocol.session import BankSession
from .federated import FederatedHolder
from .grower import TreeGrower
from .splitting import SplitParams
from .tree import Tree

FORMAT = "fedcredit.secureboost/1"


def as_channel(holder) -> Channel:
    if isinstance(holder, Channel):
        return holder
    from ...protocol.core import HolderCore

    if isinstance(holder, HolderCore):
        return InProcessChannel(holder)
    raise InvalidInput("holder= must be a channel (fedcredit.connect(...), InProcessChannel) "
                       "or a PassiveParty")


def check_xy(X, y=None, id_column: str | None = None):
    if not isinstance(X, pd.DataFrame):
        raise InvalidInput("X must be a pandas DataFrame indexed by enterprise id")
    if id_column is not None:
        if id_column not in X.columns:
            raise InvalidInput(f"id column {id_column!r} is not in X")
        X = X.set_index(id_column)
    X = X.copy()
    X.index = X.index.astype(str)
    if X.index.has_duplicates:
        dup = X.index[X.index.duplicated()][0]
        raise InvalidInput(f"X has duplicate ids, e.g. row {X.index.get_loc(dup)}")
    if y is None:
        return X, None
    yv = y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else np.asarray(y)
    yv = np.asarray(yv, dtype=np.float64).ravel()
    if len(yv) != len(X):
        raise InvalidInput(f"y has {len(yv)} labels for {len(X)} rows of X")
    bad = ~np.isfinite(yv)
    if bad.any():
        raise InvalidInput(f"y has {int(bad.sum())} NaN or infinite labels, first at row "
                           f"{int(np.flatnonzero(bad)[0])}")
    if not np.isin(yv, (0.0, 1.0)).all():
        raise InvalidInput("y must hold 0/1 labels (1 = default)")
    return X, yv.astype(np.int64)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class SecureBoostClassifier:
    """Binary classifier trained jointly with a credit-data holder (SecureBoost).

    Parameters
    ----------
    n_estimators, max_depth, learning_rate : as in LightGBM.
    max_bin : int
        Bins per feature, each party binning its own features (missing values get one more).
    min_child_samples : int
        Minimum rows on each side of a split (the holder applies it to its candidates).
    reg_lambda : float
        L2 regularisation of leaf values.
    gamma : float
        Minimum gain to split.
    min_child_weight : float
        Minimum hessian sum on each side of a split.
    subsample : float
        Fraction of training rows per tree (only those rows are encrypted).
    random_state : int
        Seeds subsampling and binning samples (never cryptography).
    n_jobs : int or None
        Worker processes for encryption and decryption; None or -1: all cores.
    key_bits : int
        Paillier key size, 2048 by default; smaller only with ``insecure_key=True``.
    he_scheme : str
        Homomorphic scheme ("paillier").
    frac_bits : int
        Fixed-point fraction bits of gradients and hessians.
    verbose : bool
        Progress bar over trees and levels (tqdm; renders in notebooks).
    """

    def __init__(self, n_estimators: int = 100, max_depth: int = 3, learning_rate: float = 0.1,
                 max_bin: int = 32, min_child_samples: int = 20, reg_lambda: float = 1.0,
                 gamma: float = 0.0, min_child_weight: float = 1e-3, subsample: float = 1.0,
                 random_state: int | None = 0, n_jobs: int | None = None, key_bits: int = 2048,
                 insecure_key: bool = False, he_scheme: str = "paillier", frac_bits: int = 24,
                 verbose: bool = True):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.max_bin = max_bin
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.gamma = gamma
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.key_bits = key_bits
        self.insecure_key = insecure_key
        self.he_scheme = he_scheme
        self.frac_bits = frac_bits
        self.verbose = verbose

    # -- scikit-learn plumbing ------------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in (
            "n_estimators", "max_depth", "learning_rate", "max_bin", "min_child_samples",
            "reg_lambda", "gamma", "min_child_weight", "subsample", "random_state", "n_jobs",
            "key_bits", "insecure_key", "he_scheme", "frac_bits", "verbose")}

    def set_params(self, **params):
        for k, v in params.items():
            if k not in self.get_params():
                raise InvalidInput(f"unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    def _check_params(self) -> None:
        if int(self.n_estimators) < 1:
            raise InvalidInput("n_estimators must be >= 1")
        if not 1 <= int(self.max_depth) <= 16:
            raise InvalidInput("max_depth must be in [1, 16]")
        if not 0 < float(self.learning_rate) <= 1:
            raise InvalidInput("learning_rate must be in (0, 1]")
        if not 0 < float(self.subsample) <= 1:
            raise InvalidInput("subsample must be in (0, 1]")
        if int(self.min_child_samples) < 1:
            raise InvalidInput("min_child_samples must be >= 1")
        if float(self.reg_lambda) < 0 or float(self.gamma) < 0:
            raise InvalidInput("reg_lambda and gamma must be >= 0")

    # -- training ---------------------------------------------------------------------------------
    def fit(self, X, y, holder, *, id_column: str | None = None, eval_set=None,
            early_stopping_rounds: int | None = None):
        """Align with the holder (PSI), then train on the enterprises both parties have."""
        self._check_params()
        X, y = check_xy(X, y, id_column)
        channel = as_channel(holder)
        fp = FixedPoint(self.frac_bits)
        params = SplitParams(self.reg_lambda, self.gamma, self.min_child_samples,
                             self.min_child_weight, fp.scale)
        t0 = time.perf_counter()
        _, sk = generate_keypair(self.he_scheme, bits=self.key_bits, insecure=self.insecure_key)
        sk.warm_up(self.n_jobs)  # worker tables build while ids are aligned
        session = BankSession(channel, "train", sk, workers=self.n_jobs)
        try:
            al = align(session, X.index.tolist())
            if len(al) < 2 * self.min_child_samples:
                raise InvalidInput(f"only {len(al)} enterprises are shared with the holder; "
                                   "too few to train")
            Xa, ya = X.iloc[al.bank_positions], y[al.bank_positions]
            if ya.min() == ya.max():
                raise InvalidInput("the aligned rows hold only one class")
            self.alignment_seconds_ = time.perf_counter() - t0
            t1 = time.perf_counter()
            self._fit_aligned(session, Xa, ya, params, fp, X, y, eval_set, early_stopping_rounds,
                              id_column)
            self.fit_seconds_ = time.perf_counter() - t1
        finally:
            session.close()
        return self

    def _fit_aligned(self, session, Xa, ya, params, fp, X, y, eval_set, early_stopping_rounds,
                     id_column):
        n = len(Xa)
        self.mapper_ = BinMapper(self.max_bin, self.random_state).fit(Xa)
        bins = self.mapper_.transform(Xa)
        self.feature_names_bank_ = list(self.mapper_.feature_names)
        self.holder_feature_names_ = list(session.feature_names)
        self.holder_name_ = session.holder_name
        all_rows = np.arange(n)
        steps.boost_start(session, all_rows, self.max_bin, self.min_child_samples)
        grower = TreeGrower(bins, self.mapper_.n_bins, params, self.max_depth,
                            FederatedHolder(session))
        rate = float(ya.mean())
        self.base_score_ = float(np.log(rate / (1 - rate)))
        raw = np.full(n, self.base_score_)
        rng = np.random.default_rng(self.random_state)
        self.trees_: list[Tree] = []
        self.tree_ids_: list[int] = []
        self.n_aligned_ = n
        val = self._eval_setup(eval_set, id_column)
        best, best_iter, history = np.inf, -1, []
        bar = _progress(self.verbose, self.n_estimators)
        try:
            for t in range(int(self.n_estimators)):
                p = _sigmoid(raw)
                g, h = p - ya, np.maximum(p * (1 - p), 1e-16)
                g_int, h_int = fp.encode(g, "gradients"), fp.encode(h, "hessians")
                rows = all_rows
                if self.subsample < 1:
                    k = max(2 * self.min_child_samples, int(round(self.subsample * n)))
                    rows = np.sort(rng.choice(n, size=min(n, k), replace=False))
                tree, leaf_rows = grower.grow(
                    t, rows, g, h, g_int, h_int, float(self.learning_rate),
                    progress=(lambda d, t=t: bar.set_postfix(tree=t, level=d)) if bar else None)
                self.trees_.append(tree)
                self.tree_ids_.append(t)
                if len(rows) == n:
                    for leaf, r in leaf_rows.items():
                        raw[r] += next(nd.value for nd in tree.nodes if nd.node_id == leaf)
                else:
                    raw += self._tree_scores(session, tree, t, bins, Xa.index.tolist())
                if val is not None:
                    loss = self._eval_step(session, val, tree, t)
                    history.append(loss)
                    if loss < best - 1e-12:
                        best, best_iter = loss, t
                    elif early_stopping_rounds and t - best_iter >= early_stopping_rounds:
                        break
                if bar:
                    bar.update(1)
        finally:
            if bar:
                bar.close()
        if val is not None and early_stopping_rounds:
            keep = best_iter + 1
            self.trees_, self.tree_ids_ = self.trees_[:keep], self.tree_ids_[:keep]
            self.best_iteration_ = best_iter
        self.eval_history_ = history
        self.model_id_ = steps.finish_model(session)
        self.time_budget_ = {**session.watch.as_dict(),
                             "bank_split_finding": round(grower.split_seconds, 4)}

    def _eval_setup(self, eval_set, id_column):
        if eval_set is None:
            return None
        Xv, yv = eval_set
        Xv, yv = check_xy(Xv, yv, id_column)
        return {"ids": Xv.index.tolist(), "bins": self.mapper_.transform(Xv), "y": yv,
                "raw": np.full(len(yv), self.base_score_)}

    def _eval_step(self, session, val, tree, t) -> float:
        val["raw"] += self._tree_scores(session, tree, t, val["bins"], val["ids"])
        p = np.clip(_sigmoid(val["raw"]), 1e-15, 1 - 1e-15)
        y = val["y"]
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    def _tree_scores(self, session, tree: Tree, tree_id: int, bins, ids) -> np.ndarray:
        holder = steps.leaf_masks(session, ids, [tree_id])[tree_id]
        return _combine(tree, bins, self.mapper_.n_bins, holder)

    # -- prediction -------------------------------------------------------------------------------
    def decision_function(self, X, holder, *, id_column: str | None = None) -> np.ndarray:
        self._check_fitted()
        X, _ = check_xy(X, None, id_column)
        bins = self.mapper_.transform(X)
        session = BankSession(as_channel(holder), "score", model_id=self.model_id_)
        try:
            masks = steps.leaf_masks(session, X.index.tolist(), self.tree_ids_)
        finally:
            session.close()
        raw = np.full(len(X), self.base_score_)
        for tree, tid in zip(self.trees_, self.tree_ids_):
            raw += _combine(tree, bins, self.mapper_.n_bins, masks[tid])
        return raw

    def predict_proba(self, X, holder, *, id_column: str | None = None) -> np.ndarray:
        """Probabilities of [no default, default] per row; the holder answers leaf sets."""
        p = _sigmoid(self.decision_function(X, holder, id_column=id_column))
        return np.column_stack([1 - p, p])

    def predict(self, X, holder, *, threshold: float = 0.5, id_column: str | None = None):
        return (self.predict_proba(X, holder, id_column=id_column)[:, 1] >= threshold).astype(int)

    # -- introspection ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "trees_"):
            raise InvalidInput("this SecureBoostClassifier is not fitted yet")

    @property
    def feature_names_(self) -> list[str]:
        self._check_fitted()
        return self.feature_names_bank_ + [f"holder:{n}" for n in self.holder_feature_names_]

    def feature_importance(self, importance_type: str = "gain") -> pd.Series:
        """Split count ("split") or total gain ("gain") per feature, holder features named as
        the holder publishes them (prefixed ``holder:``)."""
        if importance_type not in ("gain", "split"):
            raise InvalidInput("importance_type must be 'gain' or 'split'")
        names = self.feature_names_
        nb = len(self.feature_names_bank_)
        out = np.zeros(len(names))
        for tree in self.trees_:
            for nd in tree.nodes:
                if nd.owner == "leaf":
                    continue
                j = nd.feature if nd.owner == "bank" else nb + nd.feature
                out[j] += nd.gain if importance_type == "gain" else 1
        return pd.Series(out, index=names, name=importance_type).sort_values(ascending=False)

    @property
    def feature_importances_(self) -> np.ndarray:
        imp = self.feature_importance("gain").reindex(self.feature_names_).to_numpy()
        total = imp.sum()
        return imp / total if total > 0 else imp

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the bank's half (its bins, splits, leaf values; the holder's model id)."""
        self._check_fitted()
        d = {"format": FORMAT, "params": self.get_params(), "base_score": self.base_score_,
             "mapper": self.mapper_.to_dict(), "trees": [t.to_dict() for t in self.trees_],
             "tree_ids": self.tree_ids_, "model_id": self.model_id_,
             "holder_name": self.holder_name_, "holder_features": self.holder_feature_names_}
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(d))
        tmp.replace(path)

    @classmethod
    def load(cls, path) -> "SecureBoostClassifier":
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InvalidInput(f"cannot read a saved model from {path}: {e}") from None
        if d.get("format") != FORMAT:
            raise InvalidInput(f"{path} is not a saved SecureBoostClassifier")
        model = cls(**d["params"])
        model.base_score_ = d["base_score"]
        model.mapper_ = BinMapper.from_dict(d["mapper"])
        model.feature_names_bank_ = model.mapper_.feature_names
        model.trees_ = [Tree.from_dict(t) for t in d["trees"]]
        model.tree_ids_ = list(d["tree_ids"])
        model.model_id_ = d["model_id"]
        model.holder_name_ = d["holder_name"]
        model.holder_feature_names_ = d["holder_features"]
        return model


def _combine(tree: Tree, bank_bins, n_bins, holder_masks: np.ndarray) -> np.ndarray:
    reach = tree.bank_reachable(bank_bins, n_bins) & holder_masks
    hits = reach.sum(axis=1)
    if not (hits == 1).all():
        raise ProtocolError("bank and holder splits do not single out one leaf per row")
    return tree.leaf_values()[np.argmax(reach, axis=1)]


def _progress(verbose: bool, total: int):
    if not verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="SecureBoost trees", unit="tree")
