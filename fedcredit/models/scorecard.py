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
from sklearn.base import clone

from ..errors import InvalidInput
from ..protocol.logistic import bank as lr_steps
from .base import FederatedClassifier, as_channel, check_xy
from .logistic import HeteroLogisticRegression
from .woe import HeteroWOE

FORMAT = "fedcredit.scorecard/2"
#: points, the regression's state and the scoring parameters only: no bank binning
FORMAT_POINTS_ONLY = "fedcredit.scorecard/1"


class Scorecard(FederatedClassifier):
    """Points per bin from a federated WOE + logistic regression fit.

    Parameters
    ----------
    woe : HeteroWOE, optional
        Binning to use: a fitted one is used as it is (fitted on the same holder); an
        unfitted one is cloned and fitted in ``fit``; None: a default ``HeteroWOE``.
    base_score, base_odds, pdo : float
        Score at good:bad odds ``base_odds``; points to double the odds.
    features : list of str, optional
        Features to use (names as in ``woe.iv_``); default: ``woe.selected_``.
    lr : HeteroLogisticRegression, optional
        Its parameters are used for the regression (``standardize`` is forced off).
    """

    _format = FORMAT
    _legacy_formats = (FORMAT_POINTS_ONLY,)
    _task = "lr"

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

    def _validate_params(self) -> None:
        if not float(self.pdo) > 0 or not float(self.base_odds) > 0:
            raise InvalidInput("pdo and base_odds must be > 0")
        if self.woe is not None and not isinstance(self.woe, HeteroWOE):
            raise InvalidInput("woe must be a HeteroWOE or None")
        if self.lr is not None and not isinstance(self.lr, HeteroLogisticRegression):
            raise InvalidInput("lr must be a HeteroLogisticRegression or None")

    def fit(self, X, y, holder, *, id_column: str | None = None):
        """Fit the binning unless given fitted, then the WOE regression; build the points.

        Parameters
        ----------
        X, y, holder, id_column
            As for :meth:`FederatedEstimator.fit`.

        Returns
        -------
        self
        """
        self.close_scoring()  # the sessions of the previous model
        self._validate_params()
        X, y = check_xy(X, y, id_column)
        channel = as_channel(holder)
        lr = HeteroLogisticRegression() if self.lr is None else self.lr
        lr._validate_params()
        if self.woe is None:
            woe = HeteroWOE(key_bits=lr.key_bits, insecure_key=lr.insecure_key,
                            he_scheme=lr.he_scheme, n_jobs=lr.n_jobs).fit(X, y, channel)
        elif self.woe.__sklearn_is_fitted__():
            woe = self.woe
        else:
            woe = clone(self.woe).fit(X, y, channel)
        feats = list(self.features or woe.selected_)
        unknown = [f for f in feats if f not in woe.tables_]
        if unknown or not feats:
            raise InvalidInput(f"no usable features (unknown: {unknown[:3]})")
        self.woe_ = woe
        self.feature_names_bank_ = [f for f in feats if woe.party_[f] == "bank"]
        self.holder_feature_names_ = [f[len("holder:"):] for f in feats
                                      if woe.party_[f] == "holder"]
        self.model_ = HeteroLogisticRegression(**{**lr.get_params(), "standardize": False})
        return self._fit_federated(X, y, channel, keys=lr)

    def _fit_aligned(self, session, Xa, ya) -> None:
        woe, bank = self.woe_, self.feature_names_bank_
        holder = [f"holder:{n}" for n in self.holder_feature_names_]
        Xw = woe.transform_bank(Xa, bank) if bank else pd.DataFrame(index=Xa.index)
        woe_vals = (np.concatenate([woe.woe_values(f) for f in holder]) if holder
                    else np.zeros(0))
        h_index = [woe.holder_feature_names_.index(n) for n in self.holder_feature_names_]
        self.model_._fit_aligned(session, Xw, ya, encoding="woe", binning_id=woe.model_id_,
                                 features=h_index, woe=woe_vals)
        self.model_id_ = self.model_.model_id_
        self._build_table()

    def _build_table(self) -> None:
        names = self.feature_names_
        coef = dict(zip(names, np.r_[self.model_.coef_bank_, self.model_.coef_holder_]))
        n = len(coef)
        b0 = float(self.model_.intercept_[0])
        rows = []
        for f in names:
            t = self.woe_.tables_[f]
            pts = -(coef[f] * t["WoE"].to_numpy() + b0 / n) * self.factor + self.offset / n
            for label, w, p in zip(t["Bin"], t["WoE"], pts):
                rows.append({"Variable": f, "party": self.woe_.party_[f], "Bin": label,
                             "WoE": float(w), "Coefficient": float(coef[f]), "Points": float(p)})
        self.points_table_ = pd.DataFrame(rows)

    # -- scoring ----------------------------------------------------------------------------
    def decision_function(self, X, holder, *, id_column: str | None = None) -> np.ndarray:
        """Log-odds of default: the bank's WOE part plus the holder's partial score per id
        (over a scoring session reused per channel, see :meth:`close_scoring`)."""
        self._check_fitted()
        X, _ = check_xy(X, None, id_column)
        bank = self.feature_names_bank_
        if bank and self.woe_ is None:
            raise InvalidInput(f"this Scorecard was loaded from a {FORMAT_POINTS_ONLY} file, "
                               "which lacks the bank's binning: its points_table_ is "
                               "complete, but scoring bank features needs a re-fit")
        Xw = self.woe_.transform_bank(X, bank) if bank else pd.DataFrame(index=X.index)
        ids = X.index.tolist()
        u = self._score_with(holder, lambda s: lr_steps.partial_scores(s, ids))
        return self.model_.bank_score(Xw) + u

    def close_scoring(self) -> None:
        """Close the scoring sessions this scorecard (and its regression ``model_``) keep
        open with holders; the next scoring call opens a new one."""
        super().close_scoring()
        model = self.__dict__.get("model_")
        if model is not None:
            model.close_scoring()

    def score(self, X, holder, *, id_column: str | None = None) -> np.ndarray:
        """Scorecard points per enterprise (more points, less risk): the bank's points plus
        the holder's, over the channel (the holder returns its partial score per id).

        Parameters
        ----------
        X, holder, id_column
            As for :meth:`predict_proba`.

        Returns
        -------
        numpy.ndarray
        """
        return self.offset - self.factor * self.decision_function(X, holder,
                                                                  id_column=id_column)

    # -- persistence: the points, the binning and the regression (the bank's halves) --------
    def _state(self) -> dict:
        woe = self.woe_
        return {"points": self.points_table_.to_dict(orient="list"),
                "bank_features": self.feature_names_bank_,
                "holder_features": self.holder_feature_names_,
                "woe": woe._to_dict() if woe is not None else None,
                "lr": self.model_._to_dict()}

    @classmethod
    def _from_dict(cls, d: dict, fmt: str):
        if fmt == FORMAT_POINTS_ONLY:  # no params: rebuild them from what the file holds
            lr = {k: v for k, v in d["lr"]["params"].items() if k != "standardize"}
            feats = list(dict.fromkeys(d["points"]["Variable"]))
            d = {**d, "params": {**{k: d[k] for k in ("base_score", "base_odds", "pdo")},
                                 "features": feats, "lr": {"estimator": "HeteroLogisticRegression",
                                                           "params": lr}}}
        return super()._from_dict(d, fmt)

    def _restore(self, d: dict, fmt: str) -> None:
        self.points_table_ = pd.DataFrame(d["points"])
        self.model_ = HeteroLogisticRegression._from_dict(d["lr"], HeteroLogisticRegression._format)
        if fmt == FORMAT_POINTS_ONLY:
            self.woe_ = None
            order = self.points_table_.drop_duplicates("Variable")
            self.feature_names_bank_ = order["Variable"][order["party"] == "bank"].tolist()
            self.holder_feature_names_ = [f[len("holder:"):] for f in
                                          order["Variable"][order["party"] == "holder"]]
        else:
            self.woe_ = HeteroWOE._from_dict(d["woe"], HeteroWOE._format) if d["woe"] else None
            self.feature_names_bank_ = list(d["bank_features"])
            self.holder_feature_names_ = list(d["holder_features"])
        self.holder_name_ = self.model_.holder_name_
        self.model_id_ = self.model_.model_id_

    @classmethod
    def load_points(cls, path) -> pd.DataFrame:
        """The points table of a saved scorecard (any format), without the models.

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        pandas.DataFrame
        """
        return cls.load(path).points_table_
