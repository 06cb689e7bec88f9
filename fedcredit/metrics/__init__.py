"""Discrimination, stability and calibration metrics for credit models.

The bank computes these locally on its own labels and scores; nothing here talks to the
holder, so no function sends data and none has a Privacy section. Figures built on these
numbers live in :mod:`fedcredit.plots`, which keeps matplotlib out of this module.

Conventions shared by every function:

* ``y_true`` holds 0/1 labels, 1 = event (default, "bad"). Booleans work too.
* ``score`` ranks risk: **higher means more likely to be an event** (a predicted probability
  of default, or log-odds). Scorecard points usually run the other way (more points = safer):
  pass ``-points``. A score running the wrong way shows up as an AUC below 0.5 and a negative
  Gini; KS is a distance and does not change sign.
* Inputs may be lists, numpy arrays or pandas Series. Two Series must have the same index:
  pairing them by position after a sort or a merge would silently mix up records.
* Tables hold fractions (0.25), not percentages (25); show them as percentages with e.g.
  ``table.style.format({"event_rate": "{:.1%}"})``.
* Tied scores are never split. KS and AUC are computed over the distinct score values, and
  a quantile bin never separates records with the same score, so a table can have fewer
  bins than asked for when scores are heavily tied (as scorecard points are).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from .checks import (
    _auc,
    _binned_counts,
    _check_bins,
    _ks,
    _paired,
    _quantile_bins,
    _roc_points,
    _scores,
)

__all__ = [
    "auc",
    "calibration_table",
    "gini",
    "ks",
    "ks_table",
    "lift_table",
    "psi",
    "psi_table",
    "summary",
]


# --------------------------------------------------------------------------- discrimination


def auc(y_true, score) -> float:
    """Area under the ROC curve.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1 labels, 1 = event (default). Both classes must be present.
    score : array-like of shape (n,)
        Higher = more likely an event. No NaN.

    Returns
    -------
    float
        Probability that a random event scores above a random non-event, a tie counting
        one half; 0.5 is a random ranking.

    Raises
    ------
    fedcredit.errors.InvalidInput
        On mismatched lengths, labels other than 0/1, a single class, or NaN scores.
    """
    y, s = _paired(y_true, score, "auc")
    return _auc(_roc_points(y, s))


def gini(y_true, score) -> float:
    """Gini coefficient (accuracy ratio), ``2 * auc - 1``.

    Parameters and errors are those of :func:`auc`. Returns a value in [-1, 1]; 0 is a
    random ranking, negative values mean the score runs the wrong way.
    """
    return 2.0 * auc(y_true, score) - 1.0


def ks(y_true, score) -> float:
    """Kolmogorov-Smirnov statistic between the scores of events and of non-events.

    .. math:: KS = \\max_t \\lvert F_1(t) - F_0(t) \\rvert

    where :math:`F_1` and :math:`F_0` are the empirical distribution functions of the score
    among events and non-events; the maximum runs over the distinct score values, so tied
    scores are never separated. This equals ``scipy.stats.ks_2samp(s[y == 1],
    s[y == 0]).statistic``.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1 labels, 1 = event. Both classes must be present.
    score : array-like of shape (n,)
        No NaN.

    Returns
    -------
    float
        In [0, 1] (a fraction: multiply by 100 for the "KS points" some reports use).

    Raises
    ------
    fedcredit.errors.InvalidInput
        As for :func:`auc`.
    """
    y, s = _paired(y_true, score, "ks")
    return _ks(_roc_points(y, s))


def ks_table(y_true, score, bins: int = 10) -> pd.DataFrame:
    """KS table: cumulative event and non-event shares by score bin, highest scores first.

    Parameters
    ----------
    y_true, score : array-like of shape (n,)
        As for :func:`ks`.
    bins : int, default 10
        Number of equal-count bins (deciles by default). Fewer are returned when tied scores
        make that many impossible.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``bin`` (1 = highest scores), columns ``min_score``, ``max_score``,
        ``count``, ``events``, ``non_events``, ``event_rate``, ``cum_event_share``,
        ``cum_non_event_share`` and ``ks`` (their absolute difference). The largest ``ks``
        in the table is at most :func:`ks`, which looks at every distinct score rather than
        at bin edges only.

    Raises
    ------
    fedcredit.errors.InvalidInput
        As for :func:`ks`, or if ``bins`` is not an integer >= 2.
    """
    bins = _check_bins(bins)
    y, s = _paired(y_true, score, "ks_table")
    table = _binned_counts(_quantile_bins(s, bins, descending=True), y, s, "score")
    table["non_events"] = table["count"] - table["events"]
    table["event_rate"] = table["events"] / table["count"]
    table["cum_event_share"] = table["events"].cumsum() / table["events"].sum()
    table["cum_non_event_share"] = table["non_events"].cumsum() / table["non_events"].sum()
    table["ks"] = (table["cum_event_share"] - table["cum_non_event_share"]).abs()
    return table


def lift_table(y_true, score, bins: int = 10) -> pd.DataFrame:
    """Gains and lift table by score bin, highest scores first.

    Parameters
    ----------
    y_true, score : array-like of shape (n,)
        As for :func:`auc`.
    bins : int, default 10
        Number of equal-count bins (deciles by default). Fewer are returned when tied scores
        make that many impossible.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``bin`` (1 = highest scores) with columns

        - ``min_score``, ``max_score``: score range of the bin;
        - ``count``, ``events``, ``event_rate``: the bin's size, events and event rate;
        - ``cum_population_share``: share of the population in this and the bins above;
        - ``cum_event_share``: share of all events captured by this and the bins above
          (the gains curve; 1.0 in the last bin);
        - ``lift``: the bin's event rate over the overall event rate;
        - ``cum_lift``: the same for this and the bins above together (1.0 in the last bin).

    Raises
    ------
    fedcredit.errors.InvalidInput
        As for :func:`auc`, or if ``bins`` is not an integer >= 2.
    """
    bins = _check_bins(bins)
    y, s = _paired(y_true, score, "lift_table")
    table = _binned_counts(_quantile_bins(s, bins, descending=True), y, s, "score")
    overall_rate = y.mean()
    table["event_rate"] = table["events"] / table["count"]
    table["cum_population_share"] = table["count"].cumsum() / y.size
    table["cum_event_share"] = table["events"].cumsum() / table["events"].sum()
    table["lift"] = table["event_rate"] / overall_rate
    table["cum_lift"] = table["cum_event_share"] / table["cum_population_share"]
    return table


def summary(y_true, score) -> dict:
    """The headline numbers of a score on one sample.

    Parameters
    ----------
    y_true, score : array-like of shape (n,)
        As for :func:`auc`.

    Returns
    -------
    dict
        ``{"n": int, "event_rate": float, "auc": float, "gini": float, "ks": float}``.

    Raises
    ------
    fedcredit.errors.InvalidInput
        As for :func:`auc`.
    """
    y, s = _paired(y_true, score, "summary")
    roc = _roc_points(y, s)
    area = _auc(roc)
    return {"n": int(y.size), "event_rate": float(y.mean()), "auc": area,
            "gini": 2.0 * area - 1.0, "ks": _ks(roc)}


# --------------------------------------------------------------------------- stability


def _psi_edges(expected: np.ndarray, bins: int) -> np.ndarray:
    """Interior bin edges: quantiles of ``expected`` that are actual data values.

    Using observed values (``method="lower"``) and dropping the maximum guarantees every
    bin ``(edge[i-1], edge[i]]`` holds at least one expected value: only ``actual`` can
    leave a bin empty.
    """
    quantiles = np.quantile(expected, np.arange(1, bins) / bins, method="lower")
    edges = np.unique(quantiles)
    return edges[edges < expected.max()]


def psi_table(expected, actual, bins: int = 10, eps: float = 1e-4) -> pd.DataFrame:
    """Population stability index bin by bin.

    Bins are the quantiles of ``expected`` (the development or reference sample), so each
    holds about ``1 / bins`` of it; the outer bins are open-ended, so ``actual`` values
    outside the range of ``expected`` land in the first or last bin. Tied values are never
    split, which can leave fewer bins than asked for.

    Each bin contributes ``(a - e) * ln(a / e)``, with ``e`` and ``a`` the shares of
    ``expected`` and ``actual`` in it. **Empty bins:** the log of an empty share is
    infinite, so a share below ``eps`` is raised to ``eps`` in that formula (the
    ``expected_share``/``actual_share`` columns show the true shares). Only ``actual`` can
    leave a bin empty, and then the bin contributes about ``e * ln(e / eps)``: with the
    default ``eps = 1e-4``, a decile that empties out adds ``0.1 * ln(1000) = 0.69`` —
    a large shift, as it should be, but a finite one.

    Parameters
    ----------
    expected : array-like of shape (n,)
        Reference values (scores or a numeric feature). No NaN: bin missing values first.
    actual : array-like of shape (m,)
        Values to compare with the reference; ``m`` need not equal ``n``.
    bins : int, default 10
        Number of quantile bins.
    eps : float, default 1e-4
        Floor on the shares inside the PSI formula, in (0, 1).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``bin`` (1 = lowest values), columns ``lower``, ``upper`` (the bin is
        ``(lower, upper]``), ``expected_count``, ``actual_count``, ``expected_share``,
        ``actual_share`` and ``psi`` (the bin's contribution; they sum to :func:`psi`).

    Raises
    ------
    fedcredit.errors.InvalidInput
        On NaN or infinite values, bad ``bins`` or ``eps``, or an ``expected`` with a
        single distinct value (no bins can be formed).
    """
    bins = _check_bins(bins)
    if not (isinstance(eps, (int, float)) and 0.0 < eps < 1.0):
        raise InvalidInput(f"eps must be a number in (0, 1), got {eps!r}")
    expected = _scores(expected, "expected")
    actual = _scores(actual, "actual")
    edges = _psi_edges(expected, bins)
    if edges.size == 0:
        raise InvalidInput("expected has a single distinct value; PSI needs at least two bins")
    k = edges.size + 1
    # side="left" puts a value equal to an edge in the bin below: bins are (lower, upper]
    e_count = np.bincount(np.searchsorted(edges, expected, side="left"), minlength=k)
    a_count = np.bincount(np.searchsorted(edges, actual, side="left"), minlength=k)
    e_share = e_count / expected.size
    a_share = a_count / actual.size
    e_floor, a_floor = np.maximum(e_share, eps), np.maximum(a_share, eps)
    return pd.DataFrame(
        {"lower": np.r_[-np.inf, edges], "upper": np.r_[edges, np.inf],
         "expected_count": e_count, "actual_count": a_count,
         "expected_share": e_share, "actual_share": a_share,
         "psi": (a_floor - e_floor) * np.log(a_floor / e_floor)},
        index=pd.RangeIndex(1, k + 1, name="bin"))


def psi(expected, actual, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index of ``actual`` against ``expected``.

    The usual reading: below 0.1 stable, 0.1 to 0.25 a moderate shift worth a look, above
    0.25 a significant shift. Binning and the handling of empty bins (``eps``) are described
    in :func:`psi_table`, which takes the same parameters and raises the same errors.

    Returns
    -------
    float
        Non-negative; 0 when both samples fill the bins in the same proportions.
    """
    return float(psi_table(expected, actual, bins=bins, eps=eps)["psi"].sum())


# --------------------------------------------------------------------------- calibration


def calibration_table(y_true, prob, bins: int = 10, strategy: str = "quantile") -> pd.DataFrame:
    """Mean predicted probability against observed event rate, by bin of predictions.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1 labels, 1 = event. A single class is allowed (the observed rate is then 0 or 1).
    prob : array-like of shape (n,)
        Predicted event probabilities in [0, 1]; not scores or log-odds.
    bins : int, default 10
        Number of bins.
    strategy : {"quantile", "uniform"}, default "quantile"
        ``"quantile"``: equal-count bins, ties never split (the default, because
        probabilities of default crowd near 0 and uniform bins would leave most of the
        portfolio in the first one). ``"uniform"``: bins of equal width on [0, 1]; empty
        bins are left out.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``bin`` (1 = lowest predictions), columns ``min_prob``, ``max_prob``,
        ``count``, ``events``, ``mean_predicted`` and ``observed_rate``.

    Raises
    ------
    fedcredit.errors.InvalidInput
        On mismatched lengths, labels other than 0/1, NaN or out-of-range probabilities,
        bad ``bins`` or an unknown ``strategy``.
    """
    bins = _check_bins(bins)
    if strategy not in ("quantile", "uniform"):
        raise InvalidInput(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    y, p = _paired(y_true, prob, "calibration_table", score_name="prob", need_both=False)
    n_out = int(np.count_nonzero((p < 0) | (p > 1)))
    if n_out:
        raise InvalidInput(f"prob must be probabilities in [0, 1]; {n_out} of {p.size} "
                           "entries are outside (scores or log-odds are not probabilities)")
    if strategy == "quantile":
        bin_ids = _quantile_bins(p, bins, descending=False)
    else:
        # p == 1 would open a bin of its own past the last one; it belongs to the last
        bin_ids = np.minimum((p * bins).astype(np.intp), bins - 1)
        bin_ids = np.unique(bin_ids, return_inverse=True)[1]
    table = _binned_counts(bin_ids, y, p, "prob")
    table["mean_predicted"] = pd.Series(p).groupby(bin_ids + 1).mean().to_numpy()
    table["observed_rate"] = table["events"] / table["count"]
    return table
