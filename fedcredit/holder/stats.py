"""The platform's statistics: what it financed and for whom, and the work of every protocol.

By region (the USCC's administrative-division code, characters 3-8), industry, enterprise
type, bank and product: enterprises served (distinct enterprises whose data a bank aligned,
trained on or scored, from the per-enterprise use record), loans granted through the
platform as the banks report them and their amount, the first-loan share, the credit-loan
(unsecured) share, and the default rate — defaults among the loans with a known outcome
(repaid or default; loans still current or overdue are not counted in it). Plus, per bank
and purpose, the requests and sessions of every protocol (:func:`audit_report.stats`).

This is the operator's own view: small groups are shown, and every cell computed from
fewer than :data:`FEW_LOANS` loans (or known outcomes, for the default rate) is marked.
Industry and type come from the current feature table (``[stats]`` of ``holder.toml``
names the columns); an enterprise it does not describe counts as ``unknown``.
"""
from __future__ import annotations

import math
import sqlite3
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_with
from ..errors import FedCreditError, InvalidInput
from . import audit_report, features
from .config import HolderConfig
from .loans import read_loans

#: the grouped tables, and the column naming each one's groups
GROUPS = {"region": "region", "industry": "industry", "type": "enterprise_type",
          "bank": "bank", "product": "product"}
TABLES = (*GROUPS, "requests")
FEW_LOANS = 5
UNKNOWN = "unknown"
#: kinds of use that serve an enterprise (a bank's loan report is not a use of its data)
SERVED_KINDS_EXCLUDED = ("loan reported",)
DEFAULT_RATE_NOTE = ("default_rate = defaults / loans with a known outcome (repaid or "
                     "default); current and overdue loans are not in it")
FEW_NOTE = (f"few_loans / few_outcomes: the row's shares and amount (few_loans) or default "
            f"rate (few_outcomes) come from fewer than {FEW_LOANS} loans")


@dataclass
class PlatformStats:
    """Tables by name (:data:`TABLES`), the requests as ``audit_report.stats`` gives them,
    and notes saying how to read the numbers and what could not be counted."""

    tables: dict[str, pd.DataFrame]
    requests: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def platform_stats(cfg: HolderConfig, con: sqlite3.Connection, since: str | None = None,
                   tables=TABLES) -> PlatformStats:
    """Every table of ``tables`` (default all) from the store of ``cfg``.

    ``since`` (a date, a time or ``30d``): loans granted, enterprises served and requests
    answered from then on.
    """
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise InvalidInput(f"no statistics table {unknown}; expected some of {list(TABLES)}")
    out = PlatformStats({}, notes=[DEFAULT_RATE_NOTE, FEW_NOTE])
    if "requests" in tables:
        out.requests = audit_report.stats(con, since)
        out.tables["requests"] = requests_table(out.requests)
    grouped = [t for t in tables if t in GROUPS]
    if grouped:
        loans = read_loans(con, since)
        served = served_enterprises(con, since, out.notes)
        attrs = enterprise_attributes(cfg, con, out.notes)
        for name in grouped:
            out.tables[name] = group_table(loans, served, name, attrs)
        if served is not None:
            out.notes.append("enterprises_served: distinct enterprises a bank aligned, "
                             "trained on or scored (the product table has none: uses name "
                             "no product)")
    out.tables = {t: out.tables[t] for t in dict.fromkeys(tables)}
    return out


def served_enterprises(con: sqlite3.Connection, since: str | None,
                       notes: list[str]) -> pd.DataFrame | None:
    """Distinct (bank, uscc) the use record shows served, or None (noted) without one."""
    try:
        from .uses import enterprises_used  # the per-enterprise use record
    except ImportError:
        notes.append("enterprises_served: not counted (this holder has no per-enterprise "
                     "use record, fedcredit.holder.uses)")
        return None
    used = enterprises_used(con, since=since)
    used = used[~used["kind"].isin(SERVED_KINDS_EXCLUDED)]
    return used[["bank", "uscc"]].drop_duplicates().reset_index(drop=True)


def enterprise_attributes(cfg: HolderConfig, con: sqlite3.Connection,
                          notes: list[str]) -> pd.DataFrame:
    """Industry and enterprise type per USCC (index) from the current feature table."""
    want = {"industry": cfg.stats_industry_column, "enterprise_type": cfg.stats_type_column}
    empty = pd.DataFrame(columns=list(want), index=pd.Index([], dtype=object, name="uscc"))
    cur = features.current(con)
    if cur is None:
        notes.append("industry, enterprise_type: unknown (no feature table loaded)")
        return empty
    path = cfg.features_dir / cur["file"]
    try:
        import pyarrow.parquet as pq

        names = set(pq.read_schema(path).names)
        labels = {published: source for source, published in cfg.feature_labels.items()}
        source = {k: v if v in names else labels.get(v, v) for k, v in want.items()}
        found = {k: v for k, v in source.items() if v in names}
        frame = pd.read_parquet(path, columns=list(found.values()))
    except (OSError, ValueError) as e:
        notes.append(f"industry, enterprise_type: unknown (the feature table {path.name} "
                     f"cannot be read: {type(e).__name__})")
        return empty
    for k, v in want.items():
        if k not in found:
            notes.append(f"{k}: unknown (the feature table has no column {v!r}; see "
                         "[stats] in holder.toml)")
    frame = frame.rename(columns={v: k for k, v in found.items()})
    frame.index = frame.index.astype(str)
    return frame.reindex(columns=list(want))


def _labels(values: pd.Series) -> pd.Series:
    """Group names as text, missing ones ``unknown``."""
    text = values.astype("string").str.strip()
    return text.mask(text.isna() | (text == ""), UNKNOWN).astype(object)


def _keys(frame: pd.DataFrame, name: str, attrs: pd.DataFrame) -> pd.Series:
    """The group of every row of ``frame`` (with ``uscc``, and ``bank``/``product``)."""
    if name == "region":
        return frame["uscc"].astype(str).str.slice(2, 8)
    if name in ("industry", "type"):
        col = GROUPS[name]
        looked = attrs[col].reindex(frame["uscc"].astype(str)) if col in attrs else None
        return _labels(pd.Series(looked.to_numpy() if looked is not None else None,
                                 index=frame.index, dtype=object))
    return _labels(frame[name])


def group_table(loans: pd.DataFrame, served: pd.DataFrame | None, name: str,
                attrs: pd.DataFrame) -> pd.DataFrame:
    """One statistics table: a row per group, most loans first.

    ``loans``: the loan book (:func:`~fedcredit.holder.loans.read_loans`); ``served``:
    distinct (bank, uscc) served, or None; ``attrs``: industry and type per USCC.
    """
    group = GROUPS[name]
    keyed = loans.assign(_g=_keys(loans, name, attrs).to_numpy())
    status = keyed["status"]
    keyed = keyed.assign(_credit=keyed["credit_type"] == "credit",
                         _known=status.isin(("repaid", "default")),
                         _default=status == "default")
    by = keyed.groupby("_g", sort=False)
    table = pd.DataFrame({
        "borrowers": by["uscc"].nunique(), "loans": by.size(), "amount": by["amount"].sum(),
        "first_loan_share": by["first_loan"].mean(), "credit_loan_share": by["_credit"].mean(),
        "known_outcomes": by["_known"].sum(), "defaults": by["_default"].sum()})
    if served is not None and name != "product":
        s = served if name == "bank" else served[["uscc"]].drop_duplicates()
        counts = s.assign(_g=_keys(s, name, attrs).to_numpy()).groupby("_g").size()
        table = table.join(counts.rename("enterprises_served"), how="outer")
        table.insert(0, "enterprises_served", table.pop("enterprises_served"))
    ints = [c for c in ("enterprises_served", "borrowers", "loans", "known_outcomes",
                        "defaults") if c in table]
    table[ints] = table[ints].fillna(0).astype("int64")
    table["amount"] = table["amount"].fillna(0.0).astype("float64")
    known = table["known_outcomes"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        table["default_rate"] = np.where(known > 0, table["defaults"] / np.maximum(known, 1),
                                         np.nan)
    table["few_loans"] = table["loans"] < FEW_LOANS
    table["few_outcomes"] = table["known_outcomes"] < FEW_LOANS
    table.index.name = group
    table = table.reset_index()
    table[group] = table[group].astype(str)
    sort = ["loans", "enterprises_served"] if "enterprises_served" in table else ["loans"]
    return table.sort_values([*sort, group], ascending=[False] * len(sort) + [True],
                             kind="stable").reset_index(drop=True)


def requests_table(rows: list[dict]) -> pd.DataFrame:
    """``audit_report.stats`` rows, one column per protocol's requests and sessions."""
    flat = []
    for r in rows:
        d = {k: v for k, v in r.items() if k != "protocols"}
        for proto, counts in r.get("protocols", {}).items():
            d[f"{proto}_requests"] = counts["requests"]
            d[f"{proto}_sessions"] = counts["sessions"]
        flat.append(d)
    return pd.DataFrame(flat)


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if math.isnan(float(v)) else float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def to_json(stats: PlatformStats) -> dict:
    """``{"requests": [...], "region": [...], ..., "notes": [...]}``; NaN becomes null."""
    out: dict = {}
    if "requests" in stats.tables:
        out["requests"] = stats.requests
    for name, table in stats.tables.items():
        if name != "requests":
            out[name] = [{k: _jsonable(v) for k, v in row.items()}
                         for row in table.to_dict(orient="records")]
    out["notes"] = list(stats.notes)
    return out


def write_csvs(stats: PlatformStats, directory) -> list[Path]:
    """One CSV per table (``<table>.csv``), each written whole or not at all."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in stats.tables.items():
        def writer(tmp: Path, t: pd.DataFrame = table) -> None:
            t.to_csv(tmp, index=False)

        written.append(write_with(d / f"{name}.csv", writer))
    return written


def write_plots(stats: PlatformStats, directory, top: int = 20) -> list[Path]:
    """One PNG of bar charts per table (``<table>.png``), each written atomically."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise FedCreditError("--plots needs matplotlib: pip install fedcredit[plots]") from None
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = [_plot(d, name, table, top, Figure) for name, table in stats.tables.items()]
    if any("missing from font" in str(w.message) for w in caught):
        stats.notes.append("plots: some group names use characters no installed font has "
                           "(install a CJK font, e.g. Noto Sans CJK SC, for Chinese names)")
    return written


def _plot(d: Path, name: str, table: pd.DataFrame, top: int, figure_cls) -> Path:
    from .. import plots

    if name == "requests":
        fig = _requests_figure(table, top, figure_cls)
    else:
        fig = figure_cls(figsize=(15, 2 + 0.35 * min(top, max(len(table), 1))))
        plots.platform_stats_figure(table, GROUPS[name], top=top, title=name,
                                    few_loans=FEW_LOANS, fig=fig)

    def writer(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=100)

    return write_with(d / f"{name}.png", writer)


def _requests_figure(table: pd.DataFrame, top: int, figure_cls):
    from .. import plots

    fig = figure_cls(figsize=(12, max(3.0, 1.5 + 0.8 * min(top, max(len(table), 1)))))
    ax = fig.subplots()
    cols = [c for c in table.columns if c.endswith("_requests")]
    if table.empty or not cols:
        ax.text(0.5, 0.5, "no bank requests recorded", ha="center", va="center")
        ax.set_axis_off()
        return fig
    named = table.assign(who=table["bank"].astype(str) + " / " + table["purpose"].astype(str))
    plots.grouped_bar_chart(named, "who", cols, ax=ax, top=top, order_by="requests",
                            xlabel="requests answered", legend=None)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.set_title("requests per bank and purpose, by protocol")
    fig.tight_layout()
    return fig
