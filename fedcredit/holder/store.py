"""The holder's SQLite store: one file, WAL mode, every table the service persists.

Several processes share it: the server, and operator commands run while it serves
(``consent revoke`` must reach the next request). Each writer takes SQLite's write lock with
``BEGIN IMMEDIATE`` and waits for it (busy timeout) instead of failing; WAL lets readers
go on meanwhile. ``synchronous=FULL``: a commit is on disk when it returns, so an audit
record committed before an answer leaves survives a power cut.

Schema (``schema_version`` 1)::

    audit_log(seq, ts, actor, bank, purpose, operation, enterprises, session, detail,
              prev_hash, hash)                     hash-chained, see fedcredit.holder.audit
    chain_head(id=1, seq, hash)              the last record (detects a cut tail)
    consent(uscc, bank, purpose, granted_at, expires_at, revoked_at, imported_at, source)
    consent_version(id=1, version)                 bumped by triggers on every change
    models(model_id, bank, purpose, created_at, updated_at, n_trees, body)
    sessions(session_id, bank, purpose, task, model_id, opened_at, ended_at, state)
    feature_loads(version, loaded_at, source, file, sha256, rows, columns, rejected, schema)
    meta(key, value)
"""
from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

from ..errors import InvalidInput

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000

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
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_bank_op_ts ON audit_log(bank, operation, ts);
CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log(ts);
CREATE TABLE IF NOT EXISTS chain_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
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
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def connect(path, *, create: bool = False) -> sqlite3.Connection:
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
    con = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                          check_same_thread=False)
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
    version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if version is None or int(version[0]) != SCHEMA_VERSION:
        raise InvalidInput(f"{path}: store schema version {version and version[0]}, this "
                           f"fedcredit expects {SCHEMA_VERSION}")
    return con


@contextlib.contextmanager
def write(con: sqlite3.Connection):
    """A write transaction: ``BEGIN IMMEDIATE`` (waits for other writers), commit or roll back."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


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
