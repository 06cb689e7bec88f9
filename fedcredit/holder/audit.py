"""The tamper-evident audit log: a SHA-256 hash chain in the holder's SQLite store.

Every bank request (through the protocol core's ``auditor`` hook) and every operator action
(init, feature loads, consent imports and revocations, server start and stop) appends one
record, committed before the call returns. Record ``k`` stores::

    hash_k = SHA-256(hash_{k-1} || "\\n" || canonical JSON [seq, ts, actor, bank, purpose,
                                                            operation, enterprises,
                                                            session, detail])

with ``hash_0`` = 64 zeros. ``seq`` runs 1, 2, 3... without gaps, and ``chain_head``
holds the last (seq, hash), written in the same transaction. :func:`verify` recomputes the
chain and names the first record that was edited (its content no longer matches its hash),
deleted or reordered (a gap in ``seq``, or a ``prev_hash`` that is not its predecessor's
hash), or cut from the end (the chain stops before the head).

**Limits**: someone who can write the database *and* recompute every later hash can rewrite
history undetectably from the store alone. Anchor the head outside the holder's machine:
``fedcredit holder audit verify`` prints it; record ``seq:hash`` somewhere else (a ticket, a
signed e-mail, the platform's supervisor) and check it later with ``--anchor seq:hash``.

No enterprise id or feature value is written by the bank-request path: records carry counts,
the bank (its certificate name), purpose, operation and session id.
"""
from __future__ import annotations

import csv
import datetime as dt
import getpass
import hashlib
import json
import logging
import re
import sqlite3
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InvalidInput
from ..protocol.registry import PROTOCOLS
from .store import write

GENESIS = "0" * 64
FIELDS = ("seq", "ts", "actor", "bank", "purpose", "operation", "enterprises", "session",
          "detail")
log = logging.getLogger("fedcredit.holder.audit")


def now_iso() -> str:
    """UTC time, microseconds, fixed width (so text order is time order)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(prev_hash: str, values) -> str:
    body = json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + "\n" + body).encode("utf-8")).hexdigest()


def operator() -> str:
    try:
        return "operator:" + getpass.getuser()
    except Exception:  # no user name in a container: still an operator action
        return "operator:unknown"


def append(con: sqlite3.Connection, *, actor: str, bank: str = "", purpose: str = "",
           operation: str, enterprises: int = 0, session: str = "", detail: str = "") -> int:
    """Append one record inside the caller's write transaction; returns its seq."""
    head = con.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
    seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
    values = (seq, now_iso(), str(actor), str(bank), str(purpose), str(operation),
              int(enterprises), str(session), str(detail))
    h = record_hash(prev, values)
    con.execute("INSERT INTO audit_log (seq, ts, actor, bank, purpose, operation, enterprises,"
                " session, detail, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (*values, prev, h))
    con.execute("INSERT INTO chain_head (id, seq, hash) VALUES (1, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                (seq, h))
    return seq


def record_operator(con: sqlite3.Connection, operation: str, detail: str = "", *,
                    bank: str = "", purpose: str = "", enterprises: int = 0) -> int:
    """An operator action, in its own transaction."""
    with write(con):
        return append(con, actor=operator(), bank=bank, purpose=purpose, operation=operation,
                      enterprises=enterprises, detail=detail)


class SqliteAuditor:
    """The protocol core's ``auditor`` hook, writing to the hash chain.

    ``record`` returns only after the record is committed (``synchronous=FULL``), and the
    protocol core calls it before its answer leaves: no answer without its audit record.
    Each record is also logged (one structured line, counts only).
    """

    def __init__(self, con: sqlite3.Connection):
        self.con = con
        self._lock = threading.Lock()

    def record(self, *, bank: str, purpose: str, operation: str, enterprises: int,
               session: str, detail: str = "") -> None:
        with self._lock, write(self.con):
            seq = append(self.con, actor="bank", bank=bank, purpose=purpose,
                         operation=operation, enterprises=enterprises, session=session,
                         detail=detail)
        log.info("request", extra={"fields": {
            "audit_seq": seq, "bank": bank, "purpose": purpose, "operation": operation,
            "enterprises": int(enterprises), "session": session[:8]}})


# -- verification -------------------------------------------------------------------------------
@dataclass
class VerifyResult:
    ok: bool
    records: int
    head_seq: int
    head_hash: str
    problem: str = ""
    bad_seq: int | None = None


def verify(con: sqlite3.Connection, anchors: Sequence[tuple[int, str]] = ()) -> VerifyResult:
    """Recompute the chain; the first problem found is reported (see the module notes)."""
    cols = ", ".join(FIELDS)
    prev, expected, n = GENESIS, 1, 0
    hashes: dict[int, str] = {}
    wanted = {s for s, _ in anchors}
    cur = con.execute(f"SELECT rowid, {cols}, prev_hash, hash FROM audit_log ORDER BY rowid")
    for row in cur:
        rowid, values, prev_hash, h = row[0], row[1:10], row[10], row[11]
        seq = values[0]
        where = f"record seq={seq!r} (row {rowid}, {values[1]!s:.27})"
        if seq != expected:
            what = ("deleted" if isinstance(seq, int) and seq > expected
                    else "reordered or renumbered")
            return VerifyResult(False, n, 0, "", f"{where}: expected seq={expected}; records "
                                f"were {what}", seq if isinstance(seq, int) else expected)
        if prev_hash != prev:
            return VerifyResult(False, n, 0, "", f"{where}: prev_hash is not the hash of the "
                                "record before it (a record was deleted, inserted or reordered)",
                                seq)
        if record_hash(prev_hash, values) != h:
            return VerifyResult(False, n, 0, "", f"{where}: its content does not match its "
                                "hash (the record was edited)", seq)
        if seq in wanted:
            hashes[seq] = h
        prev, expected, n = h, expected + 1, n + 1
    head = con.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
    last = expected - 1
    if head is None:
        if n:
            return VerifyResult(False, n, last, prev, "the chain head record is missing", last)
    elif head[0] != last or head[1] != prev:
        return VerifyResult(False, n, last, prev,
                            f"the chain ends at seq={last} but its head says seq={head[0]!r}: "
                            "records were deleted from the end (or the head was edited)",
                            last + 1 if isinstance(head[0], int) and head[0] > last else last)
    for seq, h in anchors:
        if hashes.get(seq) != h:
            return VerifyResult(False, n, last, prev, f"record seq={seq} does not match the "
                                "anchor you recorded (history was rewritten)", seq)
    return VerifyResult(True, n, last, prev)


def parse_anchor(text: str) -> tuple[int, str]:
    m = re.fullmatch(r"(\d+):([0-9a-f]{64})", text.strip())
    if not m:
        raise InvalidInput(f"an anchor is seq:hash (64 hex digits), got {text!r}")
    return int(m.group(1)), m.group(2)


# -- export and statistics ---------------------------------------------------------------------
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
    """Write records (with their hashes, so a copy can be checked) as JSON lines or CSV."""
    if fmt not in ("jsonl", "csv"):
        raise InvalidInput("--format must be jsonl or csv")
    names = [*FIELDS, "prev_hash", "hash"]
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
    refusals, and under ``protocols`` the requests and sessions of every protocol of
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
    rows = con.execute(f"""
        SELECT bank, purpose,
               COUNT(*),
               COUNT(DISTINCT CASE WHEN session != '' THEN session END),
               SUM(CASE WHEN operation = 'align' THEN enterprises ELSE 0 END),
               SUM(CASE WHEN operation IN ('predict', 'lr_score') THEN enterprises ELSE 0 END),
               SUM(CASE WHEN operation = 'tree_start' THEN 1 ELSE 0 END),
               SUM(CASE WHEN operation IN ('model_finish', 'lr_finish') THEN 1 ELSE 0 END),
               SUM(CASE WHEN operation LIKE 'refused:%' THEN 1 ELSE 0 END),
               MIN(ts), MAX(ts), {", ".join(per_protocol)}
        FROM audit_log WHERE {where}
        GROUP BY bank, purpose ORDER BY bank, purpose""", args).fetchall()
    keys = ("bank", "purpose", "requests", "sessions", "enterprises_aligned",
            "enterprises_scored", "trees_trained", "models", "refused", "first", "last")
    out = []
    for r in rows:
        d = dict(zip(keys, r))
        tail = r[len(keys):]
        d["protocols"] = {name: {"requests": tail[2 * k], "sessions": tail[2 * k + 1]}
                          for k, name in enumerate(names)}
        out.append(d)
    return out


def count_today(con: sqlite3.Connection, bank: str, operation: str, prefix: bool = False) -> int:
    """Bank requests of one kind (or, with ``prefix``, kinds starting with ``operation``)
    since 00:00 UTC today: the daily caps' counter (an index range, not a scan)."""
    midnight = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT00:00:00.000000Z")
    hi = operation + "\uffff" if prefix else operation
    return con.execute("SELECT COUNT(*) FROM audit_log WHERE bank = ? AND operation >= ? "
                       "AND operation <= ? AND ts >= ? AND actor = 'bank'",
                       (bank, operation, hi, midnight)).fetchone()[0]
