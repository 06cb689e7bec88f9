"""``fedcredit holder stats``: what the platform reports of its work."""
from __future__ import annotations

import json

from .holder_cmds import _dir, _open


def register(hs) -> None:
    s = hs.add_parser("stats", help="requests per bank and purpose, enterprises served")
    _dir(s)
    s.add_argument("--since")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_stats)


def _stats(a) -> int:
    from ..holder import audit_report

    _, con = _open(a.dir)
    try:
        rows = audit_report.stats(con, a.since)
    finally:
        con.close()
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no bank requests recorded" + (f" since {a.since}" if a.since else ""))
        return 0
    head = ("bank", "purpose", "requests", "sessions", "enterprises_aligned",
            "enterprises_scored", "trees_trained", "models", "refused")
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in head]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in rows:
        print("  ".join(str(r[h]).ljust(w) for h, w in zip(head, widths)))
    return 0
