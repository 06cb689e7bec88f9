"""``fedcredit holder stats``: what the platform reports of its work.

    fedcredit holder stats --dir D [--since 30d] [--by region --by bank] [--json]
        [--csv DIR] [--plots DIR]

Tables by region (USCC characters 3-8), industry, enterprise type, bank and product, and
the requests of every protocol per bank and purpose (see :mod:`fedcredit.holder.stats`).
"""
from __future__ import annotations

import json
import math
import unicodedata

from .holder_cmds import _dir, _open

DESCRIPTION = (
    "The platform's statistics, by region (the administrative-division code of the USCC, "
    "characters 3-8), industry, enterprise type, bank and product: enterprises served, loans "
    "granted through the platform (as the banks report them) and their amount, first-loan and "
    "credit-loan (unsecured) shares, and the default rate (defaults / loans with a known "
    "outcome: repaid or default). Cells from fewer than 5 loans are marked *. Plus the "
    "requests and sessions of every protocol per bank and purpose.")
#: --by choices -> the table names of fedcredit.holder.stats
BY = {"region": "region", "industry": "industry", "type": "type", "enterprise-type": "type",
      "bank": "bank", "product": "product", "requests": "requests"}
_REQUEST_HEAD = ("bank", "purpose", "requests", "sessions", "enterprises_aligned",
                 "enterprises_scored", "trees_trained", "models", "refused",
                 "enterprises_loan_reported")


def register(hs) -> None:
    s = hs.add_parser("stats", help="statistics by region, industry, type, bank and product; "
                                    "requests per bank and purpose", description=DESCRIPTION)
    _dir(s)
    s.add_argument("--since", help="loans granted, enterprises served and requests answered "
                                   "from then on: ISO date/time (UTC) or 7d / 24h / 30m")
    s.add_argument("--by", action="append", choices=sorted(BY), metavar="TABLE",
                   help="only these tables (repeatable): region, industry, type, bank, "
                        "product, requests (default: all)")
    s.add_argument("--json", action="store_true", help="print every table as JSON")
    s.add_argument("--csv", metavar="DIR", help="write one CSV per table into DIR")
    s.add_argument("--plots", metavar="DIR", help="write one PNG of bar charts per table")
    s.set_defaults(func=_stats)


def _stats(a) -> int:
    from ..holder import stats

    tables = tuple(dict.fromkeys(BY[b] for b in a.by)) if a.by else stats.TABLES
    cfg, con = _open(a.dir)
    try:
        result = stats.platform_stats(cfg, con, a.since, tables)
    finally:
        con.close()
    written = []
    if a.csv:
        written += stats.write_csvs(result, a.csv)
    if a.plots:
        written += stats.write_plots(result, a.plots)
    if a.json:
        print(json.dumps(stats.to_json(result), indent=2, ensure_ascii=False))
        return 0
    for name, table in result.tables.items():
        print(f"== {name} ==")
        if name == "requests":
            print(_requests_text(result.requests, a.since))
        elif table.empty:
            print("no loans reported and no enterprises served")
        else:
            print(_grouped_text(table))
        print()
    for note in result.notes:
        print(f"note: {note}")
    for path in written:
        print(f"wrote {path}")
    return 0


def _requests_text(rows: list[dict], since) -> str:
    if not rows:
        return "no bank requests recorded" + (f" since {since}" if since else "")
    names = list(rows[0]["protocols"])
    head = [*_REQUEST_HEAD, *names]
    cells = [[str(r[h]) for h in _REQUEST_HEAD] +
             [str(r["protocols"][n]["requests"]) for n in names] for r in rows]
    lines = _columns(head, cells)
    return "\n".join(lines + ["(protocol columns: requests answered per protocol)"])


def _grouped_text(table) -> str:
    head = [c for c in table.columns if c not in ("few_loans", "few_outcomes")]
    cells, marked = [], False
    for row in table.to_dict(orient="records"):
        line = []
        for c in head:
            v = row[c]
            text = _number(v) if c != head[0] else str(v)
            if text != "-" and ((c in ("amount", "first_loan_share", "credit_loan_share")
                                 and row["few_loans"]) or
                                (c == "default_rate" and row["few_outcomes"])):
                text += "*"
                marked = True
            line.append(text)
        cells.append(line)
    foot = ["* from fewer than 5 loans (default_rate: 5 loans with a known outcome)"]
    return "\n".join(_columns(head, cells) + (foot if marked else []))


def _number(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:.3f}" if abs(v) < 10 else f"{v:,.0f}"
    return str(v)


def _width(text: str) -> int:
    """Columns ``text`` takes on a terminal (Chinese characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def _columns(head, cells) -> list[str]:
    widths = [max(_width(h), *(_width(r[k]) for r in cells)) for k, h in enumerate(head)]
    lines = ["  ".join(_pad(h, w) for h, w in zip(head, widths)).rstrip()]
    lines += ["  ".join(_pad(v, w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return lines
