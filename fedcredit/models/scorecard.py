"""``Scorecard``: WOE-encoded hetero logistic regression turned into points.

Points follow optbinning's "pdo_odds" scaling: ``factor = pdo / ln 2``, ``offset =
base_score - factor * ln(base_odds)``, and for feature j in bin k
``points = -(coef_j * WoE_jk + intercept / n_features) * factor + offset / n_features``, so a
score is ``offset - factor * log-odds(default)``: ``base_score`` at good:bad odds of
``base_odds``, ``pdo`` more points per doubling of the odds.

Holder features are WOE-encoded *by the holder*: the bank sends it the WOE of its own bins
(so the holder learns its bins' WOE — label aggregates over at least ``min_node_samples``
enterprises — and needs them to score). Holder bins appear in the points table under the
holder's published labels (``bin k``, ``missing``), never with edges. Scoring over the
channel: the holder returns its partial score per id (what the final score reveals).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..crypto import generate_keypair
from ..errors import InvalidInput
from ..protocol.alignment.bank import align
from ..protocol.session import BankSession
from .logistic import HeteroLogisticRegression, _atomic_json, _read_json
from .secureboost.estimator import as_channel, check_xy
from .woe import HeteroWOE

FORMAT = "fedcredit.scorecard/1"


class Scorecard:
    """Points per bin from a federated WOE + logistic regression fit.

    Parameters
    ----------
    woe : HeteroWOE, optional
        Binning to use (fitted on the same holder, or fitted here when not fitted).
    base_score, base_odds, pdo : float
        Score at good:bad odds ``base_odds``; points to double the odds.
    features : list of str, optional
        Features to use (names as in ``woe.iv_``); default: ``woe.selected_``.
    lr : HeteroLogisticRegression, optional
        Its parameters are used for the regression (``standardize`` is forced off).
    """

    def __init__(self, woe: HeteroWOE | None = None, base_score: float = 600.0,
                 base_odds: float = 50.0, pdo: float = 20.0, features: list[str] | None = None,
                 lr: HeteroLogisticRegression | None = None):
        self.woe = woe
        self.base_score = base_score
        self.base_odds = base_odds
        self.pdo = pdo
        self.features = features
        self.lr = lr

    @property
    def factor(self) -> float:
        return float(self.pdo) / np.log(2.0)

    @property
    def offset(self) -> float:
        return float(self.base_score) - self.factor * np.log(float(self.base_odds))

    def fit(self, X, y, holder, *, id_column: str | None = None):
        X, y = check_xy(X, y, id_column)
        channel = as_channel(holder)
        lr = self.lr or HeteroLogisticRegression()
        woe = self.woe or HeteroWOE(key_bits=lr.key_bits, insecure_key=lr.insecure_key,
                                    n_jobs=lr.n_jobs)
        if not hasattr(woe, "tables_"):
            woe.fit(X, y, channel)
        feats = list(self.features or woe.selected_)
        unknown = [f for f in feats if f not in woe.tables_]
        if unknown or not feats:
            raise InvalidInput(f"no usable features (unknown: {unknown[:3]})")
        bank_feats = [f for f in feats if woe.party_[f] == "bank"]
        holder_feats = [f for f in feats if woe.party_[f] == "holder"]
        h_index = [woe.holder_features_.index(f[len("holder:"):]) for f in holder_feats]
        self.model_ = HeteroLogisticRegression(**{**lr.get_params(), "standardize": False})
        _, sk = generate_keypair(lr.he_scheme, bits=lr.key_bits, insecure=lr.insecure_key)
        session = BankSession(channel, "lr", sk, workers=lr.n_jobs)
        try:
            al = align(session, X.index.tolist())
            Xa, ya = X.iloc[al.bank_positions], y[al.bank_positions]
            Xw = woe.transform_bank(Xa, bank_feats) if bank_feats else pd.DataFrame(index=Xa.index)
            woe_vals = np.concatenate([woe.woe_values(f) for f in holder_feats]) if holder_feats \
                else np.zeros(0)
            self.model_._fit_session(session, Xw, ya, np.arange(len(ya)), "woe",
                                     binning_id=woe.binning_id_, features=h_index, woe=woe_vals)
        finally:
            session.close()
        self.woe_ = woe
        self.bank_features_, self.holder_features_ = bank_feats, holder_feats
        self._build_table()
        return self

    def _build_table(self) -> None:
        coef = dict(zip(self.bank_features_, self.model_.coef_bank_))
        coef.update(zip(self.holder_features_, self.model_.coef_holder_))
        n = len(coef)
        b0 = float(self.model_.intercept_[0])
        rows = []
        for f in self.bank_features_ + self.holder_features_:
            t = self.woe_.tables_[f]
            pts = -(coef[f] * t["WoE"].to_numpy() + b0 / n) * self.factor + self.offset / n
            for label, w, p in zip(t["Bin"], t["WoE"], pts):
                rows.append({"Variable": f, "party": self.woe_.party_[f], "Bin": label,
                             "WoE": float(w), "Coefficient": float(coef[f]), "Points": float(p)})
        self.points_table_ = pd.DataFrame(rows)

    def score(self, X, holder, *, id_column: str | None = None) -> np.ndarray:
        """Scorecard points per enterprise: the bank's points plus the holder's, over the
        channel (the holder returns its partial score of the final model per id)."""
        if not hasattr(self, "model_"):
            raise InvalidInput("this Scorecard is not fitted yet")
        X, _ = check_xy(X, None, id_column)
        z = self.decision_function(X, holder)
        return self.offset - self.factor * z

    def decision_function(self, X, holder) -> np.ndarray:
        Xw = (self.woe_.transform_bank(X, self.bank_features_) if self.bank_features_
              else pd.DataFrame(index=X.index))
        return self.model_.decision_function(Xw, holder)

    def predict_proba(self, X, holder) -> np.ndarray:
        X, _ = check_xy(X, None)
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X, holder)))
        return np.column_stack([1 - p, p])

    def save(self, path) -> None:
        d = {"format": FORMAT, "base_score": self.base_score, "base_odds": self.base_odds,
             "pdo": self.pdo, "points": self.points_table_.to_dict(orient="list"),
             "lr": self.model_._state()}
        _atomic_json(path, d)

    @classmethod
    def load_points(cls, path) -> pd.DataFrame:
        return pd.DataFrame(_read_json(path, FORMAT)["points"])
