"""Figures for notebooks: ROC, KS, lift, score distributions, IV bars and calibration.

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

from . import metrics
from .errors import InvalidInput

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
__all__ += ["grouped_bar_chart", "platform_stats_figure"]

#: hatch of bars computed from too few loans to read much into
SMALL_HATCH = "///"
#: fonts with Chinese glyphs, tried for group names (industries, products) when installed
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei",
             "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC",
             "Droid Sans Fallback")


def _label_font() -> dict:
    """Text properties for labels that may be Chinese: the style's font, then any installed
    CJK font as a fallback (matplotlib >= 3.6 falls back glyph by glyph)."""
    from matplotlib import font_manager, rcParams

    installed = {f.name for f in font_manager.fontManager.ttflist}
    cjk = [f for f in CJK_FONTS if f in installed]
    return {"fontfamily": [*rcParams["font.family"], *cjk]} if cjk else {}


def grouped_bar_chart(table, group: str, columns, ax=None, top: int = 20, marked=None,
                      xlabel: str | None = None, order_by: str | None = None,
                      legend: str | None = "lower right"):
    """Horizontal bars of one or more columns per group, side by side, the largest groups
    (by ``order_by``, default the first column) at the top.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per group; ``group`` names the groups, ``columns`` are numbers (NaN: no bar).
    group : str
        The column holding the group names.
    columns : sequence of str
    ax : matplotlib.axes.Axes, optional
    top : int, default 20
        Groups shown.
    marked : Mapping[str, array-like of bool], optional
        Column -> rows whose bar is hatched (e.g. computed from fewer than 5 loans).
    xlabel, order_by : str, optional
        The x axis label; the column that ranks the groups.
    legend : str or None, default "lower right"
        The legend's place (for several columns or marked bars); None: no legend.

    Returns
    -------
    matplotlib.axes.Axes
        With one bar (patch) per group shown and column.
    """
    if not isinstance(table, pd.DataFrame):
        raise InvalidInput(f"table must be a pandas DataFrame, got {type(table).__name__}")
    columns = [str(c) for c in columns]
    order_by = columns[0] if order_by is None and columns else order_by
    missing = [c for c in dict.fromkeys([group, *columns, order_by]) if c not in table.columns]
    if missing or not columns:
        raise InvalidInput(f"table has no column(s) {missing or 'to draw'}")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise InvalidInput(f"top must be an integer >= 1, got {top!r}")
    try:
        values = table[columns].astype(np.float64)
        rank = table[order_by].astype(np.float64).fillna(-np.inf).to_numpy()
    except (TypeError, ValueError):
        raise InvalidInput(f"columns {columns} must hold numbers") from None
    order = np.argsort(-rank, kind="stable")[:int(top)]
    marks = {c: np.asarray(m, dtype=bool)[order] for c, m in (marked or {}).items()}
    ax = _axes(ax)
    height = 0.8 / len(columns)
    positions = np.arange(len(order))[::-1].astype(np.float64)
    for k, c in enumerate(columns):
        bars = ax.barh(positions + 0.4 - height * (k + 0.5), values[c].to_numpy()[order],
                       height=height, label=c, color=f"C{k}")
        for bar, small in zip(bars, marks.get(c, np.zeros(len(order), bool)).tolist()):
            bar.set_hatch(SMALL_HATCH if small else None)
    ax.set_yticks(positions, labels=[str(v) for v in table[group].to_numpy()[order]],
                  **_label_font())
    if xlabel:
        ax.set_xlabel(xlabel)
    if legend and (len(columns) > 1 or marks):
        ax.legend(loc=legend, fontsize="small")
    return ax


def platform_stats_figure(table, group: str, top: int = 20, title: str | None = None,
                          few_loans: int = 5, fig=None):
    """One statistics table of the platform as three panels of bars: loans and
    enterprises, amount granted, and the shares and default rate (hatched where computed
    from fewer than ``few_loans`` loans, or known outcomes).

    ``table``: a table of :func:`fedcredit.holder.stats.platform_stats` (columns ``loans``,
    ``amount``, ``first_loan_share``, ``credit_loan_share``, ``default_rate``,
    ``known_outcomes``, and ``borrowers``/``enterprises_served`` when present). ``fig``: a
    matplotlib Figure to draw on (a new pyplot figure otherwise). Returns the Figure.
    """
    need = "loans amount first_loan_share credit_loan_share default_rate known_outcomes".split()
    if not isinstance(table, pd.DataFrame) or any(c not in table.columns for c in need):
        raise InvalidInput(f"a platform statistics table needs the columns {need}")
    if fig is None:
        fig = _pyplot().figure(figsize=(15, 2 + 0.35 * min(int(top), max(len(table), 1))))
    axes = fig.subplots(1, 3, sharey=True)
    few = table["loans"].to_numpy() < few_loans
    counts = [c for c in ("loans", "borrowers", "enterprises_served") if c in table.columns]
    # ranked by loans in every panel, so a row is the same group across the figure
    grouped_bar_chart(table, group, counts, ax=axes[0], top=top, xlabel="count",
                      order_by="loans", legend=None)
    grouped_bar_chart(table, group, ["amount"], ax=axes[1], top=top, order_by="loans",
                      marked={"amount": few}, xlabel="amount granted", legend=None)
    grouped_bar_chart(table, group, ["first_loan_share", "credit_loan_share", "default_rate"],
                      ax=axes[2], top=top, order_by="loans",
                      marked={"first_loan_share": few, "credit_loan_share": few,
                              "default_rate": table["known_outcomes"].to_numpy() < few_loans},
                      xlabel="share", legend=None)
    axes[2].set_xlim(0, 1)
    for ax in axes:  # above each panel: never over a bar
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False,
                  fontsize="small")
    fig.suptitle((title or group) + f"  (hatched: fewer than {few_loans} loans or known "
                 "outcomes; top groups by loans)")
    fig.tight_layout()
    return fig
