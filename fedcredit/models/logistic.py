"""``HeteroLogisticRegression``: logistic regression trained by the bank and the holder alone.

>>> lr = HeteroLogisticRegression(key_bits=2048)                      # doctest: +SKIP
>>> lr.fit(X_bank, y, holder=channel).predict_proba(X_new, holder=channel)[:, 1]
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..binning import FeaturePrep
from ..errors import InvalidInput
from ..protocol.logistic import bank as lr_steps
from ..protocol.logistic import math as lc
from ..protocol.lr_chain import bank as chain_steps
from .base import FederatedClassifier, check_class_weight, check_xy, progress_bar
from .explain import LOG_ODDS, explanation_frame, grouped, holder_column, prep_sources
from .holders import (
    HolderPart,
    HolderSessions,
    holder_feature_names,
    holder_partial_scores,
    holder_parts,
    plan_batches,
)

FORMAT = "fedcredit.hetero_lr/1"


class HeteroLogisticRegression(FederatedClassifier):
    """Logistic regression on the bank's and the holder's features, trained by the two
    parties alone.

    **Protocol** (semi-honest; the bank holds labels and a fresh Paillier key; the holder
    keeps its own weights ``w_h`` in the clear, the bank ``w_b`` and the intercept). Per
    mini-batch, with ``a_i = x_b,i . w_b + w0`` (bank) and ``u_i = x_h,i . w_h`` (holder):

    1. ``LrStep`` (bank -> holder): the batch's rows, and the holder's masked gradient of the
       previous batch. The holder removes its mask, takes its Adam step, computes ``u_i``.
    2. ``LrStats`` (holder -> bank): ``center`` and ``radius`` of an interval holding 99.5 %
       of the batch's ``u_i`` (both rounded to 1/8), and the change of the holder's weights
       over the last epoch. ``t_i = clip((u_i - center) / radius, -1, 1)``.
    3. ``LrTerms`` (bank -> holder, streamed): the bank expands, per row,
       ``sigmoid(a_i + center + radius t) - y_i = sum_k c_ik T_k(t)`` in Chebyshev
       polynomials (degree K chosen so that the dropped tail is below ``sigmoid_tol`` for
       every row) and sends Enc(c_ik * (1, x_b,i packed in slots)) for k = 0..K.
    4. ``LrPartials`` (holder -> bank): the holder raises each ciphertext to its fixed-point
       ``T_k(t_i) + 1`` and multiplies: ``D_i = Enc(d_i * (1, x_b,i))`` with ``d_i`` the
       residual. It returns ``prod_i D_i`` (the bank's gradient and the residual sum), and
       per holder feature j ``prod_i D_i^{x_h,ij}`` (a Pippenger multi-exponentiation) plus
       a uniformly random mask in every slot; all re-randomised. The bank decrypts, steps
       its own Adam, and hands slot 0 of each masked product back in the next ``LrStep``.
    5. ``LrFinish`` / ``LrModel``: the last masked gradient; the holder stores its
       epoch-averaged weights under a model id (and returns them for a scorecard only).
    6. ``PartialScoreRequest`` / ``PartialScores`` (scoring): per id, the holder returns
       ``u_i`` of the final model rounded to 2^-10; the bank adds its part and applies the
       sigmoid.

    Before step 1 the bank fits its own features alone (``warm_start="bank"``), so that no
    step's residuals are one constant minus the label.

    **Several holders** (``holders=[...]``): steps 1, 2, 5 and 6 run with each holder; the
    joint score is ``a_i + sum_h u_h,i``, the bank expands the sigmoid in the radius-weighted
    sum of the holders' ``t`` and steps 3-4 become a chain (:mod:`fedcredit.protocol.lr_chain`):
    the first holder receives the encrypted terms and re-expands them in the rest of the sum
    by its own ``t``, each next holder likewise, the last evaluates ``Enc(d_i (1, x_b,i))``,
    returns the bank's sums and its masked gradient and passes ``Enc(d_i)`` to the others,
    who return theirs. What one holder passes another is sealed (X25519, AES-GCM) and only
    carried by the bank: no party learns more than with one holder (docs/PRIVACY.md).

    **What each message reveals.**

    - LrStart: to the holder, the training rows and optimiser settings (for a scorecard, the
      WOE of its own bins).
    - LrReady: to the bank, the holder's derived feature names and the bit length of its
      largest fixed-point feature value.
    - LrStep: to the holder, the batch's rows; the masked gradient gives it its own gradient
      summed over the batch (>= max(min_node_samples, 2 x its features) rows), never a
      per-row value. From w_b = 0 that sum would be ``c X_j - S_j`` with ``c`` one constant:
      in fixed point the holder solves it for ``c`` (the default rate), ``S_j`` (each
      column's sum over the batch's defaulters) and, for a small batch, the defaulter set;
      the bank warm start removes that structure (a bank with no features of its own cannot
      and is warned). The holder refuses a gradient no residuals in [-1, 1] give.
    - LrStats: to the bank, the rounded interval of the holder's partial scores over the
      batch and the holder's weight change per epoch (aggregates).
    - LrTerms: to the holder, nothing (ciphertexts under the bank's key).
    - LrPartials: to the bank, its own gradient and the residual sum over the batch (what
      centralised training would give it); the holder's gradient only plus a 40-bit
      statistical mask; re-randomisation hides which rows and exponents were combined.
    - LrFinish/LrModel: to the bank, the model id; the holder's coefficients only for a
      scorecard (``encoding="woe"``), whose points per holder bin need them.
    - PartialScores: to the bank, the holder's part of the final score per scored id, which
      the final score reveals anyway (the bank knows its own part), rounded to 2^-10 so that
      it is not an exact float64 from which (with coefficients) rows can be decoded.

    The bank never receives a per-row holder value during training (no ``u_i``, no
    ``w_h . x_h,i``, no residual: residuals exist only encrypted); the holder never receives
    a label, a residual or a bank value.

    **Approximation and cost.** The sigmoid is exact in the bank's part and a degree-K
    Chebyshev expansion in the holder's normalised part: error <= ``sigmoid_tol`` for rows
    whose ``u_i`` lies in the interval; the 0.5 % outside are clamped to its edge. Fixed
    point: coefficients 2^-20, Chebyshev values 2^-12, features 2^-12. Per row and epoch:
    (K+1) x groups encryptions by the bank (groups = 1 when the bank's features fit one
    plaintext, e.g. <= 14 features with a 2048-bit key), K x groups 13-bit exponentiations
    and about 4 multiplications per holder feature by the holder; per batch, groups + holder
    features decryptions and re-randomisations.

    Parameters
    ----------
    C : float
        Inverse L2 strength, as in scikit-learn (penalty ``||w||^2 / (2C)`` on the summed
        log-loss; the intercept is not penalised).
    max_iter : int
        Maximum epochs.
    batch_size : int or "auto"
        Rows per mini-batch; "auto": n/16 clipped to [128, 2048] (at least 16 Adam steps
        per epoch; the holder refuses batches below its privacy floor).
    learning_rate, lr_decay : float
        Adam step size, divided by ``1 + lr_decay * epoch``.
    tol : float
        Stop when no weight moved more than ``tol`` over an epoch.
    sigmoid_tol, max_degree : float, int
        Accuracy of the sigmoid expansion and the largest degree allowed.
    standardize : bool
        Each party standardises its own features on the training rows (missing -> mean plus
        an indicator; categorical -> one-hot).
    warm_start : "bank" or None
        "bank" (default): start the bank's weights and intercept at its own penalised
        logistic regression on its features (local, plaintext, Newton), so the holder's
        gradients never have the constant-minus-label structure that reveals the default
        rate and label sums (docs/PRIVACY.md, leak 2). None: bank weights at zero and the
        intercept at the log-odds of the default rate (the old start; tests only).
    key_bits, insecure_key, he_scheme, n_jobs, random_state, verbose : as for SecureBoost.
    class_weight : dict, "balanced" or None
        Weight per label, times ``sample_weight`` in ``fit`` (as for SecureBoost): the
        weighted log-loss with the same ``C`` has scikit-learn's optimum.
    """

    _format = FORMAT
    _task = "lr"
    _multi_holder = True
    _align_any = True

    def __init__(self, C: float = 1.0, max_iter: int = 8, batch_size: int | str = "auto",
                 learning_rate: float = 0.1, lr_decay: float = 0.5, tol: float = 1e-4,
                 sigmoid_tol: float = 5e-3, max_degree: int = 8, standardize: bool = True,
                 warm_start: str | None = "bank", key_bits: int = 2048,
                 insecure_key: bool = False, he_scheme: str = "paillier",
                 n_jobs: int | None = None, random_state: int | None = 0, verbose: bool = True,
                 class_weight: dict | str | None = None, uncovered: str = "score"):
        self.C = C
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.lr_decay = lr_decay
        self.tol = tol
        self.sigmoid_tol = sigmoid_tol
        self.max_degree = max_degree
        self.standardize = standardize
        self.warm_start = warm_start
        self.key_bits = key_bits
        self.insecure_key = insecure_key
        self.he_scheme = he_scheme
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.class_weight = class_weight
        self.uncovered = uncovered

    def _validate_params(self) -> None:
        if not float(self.C) > 0:
            raise InvalidInput("C must be > 0")
        if int(self.max_iter) < 1 or (self.batch_size != "auto" and int(self.batch_size) < 2):
            raise InvalidInput("max_iter must be >= 1 and batch_size 'auto' or >= 2")
        if not 0 < float(self.learning_rate) <= 10:
            raise InvalidInput("learning_rate must be in (0, 10]")
        if not 0 < float(self.sigmoid_tol) < 0.5 or not 1 <= int(self.max_degree) <= 16:
            raise InvalidInput("sigmoid_tol must be in (0, 0.5) and max_degree in [1, 16]")
        if self.warm_start not in ("bank", None):
            raise InvalidInput("warm_start must be 'bank' or None")
        check_class_weight(self.class_weight)

    # -- training ---------------------------------------------------------------------------
    def _check_bank_table(self, X: pd.DataFrame) -> None:
        if not self.standardize and not all(pd.api.types.is_numeric_dtype(X[c]) for c in X):
            raise InvalidInput("standardize=False needs numeric bank features")

    prep_: FeaturePrep | None

    def _prepare_bank(self, X: pd.DataFrame, fit: bool) -> np.ndarray:
        if fit:
            if self.standardize:
                self.prep_ = FeaturePrep().fit(X)
                self.feature_names_bank_ = self.prep_.output_names()
            else:
                self.prep_ = None
                self.feature_names_bank_ = [str(c) for c in X.columns]
        if self.prep_ is not None:
            return self.prep_.transform(X)
        return lc.quantize(X.to_numpy(dtype=np.float64))

    def _fit_aligned(self, session, Xa: pd.DataFrame, ya: np.ndarray, *, weights=None,
                     rows=None, encoding: str = "standard", per_holder: list | None = None,
                     **holder_kw) -> None:
        """Train on ``rows`` (default all) of an open, aligned LR session, or of several
        holders' sessions (a scorecard passes ``encoding="woe"`` and the holder's WOE as
        ``holder_kw``, or each holder's as ``per_holder``, in the sessions' order).

        Weights scale each row's residual before encryption, divided by their largest so
        that every residual stays in [-1, 1] (the holder's gradient range check); the L2
        weight is divided alike, so the optimum is scikit-learn's for the same
        ``sample_weight`` and ``C`` (Adam's steps do not depend on the common scale)."""
        group = session if isinstance(session, HolderSessions) else \
            HolderSessions([session], [None])
        sessions = group.sessions
        XA = self._prepare_bank(Xa, fit=True)
        XAi = lc.to_fixed(XA)
        n = len(ya)
        rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        wn = None if weights is None else np.asarray(weights, np.float64) / np.max(weights)
        bs = (int(np.clip(n // 16, 128, 2048)) if self.batch_size == "auto"
              else int(self.batch_size))
        bs = min(bs, n)
        l2 = 1.0 / (float(self.C) * n * (1.0 if wn is None else float(np.max(weights))))
        readies = [lr_steps.lr_start(s, group.holder_rows(k, rows)[0], encoding=encoding,
                                     learning_rate=self.learning_rate, decay=self.lr_decay,
                                     l2=l2, **(holder_kw if per_holder is None else
                                               per_holder[k]))
                   for k, s in enumerate(sessions)]
        if len(sessions) > 1:
            chain_steps.chain_setup(sessions)
        # each holder refuses batches below its floor (min_node_samples, twice its features)
        floors = [max(int(s.min_node_samples), 2 * int(r.n_features) + 2)
                  for s, r in zip(sessions, readies)]
        bs = min(n, max(bs, *floors))
        plan, bs = plan_batches(group, rows, floors, bs, int(self.max_iter),
                                np.random.default_rng(self.random_state))
        self.holder_feature_names_ = [f for r in readies for f in r.feature_names]
        self.holder_name_ = group.holder_name  # also when a scorecard drives the session
        opt = lc.Adam(self._initial_weights(XA, ya, l2, wn), self.learning_rate, self.lr_decay)
        masked: list[list[str]] = [[] for _ in sessions]
        step, history = 0, []
        bar = progress_bar(self.verbose, int(self.max_iter) * (-(-n // bs)), "Hetero LR steps",
                           "step")
        self.n_iter_ = 0
        self.degrees_ = []
        try:
            for epoch, batches in enumerate(plan):
                for k, b_idx in enumerate(batches):
                    new_epoch = epoch > 0 and k == 0
                    bank_change = opt.new_epoch() if new_epoch else 0.0
                    stats = []
                    for h, s in enumerate(sessions):
                        own, gaps = group.holder_rows(h, rows[b_idx])
                        stats.append(lr_steps.lr_step(s, step, own, masked[h], new_epoch, gaps))
                    if new_epoch:
                        history.append(max(bank_change, *(st.weight_change for st in stats)))
                        if history[-1] < float(self.tol):
                            masked = [[] for _ in sessions]  # applied with this step
                            break
                    a = XA[b_idx] @ opt.w[1:] + opt.w[0]
                    kw = {} if wn is None else {"weights": wn[b_idx]}
                    args = (step, a, ya[b_idx].astype(np.float64), XAi[b_idx])
                    res: lr_steps.StepResult | chain_steps.ChainResult
                    if len(sessions) == 1:
                        res = lr_steps.lr_terms(sessions[0], *args, stats[0],
                                                readies[0].x_bits, float(self.sigmoid_tol),
                                                int(self.max_degree), **kw)
                        masked = [res.masked]
                    else:
                        res = chain_steps.chain_terms(
                            sessions, *args, stats, [r.x_bits for r in readies],
                            float(self.sigmoid_tol), int(self.max_degree), **kw)
                        masked = list(res.masked)
                    grad = np.r_[res.intercept_grad, res.feature_grad] / len(b_idx)
                    grad[1:] += l2 * opt.w[1:]
                    opt.step(grad)
                    self.degrees_.append(res.degree)
                    step += 1
                    if bar:
                        bar.update(1)
                else:
                    self.n_iter_ = epoch + 1
                    continue
                self.n_iter_ = epoch
                break
        finally:
            if bar:
                bar.close()
        models = [lr_steps.lr_finish(s, masked[h]) for h, s in enumerate(sessions)]
        w = opt.averaged()
        self.intercept_ = np.array([w[0]])
        self.coef_bank_ = w[1:]
        self.coef_holder_ = np.asarray([c for r in models for c in r.coefficients],
                                       dtype=np.float64)
        self.holders_ = [] if len(sessions) == 1 else [
            HolderPart(s.holder_name, r.model_id, list(ready.feature_names))
            for s, r, ready in zip(sessions, models, readies)]
        self.coef_ = self._joint_coef()
        self.model_id_ = "+".join(r.model_id for r in models)
        self.epoch_changes_ = history

    def _initial_weights(self, XA: np.ndarray, ya: np.ndarray, l2: float,
                         weights: np.ndarray | None = None) -> np.ndarray:
        """(intercept, w_b) the first federated step starts from (see ``warm_start``);
        with weights, the intercept moves by the weighted minus the plain log-odds (the
        prior shift class weights make)."""
        shift = 0.0
        if weights is not None:
            def odds(w):
                return float(np.log(np.sum(w * ya) / np.sum(w * (1 - ya))))
            shift = odds(weights) - odds(np.ones(len(ya)))
        if self.warm_start == "bank":
            if XA.shape[1] == 0:
                warnings.warn("warm_start='bank' with no bank features: the holder's first "
                              "gradient reveals the default rate and its columns' sums over "
                              "the batch's defaulters (docs/PRIVACY.md, leak 2)", stacklevel=3)
            return lc.bank_warm_start(XA, ya, l2) + np.r_[shift, np.zeros(XA.shape[1])]
        rate = float(ya.mean())
        return np.r_[np.log(rate / (1 - rate)) + shift, np.zeros(XA.shape[1])]

    def _joint_coef(self) -> np.ndarray:
        """Bank then holder coefficients; NaN where the holder kept its own (plain LR)."""
        n_h = len(self.holder_feature_names_)
        holder = self.coef_holder_ if len(self.coef_holder_) == n_h else np.full(n_h, np.nan)
        return np.r_[self.coef_bank_, holder][None, :]

    # -- prediction -------------------------------------------------------------------------
    def bank_score(self, X) -> np.ndarray:
        """The bank's part of the linear score (its features and the intercept)."""
        self._check_fitted()
        return self._prepare_bank(X, fit=False) @ self.coef_bank_ + self.intercept_[0]

    def _scores(self, X, holder, id_column):
        """Log-odds of default (the bank's part plus each holder's partial score per id) and
        the holders' coverage.

        Scoring reuses one session per channel (see :meth:`close_scoring`)."""
        self._check_fitted()
        X, _ = check_xy(X, None, id_column)
        parts, covered = self._holder_scores(X.index.tolist(), holder)
        return self.bank_score(X) + np.sum(parts, axis=0), covered

    def _holder_scores(self, ids: list, holder) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Per holder (in training order) its partial scores of ``ids``; per id whether every
        holder had its data and a current consent (None: a holder too old to say)."""
        return holder_partial_scores(self, ids, holder)

    def explain(self, X, holder=None, *, holders=None,
                id_column: str | None = None) -> pd.DataFrame:
        """Reason codes: each feature's contribution to each row's log-odds of default.

        A bank feature contributes coefficient x its standardised value (one-hot levels and
        the missing indicator summed into the feature they encode); each holder's part comes
        as one partial score per enterprise, never per holder feature, so it is one column
        per holder, ``holder:<holder name> (all features)``. The base is the intercept.
        Terms are measured from each party's zero encoding (a numeric feature at its training
        mean, no one-hot level), so a holder's column is not centred on its training mean,
        which the bank does not know: rank it against other enterprises' holder part rather
        than against the bank's columns.

        Parameters
        ----------
        X, holder, holders, id_column
            As for :meth:`decision_function`.

        Returns
        -------
        pandas.DataFrame
            Indexed by id: the features, then ``base_value``; per row they sum to
            :meth:`decision_function` (see :mod:`fedcredit.models.explain`).
        """
        self._check_fitted()
        X, _ = check_xy(X, None, id_column)
        us, covered = self._holder_scores(X.index.tolist(), self._holders_arg(holder, holders))
        terms = self._prepare_bank(X, fit=False) * self.coef_bank_[None, :]
        bank, names = grouped(terms, prep_sources(self.prep_, self.feature_names_bank_))
        out = explanation_frame(
            np.column_stack([bank, *us]), float(self.intercept_[0]),
            names + [holder_column(p.name, p.features) for p in holder_parts(self)], X.index,
            LOG_ODDS)
        out.attrs["holder_covered"] = covered  # per row: every holder had data and consent
        return out

    @property
    def feature_names_(self) -> list[str]:
        """The bank's features, then each holder's (``holder:<feature>`` with one holder,
        ``<holder name>:<feature>`` with several)."""
        self._check_fitted()
        return list(self.feature_names_bank_) + holder_feature_names(self)

    def coefficients(self) -> pd.Series:
        """Coefficients by feature (holder features prefixed ``holder:``), intercept first;
        for plain LR the holder keeps its coefficients, and only the bank's are listed."""
        self._check_fitted()
        s = pd.Series(np.r_[self.intercept_, self.coef_[0]],
                      index=["intercept"] + self.feature_names_, name="coefficient")
        return s[s.notna()]

    # -- persistence: the bank's preprocessing and weights; the holder's model id -----------
    def _state(self) -> dict:
        return {"intercept": float(self.intercept_[0]),
                "coef_bank": self.coef_bank_.tolist(), "coef_holder": self.coef_holder_.tolist(),
                "prep": self.prep_.to_dict() if self.prep_ is not None else None,
                "bank_features": self.feature_names_bank_,
                "holder_features": self.holder_feature_names_, "model_id": self.model_id_,
                "holder_name": self.holder_name_,
                "holders": [p.to_dict() for p in self.__dict__.get("holders_") or []]}

    def _restore(self, d: dict, fmt: str) -> None:
        self.intercept_ = np.array([d["intercept"]])
        self.coef_bank_ = np.asarray(d["coef_bank"])
        self.coef_holder_ = np.asarray(d["coef_holder"], dtype=np.float64)
        self.prep_ = FeaturePrep.from_dict(d["prep"]) if d["prep"] else None
        self.feature_names_bank_ = d["bank_features"]
        self.holder_feature_names_ = d["holder_features"]
        self.coef_ = self._joint_coef()
        self.model_id_ = d["model_id"]
        self.holder_name_ = d["holder_name"]
        self.holders_ = [HolderPart.from_dict(h) for h in d.get("holders", [])]
