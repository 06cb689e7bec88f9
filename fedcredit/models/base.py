"""What every federated estimator shares: input checks, the fit prologue, persistence.

The four estimators differ only in what they do on the aligned rows; making the key,
opening the session, aligning by PSI and saving the bank's half are the same, so they live
here once. :class:`FederatedEstimator` is a scikit-learn ``BaseEstimator``: ``__init__``
stores its arguments unchanged and validation waits for ``fit``, so ``clone``,
``get_params`` and ``set_params`` behave as scikit-learn users expect.

Scoring reuses one ``"score"`` session per channel and model (:class:`ScoringSessions`):
online scoring, one enterprise per call, costs one request per call, not a session. The
cache is the estimator's process-local state, never a parameter: ``get_params``, ``clone``,
``save`` and pickling leave it out.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ..atomic import write_atomic
from ..crypto import generate_keypair
from ..errors import InvalidInput
from ..protocol.alignment.bank import align
from ..protocol.session import BankSession
from .checks import check_xy  # noqa: F401  (its old home: re-exported)
from .holders import fit_with_holders, named_channels
from .scoring import (  # noqa: F401  (as_channel and the release are re-exported)
    CACHE_CREATE_LOCK,
    ScoringSessions,
    as_channel,
    open_session,
    release_scoring_sessions,
    with_coverage,
)
from .weights import check_class_weight, check_sample_weight, row_weights  # noqa: F401  (re-exported)

T = TypeVar("T")


def sigmoid(x):
    """The logistic function; overflow of ``exp`` just gives 0 or 1."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def progress_bar(verbose: bool, total: int, desc: str, unit: str):
    """A tqdm bar (renders in notebooks), or None when not ``verbose``."""
    if not verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit)


class FederatedEstimator(BaseEstimator):
    """Base of the estimators trained with a credit-data holder.

    Subclasses set ``_format`` (what ``save`` writes), ``_legacy_formats`` (older formats
    ``load`` still reads) and ``_task`` (the session's task), and implement
    ``_fit_aligned``, ``_state`` and ``_restore``. ``model_id_`` (the id under which the
    holder keeps its half) marks a fitted estimator.
    """

    _format: ClassVar[str] = ""
    _legacy_formats: ClassVar[tuple[str, ...]] = ()
    _task: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type]] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        FederatedEstimator._registry[cls.__name__] = cls  # to rebuild nested params on load

    # -- hooks --------------------------------------------------------------------------------
    def _validate_params(self) -> None:
        """Raise InvalidInput for a bad constructor argument (called by ``fit``)."""

    def _check_bank_table(self, X: pd.DataFrame) -> None:
        """Raise InvalidInput for a table this estimator cannot use (before any key)."""

    def _min_aligned(self) -> int:
        return 2

    #: ``(session, Xa, ya, *, weights, rows, **fit_kw)``: train on ``rows`` of the open,
    #: aligned session (``weights`` None: unweighted); may return extra entries for
    #: ``time_budget_``
    _fit_aligned: Callable[..., dict[str, float] | None]

    def _state(self) -> dict:
        raise NotImplementedError

    def _restore(self, d: dict, fmt: str) -> None:
        raise NotImplementedError

    # -- training -----------------------------------------------------------------------------
    #: "binary" (0/1 labels) or "continuous" (a regressor's targets)
    _target: ClassVar[str] = "binary"
    #: whether k folds can train in one aligned session (``_train`` once per fold)
    _cv_one_session: ClassVar[bool] = True

    def fit(self, X, y, holder=None, *, holders=None, id_column: str | None = None,
            sample_weight=None, align: str = "all"):
        """Align with the holder (PSI), then train on the enterprises both parties have.

        Parameters
        ----------
        X : pandas.DataFrame
            The bank's features, indexed by enterprise id (or ids in ``id_column``); ids and
            labels alone are enough (the model then uses the holder's features only).
        y : array-like of 0/1
            Labels, 1 = default.
        holder : Channel or PassiveParty
            The credit-data holder (:func:`fedcredit.connect`, ``InProcessChannel``).
        holders : list or mapping of holder name to holder, optional
            Several holders instead of one (estimators with ``_multi_holder``).
        id_column : str, optional
        sample_weight : array-like, optional
            One weight >= 0 per row of ``X`` (rows the holder lacks drop with their weight).
        align : "all" or "any"
            With several holders: train on the enterprises every holder serves, or (estimators
            with ``_align_any``) on those at least one serves, each holder's features missing
            where it has none.

        Returns
        -------
        self
        """
        return self._fit_federated(X, y, holder, holders=holders, id_column=id_column,
                                   sample_weight=sample_weight, align=align)

    #: whether ``fit`` and scoring take several holders (``holders=``)
    _multi_holder: ClassVar[bool] = False

    #: whether ``fit`` takes ``align="any"`` (train on enterprises any one holder serves)
    _align_any: ClassVar[bool] = False

    def _fit_federated(self, X, y, holder, **kw):
        """The prologue every fit shares, on the estimator's ``engine`` (one without the
        parameter runs on the process's engine: :func:`fedcredit.crypto.engine.engine_scope`)."""
        from ..crypto.engine import engine_scope

        spec = getattr(self, "engine", None)
        if spec is None:
            return self._fit_federated_here(X, y, holder, **kw)
        with engine_scope(spec, getattr(self, "n_jobs", None)):
            return self._fit_federated_here(X, y, holder, **kw)

    def _fit_federated_here(self, X, y, holder, *, holders=None, id_column=None, keys=None,
                            sample_weight=None, align: str = "all", **fit_kw):
        """``keys`` holds the key parameters (default self)."""
        named = named_channels(holder, holders)
        if align not in ("all", "any"):
            raise InvalidInput(f"align must be 'all' (the enterprises every holder serves) or "
                               f"'any' (those at least one serves), got {align!r}")
        if align == "any" and not self._align_any:
            raise InvalidInput(f"{type(self).__name__} trains on the enterprises every holder "
                               "serves: align='any' is for SecureBoost and hetero LR")
        self._start_fit()
        X, y = check_xy(X, y, id_column, target=self._target)
        w = check_sample_weight(sample_weight, len(X))
        self._check_bank_table(X)
        if len(named) > 1:
            return fit_with_holders(self, X, y, w, named, keys, fit_kw, any_holder=align == "any")
        channel = as_channel(named[0][1])
        t0 = time.perf_counter()
        session = self._open_training_session(channel, keys)
        try:
            Xa, ya, wa = self._align_training_rows(session, X, y, w)
            self.alignment_seconds_ = time.perf_counter() - t0
            self._train(session, Xa, ya, wa, np.arange(len(Xa)), **fit_kw)
        finally:
            session.close()
        return self

    def _start_fit(self) -> None:
        self.__dict__.pop("model_id_", None)  # a failed refit leaves no half-fitted model
        self.close_scoring()  # the sessions of the previous model
        self._validate_params()
        check_class_weight(getattr(self, "class_weight", None))

    def _open_training_session(self, channel, keys=None) -> BankSession:
        """A fresh key (the estimator's key parameters, or ``keys``'), and a session of this
        estimator's task with it."""
        keys = self if keys is None else keys
        _, sk = generate_keypair(keys.he_scheme, bits=keys.key_bits, insecure=keys.insecure_key)
        sk.warm_up(keys.n_jobs)  # worker tables build while ids are aligned
        return open_session(lambda: BankSession(channel, self._task, sk, workers=keys.n_jobs))

    def _align_training_rows(self, session, X, y, w):
        """PSI on the session; the bank's rows (targets, weights) in the session's order."""
        return self._aligned_rows(align(session, X.index.tolist()), X, y, w,
                                  "shared with the holder")

    def _aligned_rows(self, al, X, y, w, shared: str):
        """The bank's rows (targets, weights) of alignment ``al``, checked for training."""
        if len(al) < self._min_aligned():
            raise InvalidInput(f"only {len(al)} enterprises are {shared}; too few to train")
        Xa, ya = X.iloc[al.bank_positions], y[al.bank_positions]
        wa = None if w is None else w[al.bank_positions]
        self._check_training_target(ya, wa, "the aligned rows")
        self.n_aligned_ = len(al)  # enterprises the last fit aligned
        return Xa, ya, wa

    def _check_training_target(self, ya, wa, what: str) -> None:
        if wa is not None and not wa.sum() > 0:
            raise InvalidInput(f"sample_weight sums to 0 on {what}")
        if self._target != "binary":
            return
        if ya.min() == ya.max():
            raise InvalidInput(f"{what} hold only one class; both are needed")
        if wa is not None and min(wa[ya == 0].sum(), wa[ya == 1].sum()) <= 0:
            raise InvalidInput(f"one class has zero total sample_weight on {what}")

    def _train(self, session, Xa, ya, wa, rows, **fit_kw) -> None:
        """Train on ``rows`` (positions in the session's aligned order, increasing; ``Xa``,
        ``ya``, ``wa`` are those rows) of an open, aligned session: once per fit, once per
        fold in :func:`fedcredit.model_selection.cross_validate`."""
        self.holder_name_ = session.holder_name
        weights = row_weights(ya, wa, getattr(self, "class_weight", None)) \
            if self._target == "binary" else wa
        t1 = time.perf_counter()
        extra = self._fit_aligned(session, Xa, ya, weights=weights,
                                  rows=np.asarray(rows, dtype=np.int64), **fit_kw) or {}
        self.fit_seconds_ = time.perf_counter() - t1
        self.time_budget_ = {**session.watch.as_dict(), **extra}

    # -- scoring sessions ---------------------------------------------------------------------
    def _scoring(self) -> ScoringSessions:
        cache = self.__dict__.get("_scoring_sessions")
        if cache is None:
            with CACHE_CREATE_LOCK:  # two threads' first calls share one table
                cache = self.__dict__.get("_scoring_sessions")
                if cache is None:
                    cache = self.__dict__["_scoring_sessions"] = ScoringSessions()
        return cache

    def _score_with(self, holder, request: Callable[[BankSession], T]) -> T:
        """``request(session)`` on this model's scoring session with ``holder``: opened at
        the first call on a channel, reused by later ones, reopened once if the holder
        dropped it."""
        return self._scoring().run(holder, self.model_id_, request)

    def close_scoring(self) -> None:
        """Close the scoring sessions this estimator keeps open with holders.

        Scoring opens one session per channel and model and reuses it; it stays open until
        this call, a new ``fit``, or the holder's idle expiry (``session_idle_seconds``).
        The next scoring call opens a new one.
        """
        cache = self.__dict__.get("_scoring_sessions")
        if cache is not None:
            cache.close()

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: the base may hand over __dict__ itself
        state.pop("_scoring_sessions", None)  # open sessions belong to this process
        return state

    # -- fitted state -------------------------------------------------------------------------
    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_id_")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise InvalidInput(f"this {type(self).__name__} is not fitted yet: call "
                               "fit(X, y, holder) or load(path) first")

    @property
    def feature_names_(self) -> list[str]:
        """The bank's features, then the holder's as it publishes them (``holder:`` prefix)."""
        self._check_fitted()
        return list(self.feature_names_bank_) + [f"holder:{n}" for n in self.holder_feature_names_]

    # -- persistence --------------------------------------------------------------------------
    def _to_dict(self) -> dict:
        return {"format": self._format, "params": _params_to_json(self), **self._state()}

    @classmethod
    def _from_dict(cls, d: dict, fmt: str):
        model = cls(**_params_from_json(d.get("params", {})))
        model._restore(d, fmt)
        return model

    def save(self, path) -> None:
        """Write the bank's half of the model as JSON, atomically.

        Parameters
        ----------
        path : str or os.PathLike
            The holder keeps its half under ``model_id_``; this file holds no holder value.
        """
        self._check_fitted()
        write_atomic(path, json.dumps(self._to_dict(), default=_json_default))

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save` (of this or an earlier version).

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        FederatedEstimator
            Fitted; scoring still needs the holder that trained it.
        """
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InvalidInput(f"cannot read a saved model from {path}: {e}") from None
        fmt = d.get("format") if isinstance(d, dict) else None
        if fmt not in (cls._format, *cls._legacy_formats):
            raise InvalidInput(f"{path} is not a saved {cls.__name__}: format {fmt!r}, "
                               f"expected {cls._format!r}")
        try:
            return cls._from_dict(d, fmt)
        except InvalidInput as e:
            raise InvalidInput(f"{path}: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InvalidInput(f"{path} is a damaged {fmt} file: {e!r}") from None


class FederatedScorer(FederatedEstimator):
    """A federated estimator that scores enterprises (with the holder's coverage)."""

    def decision_function(self, X, holder=None, *, holders=None, id_column: str | None = None,
                          return_coverage: bool = False):
        """The raw score per row (log-odds of default for a classifier).

        With ``return_coverage``, also per row whether the holder had the enterprise's data
        and a current consent (what every scoring answer says; with several holders, every
        holder). An uncovered enterprise is scored with the holder's features missing
        (``uncovered="score"``, the default) or gets NaN (``uncovered="refuse"``).
        ``holders=`` as in ``fit``, for a model trained with several."""
        raw, covered = self._scores(X, self._holders_arg(holder, holders), id_column)
        return with_coverage(self, raw, covered, return_coverage)

    def _holders_arg(self, holder, holders):
        """``holder`` itself, or the ``(name, channel)`` list of ``holders=`` for an
        estimator that scores with several holders."""
        named = named_channels(holder, holders)
        if holders is None:
            return holder
        if not self._multi_holder:
            if len(named) != 1:
                raise InvalidInput(f"{type(self).__name__} scores with one holder; pass holder=")
            return named[0][1]
        return named

    def _scores(self, X, holder, id_column):
        """(raw scores, holder coverage or None): what each estimator computes."""
        raise NotImplementedError(f"{type(self).__name__} does not score")


class FederatedClassifier(FederatedScorer):
    """A federated estimator that scores: probabilities and labels from its log-odds."""

    def predict_proba(self, X, holder=None, *, holders=None, id_column: str | None = None,
                      return_coverage: bool = False):
        """Probabilities of [no default, default] per row.

        Parameters
        ----------
        X : pandas.DataFrame
            Indexed by enterprise id (or ids in ``id_column``).
        holder : Channel or PassiveParty
            The holder that trained the model (it keeps its half under ``model_id_``).
        holders : list or mapping of holder name to holder, optional
            The holders of a model trained with several (a list in the training order).
        id_column : str, optional
        return_coverage : bool
            Also return, per row, whether the holder had the enterprise's data and a
            current consent (``holder_covered``; see :meth:`decision_function`).

        Returns
        -------
        numpy.ndarray of shape (n_rows, 2), and a bool array with ``return_coverage``
        """
        out = self.decision_function(X, holder, holders=holders, id_column=id_column,
                                     return_coverage=return_coverage)
        raw, covered = out if return_coverage else (out, None)
        p = sigmoid(raw)
        proba = np.column_stack([1 - p, p])
        return (proba, covered) if return_coverage else proba

    def predict(self, X, holder=None, *, holders=None, threshold: float = 0.5,
                id_column: str | None = None) -> np.ndarray:
        """1 (default) where the probability of default reaches ``threshold``, else 0.

        Parameters
        ----------
        X, holder, holders, id_column
            As for :meth:`predict_proba`.
        threshold : float

        Returns
        -------
        numpy.ndarray of int
        """
        proba = self.predict_proba(X, holder, holders=holders, id_column=id_column)
        return (proba[:, 1] >= threshold).astype(int)


def _params_to_json(est: BaseEstimator) -> dict:
    out = {}
    for k, v in est.get_params(deep=False).items():
        if isinstance(v, FederatedEstimator):
            v = {"estimator": type(v).__name__, "params": _params_to_json(v)}
        elif k == "engine" and not isinstance(v, str):  # a cluster handle: its kind only
            v = getattr(v, "kind", "local")
        out[k] = v
    return out


def _params_from_json(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, dict) and set(v) == {"estimator", "params"}:
            kind = FederatedEstimator._registry.get(v["estimator"])
            if kind is None:
                raise InvalidInput(f"parameter {k!r}: unknown estimator {v['estimator']!r}")
            v = kind(**_params_from_json(v["params"]))
        out[k] = v
    return out


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")

