"""The holder's SQLite store: one file, WAL mode, every table the service persists.

Several processes share it: the server, and operator commands run while it serves
(``consent revoke`` must reach the next request). Each writer takes SQLite's write lock with
``BEGIN IMMEDIATE`` and waits for it (busy timeout) instead of failing; WAL lets readers
go on meanwhile. ``synchronous=FULL``: a commit is on disk when it returns, so an audit
record committed before an answer leaves survives a power cut.

Schema (``schema_version`` 4)::

    audit_log(seq, ts, actor, bank, purpose, operation, enterprises, session, detail,
              prev_hash, hash, mac)            hash-chained and keyed, see fedcredit.holder.audit
    chain_head(id=1, seq, hash, mac)         the last record (detects a cut tail)
    consent(uscc, bank, purpose, granted_at, expires_at, revoked_at, imported_at, source,
            method, evidence, recorded_by)   bank '*': every institution on the platform
    consent_version(id=1, version)                 bumped by triggers on every change
    models(model_id, bank, purpose, created_at, updated_at, n_trees, body)
    sessions(session_id, bank, purpose, task, model_id, opened_at, ended_at, state)
    feature_loads(version, loaded_at, source, file, sha256, rows, columns, rejected, schema)
    scored(day, bank, purpose, uscc)     enterprises scored per UTC day (the daily scoring cap)
    bank_status(bank, suspended, changed_at, reason)       operator suspensions, read live
    admin_requests(request_id, at, response)   admin API answers, replayed on a retried call
    loans(bank, loan_id, uscc, loan_date, amount, product, credit_type, first_loan, status,
          reported_at, updated_at)             loan outcomes the banks report
    enterprise_index(idx, uscc)              compact enterprise numbers of the use record
    use_sets(seq, day, n, ids, digest)       per audit record: the enterprises it touched
    use_segments(seg, day, seqs, sets, uses, built_at)   a compacted day: the seqs of its sets
    use_postings(id, data)     per block of enterprise numbers: which sets held each
    meta(key, value)                         schema_version, policy_generation, ...

Migrations run in :func:`connect`, each in one write transaction (two processes opening an
old store at once migrate it once): version 1 -> 2 adds the ``mac`` columns (NULL: a record
written before the audit key, verified by its plain SHA-256 alone); 2 -> 3 adds ``scored``;
3 -> 4 the governance tables (bank suspensions, admin requests, loans, the per-enterprise
use record) and consent evidence. A store newer than this code is refused, so an older
fedcredit never appends unkeyed records to a keyed chain.

:func:`connect` also notes where the holder's audit key lives (``<tls.dir>/audit.key`` of
the ``holder.toml`` beside the store, see :func:`audit_key_file`): the key is never in the
store, and its location is not taken from the store either (whoever can write the database
must not be able to point the holder at a key of their own).
"""
from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from pathlib import Path

from ..errors import InvalidInput, StoreUnavailable

SCHEMA_VERSION = 4
BUSY_TIMEOUT_MS = 30_000
#: the audit chain's HMAC key, in the holder's TLS directory (see fedcredit.holder.audit)
AUDIT_KEY_NAME = "audit.key"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    bank TEXT NOT NULL,
    purpose TEXT NOT NULL,
    operation TEXT NOT NULL,
    enterprises INTEGER NOT NULL,
    session TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    mac TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_bank_op_ts ON audit_log(bank, operation, ts);
CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log(ts);
CREATE TABLE IF NOT EXISTS chain_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    mac TEXT
);
CREATE TABLE IF NOT EXISTS consent (
    uscc TEXT NOT NULL,
    bank TEXT NOT NULL,
    purpose TEXT NOT NULL,
    granted_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    revoked_at REAL,
    imported_at REAL NOT NULL,
    source TEXT NOT NULL,
    method TEXT NOT NULL DEFAULT '',
    evidence TEXT NOT NULL DEFAULT '',
    recorded_by TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (bank, purpose, uscc)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consent_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT OR IGNORE INTO consent_version (id, version) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS consent_ins AFTER INSERT ON consent
    BEGIN UPDATE consent_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS consent_upd AFTER UPDATE ON consent
    BEGIN UPDATE consent_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER IF NOT EXISTS consent_del AFTER DELETE ON consent
    BEGIN UPDATE consent_version SET version = version + 1 WHERE id = 1; END;
CREATE TABLE IF NOT EXISTS models (
    model_id TEXT PRIMARY KEY,
    bank TEXT NOT NULL,
    purpose TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    n_trees INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    bank TEXT NOT NULL,
    purpose TEXT NOT NULL,
    task TEXT NOT NULL,
    model_id TEXT NOT NULL,
    opened_at REAL NOT NULL,
    ended_at REAL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feature_loads (
    version INTEGER PRIMARY KEY,
    loaded_at REAL NOT NULL,
    source TEXT NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    rows INTEGER NOT NULL,
    columns INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    schema TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scored (
    day TEXT NOT NULL,
    bank TEXT NOT NULL,
    purpose TEXT NOT NULL,
    uscc TEXT NOT NULL,
    PRIMARY KEY (day, bank, purpose, uscc)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

#: the tables schema version 4 added, created by the migration from 3 as on a fresh store
_V4_TABLES = """
CREATE TABLE IF NOT EXISTS bank_status (
    bank TEXT PRIMARY KEY,
    suspended INTEGER NOT NULL,
    changed_at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS admin_requests (
    request_id TEXT PRIMARY KEY,
    at REAL NOT NULL,
    response TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS loans (
    bank TEXT NOT NULL,
    loan_id TEXT NOT NULL,
    uscc TEXT NOT NULL,
    loan_date TEXT NOT NULL,
    amount REAL NOT NULL,
    product TEXT NOT NULL,
    credit_type TEXT NOT NULL,
    first_loan INTEGER NOT NULL,
    status TEXT NOT NULL,
    reported_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (bank, loan_id)
);
CREATE INDEX IF NOT EXISTS loans_uscc ON loans(uscc);
CREATE TABLE IF NOT EXISTS enterprise_index (
    idx INTEGER PRIMARY KEY,
    uscc TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS use_sets (
    seq INTEGER PRIMARY KEY,
    day TEXT NOT NULL,
    n INTEGER NOT NULL,
    ids BLOB NOT NULL,
    digest TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS use_sets_day ON use_sets(day);
CREATE TABLE IF NOT EXISTS use_segments (
    seg INTEGER PRIMARY KEY,
    day TEXT NOT NULL,
    seqs BLOB NOT NULL,
    sets INTEGER NOT NULL,
    uses INTEGER NOT NULL,
    built_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS use_segments_day ON use_segments(day);
CREATE TABLE IF NOT EXISTS use_postings (
    id INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
"""
_SCHEMA += _V4_TABLES

#: the columns of an audit record that its hash covers, in order
AUDIT_FIELDS = ("seq", "ts", "actor", "bank", "purpose", "operation", "enterprises", "session",
                "detail")


def _statements(script: str):
    """Split the schema into statements (triggers contain ';' inside BEGIN ... END)."""
    buf = []
    for line in script.strip().splitlines():
        buf.append(line)
        text = "\n".join(buf).strip()
        if text.endswith(";") and (not text.upper().startswith("CREATE TRIGGER")
                                   or text.upper().endswith("END;")):
            yield text
            buf = []


#: version -> the statements that bring a store of that version to the next one
_MIGRATIONS = {
    1: ("ALTER TABLE audit_log ADD COLUMN mac TEXT",
        "ALTER TABLE chain_head ADD COLUMN mac TEXT"),
    2: ("CREATE TABLE IF NOT EXISTS scored (day TEXT NOT NULL, bank TEXT NOT NULL, "
        "purpose TEXT NOT NULL, uscc TEXT NOT NULL, PRIMARY KEY (day, bank, purpose, uscc)) "
        "WITHOUT ROWID",),
    3: ("ALTER TABLE consent ADD COLUMN method TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE consent ADD COLUMN evidence TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE consent ADD COLUMN recorded_by TEXT NOT NULL DEFAULT ''",
        *_statements(_V4_TABLES)),
}


class Connection(sqlite3.Connection):
    """A store connection: an ``sqlite3.Connection`` that knows where the audit key lives.

    ``audit_key_file`` is set by :func:`connect` (None when no ``holder.toml`` is beside the
    store); ``audit_key`` caches the key once read, so a running server keeps appending
    with the key it started with.
    """

    audit_key_file: Path | None = None
    audit_key: bytes | None = None


def audit_key_file(db_path) -> Path | None:
    """``<tls.dir>/audit.key`` of the holder directory holding ``db_path``, or None when
    there is no ``holder.toml`` beside it (a bare store: its records are unkeyed)."""
    from .config import CONFIG_NAME, load_config

    d = Path(db_path).resolve().parent
    if not (d / CONFIG_NAME).is_file():
        return None
    return load_config(d).tls_dir / AUDIT_KEY_NAME


def connect(path, *, create: bool = False) -> Connection:
    """Open the store (autocommit mode; callers group writes with :func:`write`).

    Parameters
    ----------
    path : path-like
        The ``holder.db`` file.
    create : bool
        Create the file and its schema if missing; otherwise a missing file is an error.
    """
    path = Path(path)
    if not create and not path.is_file():
        raise InvalidInput(f"{path}: no holder store here; run `fedcredit holder init`")
    key_file = audit_key_file(path)
    con = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                          check_same_thread=False, factory=Connection)
    con.audit_key_file = key_file
    try:
        return _prepare(con, path, create)
    except (sqlite3.OperationalError, OSError) as e:
        err = unavailable(con, e)
        con.close()
        raise err from e


def _prepare(con: Connection, path: Path, create: bool) -> Connection:
    con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise InvalidInput(f"{path}: SQLite could not switch to WAL mode (got {mode})")
    con.execute("PRAGMA synchronous = FULL")
    con.execute("PRAGMA foreign_keys = ON")
    if create:
        with write(con):
            for stmt in _statements(_SCHEMA):
                con.execute(stmt)
            con.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),))
            con.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', ?)",
                        (repr(time.time()),))
    version = _version(con)
    if version is not None and version < SCHEMA_VERSION:
        with write(con):  # re-read inside the lock: another process may have migrated it
            version = _version(con)
            while version is not None and version in _MIGRATIONS:
                for stmt in _MIGRATIONS[version]:
                    _migrate(con, stmt)
                version += 1
                con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                            (str(version),))
    if version != SCHEMA_VERSION:
        con.close()
        raise InvalidInput(f"{path}: store schema version {version}, this fedcredit expects "
                           f"{SCHEMA_VERSION}")
    return con


def _migrate(con: sqlite3.Connection, stmt: str) -> None:
    """One migration statement; a column that is already there is not added twice."""
    add = re.fullmatch(r"ALTER TABLE (\w+) ADD COLUMN (\w+) .*", stmt, flags=re.S)
    if add and any(r[1] == add.group(2) for r in
                   con.execute(f"PRAGMA table_info({add.group(1)})")):
        return
    con.execute(stmt)


def _version(con: sqlite3.Connection) -> int | None:
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        return None if row is None else int(row[0])
    except ValueError:
        return None


@contextlib.contextmanager
def write(con: sqlite3.Connection):
    """A write transaction: ``BEGIN IMMEDIATE`` (waits for other writers), commit or roll back.

    A store that cannot be written (a full or failing disk, a lock held past the busy
    timeout) raises :class:`StoreUnavailable` naming the file, so a request is refused with
    UNAVAILABLE and an operator command ends in one line, not a traceback; the transaction
    is rolled back, so nothing is half-written.
    """
    try:
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:  # SQLite may already have rolled back (SQLITE_FULL)
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
            raise
    except (sqlite3.OperationalError, OSError) as e:
        raise unavailable(con, e) from e


def unavailable(con: sqlite3.Connection, e: BaseException) -> StoreUnavailable:
    """The error for a store that cannot be written, naming its file and the cause."""
    try:
        where = con.execute("PRAGMA database_list").fetchone()[2] or "the holder's store"
    except sqlite3.Error:
        where = "the holder's store"
    hint = " (is the disk full?)" if "full" in str(e).lower() or "large" in str(e).lower() \
        else ""
    return StoreUnavailable(f"{where} cannot be written: {e}{hint}")
