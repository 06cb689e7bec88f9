"""``fedcredit holder report --uscc X``: every use of one enterprise's data."""
from __future__ import annotations

import json

from .holder_cmds import _dir, _open


def register(hs) -> None:
    """Add this module's commands to ``fedcredit holder``."""
    s = hs.add_parser("report", help="every use of one enterprise's data: bank, purpose, "
                                     "aligned / trained on / scored, model, time",
                      description="List every use of one enterprise's data recorded in the "
                                  "use record (tied to the audit chain), oldest first, as the "
                                  "enterprise would be shown it.")
    _dir(s)
    s.add_argument("--uscc", required=True, help="the enterprise's unified social credit code")
    s.add_argument("--since", help="from this time: 2026-01-31, 2026-01-31T08:00:00Z, or "
                                   "7d / 24h / 30m back from now (UTC)")
    s.add_argument("--until", help="before this time (same forms)")
    s.add_argument("--json", action="store_true", help="a JSON list instead of a table")
    s.set_defaults(func=_report)


def _report(a) -> int:
    from ..holder import uses

    uscc = uses.check_uscc(a.uscc.strip(), "--uscc")  # fails before the store opens
    _, con = _open(a.dir)
    try:
        rows = uses.report(con, uscc, a.since, a.until)
    finally:
        con.close()
    if a.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    span = "".join((f" since {a.since}" if a.since else "", f" until {a.until}" if a.until else ""))
    if not rows:
        print(f"no recorded use of {uscc}'s data{span}")
        return 0
    print(f"{len(rows)} uses of {uscc}'s data{span} (times UTC):")
    table = [("time (UTC)", "bank", "purpose", "what", "model")] + [
        (r["time"][:19].replace("T", " "), r["bank"], r["purpose"], r["kind"],
         r["model"] or "-") for r in rows]
    widths = [max(len(row[k]) for row in table) for k in range(5)]
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0
