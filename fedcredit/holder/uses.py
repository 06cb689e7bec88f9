"""The per-enterprise use record: which enterprises every bank request touched, kept compact
and tied to the audit chain, and answered per enterprise ("who used my data, for what").

**Recording** (:func:`number`, :func:`store`, called by the auditor inside the audit
record's write transaction): enterprises get small integers once (``enterprise_index``); a
request's set, its sorted numbers, waits in ``use_sets`` keyed by the audit record's seq.
The record's ``detail`` ends with ``uses=<32 hex>``, a digest of the set's USCCs in number
order (:func:`~fedcredit.holder.usecodec.digest`): the hash chain covers the set *and* the
numbering, so editing a set, or the USCC behind a number, is found by :func:`check`.

**Compaction** (:func:`compact`, the service's maintenance): the pending sets of a finished
UTC day are folded, in one transaction, into a segment (``use_segments``: its day and the
seqs of its sets) whose postings (``use_postings``, rows of about 8 KB, id ``seg << 22 |
first block``) say, per block of 1024 enterprise numbers, which of the segment's sets held
each enterprise. A query reads one row per segment and binary-searches the pending sets.
Segments replace the sets they fold; :func:`check` rebuilds every set from them.

Call :func:`compact` from one maintenance loop (it is cheap when there is nothing to fold);
a second compactor at the same time is harmless (it finds the sets gone and skips them).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from .audit_report import parse_time
from .rejects import uscc_reason
from .store import write
from .usecodec import (
    BLOCK_BITS,
    MAX_SEGMENT_SETS,
    block_pairs,
    decode_set,
    digest,
    encode_set,
    holds,
    lookup,
    postings,
    postings_rows,
    row_blocks,
    tag,
    tagged_digest,
)

__all__ = ["KINDS", "UseSet", "check", "check_uscc", "compact", "enterprises_used", "number",
           "report", "store", "tag", "uses_of"]

SEG_SHIFT = 22  # postings row id = seg << 22 | its first block (4M blocks: 4.3e9 enterprises)
_BLOCK_MASK = (1 << SEG_SHIFT) - 1
#: audit operations that use enterprises' data, and how a person reads them
KINDS = {"align": "aligned", "boost_start": "trained on", "lr_start": "trained on",
         "woe_stats": "trained on", "predict": "scored", "lr_score": "scored",
         "private_predict": "scored", "loan_report": "loan reported"}
_MODEL = re.compile(r"(?:^| )(?:model|binning)=([0-9A-Za-z_.:-]+)")
_FINISH_OPS = ("model_finish", "lr_finish", "woe_stats")


# -- recording ----------------------------------------------------------------------------
@dataclass
class UseSet:
    numbers: np.ndarray  # sorted distinct enterprise numbers
    digest: str


def number(con: sqlite3.Connection, ids: Sequence[str] | None) -> UseSet | None:
    """Number the enterprises ``ids`` names (new ones get the next free numbers) and digest
    the set; None when there are none. Call inside the audit record's write transaction."""
    if ids is None:
        return None
    unique = list(dict.fromkeys(ids))
    if not unique:
        return None
    bad = next((i for i in unique if not isinstance(i, str)), None)
    if bad is not None:
        raise InvalidInput(f"an enterprise id of the use record is a {type(bad).__name__}, "
                           "not a string")
    if len(unique) <= 256:
        rows = con.execute("SELECT uscc, idx FROM enterprise_index WHERE uscc IN "
                           f"({','.join('?' * len(unique))})", unique).fetchall()
    else:
        rows = con.execute("SELECT j.value, e.idx FROM json_each(?) j JOIN enterprise_index e "
                           "ON e.uscc = j.value", (json.dumps(unique),)).fetchall()
    known = dict(rows)
    new = [u for u in unique if u not in known]
    if new:
        first = con.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM enterprise_index"
                            ).fetchone()[0]
        con.executemany("INSERT INTO enterprise_index (idx, uscc) VALUES (?, ?)",
                        [(first + k, u) for k, u in enumerate(new)])
        known.update((u, first + k) for k, u in enumerate(new))
    pairs = sorted((known[u], u) for u in unique)
    return UseSet(np.fromiter((p[0] for p in pairs), np.int64, len(pairs)),
                  digest(p[1] for p in pairs))


def store(con: sqlite3.Connection, seq: int, used: UseSet) -> None:
    """Keep ``used`` as the use set of audit record ``seq`` (same transaction)."""
    ts = con.execute("SELECT ts FROM audit_log WHERE seq = ?", (seq,)).fetchone()
    if ts is None:
        raise InvalidInput(f"no audit record seq={seq} for a use set")
    con.execute("INSERT INTO use_sets (seq, day, n, ids, digest) VALUES (?, ?, ?, ?, ?)",
                (seq, ts[0][:10], int(used.numbers.size), encode_set(used.numbers),
                 used.digest))


# -- compaction ----------------------------------------------------------------------------
def compact(con: sqlite3.Connection, *, before: str | None = None,
            max_days: int | None = None) -> dict:
    """Fold the pending sets of every UTC day before ``before`` (YYYY-MM-DD, default today)
    into segments, one transaction per segment; returns what it folded. Cheap when nothing
    is pending (one index lookup); safe beside a running server and another compactor."""
    before = before or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    days = [r[0] for r in con.execute("SELECT DISTINCT day FROM use_sets WHERE day < ? "
                                      "ORDER BY day", (before,))][:max_days]
    done = {"days": 0, "segments": 0, "sets": 0, "uses": 0}
    for day in days:
        rows = con.execute("SELECT seq, ids FROM use_sets WHERE day = ? ORDER BY seq",
                           (day,)).fetchall()
        for c in range(0, len(rows), MAX_SEGMENT_SETS):
            chunk = rows[c:c + MAX_SEGMENT_SETS]
            seqs = np.array([r[0] for r in chunk], dtype=np.int64)
            sets = []
            for seq, blob in chunk:
                try:
                    sets.append(decode_set(blob))
                except InvalidInput as e:
                    raise InvalidInput(f"the use set of audit record seq={seq} cannot be "
                                       f"read ({e}): run `fedcredit holder audit verify`"
                                       ) from None
            blocks = postings(sets)
            uses = int(sum(s.size for s in sets))
            with write(con):
                span = (day, int(seqs[0]), int(seqs[-1]))
                if con.execute("SELECT COUNT(*) FROM use_sets WHERE day = ? AND seq BETWEEN "
                               "? AND ?", span).fetchone()[0] != len(chunk):
                    continue  # another compactor folded them meanwhile
                seg = con.execute("SELECT COALESCE(MAX(seg), 0) + 1 FROM use_segments"
                                  ).fetchone()[0]
                con.execute("INSERT INTO use_segments (seg, day, seqs, sets, uses, built_at) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (seg, day, seqs.astype("<i8").tobytes(),
                                                          len(chunk), uses, time.time()))
                con.executemany("INSERT INTO use_postings (id, data) VALUES (?, ?)",
                                [((seg << SEG_SHIFT) | b, row) for b, row in postings_rows(blocks)])
                con.execute("DELETE FROM use_sets WHERE day = ? AND seq BETWEEN ? AND ?", span)
            done["segments"] += 1
            done["sets"] += len(chunk)
            done["uses"] += uses
        done["days"] += 1
    return done


# -- queries -------------------------------------------------------------------------------
@contextlib.contextmanager
def _snapshot(con: sqlite3.Connection):
    """One read transaction: a compaction committing meanwhile is seen wholly or not at all."""
    if con.in_transaction:
        yield
        return
    con.execute("BEGIN")
    try:
        yield
    finally:
        if con.in_transaction:
            con.execute("ROLLBACK")


def _days(since: str | None, until: str | None) -> tuple[str, str, str, str]:
    lo = parse_time(since) if since else ""
    hi = parse_time(until) if until else "\uffff"
    return lo, hi, lo[:10], hi[:10]


def _in(con, sql: str, keys: list, extra: tuple = ()) -> list:
    out: list = []
    for k in range(0, len(keys), 500):
        part = keys[k:k + 500]
        out += con.execute(sql.replace("(?)", f"({','.join('?' * len(part))})"),
                           (*part, *extra)).fetchall()
    return out


def uses_of(con: sqlite3.Connection, idx: int, day_lo: str = "", day_hi: str = "\uffff"
            ) -> list[int]:
    """Seqs of the audit records whose use set holds enterprise number ``idx``, days
    ``day_lo`` to ``day_hi``: one postings row per segment, then the pending sets."""
    block, off = idx >> BLOCK_BITS, idx & ((1 << BLOCK_BITS) - 1)
    segs = dict(con.execute("SELECT seg, length(seqs) / 8 FROM use_segments WHERE day "
                            "BETWEEN ? AND ?", (day_lo, day_hi)).fetchall())
    hits: dict[int, np.ndarray] = {}
    for seg, n_sets in segs.items():  # the segment's row holding the block, if any
        row = con.execute("SELECT id, data FROM use_postings WHERE id BETWEEN ? AND ? ORDER BY "
                          "id DESC LIMIT 1", (seg << SEG_SHIFT, (seg << SEG_SHIFT) | block)
                          ).fetchone()
        data = None if row is None else row_blocks(row[1], row[0] & _BLOCK_MASK).get(block)
        ords = np.empty(0) if data is None else lookup(data, off, n_sets)
        if ords.size:
            hits[seg] = ords
    seqs: list[int] = []
    for seg, blob in _in(con, "SELECT seg, seqs FROM use_segments WHERE seg IN (?)",
                         sorted(hits)):
        listed = np.frombuffer(blob, dtype="<i8")
        seqs += listed[hits[seg][hits[seg] < listed.size]].tolist()
    for seq, blob in con.execute("SELECT seq, ids FROM use_sets WHERE day BETWEEN ? AND ?",
                                 (day_lo, day_hi)):
        if holds(blob, idx):
            seqs.append(seq)
    return sorted(seqs)


def check_uscc(uscc, where: str = "uscc") -> str:
    """``uscc`` if it is a valid unified social credit code, else an error naming it."""
    reason = uscc_reason(uscc)
    if reason != "valid":
        raise InvalidInput(f"{where} {str(uscc)[:40]!r} is not an enterprise's code: {reason} "
                           "(a unified social credit code is 18 characters, GB 32100-2015)")
    return uscc


def report(con: sqlite3.Connection, uscc: str, since: str | None = None,
           until: str | None = None) -> list[dict]:
    """Every use of enterprise ``uscc`` in time order: time, bank, purpose, kind (aligned,
    trained on, scored, loan reported), the raw operation, session, model id ("" when not
    known: a training session that never finished) and the audit record's seq."""
    check_uscc(uscc)
    lo, hi, dlo, dhi = _days(since, until)
    with _snapshot(con):
        row = con.execute("SELECT idx FROM enterprise_index WHERE uscc = ?", (uscc,)).fetchone()
        if row is None:
            return []
        recs = _in(con, "SELECT seq, ts, bank, purpose, operation, session, detail FROM "
                   "audit_log WHERE seq IN (?) AND ts >= ? AND ts < ?",
                   uses_of(con, int(row[0]), dlo, dhi), (lo, hi))
        models = _models(con, recs)
    return [{"time": r[1], "bank": r[2], "purpose": r[3],
             "kind": KINDS.get(r[4], r[4]), "operation": r[4], "session": r[5],
             "model": models.get(r[0], ""), "audit_seq": r[0]} for r in sorted(recs)]


def _models(con: sqlite3.Connection, recs: list) -> dict[int, str]:
    """seq -> model id: a scoring session's model, else the model its session finished."""
    sessions = {r[5] for r in recs if r[5]}
    scoring = dict(_in(con, "SELECT session_id, model_id FROM sessions WHERE session_id IN "
                       "(?) AND task = 'score'", sorted(sessions)))
    found: dict[str, str] = {}
    out = {}
    for seq, ts, bank, _, _, session, detail in recs:
        m = _MODEL.search(detail)
        if m:
            out[seq] = m.group(1)
        elif scoring.get(session):
            out[seq] = scoring[session]
        elif session:
            if session not in found:
                row = con.execute(
                    f"SELECT detail FROM audit_log WHERE bank = ? AND operation IN "
                    f"({','.join('?' * len(_FINISH_OPS))}) AND ts >= ? AND session = ? "
                    "ORDER BY seq LIMIT 1", (bank, *_FINISH_OPS, ts, session)).fetchone()
                m = _MODEL.search(row[0]) if row else None
                found[session] = m.group(1) if m else ""
            out[seq] = found[session]
    return out


def _index_codes(con: sqlite3.Connection) -> np.ndarray:
    """USCC per enterprise number (b"" for a number the index lacks): ``S18`` when every
    code is 18 ASCII characters, else an object array of str."""
    top = con.execute("SELECT MAX(idx) FROM enterprise_index").fetchone()[0]
    codes: np.ndarray = np.zeros(0 if top is None else top + 1, dtype="S18")
    cur = con.execute("SELECT idx, uscc FROM enterprise_index ORDER BY idx")
    while rows := cur.fetchmany(200_000):
        at = np.array([r[0] for r in rows])
        got = [r[1] for r in rows]
        if codes.dtype != object and not all(isinstance(u, str) and len(u) == 18
                                             and u.isascii() for u in got):
            codes = np.array([c.decode() for c in codes], dtype=object)
        codes[at] = got
    return codes


def _segment_pairs(con: sqlite3.Connection, seg: int, n_sets: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(enterprise numbers, set ordinals) of every use in segment ``seg``."""
    parts = [block_pairs(d, b, n_sets) for rid, row in con.execute(
        "SELECT id, data FROM use_postings WHERE id >= ? AND id < ? ORDER BY id",
        (seg << SEG_SHIFT, (seg + 1) << SEG_SHIFT))
        for b, d in row_blocks(row, rid & _BLOCK_MASK).items()]
    if not parts:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _stored_sets(con: sqlite3.Connection, seqs_wanted=None):
    """Yield (seq, numbers or an error text, where) for every stored set: pending ones,
    then each segment's, rebuilt from its postings."""
    for seq, blob in con.execute("SELECT seq, ids FROM use_sets ORDER BY seq"):
        if seqs_wanted is None or seq in seqs_wanted:
            try:
                yield seq, decode_set(blob), "use_sets"
            except InvalidInput as e:
                yield seq, str(e), "use_sets"
    for seg, blob in con.execute("SELECT seg, seqs FROM use_segments ORDER BY seg").fetchall():
        seqs = np.frombuffer(blob, dtype="<i8")
        if seqs_wanted is not None and not any(int(s) in seqs_wanted for s in seqs):
            continue
        where = f"use segment {seg}"
        try:
            ents, ords = _segment_pairs(con, seg, seqs.size)
        except InvalidInput as e:
            for s in seqs.tolist():
                yield s, str(e), where
            continue
        # blocks come in number order: a stable sort by ordinal (radix, < 2**16) keeps each
        # set's numbers ascending
        order = np.argsort(ords.astype(np.uint16 if seqs.size <= 1 << 16 else np.int64),
                           kind="stable")
        ents, ords = ents[order], ords[order]
        cut = np.searchsorted(ords, np.arange(seqs.size + 1))
        for k, s in enumerate(seqs.tolist()):
            yield s, ents[cut[k]:cut[k + 1]], where


def check(con: sqlite3.Connection) -> tuple[str, int] | None:
    """The first audit record (lowest seq) whose use set is missing, stored twice, or does
    not match the digest the record carries, as (problem, seq); None when all match."""
    with _snapshot(con):
        expected = {seq: (ts, tagged_digest(d)) for seq, ts, d in con.execute(
            "SELECT seq, ts, detail FROM audit_log WHERE actor = 'bank' AND detail LIKE "
            "'%uses=%'") if tagged_digest(d)}
        codes = _index_codes(con)
        problems: dict[int, str] = {}
        seen: set[int] = set()
        for seq, numbers, where in _stored_sets(con):
            what = f"record seq={seq}"
            if seq in seen:
                problems.setdefault(seq, f"{what}: its use set is stored twice ({where})")
            seen.add(seq)
            if seq not in expected:
                problems.setdefault(seq, f"{what}: {where} holds a use set for it, but the "
                                         "record names none (a use set was added)")
            elif isinstance(numbers, str):
                problems.setdefault(seq, f"{what}: its use set in {where} cannot be read "
                                         f"({numbers})")
            elif numbers.size == 0 or int(numbers[-1]) >= codes.size or \
                    digest(codes[numbers]) != expected[seq][1]:
                problems.setdefault(seq, f"{what} ({expected[seq][0]}): its use set in "
                                         f"{where} does not match the digest the record "
                                         "carries (the use record or the enterprise index "
                                         "was edited)")
        for seq in expected.keys() - seen:
            problems.setdefault(seq, f"record seq={seq} ({expected[seq][0]}): its use set "
                                     "is missing (deleted from the use record)")
    if not problems:
        return None
    first = min(problems)
    return problems[first], first


def enterprises_used(con: sqlite3.Connection, since: str | None = None,
                     until: str | None = None) -> pd.DataFrame:
    """Distinct (bank, purpose, kind, uscc) of the uses in the period (str columns)."""
    lo, hi, _, _ = _days(since, until)
    cols = ["bank", "purpose", "kind", "uscc"]
    with _snapshot(con):
        groups: dict[tuple, int] = {}
        of_seq = {}
        for seq, bank, purpose, op, detail in con.execute(
                "SELECT seq, bank, purpose, operation, detail FROM audit_log WHERE ts >= ? AND "
                "ts < ? AND actor = 'bank' AND detail LIKE '%uses=%'", (lo, hi)):
            if tagged_digest(detail):
                of_seq[seq] = groups.setdefault((bank, purpose, KINDS.get(op, op)), len(groups))
        if not of_seq:
            return pd.DataFrame({c: pd.Series([], dtype=object) for c in cols})
        codes = _index_codes(con)
        seen = np.zeros((len(groups), codes.size), dtype=bool)
        for seq, numbers, _ in _stored_sets(con, set(of_seq)):
            if seq in of_seq and not isinstance(numbers, str):
                seen[of_seq[seq], numbers[numbers < codes.size]] = True
    frames = []
    for (bank, purpose, kind), g in groups.items():
        idx = np.flatnonzero(seen[g])
        got = codes[idx]
        frames.append(pd.DataFrame({"bank": bank, "purpose": purpose, "kind": kind,
                                    "uscc": [c.decode() if isinstance(c, bytes) else c
                                             for c in got]}, columns=cols))
    return pd.concat(frames, ignore_index=True).astype(object)
