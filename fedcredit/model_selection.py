"""Cross-validation of federated estimators with one alignment.

>>> from fedcredit.model_selection import cross_validate                # doctest: +SKIP
>>> res = cross_validate(SecureBoostClassifier(n_estimators=20), X_bank, y, holder=channel,
...                      cv=5, scoring=("roc_auc", "ks"))
>>> res["test_roc_auc"].mean(), res["fit_time"]

PSI runs once: the folds are drawn over the enterprises both parties have, and for
SecureBoost and hetero LR every fold trains in that one aligned session (the holder bins
its features on each fold's training rows; each fold's model is stored under its own id).
A scorecard's fit needs a WOE session and an LR session, so each of its folds fits anew on
the aligned rows (its own PSI over them); the folds are the same. Test folds are scored as
``predict_proba`` / ``predict`` score, over a scoring session per fold's model.

**Privacy**: what k fits on k training sets reveal, no more; the holder learns each fold's
training rows (stratified folds: each holds about the same share of defaulters, which says
nothing about which enterprise defaulted).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold

from .errors import InvalidInput
from .metrics import auc, ks
from .models.base import FederatedEstimator, as_channel, check_sample_weight, check_xy

#: the scorers by name: (y_true, score) -> float; scores are P(default) for classifiers
SCORERS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": auc,
    "ks": ks,
    "neg_mean_squared_error": lambda y, s: -float(np.mean((np.asarray(y) - s) ** 2)),
    "r2": lambda y, s: 1.0 - float(np.sum((np.asarray(y) - s) ** 2))
    / max(float(np.sum((np.asarray(y) - np.mean(y)) ** 2)), 1e-300),
}


def _scorers(scoring, regression: bool) -> dict[str, Callable]:
    if scoring is None:
        scoring = ("r2", "neg_mean_squared_error") if regression else ("roc_auc", "ks")
    if isinstance(scoring, str) or callable(scoring):
        scoring = [scoring]
    if isinstance(scoring, dict):
        items = list(scoring.items())
    else:
        items = [(s if isinstance(s, str) else getattr(s, "__name__", f"score{k}"), s)
                 for k, s in enumerate(scoring)]
    out = {}
    for name, s in items:
        if isinstance(s, str):
            if s not in SCORERS:
                raise InvalidInput(f"unknown scoring {s!r}; use one of {', '.join(SCORERS)} "
                                   "or a callable (y_true, score) -> float")
            s = SCORERS[s]
        elif not callable(s):
            raise InvalidInput(f"scoring {name!r} is neither a name nor a callable")
        out[str(name)] = s
    return out


def _splitter(cv, regression: bool, random_state):
    """``cv`` as a splitter, checked before anything is sent."""
    if isinstance(cv, (int, np.integer)) and not isinstance(cv, bool):
        if int(cv) < 2:
            raise InvalidInput(f"cv must be >= 2 folds, got {cv}")
        return (KFold if regression else StratifiedKFold)(int(cv), shuffle=True,
                                                           random_state=random_state)
    if isinstance(cv, str) or not callable(getattr(cv, "split", None)):
        raise InvalidInput(f"cv must be a number of folds or a scikit-learn splitter, got {cv!r}")
    return cv


def _folds(cv, y: np.ndarray) -> list[tuple]:
    try:
        folds = [(np.sort(tr), np.sort(te)) for tr, te in cv.split(np.zeros(len(y)), y)]
    except ValueError as e:
        raise InvalidInput(f"cannot split the aligned rows into folds: {e}") from None
    return folds


def cross_validate(estimator: FederatedEstimator, X, y, *, holder, cv=5,
                   scoring: str | Callable | Sequence | dict | None = None,
                   sample_weight=None, id_column: str | None = None,
                   random_state: int | None = 0, return_estimator: bool = False) -> dict:
    """Train and test ``estimator`` on k folds of the rows shared with ``holder``.

    Parameters
    ----------
    estimator : FederatedEstimator
        Unfitted; cloned per fold (SecureBoostClassifier/Regressor, HeteroLogisticRegression,
        Scorecard).
    X, y, id_column
        The bank's table and targets, as for ``fit``.
    holder : Channel or PassiveParty
    cv : int or scikit-learn splitter
        Folds (stratified and shuffled for classifiers, shuffled for regressors), or a
        splitter whose ``split(X, y)`` runs over the aligned rows in the session's order.
    scoring : str, callable, list or dict, optional
        "roc_auc", "ks" (classifiers' default: both), "r2", "neg_mean_squared_error"
        (regressors' default: both), or callables ``(y_true, score) -> float`` where
        ``score`` is P(default) for classifiers and the prediction for regressors.
    sample_weight : array-like, optional
        Training weights, one per row of ``X`` (test scores are unweighted).
    random_state : int, optional
        Seeds the folds' shuffle.
    return_estimator : bool
        Also return the fitted estimator of each fold (``"estimator"``).

    Returns
    -------
    dict
        ``fit_time`` and ``score_time`` (seconds, per fold), ``test_<scorer>`` per fold (numpy
        arrays), ``n_aligned`` and ``align_time``; ``estimator`` if asked.
    """
    if not isinstance(estimator, FederatedEstimator) or not hasattr(estimator,
                                                                     "decision_function"):
        raise InvalidInput("cross_validate needs a federated estimator that scores "
                           "(SecureBoost, HeteroLogisticRegression, Scorecard)")
    regression = estimator._target == "continuous"
    scorers = _scorers(scoring, regression)
    splitter = _splitter(cv, regression, random_state)
    X, y = check_xy(X, y, id_column, target=estimator._target)
    w = check_sample_weight(sample_weight, len(X))
    channel = as_channel(holder)
    t0 = time.perf_counter()
    template = clone(estimator)
    template._start_fit()
    session = template._open_training_session(channel) if template._cv_one_session else None
    out: dict = {"fit_time": [], "score_time": [], **{f"test_{k}": [] for k in scorers}}
    fitted = []
    try:
        if session is None:  # align once to draw the folds; each fold fits anew (see above)
            from .protocol import BankSession, align

            s = BankSession(channel, "align")
            try:
                al = align(s, X.index.tolist())
            finally:
                s.close()
            Xa, ya = X.iloc[al.bank_positions], y[al.bank_positions]
            wa = None if w is None else w[al.bank_positions]
        else:
            Xa, ya, wa = template._align_training_rows(session, X, y, w)
        out["n_aligned"], out["align_time"] = len(Xa), time.perf_counter() - t0
        for tr, te in _folds(splitter, ya):
            model = clone(estimator)
            wf = None if wa is None else wa[tr]
            t1 = time.perf_counter()
            if session is None:
                model.fit(Xa.iloc[tr], ya[tr], channel, sample_weight=wf)
            else:
                model._start_fit()
                model._check_training_target(ya[tr], wf, "a fold's training rows")
                model._train(session, Xa.iloc[tr], ya[tr], wf, tr)
            out["fit_time"].append(time.perf_counter() - t1)
            t2 = time.perf_counter()
            try:
                score = model.predict(Xa.iloc[te], channel) if regression else \
                    model.predict_proba(Xa.iloc[te], channel)[:, 1]
            finally:
                if not return_estimator:
                    model.close_scoring()
            for k, fn in scorers.items():
                out[f"test_{k}"].append(float(fn(ya[te], score)))
            out["score_time"].append(time.perf_counter() - t2)
            if return_estimator:
                fitted.append(model)
    finally:
        if session is not None:
            session.close()
    res = {k: np.asarray(v) if isinstance(v, list) else v for k, v in out.items()}
    if return_estimator:
        res["estimator"] = fitted
    return res
