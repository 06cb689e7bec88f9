"""Input checks and the shared computations behind :mod:`fedcredit.metrics`: labels and
scores validated with errors that name the argument, ROC points, quantile bins."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from ..errors import InvalidInput

_LABEL_HINT = "map encodings such as -1/1, 1/2 or 'good'/'bad' to 0/1 (1 = event) first"


# --------------------------------------------------------------------------- validation


def _to_1d_float(values, name: str, hint: str = "") -> np.ndarray:
    """Any 1-D array-like (or an (n, 1) column) as a float64 vector; NaN is kept for later."""
    if isinstance(values, pd.DataFrame):
        if values.shape[1] != 1:
            raise InvalidInput(f"{name} must be one column, got a DataFrame with "
                               f"{values.shape[1]} columns")
        values = values.iloc[:, 0]
    try:
        if isinstance(values, pd.Series):
            # na_value turns pandas' nullable NA into NaN, which the NaN check then reports
            arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be numeric" + (f"; {hint}" if hint else "")) from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InvalidInput(f"{name} must be one-dimensional, got shape {arr.shape}; "
                           "for predict_proba output pass proba[:, 1]")
    if arr.size == 0:
        raise InvalidInput(f"{name} is empty")
    return arr


def _scores(values, name: str = "score") -> np.ndarray:
    """Finite float scores; NaN and infinities are refused with their count."""
    arr = _to_1d_float(values, name)
    n_nan = int(np.count_nonzero(np.isnan(arr)))
    if n_nan:
        raise InvalidInput(f"{name} contains {n_nan} NaN value(s) out of {arr.size}; "
                           "drop or impute them before computing metrics")
    n_inf = int(np.count_nonzero(np.isinf(arr)))
    if n_inf:
        raise InvalidInput(f"{name} contains {n_inf} infinite value(s) out of {arr.size}")
    return arr


def _labels(values, name: str = "y_true") -> np.ndarray:
    """0/1 labels as int8. Messages give counts only: labels are never echoed."""
    arr = _to_1d_float(values, name, hint=_LABEL_HINT)
    n_nan = int(np.count_nonzero(np.isnan(arr)))
    if n_nan:
        raise InvalidInput(f"{name} contains {n_nan} missing label(s) out of {arr.size}")
    n_bad = int(np.count_nonzero((arr != 0) & (arr != 1)))
    if n_bad:
        raise InvalidInput(f"{name} must hold only 0 and 1; {n_bad} of {arr.size} entries "
                           f"are something else ({_LABEL_HINT})")
    return arr.astype(np.int8)


def _check_same_index(y_true, score, score_name: str) -> None:
    if isinstance(y_true, pd.Series) and isinstance(score, pd.Series):
        if not y_true.index.equals(score.index):
            raise InvalidInput(
                f"y_true and {score_name} are pandas Series with different indexes; align "
                f"them (e.g. {score_name}.loc[y_true.index]) or pass .to_numpy() to pair "
                "them by position")


def _require_both_classes(y: np.ndarray, what: str) -> None:
    n_events = int(y.sum())
    if n_events == 0 or n_events == y.size:
        only = "non-events (0)" if n_events == 0 else "events (1)"
        raise InvalidInput(f"{what} needs both events (1) and non-events (0), but all "
                           f"{y.size} labels in y_true are {only}")


def _paired(y_true, score, what: str, score_name: str = "score", need_both: bool = True):
    """Validated (labels, scores) of equal length."""
    _check_same_index(y_true, score, score_name)
    y = _labels(y_true)
    s = _scores(score, score_name)
    if y.size != s.size:
        raise InvalidInput(f"y_true has {y.size} entries but {score_name} has {s.size}")
    if need_both:
        _require_both_classes(y, what)
    return y, s


def _check_bins(bins, name: str = "bins") -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise InvalidInput(f"{name} must be an integer >= 2, got {bins!r}")
    return int(bins)


# --------------------------------------------------------------------------- core maths


class _Roc(NamedTuple):
    """Cumulative shares above each distinct score, highest score first, from (0, 0)."""

    thresholds: np.ndarray  # score >= threshold is "predicted event"; +inf for the origin
    fpr: np.ndarray  # share of non-events at or above the threshold
    tpr: np.ndarray  # share of events at or above the threshold
    depth: np.ndarray  # share of the whole population at or above the threshold


def _roc_points(y: np.ndarray, s: np.ndarray) -> _Roc:
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    # A threshold cannot separate tied records, so only the end of each run of equal scores
    # is a point of the curve; this is what makes KS and AUC tie-correct.
    run_ends = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), s.size - 1]
    tp = np.cumsum(y[order])[run_ends]
    fp = run_ends + 1 - tp
    return _Roc(
        thresholds=np.r_[np.inf, s_sorted[run_ends]],
        fpr=np.r_[0.0, fp / fp[-1]],
        tpr=np.r_[0.0, tp / tp[-1]],
        depth=np.r_[0.0, (run_ends + 1) / s.size],
    )


def _auc(roc: _Roc) -> float:
    # Trapezoids over distinct thresholds count a tied (event, non-event) pair as half a
    # concordant pair, i.e. this is the Mann-Whitney U statistic divided by n1 * n0.
    return float(np.sum(np.diff(roc.fpr) * (roc.tpr[1:] + roc.tpr[:-1])) / 2.0)


def _ks(roc: _Roc) -> float:
    return float(np.max(np.abs(roc.tpr - roc.fpr)))


def _quantile_bins(s: np.ndarray, bins: int, descending: bool) -> np.ndarray:
    """Equal-count bin ids 0..k-1 (0 = first in the given order); ties are never split.

    Each run of tied values goes, whole, to the bin its middle record would fall in; bins
    a long run leaves empty are dropped and the rest renumbered, so k <= bins.
    """
    key = -s if descending else s
    order = np.argsort(key, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(key[order]) != 0) + 1]
    lengths = np.diff(np.r_[starts, s.size])
    # middle position of the run, doubled to stay in integers: 2 * start + length - 1
    raw = (2 * starts + lengths - 1) * bins // (2 * s.size)
    dense = np.unique(raw, return_inverse=True)[1]
    out = np.empty(s.size, dtype=np.intp)
    out[order] = np.repeat(dense, lengths)
    return out


def _binned_counts(bin_ids: np.ndarray, y: np.ndarray, s: np.ndarray, prefix: str):
    """Per-bin min/max score, count and events, indexed by bin number starting at 1."""
    frame = pd.DataFrame({"bin": bin_ids + 1, "y": y.astype(np.int64), "s": s})
    table = frame.groupby("bin").agg(
        **{f"min_{prefix}": ("s", "min"), f"max_{prefix}": ("s", "max"),
           "count": ("y", "size"), "events": ("y", "sum")})
    table.index.name = "bin"
    return table
