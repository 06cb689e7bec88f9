"""The tamper-evident audit log: a SHA-256 hash chain in the holder's SQLite store, keyed
with an HMAC whose key is kept outside the store.

Every bank request (through the protocol core's ``auditor`` hook) and every operator action
(init, feature loads, consent imports and revocations, server start and stop) appends one
record, committed before the call returns. Record ``k`` stores::

    hash_k = SHA-256(hash_{k-1} || "\\n" || canonical JSON [seq, ts, actor, bank, purpose,
                                                            operation, enterprises,
                                                            session, detail])
    mac_k  = HMAC-SHA256(key, "fedcredit audit record\\n" || hash_k)

with ``hash_0`` = 64 zeros. ``seq`` runs 1, 2, 3... without gaps, and ``chain_head``
holds the last (seq, hash) and ``HMAC-SHA256(key, "fedcredit audit head\\n" || seq ":"
hash)``, written in the same transaction. ``hash_k`` commits to every record up to ``k``,
so ``mac_k`` authenticates all of them.

**The key** (:data:`KEY_NAME`, ``<tls.dir>/audit.key``: 64 hex digits, 32 random bytes,
mode 0600) is made by ``fedcredit holder init`` or by the first append that finds none.
Its location comes from ``holder.toml``, never from the store. Once a chain has a keyed
record it never goes back: an append without the key is refused, and :func:`verify` treats
an unkeyed record after a keyed one as forged. Records of a store written before the key
existed (``mac`` NULL) are checked by their hashes, and the first keyed record's MAC covers
them too.

:func:`verify` recomputes the chain and names the first record that was edited (its content
no longer matches its hash), deleted or reordered (a gap in ``seq``, or a ``prev_hash`` that
is not its predecessor's hash), or cut from the end (the chain stops before the head).
**With the key** it also checks every MAC: then no record was edited, deleted, reordered,
cut from the end or appended by anyone without the key, even one who rewrote every later
hash and the head. **Without it** only the plain hashes are checked: whoever can write the
database can recompute them, so a rewritten or cut tail (records deleted and the head moved,
or records appended with correct SHA-256) is then not detected.

**Limits**: the key cannot tell a rollback of the whole store to an earlier copy of itself
(its head and MAC were genuine then); nor does it protect against someone who can read the
key. Anchor the head outside the holder's machine: ``fedcredit holder audit verify`` prints
it; record ``seq:hash`` somewhere else (a ticket, a signed e-mail, the platform's
supervisor) and check it later with ``--anchor seq:hash``.

Records carry counts, never a feature value: the bank (its certificate name), purpose,
operation and session id. The enterprises a request used are kept in the use record
(:mod:`fedcredit.holder.uses`), committed to by the record's ``uses=`` digest. The key is
never logged, exported or printed (only its path).
"""
from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sqlite3
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput, StoreUnavailable
from . import uses
from .store import AUDIT_FIELDS, AUDIT_KEY_NAME, write

GENESIS = "0" * 64
FIELDS = AUDIT_FIELDS
log = logging.getLogger("fedcredit.holder.audit")
KEY_NAME = AUDIT_KEY_NAME
KEY_BYTES = 32
_RECORD_TAG = b"fedcredit audit record\n"
_HEAD_TAG = b"fedcredit audit head\n"


def now_iso() -> str:
    """UTC time, microseconds, fixed width (so text order is time order)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(prev_hash: str, values) -> str:
    body = json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + "\n" + body).encode("utf-8")).hexdigest()


def record_mac(key: bytes, record_hash_hex: str) -> str:
    """A record's MAC: HMAC-SHA256 of its chained hash (which covers every earlier record)."""
    return hmac.new(key, _RECORD_TAG + record_hash_hex.encode("ascii"), hashlib.sha256
                    ).hexdigest()


def head_mac(key: bytes, seq: int, head_hash: str) -> str:
    """The chain head's MAC: a different message from any record's, so moving the head back
    to an earlier record needs the key."""
    return hmac.new(key, _HEAD_TAG + f"{int(seq)}:{head_hash}".encode("ascii"),
                    hashlib.sha256).hexdigest()


# -- the key ----------------------------------------------------------------------------------
def key_file(cfg) -> Path:
    """The holder's audit key file: ``<tls.dir>/audit.key`` (``cfg`` a HolderConfig)."""
    return Path(cfg.tls_dir) / KEY_NAME


def read_key(path) -> bytes:
    """The key in ``path`` (64 hex digits and a newline). The error names the file, never
    its content."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no audit key file here") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{path}: the audit key file cannot be read "
                           f"({type(e).__name__})") from None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise InvalidInput(f"{path}: not an audit key file (expected 64 hex digits)")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("audit key file readable by others: chmod 600 it",
                    extra={"fields": {"path": str(path), "mode": oct(mode)}})
    return bytes.fromhex(text)


def create_key(path) -> bytes:
    """Make a new key file (mode 0600) unless one exists; returns the key in the file.

    The file appears whole or not at all (written beside it, then hard-linked into place),
    and two processes creating it at once end up with the same key.
    """
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = (secrets.token_hex(KEY_BYTES) + "\n").encode("ascii")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    _write_new(tmp, text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process made it first: use theirs
    except OSError:  # a file system without hard links: exclusive create, written at once
        try:
            _write_new(path, text)
        except FileExistsError:
            pass
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return read_key(path)


def _write_new(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600; FileExistsError if it exists) holding ``data``, on disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _chain_keyed(con: sqlite3.Connection) -> bool:
    """Whether any record or the head carries a MAC (then the chain must stay keyed)."""
    row = con.execute("SELECT EXISTS (SELECT 1 FROM chain_head WHERE mac IS NOT NULL) OR "
                      "EXISTS (SELECT 1 FROM audit_log WHERE mac IS NOT NULL)").fetchone()
    return bool(row[0])


def holder_key(con: sqlite3.Connection, *, create: bool = True) -> bytes | None:
    """The key the records of ``con``'s store are appended with, cached on the connection.

    Read from ``<tls.dir>/audit.key`` of the ``holder.toml`` beside the store; with
    ``create``, made there if missing and the chain has no keyed record yet. None for a bare
    store (no ``holder.toml``), or when the file is missing and ``create`` is false.

    Raises
    ------
    InvalidInput
        The chain is keyed but its key file is missing or unreadable (nothing may be
        appended without it: restore the file from its backup).
    """
    cached = getattr(con, "audit_key", None)
    if cached is not None:
        return cached
    path = getattr(con, "audit_key_file", None)
    if path is None:
        return None
    path = Path(path)
    if path.exists():
        key = read_key(path)
    elif not create:
        return None
    elif _chain_keyed(con):
        raise InvalidInput(f"{path}: the audit key is missing, and this holder's audit chain "
                           "is keyed: restore the key file from its backup (no record can be "
                           "appended without it; a new key would not verify the old records)")
    else:
        key = create_key(path)
        log.info("audit key created", extra={"fields": {"path": str(path)}})
    if hasattr(con, "audit_key"):
        con.audit_key = key
    return key


def operator() -> str:
    try:
        return "operator:" + getpass.getuser()
    except Exception:  # no user name in a container: still an operator action
        return "operator:unknown"


def append(con: sqlite3.Connection, *, actor: str, bank: str = "", purpose: str = "",
           operation: str, enterprises: int = 0, session: str = "", detail: str = "") -> int:
    """Append one record inside the caller's write transaction; returns its seq.

    Keyed (a MAC on the record and the head) whenever the holder's key is known, see
    :func:`holder_key`; a keyed chain refuses an unkeyed record.
    """
    key = holder_key(con)
    head = con.execute("SELECT seq, hash, mac FROM chain_head WHERE id = 1").fetchone()
    if key is None and (head is not None and head[2] is not None or _chain_keyed(con)):
        raise InvalidInput("this audit chain is keyed and its key is not known to this "
                           "connection: refusing to append an unkeyed record")
    seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
    values = (seq, now_iso(), str(actor), str(bank), str(purpose), str(operation),
              int(enterprises), str(session), str(detail))
    h = record_hash(prev, values)
    mac = None if key is None else record_mac(key, h)
    hmac_ = None if key is None else head_mac(key, seq, h)
    con.execute("INSERT INTO audit_log (seq, ts, actor, bank, purpose, operation, enterprises,"
                " session, detail, prev_hash, hash, mac) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (*values, prev, h, mac))
    con.execute("INSERT INTO chain_head (id, seq, hash, mac) VALUES (1, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
                "mac = excluded.mac", (seq, h, hmac_))
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

    def __init__(self, con: sqlite3.Connection,
                 on_failure: Callable[[BaseException], None] | None = None):
        self.con = con
        self.on_failure = on_failure  # told when a record cannot be written (full disk)
        self._lock = threading.Lock()

    def record(self, *, bank: str, purpose: str, operation: str, enterprises: int,
               session: str, detail: str = "", ids=None) -> None:
        try:
            with self._lock, write(self.con):
                used = uses.number(self.con, ids)  # the set the record's digest commits to
                seq = append(self.con, actor="bank", bank=bank, purpose=purpose,
                             operation=operation, enterprises=enterprises, session=session,
                             detail=detail if used is None else uses.tag(detail, used.digest))
                if used is not None:
                    uses.store(self.con, seq, used)
        except StoreUnavailable as e:
            if self.on_failure is not None:
                self.on_failure(e)
            raise
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
    #: records carrying a MAC (the others predate the key: plain SHA-256 only)
    keyed: int = 0
    #: whether the MACs were checked (a key was given)
    key_checked: bool = False


def verify(con: sqlite3.Connection, anchors: Sequence[tuple[int, str]] = (),
           key: bytes | None = None) -> VerifyResult:
    """Recompute the chain; the first problem found is reported (see the module notes).

    With ``key`` every MAC (records and head) is checked too; without it only the plain
    hashes and the rule that a keyed chain never goes back to unkeyed records.
    """
    cols = ", ".join(FIELDS)
    prev, expected, n, keyed = GENESIS, 1, 0, 0
    checked = key is not None
    hashes: dict[int, str] = {}
    wanted = {s for s, _ in anchors}

    def bad(problem: str, seq) -> VerifyResult:
        return VerifyResult(False, n, 0, "", problem, seq, keyed, checked)

    cur = con.execute(f"SELECT rowid, {cols}, prev_hash, hash, mac FROM audit_log "
                      "ORDER BY rowid")
    for row in cur:
        rowid, values, prev_hash, h, mac = row[0], row[1:10], row[10], row[11], row[12]
        seq = values[0]
        where = f"record seq={seq!r} (row {rowid}, {values[1]!s:.27})"
        if seq != expected:
            what = ("deleted" if isinstance(seq, int) and seq > expected
                    else "reordered or renumbered")
            return bad(f"{where}: expected seq={expected}; records were {what}",
                       seq if isinstance(seq, int) else expected)
        if prev_hash != prev:
            return bad(f"{where}: prev_hash is not the hash of the record before it (a record "
                       "was deleted, inserted or reordered)", seq)
        if record_hash(prev_hash, values) != h:
            return bad(f"{where}: its content does not match its hash (the record was "
                       "edited)", seq)
        if mac is None:
            if keyed:
                return bad(f"{where}: it carries no MAC although the records before it do: "
                           "it was appended or rewritten by someone without the key (a keyed "
                           "chain never goes back to plain hashes)", seq)
        else:
            keyed += 1
            if key is not None and not (isinstance(mac, str) and
                                        hmac.compare_digest(mac, record_mac(key, h))):
                return bad(f"{where}: its MAC does not match under the key: the record was "
                           "edited, forged or appended by someone without the key (or this "
                           "is not the key the chain was written with)", seq)
        if seq in wanted:
            hashes[seq] = h
        prev, expected, n = h, expected + 1, n + 1
    last = expected - 1

    def broken(problem: str, seq) -> VerifyResult:
        return VerifyResult(False, n, last, prev, problem, seq, keyed, checked)

    head = con.execute("SELECT seq, hash, mac FROM chain_head WHERE id = 1").fetchone()
    if head is None:
        if n:
            return broken("the chain head record is missing", last)
    elif head[0] != last or head[1] != prev:
        return broken(f"the chain ends at seq={last} but its head says seq={head[0]!r}: "
                      "records were deleted from the end (or the head was edited)",
                      last + 1 if isinstance(head[0], int) and head[0] > last else last)
    if head is not None:
        last_keyed = con.execute("SELECT mac IS NOT NULL FROM audit_log WHERE seq = ?",
                                 (last,)).fetchone()
        if last_keyed and last_keyed[0] and head[2] is None:
            return broken(f"the chain head (seq={last}) carries no MAC although its record "
                          "does: the head was moved by someone without the key (records cut "
                          "from the end)", last + 1)
        if head[2] is not None and key is not None and not (
                isinstance(head[2], str) and hmac.compare_digest(head[2],
                                                                 head_mac(key, last, prev))):
            return broken(f"the chain head's MAC (seq={last}) does not match under the key: "
                          "records were cut from the end and the head moved, or the head "
                          "was forged, by someone without the key (or this is not the key "
                          "the chain was written with)", last + 1)
        if key is not None and n and head[2] is None:
            return broken(f"no record and not the head carry a MAC although a key is given: "
                          f"the records written under the key were cut (the chain now ends "
                          f"at seq={last}), or none was appended since the key was made",
                          last + 1)
    for seq, h in anchors:
        if hashes.get(seq) != h:
            return broken(f"record seq={seq} does not match the anchor you recorded (history "
                          "was rewritten)", seq)
    use_problem = uses.check(con)  # every use set against the digest its record carries
    if use_problem is not None:
        return broken(*use_problem)
    return VerifyResult(True, n, last, prev, keyed=keyed, key_checked=checked)


def parse_anchor(text: str) -> tuple[int, str]:
    m = re.fullmatch(r"(\d+):([0-9a-f]{64})", text.strip())
    if not m:
        raise InvalidInput(f"an anchor is seq:hash (64 hex digits), got {text!r}")
    return int(m.group(1)), m.group(2)


def count_today(con: sqlite3.Connection, bank: str, operation: str, prefix: bool = False) -> int:
    """Bank requests of one kind (or, with ``prefix``, kinds starting with ``operation``)
    since 00:00 UTC today: the daily caps' counter (an index range, not a scan)."""
    midnight = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT00:00:00.000000Z")
    hi = operation + "\uffff" if prefix else operation
    return con.execute("SELECT COUNT(*) FROM audit_log WHERE bank = ? AND operation >= ? "
                       "AND operation <= ? AND ts >= ? AND actor = 'bank'",
                       (bank, operation, hi, midnight)).fetchone()[0]

