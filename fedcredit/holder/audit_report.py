"""Reading the audit log for people: export (JSON lines or CSV) and per-bank statistics,
with the work of every protocol counted from the registry's audit operations."""
from __future__ import annotations

import csv
import datetime as dt
import json
import re
import sqlite3
import sys

from ..errors import InvalidInput
from ..protocol.registry import PROTOCOLS, SCORING_OPERATIONS
from .store import AUDIT_FIELDS as FIELDS


def parse_time(text: str) -> str:
    """An ISO date/time (UTC unless it says otherwise) or a relative ``7d``/``24h``/``30m``
    back from now, as the store's timestamp text."""
    text = text.strip()
    m = re.fullmatch(r"(\d+)([dhm])", text)
    if m:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[m.group(2)]
        t = dt.datetime.now(dt.timezone.utc) - dt.timedelta(**{unit: int(m.group(1))})
    else:
        try:
            t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"not a time: {text!r} (use 2026-01-31, 2026-01-31T08:00:00Z "
                               "or 7d / 24h / 30m)") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def export(con: sqlite3.Connection, since: str | None, until: str | None, fmt: str,
           out=sys.stdout) -> int:
    """Write records (with their hashes and MACs, so a copy can be checked; never the key)
    as JSON lines or CSV."""
    if fmt not in ("jsonl", "csv"):
        raise InvalidInput("--format must be jsonl or csv")
    names = [*FIELDS, "prev_hash", "hash", "mac"]
    sql = f"SELECT {', '.join(names)} FROM audit_log WHERE 1=1"
    args: list = []
    if since:
        sql += " AND ts >= ?"
        args.append(parse_time(since))
    if until:
        sql += " AND ts < ?"
        args.append(parse_time(until))
    writer = csv.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(names)
    n = 0
    for row in con.execute(sql + " ORDER BY seq", args):
        if writer:
            writer.writerow(row)
        else:
            out.write(json.dumps(dict(zip(names, row)), ensure_ascii=False) + "\n")
        n += 1
    return n


def stats(con: sqlite3.Connection, since: str | None = None) -> list[dict]:
    """Per bank and purpose: requests, sessions, enterprises aligned and scored, trees, models,
    refusals, enterprises whose loans the bank reported (summed over reports), and under
    ``protocols`` the requests and sessions of every protocol of
    :data:`fedcredit.protocol.registry.PROTOCOLS` (derived from its audit operations)."""
    where, args = "actor = 'bank'", []
    if since:
        where += " AND ts >= ?"
        args.append(parse_time(since))
    per_protocol, names = [], []
    for p in PROTOCOLS:
        ops = ", ".join("'" + op.replace("'", "''") + "'" for op in p.operations)
        per_protocol.append(f"COUNT(CASE WHEN operation IN ({ops}) THEN 1 END), "
                            f"COUNT(DISTINCT CASE WHEN operation IN ({ops}) AND session != '' "
                            "THEN session END)")
        names.append(p.name)
    scoring = ", ".join(f"'{op}'" for op in SCORING_OPERATIONS)
    rows = con.execute(f"""
        SELECT bank, purpose,
               COUNT(*),
               COUNT(DISTINCT CASE WHEN session != '' THEN session END),
               SUM(CASE WHEN operation = 'align' THEN enterprises ELSE 0 END),
               SUM(CASE WHEN operation IN ({scoring}) THEN enterprises ELSE 0 END),
               SUM(CASE WHEN operation = 'tree_start' THEN 1 ELSE 0 END),
               SUM(CASE WHEN operation IN ('model_finish', 'lr_finish') THEN 1 ELSE 0 END),
               SUM(CASE WHEN operation LIKE 'refused:%' THEN 1 ELSE 0 END),
               MIN(ts), MAX(ts),
               SUM(CASE WHEN operation = 'loan_report' THEN enterprises ELSE 0 END),
               {", ".join(per_protocol)}
        FROM audit_log WHERE {where}
        GROUP BY bank, purpose ORDER BY bank, purpose""", args).fetchall()
    keys = ("bank", "purpose", "requests", "sessions", "enterprises_aligned",
            "enterprises_scored", "trees_trained", "models", "refused", "first", "last",
            "enterprises_loan_reported")
    out = []
    for r in rows:
        d = dict(zip(keys, r))
        tail = r[len(keys):]
        d["protocols"] = {name: {"requests": tail[2 * k], "sessions": tail[2 * k + 1]}
                          for k, name in enumerate(names)}
        out.append(d)
    return out


