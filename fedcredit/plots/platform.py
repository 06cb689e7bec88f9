"""Bar charts of the platform's statistics (``fedcredit holder stats --plots``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from . import _axes, _pyplot

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


