"""Figures for notebooks: ROC, KS, lift, score distributions, IV bars and calibration; the
platform's statistics (:mod:`.platform`) and post-loan monitoring (:mod:`.lifecycle`).

Every function draws on ``ax`` when given and on a new figure otherwise, and returns the
Axes, so several models can share one plot (bank-only against federated against
centralised)::

    ax = plots.roc_curve(y, bank_score, label="bank only")
    plots.roc_curve(y, fed_score, ax=ax, label="federated")

Reference lines (chance diagonal, lift of 1, perfect calibration) are drawn once per Axes
however many curves are added. The numbers come from :mod:`fedcredit.metrics`, with the
same input conventions and errors (higher score = more likely an event). matplotlib is an
optional dependency, imported only when a function is called.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .. import metrics
from ..errors import InvalidInput

__all__ = [
    "calibration_plot",
    "iv_bar_chart",
    "ks_curve",
    "lift_chart",
    "roc_curve",
    "score_distribution",
]

_REFERENCE_STYLE = {"color": "grey", "linestyle": "--", "linewidth": 1}


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("fedcredit.plots needs matplotlib; install it with "
                          "`pip install fedcredit[plots]`") from err
    return plt


def _axes(ax):
    """``ax`` itself, checked, or the Axes of a new figure.

    Called only once the data are validated, so bad input leaves no empty figure behind.
    """
    plt = _pyplot()
    if ax is None:
        return plt.subplots()[1]
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise InvalidInput(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax


def _named(label, text: str) -> str:
    return f"{label}: {text}" if label else text


def _has_reference(ax, gid: str) -> bool:
    return any(line.get_gid() == gid for line in ax.lines)


def _diagonal(ax, gid: str, label: str) -> None:
    # axline is unbounded and, unlike a plotted segment, does not stretch the data limits
    # to (1, 1) - which matters for calibration plots of small default probabilities.
    if not _has_reference(ax, gid):
        ax.axline((0, 0), slope=1, gid=gid, label=label, **_REFERENCE_STYLE)


def roc_curve(y_true, score, ax=None, label=None, **line_kw):
    """ROC curve with the AUC in the legend.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1 labels, 1 = event; both classes present.
    score : array-like of shape (n,)
        Higher = more likely an event.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made if omitted.
    label : str, optional
        Curve name for the legend, shown as ``"<label> (AUC = 0.812)"``.
    **line_kw
        Passed to ``Axes.plot`` for the curve (``color``, ``linestyle``, ...).

    Returns
    -------
    matplotlib.axes.Axes
    """
    y, s = metrics._paired(y_true, score, "roc_curve")
    roc = metrics._roc_points(y, s)
    ax = _axes(ax)
    text = f"AUC = {metrics._auc(roc):.3f}"
    ax.plot(roc.fpr, roc.tpr, label=f"{label} ({text})" if label else text, **line_kw)
    _diagonal(ax, "fedcredit-chance", "Chance")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="False positive rate (non-events flagged)",
           ylabel="True positive rate (events flagged)")
    ax.set_aspect("equal")
    ax.legend(loc="lower right")
    return ax


def ks_curve(y_true, score, ax=None, label=None):
    """Cumulative shares of events and non-events by depth into the population, KS marked.

    The x axis is the share of the population taken from the highest score down; the two
    curves are the shares of all events and of all non-events taken so far, and a dotted
    segment marks their largest gap, the KS statistic.

    Parameters
    ----------
    y_true, score : array-like of shape (n,)
        As for :func:`roc_curve`.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made if omitted.
    label : str, optional
        Prefix of the three legend entries, to tell models apart on one Axes.

    Returns
    -------
    matplotlib.axes.Axes
        With three new lines: events, non-events and the KS gap.
    """
    y, s = metrics._paired(y_true, score, "ks_curve")
    roc = metrics._roc_points(y, s)
    ax = _axes(ax)
    events, = ax.plot(roc.depth, roc.tpr, label=_named(label, "events"))
    ax.plot(roc.depth, roc.fpr, label=_named(label, "non-events"))
    i = int(np.argmax(np.abs(roc.tpr - roc.fpr)))
    gap = abs(roc.tpr[i] - roc.fpr[i])
    ax.plot([roc.depth[i]] * 2, [roc.fpr[i], roc.tpr[i]], linestyle=":", linewidth=2,
            color=events.get_color(), label=_named(label, f"KS = {gap:.3f}"))
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Share of population, highest scores first",
           ylabel="Cumulative share")
    ax.legend(loc="lower right")
    return ax


def lift_chart(y_true, score, bins: int = 10, ax=None, label=None, cumulative: bool = False,
               **line_kw):
    """Lift by score bin (deciles by default), highest scores first.

    Drawn as a line with markers rather than bars so that several models fit on one Axes.

    Parameters
    ----------
    y_true, score : array-like of shape (n,)
        As for :func:`roc_curve`.
    bins : int, default 10
        Number of equal-count bins, as in :func:`fedcredit.metrics.lift_table`.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made if omitted.
    label : str, optional
        Curve name for the legend.
    cumulative : bool, default False
        Plot the cumulative lift (top k bins together) instead of each bin's own lift.
    **line_kw
        Passed to ``Axes.plot`` for the curve.

    Returns
    -------
    matplotlib.axes.Axes
    """
    table = metrics.lift_table(y_true, score, bins=bins)
    ax = _axes(ax)
    column = "cum_lift" if cumulative else "lift"
    line_kw.setdefault("marker", "o")
    ax.plot(table.index, table[column], label=label, **line_kw)
    if not _has_reference(ax, "fedcredit-baseline"):
        ax.axhline(1.0, gid="fedcredit-baseline", label="Random (lift = 1)",
                   **_REFERENCE_STYLE)
    ax.set_xticks(table.index)
    ax.set(xlabel="Score bin (1 = highest scores)",
           ylabel="Cumulative lift" if cumulative else "Lift")
    ax.legend(loc="upper right")
    return ax


def score_distribution(y_true, score, bins: int = 30, ax=None, label=None,
                       density: bool = True):
    """Overlaid histograms of the scores of events and of non-events.

    Parameters
    ----------
    y_true, score : array-like of shape (n,)
        As for :func:`roc_curve`.
    bins : int, default 30
        Number of histogram bins, shared by both classes so the shapes compare.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made if omitted.
    label : str, optional
        Prefix of the legend entries.
    density : bool, default True
        Normalise each histogram to unit area. The default because events are usually a few
        percent of a credit portfolio: on a count scale their histogram would be a sliver.

    Returns
    -------
    matplotlib.axes.Axes
        With two new patches, non-events then events.
    """
    bins = metrics._check_bins(bins)
    y, s = metrics._paired(y_true, score, "score_distribution")
    ax = _axes(ax)
    edges = np.histogram_bin_edges(s, bins=bins)
    for value, name in ((0, "non-events"), (1, "events")):
        group = s[y == value]
        ax.hist(group, bins=edges, density=density, histtype="stepfilled", alpha=0.5,
                label=_named(label, f"{name} (n = {group.size})"))
    ax.set(xlabel="Score", ylabel="Density" if density else "Count")
    ax.legend(loc="upper right")
    return ax


def _iv_series(iv) -> pd.Series:
    """IV values as a float Series indexed by feature name, checked."""
    if isinstance(iv, Mapping):
        iv = pd.Series(dict(iv), dtype=object)
    if not isinstance(iv, pd.Series):
        raise InvalidInput(f"iv must be a mapping feature -> IV or a pandas Series, "
                           f"got {type(iv).__name__}")
    if iv.empty:
        raise InvalidInput("iv is empty")
    try:
        values = iv.astype(np.float64)
    except (TypeError, ValueError):
        raise InvalidInput("iv values must be numbers") from None
    bad = values.index[~np.isfinite(values.to_numpy()) | (values.to_numpy() < 0)]
    if len(bad):
        # feature names are not secret; naming a few saves a hunt through the IV table
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise InvalidInput(f"IV must be finite and >= 0; {len(bad)} feature(s) are not: {shown}")
    values.index = values.index.map(str)
    return values


def iv_bar_chart(iv, top: int = 20, party=None, ax=None):
    """Horizontal bars of information value, strongest feature at the top.

    Parameters
    ----------
    iv : Mapping[str, float] or pandas.Series
        Information value per feature, e.g. from the WOE/IV step of a scorecard.
    top : int, default 20
        Number of features shown (those with the largest IV).
    party : Mapping[str, str] or pandas.Series, optional
        Feature -> owning party (e.g. ``"active"``/``"passive"``, or ``"bank"``/
        ``"holder"``): bars are coloured by party, with a legend. Features missing from the
        mapping are grouped as ``"unknown"``, in grey.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made if omitted.

    Returns
    -------
    matplotlib.axes.Axes
        With one bar (patch) per feature shown.
    """
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise InvalidInput(f"top must be an integer >= 1, got {top!r}")
    if party is not None and not isinstance(party, (Mapping, pd.Series)):
        raise InvalidInput(f"party must be a mapping feature -> party or a pandas Series, "
                           f"got {type(party).__name__}")
    shown = _iv_series(iv).sort_values(ascending=False, kind="stable").head(int(top))
    ax = _axes(ax)
    positions = np.arange(len(shown))[::-1]  # largest IV on the top row
    if party is None:
        ax.barh(positions, shown.to_numpy())
    else:
        owners = [str(party.get(name, "unknown")) for name in shown.index]
        colours = _party_colours(owners)
        ax.barh(positions, shown.to_numpy(), color=[colours[o] for o in owners])
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=c, label=o) for o, c in colours.items()],
                  title="party", loc="lower right")
    ax.set_yticks(positions, labels=list(shown.index))
    ax.set_xlabel("Information value")
    return ax


def _party_colours(owners) -> dict:
    """party -> colour, from the style's colour cycle in sorted order; unknown is grey."""
    cycle = _pyplot().rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    named = sorted(set(owners) - {"unknown"})
    colours = {name: cycle[i % len(cycle)] for i, name in enumerate(named)}
    if "unknown" in owners:
        colours["unknown"] = "lightgrey"
    return colours


def calibration_plot(y_true, prob, bins: int = 10, ax=None, label=None,
                     strategy: str = "quantile", **line_kw):
    """Observed event rate against mean predicted probability, by bin of predictions.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1 labels, 1 = event.
    prob : array-like of shape (n,)
        Predicted event probabilities in [0, 1].
    bins : int, default 10
        Number of bins.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made if omitted.
    label : str, optional
        Curve name for the legend.
    strategy : {"quantile", "uniform"}, default "quantile"
        Binning, as in :func:`fedcredit.metrics.calibration_table`.
    **line_kw
        Passed to ``Axes.plot`` for the curve.

    Returns
    -------
    matplotlib.axes.Axes
    """
    table = metrics.calibration_table(y_true, prob, bins=bins, strategy=strategy)
    ax = _axes(ax)
    line_kw.setdefault("marker", "o")
    ax.plot(table["mean_predicted"], table["observed_rate"], label=label, **line_kw)
    _diagonal(ax, "fedcredit-perfect", "Perfectly calibrated")
    ax.set(xlabel="Mean predicted probability", ylabel="Observed event rate")
    ax.legend(loc="upper left")
    return ax


# -- the platform's statistics (``fedcredit holder stats --plots``) -----------------------------


# the operator's and the monitor's figures, in modules of their own (they use the helpers above)
from .lifecycle import migration_heatmap, score_drift  # noqa: E402
from .platform import grouped_bar_chart, platform_stats_figure  # noqa: E402

__all__ += ["grouped_bar_chart", "platform_stats_figure", "migration_heatmap", "score_drift"]
