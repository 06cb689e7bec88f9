"""The consent (enterprise-authorisation) registry, in the holder's SQLite store.

An enterprise authorises one bank for one purpose from ``granted_at`` until ``expires_at``
(or until revoked). The registry is the protocol core's ``consent`` hook: the core asks it at
PSI time (which ids to offer), at every tree start and at every scoring request, so a
revocation or an expiry takes effect at the bank's next request — including in a session
already open.

Imports are validated row by row (USCC, bank name, allowed purpose, times); by default any
rejected row refuses the whole import, which then changes nothing. A re-import of an existing
(uscc, bank, purpose) replaces its dates; it re-activates a revoked consent only if its
``granted_at`` is later than the revocation (so replaying an old file cannot undo one).
"""
from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Sequence
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


@dataclass
class ImportResult:
    rows: int
    imported: int
    rejects: Rejects
    applied: bool
    reactivated: int = 0
    notes: list[str] = field(default_factory=list)


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
                           f"columns {', '.join(COLUMNS)}")
    return frame


def import_consents(con: sqlite3.Connection, path, allowed_purposes: Sequence[str],
                    skip_invalid: bool = False, now: float | None = None) -> ImportResult:
    """Validate and (unless rows are rejected and ``skip_invalid`` is false) apply a file."""
    now = time.time() if now is None else now
    frame = read_consent_csv(path)
    n = len(frame)
    rej = Rejects(n)
    uscc = frame["uscc"].str.strip()
    bank = frame["bank"].str.strip()
    purpose = frame["purpose"].str.strip()
    for i in invalid_uscc_rows(uscc.where(uscc != "", None)).tolist():
        rej.add(i, f"uscc {uscc.iloc[i]!r}: {uscc_reason(uscc.iloc[i] or None)}")
    bad_bank = ~bank.map(lambda b: bool(BANK_NAME.fullmatch(b)))
    for i in np.flatnonzero(bad_bank.to_numpy()).tolist():
        rej.add(i, f"bank {bank.iloc[i]!r} is not a certificate common name ([A-Za-z0-9._-])")
    bad_purpose = ~purpose.isin(list(allowed_purposes))
    for i in np.flatnonzero(bad_purpose.to_numpy()).tolist():
        rej.add(i, f"purpose {purpose.iloc[i]!r} is not in the policy's allowed_purposes "
                   f"{list(allowed_purposes)}")
    granted = parse_times(frame["granted_at"].str.strip())
    expires = parse_times(frame["expires_at"].str.strip())
    for i in np.flatnonzero(np.isnan(granted)).tolist():
        rej.add(i, f"granted_at {frame['granted_at'].iloc[i]!r} is not an ISO-8601 time")
    for i in np.flatnonzero(np.isnan(expires)).tolist():
        rej.add(i, f"expires_at {frame['expires_at'].iloc[i]!r} is not an ISO-8601 time")
    with np.errstate(invalid="ignore"):
        order = np.flatnonzero(expires <= granted)
        past = np.flatnonzero(expires <= now)
    for i in order.tolist():
        rej.add(i, "expires_at is not after granted_at")
    for i in past.tolist():
        rej.add(i, "expires_at is in the past (the consent has already expired)")
    key = uscc + "\x1f" + bank + "\x1f" + purpose
    dup = key.duplicated(keep=False).to_numpy()
    first_of: dict[str, int] = {}
    keys = key.tolist() if dup.any() else []
    for i in np.flatnonzero(dup).tolist():
        k = keys[i]
        if k in first_of:
            rej.add(i, f"duplicate (uscc, bank, purpose): same as row {first_of[k] + 1}")
            rej.add(first_of[k], f"duplicate (uscc, bank, purpose): same as row {i + 1}")
        else:
            first_of[k] = i
    # a replayed grant must not undo a revocation made after it
    revoked = _revoked_for(con, bank, purpose, uscc)
    if revoked:
        u_l, b_l, p_l = uscc.tolist(), bank.tolist(), purpose.tolist()
        for i in range(n):
            r = revoked.get((u_l[i], b_l[i], p_l[i]))
            if r is not None and not granted[i] > r:
                rej.add(i, f"this consent was revoked at {fmt_time(r)}, after this grant; a "
                           "new grant must be dated after the revocation")
    ok = ~rej.mask()
    result = ImportResult(rows=n, imported=0, rejects=rej, applied=False)
    if rej.count and not skip_invalid:
        audit.record_operator(con, "consent_import_refused",
                              f"file={Path(path).name} rows={n} rejected={rej.count}")
        return result
    idx = np.flatnonzero(ok).tolist()
    u_l, b_l, p_l = uscc.tolist(), bank.tolist(), purpose.tolist()
    source = Path(path).name
    rows = [(u_l[i], b_l[i], p_l[i], float(granted[i]), float(expires[i]), now, source)
            for i in idx]
    reactivated = sum(1 for i in idx if (u_l[i], b_l[i], p_l[i]) in revoked) if revoked else 0
    with write(con):
        con.executemany(
            "INSERT INTO consent (uscc, bank, purpose, granted_at, expires_at, revoked_at, "
            "imported_at, source) VALUES (?,?,?,?,?,NULL,?,?) "
            "ON CONFLICT(bank, purpose, uscc) DO UPDATE SET granted_at = excluded.granted_at, "
            "expires_at = excluded.expires_at, revoked_at = NULL, "
            "imported_at = excluded.imported_at, source = excluded.source", rows)
        banks = sorted({b_l[i] for i in idx})
        audit.append(con, actor=audit.operator(), operation="consent_import",
                     bank=",".join(banks)[:200], enterprises=len(rows),
                     detail=f"file={Path(path).name} rows={n} imported={len(rows)} "
                            f"rejected={rej.count} reactivated={reactivated}")
    result.imported, result.applied, result.reactivated = len(rows), True, reactivated
    return result


def _revoked_for(con, bank: pd.Series, purpose: pd.Series, uscc: pd.Series) -> dict:
    out = {}
    pairs = set(zip(bank.tolist(), purpose.tolist()))
    wanted = set(zip(uscc.tolist(), bank.tolist(), purpose.tolist()))
    for b, p in pairs:
        for u, r in con.execute("SELECT uscc, revoked_at FROM consent WHERE bank = ? AND "
                                "purpose = ? AND revoked_at IS NOT NULL", (b, p)):
            if (u, b, p) in wanted:
                out[(u, b, p)] = r
    return out


def revoke(con: sqlite3.Connection, uscc: str, bank: str, purpose: str | None = None,
           now: float | None = None) -> tuple[int, int]:
    """Revoke the consent(s) of ``uscc`` for ``bank`` (all purposes unless one is named).

    Returns (revoked now, already revoked). Raises if the registry holds no such consent.
    """
    now = time.time() if now is None else now
    where = "WHERE uscc = ? AND bank = ?"
    args: list = [uscc, bank]
    if purpose:
        where += " AND purpose = ?"
        args.append(purpose)
    with write(con):
        rows = con.execute(f"SELECT purpose, revoked_at FROM consent {where}", args).fetchall()
        if not rows:
            raise InvalidInput(f"no consent of {uscc} for bank {bank!r}"
                               + (f" and purpose {purpose!r}" if purpose else "")
                               + " in the registry")
        active = [p for p, r in rows if r is None]
        con.execute(f"UPDATE consent SET revoked_at = ? {where} AND revoked_at IS NULL",
                    [now, *args])
        # the enterprise is named here: the audit log is where the operator traces consents
        audit.append(con, actor=audit.operator(), operation="consent_revoke", bank=bank,
                     purpose=purpose or "*", enterprises=1 if active else 0,
                     detail=f"uscc={uscc} purposes={','.join(sorted(active)) or '-'}")
    return len(active), len(rows) - len(active)


def list_consents(con: sqlite3.Connection, bank: str | None = None, uscc: str | None = None,
                  state: str = "all", now: float | None = None) -> pd.DataFrame:
    now = time.time() if now is None else now
    sql = ("SELECT uscc, bank, purpose, granted_at, expires_at, revoked_at FROM consent "
           "WHERE 1=1")
    args: list = []
    if bank:
        sql += " AND bank = ?"
        args.append(bank)
    if uscc:
        sql += " AND uscc = ?"
        args.append(uscc)
    df = pd.DataFrame(con.execute(sql + " ORDER BY bank, purpose, uscc", args).fetchall(),
                      columns=["uscc", "bank", "purpose", "granted_at", "expires_at",
                               "revoked_at"])
    status = np.where(df["revoked_at"].notna(), "revoked",
                      np.where(df["expires_at"] <= now, "expired",
                               np.where(df["granted_at"] > now, "pending", "active")))
    df["status"] = status
    if state != "all":
        df = df[df["status"] == state]
    for c in ("granted_at", "expires_at", "revoked_at"):
        df[c] = [fmt_time(v) if v == v and v is not None else "" for v in df[c].tolist()]
    return df.reset_index(drop=True)


class SqliteConsent:
    """The protocol core's ``consent`` hook over the registry.

    ``allowed`` reads the active consents of (bank, purpose) once and caches them until the
    registry changes (a trigger bumps ``consent_version`` on every insert, update or delete,
    from any process) or the earliest expiry or pending grant among them is reached.
    """

    def __init__(self, con: sqlite3.Connection):
        self.con = con
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[int, float, frozenset]] = {}

    def _version(self) -> int:
        return self.con.execute("SELECT version FROM consent_version WHERE id = 1").fetchone()[0]

    def active_ids(self, bank: str, purpose: str) -> frozenset:
        now = time.time()
        with self._lock:
            version = self._version()
            hit = self._cache.get((bank, purpose))
            if hit and hit[0] == version and now < hit[1]:
                return hit[2]
            rows = self.con.execute(
                "SELECT uscc, granted_at, expires_at FROM consent WHERE bank = ? AND "
                "purpose = ? AND revoked_at IS NULL AND expires_at > ?",
                (bank, purpose, now)).fetchall()
            if rows:
                u, granted, ends = zip(*rows)
                g, e = np.asarray(granted, dtype=float), np.asarray(ends, dtype=float)
                live = g <= now
                until = min(float(e[live].min()) if live.any() else np.inf,
                            float(g[~live].min()) if (~live).any() else np.inf)
                ids = frozenset(np.asarray(u, dtype=object)[live].tolist())
            else:
                ids, until = frozenset(), np.inf
            self._cache[(bank, purpose)] = (version, until, ids)
            return ids

    def allowed(self, bank: str, purpose: str, ids: Sequence[str]) -> np.ndarray:
        active = self.active_ids(bank, purpose)
        if len(ids) == 0 or len(active) == 0:
            return np.zeros(len(ids), dtype=bool)
        # a set lookup per id: pandas' isin on string indexes is ~50x slower here
        return np.fromiter((i in active for i in ids), dtype=bool, count=len(ids))
