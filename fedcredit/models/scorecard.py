"""``Scorecard``: WOE-encoded hetero logistic regression turned into points.

Points follow optbinning's "pdo_odds" scaling: ``factor = pdo / ln 2``, ``offset =
base_score - factor * ln(base_odds)``, and for feature j in bin k
``points = -(coef_j * WoE_jk + intercept / n_features) * factor + offset / n_features``, so a
score is ``offset - factor * log-odds(default)``: ``base_score`` at good:bad odds of
``base_odds``, ``pdo`` more points per doubling of the odds.

Holder features are encoded *by the holder*, on values the bank sends per holder bin. Sent
in the clear, the WOE of a bin and the holder's own bin counts give away the bank's labels:
``exp(-WoE_k) = e_k (n - E) / (E (c_k - e_k))`` has one unknown besides e_k, the total E, and
integrality pins it down (every bin's default count and E, recovered exactly:
``tests/attacks/test_attack_woe_table.py``). With ``blind_woe=True`` (default) the holder
receives instead ``v_jk = a_j WoE_jk + b_j``, rounded to its fixed-point grid, with a secret
per-feature scale ``a_j = +-alpha`` (random sign, one magnitude alpha log-uniform in [1/2, 2])
and offset ``b_j`` (the blinded column's mean lands at random in [-1/4, 1/4]); it fits
weights ``w_j`` on them and the bank maps back: coefficient ``w_j a_j``, intercept
``+ sum_j w_j b_j``. The regression runs on ``alpha x`` the bank's WOE too, with ``C /
alpha^2``, so that the L2 penalty on the weights is the penalty on the coefficients: the
blinded optimum is the plain one, exactly, and so are the points at convergence. A run
stopped early (a few Adam epochs) follows another path to it: on default_credit with
``max_iter=4`` the points table moved by up to 1.2 points and test AUC by +0.0001
(``benchmarks/results/privacy_cost.md``); the same data and settings give the same map. The
holder's partial score ``sum_j w_j v_jk`` is already the right share of the log-odds, so
scoring needs no change.
**Privacy, what remains** (an accepted residual, stated in ``docs/PRIVACY.md``): the holder
still sees an exact affine image of each feature's WOE, whose invariants (ratios of
differences) with its bin counts still admit an integer search for every bin's default
count and E; the attack test measures it succeeding on blinded values. Closing it needs the
holder's per-bin values kept from it altogether (encrypted lookups: MPC-grade training and
scoring). The holder also learns ``alpha^2 / C`` from the L2 weight it is sent.

Holder bins appear in the points table under the holder's published labels (``bin k``,
``missing``), never with edges.
Scoring over the channel: the holder returns its partial score per id (what the final score
reveals).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone

from ..errors import InvalidInput
from ..protocol.logistic import math as lc
from .base import FederatedClassifier, as_channel, check_xy, row_weights
from .blinding import blinding, blinding_secret
from .explain import POINTS, explanation_frame, holder_column
from .holders import (
    HolderPart,
    holder_kwargs,
    holder_partial_scores,
    holder_parts,
    in_holder_order,
    named_channels,
)
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
    blind_woe : bool
        Send the holder a secret per-feature affine image of its bins' WOE instead of the
        WOE itself (the same optimum, hence the same points at convergence; see the module
        docstring). It defeats the holder's direct solve, not a search on the affine
        invariants (leak 4 of docs/PRIVACY.md stays open). False sends the WOE as is, from
        which the holder solves for the bank's default counts.
    """

    _format = FORMAT
    _legacy_formats = (FORMAT_POINTS_ONLY,)
    _task = "lr"
    _multi_holder = True
    _cv_one_session = False  # a WOE session, then an LR session, per fit

    def __init__(self, woe: HeteroWOE | None = None, base_score: float = 600.0,
                 base_odds: float = 50.0, pdo: float = 20.0, features: list[str] | None = None,
                 lr: HeteroLogisticRegression | None = None, blind_woe: bool = True,
                 uncovered: str = "score"):
        self.woe = woe
        self.base_score = base_score
        self.base_odds = base_odds
        self.pdo = pdo
        self.features = features
        self.lr = lr
        self.blind_woe = blind_woe
        self.uncovered = uncovered

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

    def fit(self, X, y, holder=None, *, holders=None, id_column: str | None = None,
            sample_weight=None, align: str = "all"):
        """Fit the binning unless given fitted, then the WOE regression; build the points.

        Parameters
        ----------
        X, y, holder, holders, id_column
            As for :meth:`FederatedEstimator.fit`.
        sample_weight : array-like, optional
            Weights of the binning fitted here (weighted WOE) and of the regression (times
            ``lr``'s ``class_weight``).
        align : "all"
            The enterprises every holder serves, as the WOE binning ("any" is refused).

        Returns
        -------
        self
        """
        if align != "all":
            raise InvalidInput("a Scorecard trains on the enterprises every holder serves "
                               "(align='all'), as its WOE binning does")
        self.close_scoring()  # the sessions of the previous model
        self._validate_params()
        X, y = check_xy(X, y, id_column)
        named = named_channels(holder, holders)
        channels = [as_channel(ch) for _, ch in named]
        lr = HeteroLogisticRegression() if self.lr is None else self.lr
        lr._validate_params()
        where = holder_kwargs(channels) if holders is None or len(named) > 1 else \
            {"holder": channels[0]}
        if self.woe is None:
            woe = HeteroWOE(key_bits=lr.key_bits, insecure_key=lr.insecure_key,
                            he_scheme=lr.he_scheme, n_jobs=lr.n_jobs).fit(
                X, y, **where, sample_weight=sample_weight)
        elif self.woe.__sklearn_is_fitted__():
            woe = self.woe
        else:
            woe = clone(self.woe).fit(X, y, **where, sample_weight=sample_weight)
        feats = list(self.features or woe.selected_)
        unknown = [f for f in feats if f not in woe.tables_]
        if unknown or not feats:
            raise InvalidInput(f"no usable features (unknown: {unknown[:3]})")
        self.woe_ = woe
        self.feature_names_bank_ = [f for f in feats if woe.party_[f] == "bank"]
        parts = list(woe.holders_)
        if len(parts) != len(channels):
            raise InvalidInput(f"the WOE binning has {len(parts)} holders; this fit names "
                               f"{len(channels)}")
        if len(parts) == 1:
            self.holders_: list[HolderPart] = []
            self.holder_feature_names_ = [f[len("holder:"):] for f in feats
                                          if woe.party_[f] == "holder"]
        else:  # each holder's features of the card, holder by holder in the binning's order
            channels = in_holder_order(channels, [p.name for p in parts])
            self.holders_ = [HolderPart(p.name, "", [f[len(p.name) + 1:] for f in feats
                                                     if f.startswith(f"{p.name}:")])
                             for p in parts]
            empty = [p.name for p in self.holders_ if not p.features]
            if empty:
                raise InvalidInput(f"holder {empty[0]!r} has no feature in the card: fit the "
                                   "scorecard with the holders whose features it uses")
            self.holder_feature_names_ = [f"{p.name}:{f}" for p in self.holders_
                                          for f in p.features]
        self.model_ = HeteroLogisticRegression(**{**lr.get_params(), "standardize": False})
        if len(channels) == 1:
            return self._fit_federated(X, y, channels[0], keys=lr, sample_weight=sample_weight)
        return self._fit_federated(X, y, None, holders=channels, keys=lr,
                                   sample_weight=sample_weight)

    def _holder_keys(self) -> list[str]:
        """The card's holder features as the WOE binning names them."""
        if self.__dict__.get("holders_"):
            return list(self.holder_feature_names_)
        return [f"holder:{n}" for n in self.holder_feature_names_]

    @property
    def feature_names_(self) -> list[str]:
        """The bank's features, then the holders' (``holder:<feature>`` with one holder,
        ``<holder name>:<feature>`` with several)."""
        self._check_fitted()
        return list(self.feature_names_bank_) + self._holder_keys()

    def _fit_aligned(self, session, Xa, ya, *, weights=None, rows=None) -> None:
        woe, bank = self.woe_, self.feature_names_bank_
        holder = self._holder_keys()
        Xw = woe.transform_bank(Xa, bank) if bank else pd.DataFrame(index=Xa.index)
        alpha, self.blind_scale_, self.blind_offset_ = blinding(
            [woe.tables_[f] for f in holder], bool(self.blind_woe),
            blinding_secret(woe, holder + list(bank), self.model_.random_state))
        # the regression runs on alpha x (bank WOE) and on the holder's blinded values, so
        # every weight is its coefficient / alpha; C / alpha^2 makes the L2 penalty on those
        # weights the penalty on the coefficients: the same optimum, exactly
        model, C = self.model_, float(self.model_.C)
        model.set_params(C=C / alpha ** 2)
        tables = [a * woe.woe_values(f) + b
                  for a, b, f in zip(self.blind_scale_, self.blind_offset_, holder)]
        if self.blind_woe:  # rounded to the holder's grid: it quantises so anyway
            tables = [lc.quantize(t) for t in tables]
        kw = self._holder_woe(tables)
        try:
            model._fit_aligned(session, Xw * alpha, ya, encoding="woe",
                               weights=row_weights(ya, weights, model.class_weight), rows=rows,
                               **kw)
        finally:
            model.set_params(C=C)
        # the bank's half back on the plain WOE (the holder's weights stay on its values)
        model.coef_bank_ = model.coef_bank_ * alpha
        model.coef_ = np.r_[model.coef_bank_, model.coef_holder_][None, :]
        self.model_id_ = self.model_.model_id_
        if self.holders_:
            self.holders_ = list(model.holders_)
        self._build_table()

    def _holder_woe(self, tables: list[np.ndarray]) -> dict:
        """What each holder's ``LrStart`` carries: its binning, the card's features of it
        (positions in the binning) and their blinded values, in order."""
        woe = self.woe_
        if not self.holders_:
            h_index = [woe.holder_feature_names_.index(n) for n in self.holder_feature_names_]
            return {"binning_id": woe.model_id_, "features": h_index,
                    "woe": np.concatenate(tables) if tables else np.zeros(0)}
        out, at = [], 0
        for card, part in zip(self.holders_, woe.holders_):
            k = len(card.features)
            out.append({"binning_id": part.model_id,
                        "features": [part.features.index(f) for f in card.features],
                        "woe": np.concatenate(tables[at:at + k])})
            at += k
        return {"per_holder": out}

    @property
    def coef_holder_(self) -> np.ndarray:
        """The holder features' coefficients on their WOE (the holder's weights on the
        blinded values, mapped back)."""
        return np.asarray(self.model_.coef_holder_) * self.blind_scale_

    @property
    def intercept_(self) -> float:
        """The intercept of the WOE regression (the bank's, plus what the holder's weights
        put on the blinding offsets)."""
        return float(self.model_.intercept_[0]
                     + np.dot(self.model_.coef_holder_, self.blind_offset_))

    def _build_table(self) -> None:
        names = self.feature_names_
        coef = dict(zip(names, np.r_[self.model_.coef_bank_, self.coef_holder_]))
        n = len(coef)
        b0 = self.intercept_
        rows = []
        for f in names:
            t = self.woe_.tables_[f]
            pts = -(coef[f] * t["WoE"].to_numpy() + b0 / n) * self.factor + self.offset / n
            for label, w, p in zip(t["Bin"], t["WoE"], pts):
                rows.append({"Variable": f, "party": self.woe_.party_[f], "Bin": label,
                             "WoE": float(w), "Coefficient": float(coef[f]), "Points": float(p)})
        self.points_table_ = pd.DataFrame(rows)

    # -- scoring ----------------------------------------------------------------------------
    def _scores(self, X, holder, id_column):
        """Log-odds of default (the bank's WOE part plus each holder's partial score per id,
        over scoring sessions reused per channel, see :meth:`close_scoring`) and the
        holders' coverage."""
        _, Xw, us, covered = self._parts(X, holder, id_column, "scoring")
        return self.model_.bank_score(Xw) + np.sum(us, axis=0), covered

    def _parts(self, X, holder, id_column, what: str):
        """(``X`` checked, the bank's WOE table, each holder's partial scores, whether every
        holder covered each id)."""
        self._check_fitted()
        X, _ = check_xy(X, None, id_column)
        bank = self.feature_names_bank_
        if bank and self.woe_ is None:
            raise InvalidInput(f"this Scorecard was loaded from a {FORMAT_POINTS_ONLY} file, "
                               "which lacks the bank's binning: its points_table_ is "
                               f"complete, but {what} bank features needs a re-fit")
        Xw = self.woe_.transform_bank(X, bank) if bank else pd.DataFrame(index=X.index)
        ids = X.index.tolist()
        us, covered = holder_partial_scores(self, ids, holder)
        return X, Xw, us, covered

    def explain(self, X, holder=None, *, holders=None,
                id_column: str | None = None) -> pd.DataFrame:
        """Reason codes in points: each feature's points per enterprise (more points, less
        risk), which with ``base_value`` sum to :meth:`score`.

        A bank feature gets ``-coef x WoE(bin) x factor``; the holder's part comes as one
        partial score per enterprise, never per holder feature (which bin of each holder
        feature an enterprise falls in stays with the holder), so it is one column per
        holder, ``holder:<holder name> (all features)`` (``holder:<feature>`` for a holder
        with one feature in the card). The base, ``offset - factor x intercept``, takes the
        intercept's and the offset's points that :attr:`points_table_` spreads over the
        features.

        Parameters
        ----------
        X, holder, holders, id_column
            As for :meth:`score`.

        Returns
        -------
        pandas.DataFrame
            Indexed by id: the card's features, then ``base_value``; ``attrs["units"]`` is
            ``"points"`` (reasons for default are the most negative; see
            :func:`fedcredit.models.explain.top_reasons`).
        """
        X, Xw, us, covered = self._parts(X, self._holders_arg(holder, holders), id_column,
                                         "explaining")
        bank, model = self.feature_names_bank_, self.model_
        terms = model._prepare_bank(Xw, fit=False) * model.coef_bank_[None, :]
        # each holder's weights on the blinding offsets belong to the intercept (intercept_)
        parts, columns, at = holder_parts(self), [], 0
        names = list(bank)
        for u, part in zip(us, parts):
            k = len(part.features)
            columns.append(u - float(np.dot(model.coef_holder_[at:at + k],
                                            self.blind_offset_[at:at + k])))
            names.append(holder_column(part.name, part.features))
            at += k
        out = explanation_frame(-self.factor * np.column_stack([terms, *columns]),
                                self.offset - self.factor * self.intercept_, names, X.index,
                                POINTS)
        out.attrs["holder_covered"] = covered  # per row: the holder had data and consent
        return out

    def close_scoring(self) -> None:
        """Close the scoring sessions this scorecard (and its regression ``model_``) keep
        open with holders; the next scoring call opens a new one."""
        super().close_scoring()
        model = self.__dict__.get("model_")
        if model is not None:
            model.close_scoring()

    def score(self, X, holder=None, *, holders=None,
              id_column: str | None = None) -> np.ndarray:
        """Scorecard points per enterprise (more points, less risk): the bank's points plus
        each holder's, over the channels (a holder returns its partial score per id).

        Parameters
        ----------
        X, holder, holders, id_column
            As for :meth:`predict_proba`.

        Returns
        -------
        numpy.ndarray
        """
        return self.offset - self.factor * self.decision_function(
            X, holder, holders=holders, id_column=id_column)

    # -- persistence: the points, the binning and the regression (the bank's halves) --------
    def _state(self) -> dict:
        woe = self.woe_
        return {"points": self.points_table_.to_dict(orient="list"),
                "bank_features": self.feature_names_bank_,
                "holder_features": self.holder_feature_names_,
                "woe": woe._to_dict() if woe is not None else None,
                "lr": self.model_._to_dict(),
                "blind": {"scale": self.blind_scale_.tolist(),
                          "offset": self.blind_offset_.tolist()}}

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
        self.holders_ = list(self.model_.__dict__.get("holders_") or [])
        k = len(self.holder_feature_names_)  # files from before blinding: the identity
        blind = d.get("blind") or {"scale": [1.0] * k, "offset": [0.0] * k}
        self.blind_scale_ = np.asarray(blind["scale"], dtype=np.float64)
        self.blind_offset_ = np.asarray(blind["offset"], dtype=np.float64)

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
