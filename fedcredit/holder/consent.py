"""The consent (enterprise-authorisation) registry, in the holder's SQLite store.

An enterprise authorises one bank, or with ``bank = "*"`` every institution registered on
the platform (every bank the holder's policy serves), for one purpose from ``granted_at``
until ``expires_at`` or its withdrawal. **A bank's own row is more specific than "*"**: for
bank B, B's row decides whenever it exists (active, pending, expired or withdrawn), else the
"*" row does; so withdrawing one bank from a platform-wide consent writes a withdrawn row
for that bank. Each consent carries its evidence ("通过企业书面授权或企业实名注册后线上授权"):
``method`` (``written`` or ``online_real_name``), ``evidence`` (a reference to the signed
form or the online record) and ``recorded_by``. A withdrawal keeps its time
(``revoked_at``); who withdrew and why are in its audit record.

:class:`SqliteConsent` is the protocol core's ``consent`` hook, asked at PSI time, at every
tree start and at every scoring request: a change takes effect at the bank's next request.
Imports are validated row by row; any rejected row refuses the whole import (unless
skipped). Re-importing a consent replaces its dates and evidence, and re-activates a
withdrawn one only if its ``granted_at`` is after the withdrawal (replaying an old file
cannot undo one).
"""
from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..datasets import invalid_uscc_rows
from ..errors import InvalidInput
from ..protocol.policy import BANK_NAME
from . import audit
from .rejects import Rejects, uscc_reason
from .store import write

COLUMNS = ("uscc", "bank", "purpose", "granted_at", "expires_at")
#: optional columns of a consent file; a file that has one must have all three, filled
EVIDENCE_COLUMNS = ("method", "evidence", "recorded_by")
METHODS = ("written", "online_real_name")
#: the bank of a consent given to every institution registered on the platform
ALL_BANKS = "*"
MAX_EVIDENCE = 256
MAX_RECORDED_BY = 128
MAX_REASON = 500
LIST_COLUMNS = ["uscc", "bank", "purpose", "granted_at", "expires_at", "revoked_at", "status",
                "scope", "method", "evidence", "recorded_by", "source"]


class NoSuchConsent(InvalidInput):
    """A withdrawal named a consent the registry does not hold."""


def parse_times(values: pd.Series) -> np.ndarray:
    """ISO-8601 texts to epoch seconds (NaN where unparseable); naive times are UTC."""
    t = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    out = np.full(len(values), np.nan)
    ok = t.notna().to_numpy()
    if ok.any():
        epoch = pd.Timestamp(0, tz="UTC")
        out[ok] = (t[ok] - epoch).dt.total_seconds().to_numpy()
    return out


def fmt_time(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- what a valid value is (one place for the CSV import, the CLI and the admin API) ----------
def bank_problem(bank: str) -> str | None:
    if bank == ALL_BANKS or BANK_NAME.fullmatch(bank or ""):
        return None
    return (f"bank {bank!r} is not a certificate common name ([A-Za-z0-9._-]), nor \"*\" "
            "(every institution on the platform)")


def text_problem(name: str, value: str, limit: int, required: bool = True) -> str | None:
    """Why ``value`` is not a one-line text of at most ``limit`` characters."""
    if not value:
        return f"{name} is empty" if required else None
    if len(value) > limit:
        return f"{name} is longer than {limit} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{name} contains a control character (a line break or tab)"
    return None


def evidence_problems(method: str, evidence: str, recorded_by: str) -> list[tuple[str, str]]:
    """(field, reason) for each evidence field that is not valid."""
    out = []
    if method not in METHODS:
        out.append(("method", f"method {method!r} is not one of {', '.join(METHODS)}"))
    for name, value, limit in (("evidence", evidence, MAX_EVIDENCE),
                               ("recorded_by", recorded_by, MAX_RECORDED_BY)):
        why = text_problem(name, value, limit)
        if why:
            out.append((name, why))
    return out


@dataclass
class ImportResult:
    rows: int
    imported: int
    rejects: Rejects
    applied: bool
    reactivated: int = 0


def read_consent_csv(path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise InvalidInput(f"{path}: the file is empty (no header line)") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidInput(f"{path}: missing column(s) {missing}; a consent file has the "
                           f"columns {', '.join(COLUMNS)} (and optionally "
                           f"{', '.join(EVIDENCE_COLUMNS)})")
    some = [c for c in EVIDENCE_COLUMNS if c in frame.columns]
    if some and len(some) != len(EVIDENCE_COLUMNS):
        absent = [c for c in EVIDENCE_COLUMNS if c not in frame.columns]
        raise InvalidInput(f"{path}: has the evidence column(s) {some} but not {absent}; "
                           f"give all of {', '.join(EVIDENCE_COLUMNS)} or none")
    return frame


Report = Callable[[int, str, str], None]  # (row position, field, reason)


def _check_rows(con, frame: pd.DataFrame, allowed_purposes: Sequence[str], now: float,
                with_evidence: bool, report: Report) -> tuple[np.ndarray, np.ndarray, dict]:
    """Report every row's problems; returns the parsed times and the withdrawals of the
    rows' consents. One checker for a file's rows and for a single grant."""
    uscc, bank, purpose = (frame[c].str.strip() for c in ("uscc", "bank", "purpose"))
    for i in invalid_uscc_rows(uscc.where(uscc != "", None)).tolist():
        report(i, "uscc", f"uscc {uscc.iloc[i]!r}: {uscc_reason(uscc.iloc[i] or None)}")
    for i, b in enumerate(bank.tolist()):
        if bank_problem(b):
            report(i, "bank", str(bank_problem(b)))
    for i in np.flatnonzero(~purpose.isin(list(allowed_purposes)).to_numpy()).tolist():
        report(i, "purpose", f"purpose {purpose.iloc[i]!r} is not in the policy's "
                             f"allowed_purposes {list(allowed_purposes)}")
    granted, expires = (parse_times(frame[c].str.strip()) for c in ("granted_at", "expires_at"))
    for col, values in (("granted_at", granted), ("expires_at", expires)):
        for i in np.flatnonzero(np.isnan(values)).tolist():
            report(i, col, f"{col} {frame[col].iloc[i]!r} is not an ISO-8601 time")
    with np.errstate(invalid="ignore"):
        for bad, why in ((expires <= granted, "expires_at is not after granted_at"),
                         (expires <= now, "expires_at is in the past (the consent has "
                                          "already expired)")):
            for i in np.flatnonzero(bad).tolist():
                report(i, "expires_at", why)
    if with_evidence:
        rows = zip(*(frame[c].str.strip().tolist() for c in EVIDENCE_COLUMNS))
        for i, (m, e, r) in enumerate(rows):
            for name, why in evidence_problems(m, e, r):
                report(i, name, why)
    key = uscc + "\x1f" + bank + "\x1f" + purpose
    first_of: dict[str, int] = {}
    for i in np.flatnonzero(key.duplicated(keep=False).to_numpy()).tolist():
        k = key.iloc[i]
        if k in first_of:
            report(i, "", f"duplicate (uscc, bank, purpose): same as row {first_of[k] + 1}")
            report(first_of[k], "", f"duplicate (uscc, bank, purpose): same as row {i + 1}")
        else:
            first_of[k] = i
    # a replayed grant must not undo a withdrawal made after it
    keys = list(zip(uscc.tolist(), bank.tolist(), purpose.tolist()))
    wanted = set(keys)
    revoked = {(u, b, p): r for b, p in {k[1:] for k in wanted} for u, r in con.execute(
        "SELECT uscc, revoked_at FROM consent WHERE bank = ? AND purpose = ? AND revoked_at "
        "IS NOT NULL", (b, p)) if (u, b, p) in wanted}
    for i, k in enumerate(keys):
        if k in revoked and not granted[i] > revoked[k]:
            report(i, "granted_at", f"this consent was revoked at {fmt_time(revoked[k])}, "
                                    "after this grant; a new grant must be dated after the "
                                    "revocation")
    return granted, expires, revoked


def import_consents(con: sqlite3.Connection, path, allowed_purposes: Sequence[str],
                    skip_invalid: bool = False, now: float | None = None) -> ImportResult:
    """Validate and (unless rows are rejected and ``skip_invalid`` is false) apply a file.

    Without the evidence columns the imported consents record none (``method`` ``''``).
    """
    now = time.time() if now is None else now
    frame = read_consent_csv(path)
    with_evidence = EVIDENCE_COLUMNS[0] in frame.columns
    for c in EVIDENCE_COLUMNS:
        if c not in frame.columns:
            frame[c] = ""
    n = len(frame)
    rej = Rejects(n)
    granted, expires, revoked = _check_rows(con, frame, allowed_purposes, now, with_evidence,
                                            lambda i, _field, why: rej.add(i, why))
    result = ImportResult(rows=n, imported=0, rejects=rej, applied=False)
    source = Path(path).name
    if rej.count and not skip_invalid:
        audit.record_operator(con, "consent_import_refused",
                              f"file={source} rows={n} rejected={rej.count}")
        return result
    idx = np.flatnonzero(~rej.mask()).tolist()
    cols = {c: frame[c].str.strip().tolist() for c in ("uscc", "bank", "purpose",
                                                       *EVIDENCE_COLUMNS)}
    rows = [Grant(cols["uscc"][i], cols["bank"][i], cols["purpose"][i], float(granted[i]),
                  float(expires[i]), cols["method"][i], cols["evidence"][i],
                  cols["recorded_by"][i]) for i in idx]
    reactivated = sum(1 for g in rows if (g.uscc, g.bank, g.purpose) in revoked)
    with write(con):
        _upsert(con, rows, now, source)
        banks = sorted({g.bank for g in rows})
        audit.append(con, actor=audit.operator(), operation="consent_import",
                     bank=",".join(banks)[:200], enterprises=len(rows),
                     detail=f"file={source} rows={n} imported={len(rows)} "
                            f"rejected={rej.count} reactivated={reactivated} "
                            f"evidence={'yes' if with_evidence else 'no'}")
    result.imported, result.applied, result.reactivated = len(rows), True, reactivated
    return result


# -- one grant, one withdrawal (the CLI and the admin API) --------------------------------------
@dataclass(frozen=True)
class Grant:
    uscc: str
    bank: str
    purpose: str
    granted_at: float
    expires_at: float
    method: str
    evidence: str
    recorded_by: str


def _upsert(con: sqlite3.Connection, grants: Sequence[Grant], now: float, source: str) -> None:
    con.executemany(
        "INSERT INTO consent (uscc, bank, purpose, granted_at, expires_at, revoked_at, "
        "imported_at, source, method, evidence, recorded_by) VALUES (?,?,?,?,?,NULL,?,?,?,?,?) "
        "ON CONFLICT(bank, purpose, uscc) DO UPDATE SET granted_at = excluded.granted_at, "
        "expires_at = excluded.expires_at, revoked_at = NULL, "
        "imported_at = excluded.imported_at, source = excluded.source, "
        "method = excluded.method, evidence = excluded.evidence, "
        "recorded_by = excluded.recorded_by",
        [(g.uscc, g.bank, g.purpose, g.granted_at, g.expires_at, now, source, g.method,
          g.evidence, g.recorded_by) for g in grants])


def check_grant(con: sqlite3.Connection, values: dict[str, str],
                allowed_purposes: Sequence[str],
                now: float) -> tuple[Grant | None, list[tuple[str, str]]]:
    """One grant given as texts (the columns of a consent file, evidence included): the
    Grant, or None and (field, reason) for every problem, checked as a file's rows are."""
    frame = pd.DataFrame({c: [str(values.get(c, ""))] for c in (*COLUMNS, *EVIDENCE_COLUMNS)})
    problems: list[tuple[str, str]] = []
    granted, expires, _ = _check_rows(con, frame, allowed_purposes, now, True,
                                      lambda _i, name, why: problems.append((name, why)))
    if problems:
        return None, problems
    v = {c: frame[c].iloc[0].strip() for c in frame.columns}
    return Grant(v["uscc"], v["bank"], v["purpose"], float(granted[0]), float(expires[0]),
                 v["method"], v["evidence"], v["recorded_by"]), []


def apply_grant(con: sqlite3.Connection, g: Grant, now: float, source: str) -> str:
    """Record ``g`` inside the caller's write transaction (checked by :func:`check_grant`);
    returns "granted" (new), "regranted" (after a withdrawal) or "renewed"."""
    row = con.execute("SELECT revoked_at FROM consent WHERE bank = ? AND purpose = ? AND "
                      "uscc = ?", (g.bank, g.purpose, g.uscc)).fetchone()
    _upsert(con, [g], now, source)
    return "granted" if row is None else "regranted" if row[0] is not None else "renewed"


@dataclass
class Withdrawal:
    """What one withdrawal did: (bank, purpose) pairs, by outcome."""

    withdrawn: list[tuple[str, str]] = field(default_factory=list)
    already: list[tuple[str, str]] = field(default_factory=list)
    #: bank rows written to withdraw a bank from a platform-wide ("*") consent
    from_platform: list[tuple[str, str]] = field(default_factory=list)
    #: after withdrawing "*": bank-specific consents that stay active (their own grants)
    still_active: list[tuple[str, str]] = field(default_factory=list)


def apply_withdraw(con: sqlite3.Connection, uscc: str, bank: str, purpose: str | None,
                   now: float, source: str) -> Withdrawal:
    """Withdraw ``uscc``'s consent for ``bank`` (``"*"``: the platform-wide one) and
    ``purpose`` (None: every purpose), inside the caller's write transaction.

    Raises NoSuchConsent when neither the bank nor the platform holds such a consent.
    """
    where, args = "uscc = ? AND bank = ?", [uscc, bank]
    if purpose:
        where += " AND purpose = ?"
        args.append(purpose)
    rows = con.execute(f"SELECT purpose, revoked_at FROM consent WHERE {where}",
                       args).fetchall()
    w = Withdrawal(withdrawn=[(bank, p) for p, r in rows if r is None],
                   already=[(bank, p) for p, r in rows if r is not None])
    con.execute(f"UPDATE consent SET revoked_at = ? WHERE {where} AND revoked_at IS NULL",
                [now, *args])
    if bank != ALL_BANKS:  # the purposes only a platform-wide consent covers for this bank
        have = {p for p, _ in rows}
        star = con.execute("SELECT purpose, granted_at, expires_at, revoked_at, method, "
                           "evidence, recorded_by FROM consent WHERE uscc = ? AND bank = ?"
                           + (" AND purpose = ?" if purpose else ""),
                           [uscc, ALL_BANKS] + ([purpose] if purpose else [])).fetchall()
        for p, g, e, r, m, ev, rb in star:
            if p in have:
                continue
            con.execute("INSERT INTO consent (uscc, bank, purpose, granted_at, expires_at, "
                        "revoked_at, imported_at, source, method, evidence, recorded_by) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (uscc, bank, p, g, e, now, now,
                         f"{source} (from the platform-wide consent)", m, ev, rb))
            (w.withdrawn if r is None else w.already).append((bank, p))
            w.from_platform.append((bank, p))
    else:
        w.still_active = [(b, p) for b, p in con.execute(
            "SELECT bank, purpose FROM consent WHERE uscc = ? AND bank != ? AND revoked_at IS "
            "NULL AND expires_at > ?" + (" AND purpose = ?" if purpose else "") +
            " ORDER BY bank, purpose", [uscc, ALL_BANKS, now] + ([purpose] if purpose else []))]
    if not w.withdrawn and not w.already:
        raise NoSuchConsent(f"no consent of {uscc} for bank {bank!r}" + (
            f" and purpose {purpose!r}" if purpose else "") + " in the registry")
    return w


def revoke(con: sqlite3.Connection, uscc: str, bank: str, purpose: str | None = None,
           now: float | None = None, reason: str = "", recorded_by: str = "") -> tuple[int, int]:
    """Withdraw the consent(s) of ``uscc`` for ``bank`` (all purposes unless one is named),
    with its audit record. Returns (withdrawn now, already withdrawn)."""
    now = time.time() if now is None else now
    for name, value, limit in (("reason", reason, MAX_REASON),
                               ("recorded_by", recorded_by, MAX_RECORDED_BY)):
        why = text_problem(name, value, limit, required=False)
        if why:
            raise InvalidInput(f"--{name.replace('_', '-')}: {why}")
    if bank_problem(bank):
        raise InvalidInput(f"--bank: {bank_problem(bank)}")
    with write(con):
        w = apply_withdraw(con, uscc, bank, purpose, now, "cli")
        # the enterprise is named here: the audit log is where the operator traces consents
        audit.append(con, actor=audit.operator(), operation="consent_revoke", bank=bank,
                     purpose=purpose or "*", enterprises=1 if w.withdrawn else 0,
                     detail=withdraw_detail(uscc, w, reason, recorded_by))
    return len(w.withdrawn), len(w.already)


def withdraw_detail(uscc: str, w: Withdrawal, reason: str, recorded_by: str) -> str:
    """The audit detail of a withdrawal: the enterprise, what changed, who and why."""
    return (f"uscc={uscc} purposes={','.join(sorted(p for _, p in w.withdrawn)) or '-'}"
            + (" from_platform=yes" if w.from_platform else "")
            + (f" recorded_by={recorded_by}" if recorded_by else "")
            + (f" reason={reason}" if reason else ""))


def list_consents(con: sqlite3.Connection, bank: str | None = None, uscc: str | None = None,
                  state: str = "all", now: float | None = None) -> pd.DataFrame:
    """The registry's rows (``bank="*"``: the platform-wide ones) with their status."""
    now = time.time() if now is None else now
    cols = [c for c in LIST_COLUMNS if c not in ("status", "scope")]
    sql = f"SELECT {', '.join(cols)} FROM consent WHERE 1=1"
    args: list = []
    for col, value in (("bank", bank), ("uscc", uscc)):
        if value:
            sql += f" AND {col} = ?"
            args.append(value)
    df = pd.DataFrame(con.execute(sql + " ORDER BY bank, purpose, uscc", args).fetchall(),
                      columns=cols)
    df["status"] = np.where(df["revoked_at"].notna(), "revoked",
                            np.where(df["expires_at"] <= now, "expired",
                                     np.where(df["granted_at"] > now, "pending", "active")))
    df["scope"] = np.where(df["bank"] == ALL_BANKS, "platform", "bank")
    if state != "all":
        df = df[df["status"] == state]
    for c in ("granted_at", "expires_at", "revoked_at"):
        df[c] = [fmt_time(v) if v == v and v is not None else "" for v in df[c].tolist()]
    return df[LIST_COLUMNS].reset_index(drop=True)


class SqliteConsent:
    """The protocol core's ``consent`` hook over the registry.

    ``allowed`` resolves (bank, purpose) once, the bank's own rows over the platform-wide
    ones, and caches the result until the registry changes (a trigger bumps
    ``consent_version`` on every insert, update or delete, from any process) or the earliest
    expiry or pending grant among the rows that decide is reached.
    """

    def __init__(self, con: sqlite3.Connection, clock: Callable[[], float] = time.time):
        self.con = con
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[int, float, frozenset]] = {}

    def _version(self) -> int:
        return self.con.execute("SELECT version FROM consent_version WHERE id = 1").fetchone()[0]

    def active_ids(self, bank: str, purpose: str) -> frozenset:
        now = self.clock()
        with self._lock:
            version = self._version()
            hit = self._cache.get((bank, purpose))
            if hit and hit[0] == version and now < hit[1]:
                return hit[2]
            ids, until = self._resolve(bank, purpose, now)
            self._cache[(bank, purpose)] = (version, until, ids)
            return ids

    def _resolve(self, bank: str, purpose: str, now: float) -> tuple[frozenset, float]:
        if bank == ALL_BANKS:  # not a bank: no certificate carries this name
            return frozenset(), np.inf
        star = self.con.execute(
            "SELECT uscc, granted_at, expires_at FROM consent WHERE bank = ? AND purpose = ? "
            "AND revoked_at IS NULL AND expires_at > ?", (ALL_BANKS, purpose, now)).fetchall()
        live = "" if star else " AND revoked_at IS NULL AND expires_at > ?"
        own = self.con.execute(
            "SELECT uscc, granted_at, expires_at, revoked_at IS NULL AND expires_at > ? "
            "FROM consent WHERE bank = ? AND purpose = ?" + live,
            (now, bank, purpose) + (() if star else (now,))).fetchall()
        if star:  # the bank's own rows, in whatever state, decide over the platform's
            mine = {r[0] for r in own}
            star = [r for r in star if r[0] not in mine]
        rows = [r[:3] for r in own if r[3]] + star
        if not rows:
            return frozenset(), np.inf
        u, granted, ends = zip(*rows)
        g, e = np.asarray(granted, dtype=float), np.asarray(ends, dtype=float)
        started = g <= now
        until = min(float(e[started].min()) if started.any() else np.inf,
                    float(g[~started].min()) if (~started).any() else np.inf)
        return frozenset(np.asarray(u, dtype=object)[started].tolist()), until

    def allowed(self, bank: str, purpose: str, ids: Sequence[str]) -> np.ndarray:
        active = self.active_ids(bank, purpose)
        if len(ids) == 0 or len(active) == 0:
            return np.zeros(len(ids), dtype=bool)
        # a set lookup per id: pandas' isin on string indexes is ~50x slower here
        return np.fromiter((i in active for i in ids), dtype=bool, count=len(ids))
