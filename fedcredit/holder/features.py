"""The holder's feature table: validated on load, stored as Parquet, switched atomically.

``load_features`` reads a CSV or Parquet file, checks every row (a valid USCC, present and
unique; every value of the column's kind: a number for a numeric column, finite) and reports
the rejected rows with their reasons. By default a file with any rejected row is refused
whole and the current table stays as it was — a silently shrunken table would shrink every
bank's intersection without anyone noticing; ``skip_invalid=True`` loads the valid rows and
records how many were skipped.

Each load writes a new file ``features/v<N>-<token>.parquet`` and then, in one SQLite
transaction, records it in ``feature_loads`` (with its SHA-256) together with the audit
record. That commit is the switch: before it the old table is current, after it the new one,
and a crash in between leaves only an orphan file (removed by the next load). The server
notices a new version at its next request and serves it from then on.

Loads are serialised: each holds an exclusive lock (``flock`` on ``D/load-features.lock``)
from reading the previous load to removing old files, so two loads run one after the
other (the second waits, saying so, up to ``lock_timeout`` seconds, then refuses). The
cleanup never removes the file the store names current, whatever else it removes.

Column kinds: ``[features.types]`` in ``holder.toml`` if listed, else the kind the column had
in the previous load, else inferred (numeric when at least 95 % of its non-empty values are
numbers; the others are then rejected rows). Published names: ``[features.labels]``.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_with
from ..datasets import invalid_uscc_rows
from ..errors import InvalidInput, ResourceLimit
from . import audit
from .config import HolderConfig
from .rejects import Rejects, uscc_reason
from .store import write

log = logging.getLogger("fedcredit.holder.features")
NUMERIC_SHARE = 0.95
MAX_TEXT = 256
LOCK_NAME = "load-features.lock"
LOCK_TIMEOUT = 600.0  # seconds a load waits for another one to finish


@dataclass
class LoadResult:
    rows: int
    loaded: int
    rejects: Rejects
    applied: bool
    version: int
    columns: dict[str, str]


def read_table(path, id_column: str) -> pd.DataFrame:
    """The raw table: CSV (every column read as text) or Parquet (by the ``.parquet`` suffix)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises many types for a bad file
            raise InvalidInput(f"{path}: not a readable Parquet file ({type(e).__name__})") \
                from None
        if frame.index.name == id_column:
            frame = frame.reset_index()
    else:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
        if not header:
            raise InvalidInput(f"{path}: the file is empty (no header line)")
        seen = set()
        for name in header:
            if name in seen:
                raise InvalidInput(f"{path}: column {name!r} appears twice in the header")
            seen.add(name)
        frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    frame.columns = [str(c) for c in frame.columns]
    if id_column not in frame.columns:
        raise InvalidInput(f"{path}: no column {id_column!r} (columns: {list(frame.columns)[:10]})")
    if len(frame.columns) < 2:
        raise InvalidInput(f"{path}: no feature columns besides {id_column!r}")
    return frame


def _texts(col: pd.Series, strip: bool) -> np.ndarray:
    """Object array of str, None where missing or empty (whatever pandas' string dtype)."""
    text = col.astype("string")
    if strip:
        text = text.str.strip()
    text = text.mask(text == "")
    return text.to_numpy(dtype=object, na_value=None)


def _infer(col: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return "numeric"
    present = col.dropna()
    if len(present) == 0:
        return "numeric"
    parsed = pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
    return "numeric" if parsed.notna().mean() >= NUMERIC_SHARE else "categorical"


def validate(frame: pd.DataFrame, id_column: str, types: dict[str, str]
             ) -> tuple[pd.DataFrame, dict[str, str], Rejects]:
    """Check a raw table; returns (valid rows indexed by id, column kinds, rejects)."""
    n = len(frame)
    rej = Rejects(n)
    ids = pd.Series(_texts(frame[id_column], strip=False), dtype=object)
    for i in invalid_uscc_rows(ids).tolist():
        v = ids.iloc[i]
        rej.add(i, f"{id_column} {v!r}: {uscc_reason(v)}" if v else f"{id_column}: missing id")
    dup = ids.duplicated(keep=False).to_numpy() & ids.notna().to_numpy()
    first: dict = {}
    for i in np.flatnonzero(dup).tolist():
        first.setdefault(ids.iloc[i], []).append(i)
    for rows in first.values():
        for i in rows:
            others = ", ".join(str(r + 1) for r in rows if r != i)[:60]
            rej.add(i, f"duplicate id: {id_column} also on row {others}")
    kinds: dict[str, str] = {}
    out = {}
    for name in frame.columns:
        if name == id_column:
            continue
        col = frame[name]
        kind = types.get(name) or _infer(col)
        kinds[name] = kind
        if kind == "numeric":
            if pd.api.types.is_bool_dtype(col):
                values = col.astype("float64")
            elif pd.api.types.is_numeric_dtype(col):
                values = col.astype("float64")
            else:
                text = _texts(col, strip=True)
                values = pd.to_numeric(pd.Series(text, dtype=object), errors="coerce"
                                       ).astype("float64")
                values.index = col.index
                given = np.array([v is not None for v in text], dtype=bool)
                bad = np.flatnonzero(given & values.isna().to_numpy())
                for i in bad.tolist():
                    rej.add(i, f"column {name!r}: {str(text[i])[:40]!r} is not a number")
            arr = values.to_numpy()
            for i in np.flatnonzero(np.isinf(arr)).tolist():
                rej.add(i, f"column {name!r}: infinite value")
            out[name] = values
        else:
            text = _texts(col, strip=False)
            lengths = np.array([0 if v is None else len(v) for v in text], dtype=np.int64)
            for i in np.flatnonzero(lengths > MAX_TEXT).tolist():
                rej.add(i, f"column {name!r}: a value longer than {MAX_TEXT} characters")
            out[name] = pd.Series(text, index=col.index, dtype=object)
    clean = pd.DataFrame(out)
    clean.index = pd.Index(ids.astype(str), name=id_column)
    keep = ~rej.mask()
    return clean.iloc[np.flatnonzero(keep)], kinds, rej


def current(con: sqlite3.Connection):
    """The current load's row of ``feature_loads`` as a dict, or None."""
    row = con.execute("SELECT version, loaded_at, source, file, sha256, rows, columns, "
                      "rejected, schema FROM feature_loads ORDER BY version DESC LIMIT 1"
                      ).fetchone()
    if row is None:
        return None
    keys = ("version", "loaded_at", "source", "file", "sha256", "rows", "columns", "rejected",
            "schema")
    d = dict(zip(keys, row))
    d["schema"] = json.loads(d["schema"])
    return d


def current_version(con: sqlite3.Connection) -> int:
    row = con.execute("SELECT MAX(version) FROM feature_loads").fetchone()
    return int(row[0] or 0)


@contextlib.contextmanager
def load_lock(cfg: HolderConfig, timeout: float = LOCK_TIMEOUT,
              on_wait: Callable[[str], object] | None = None):
    """Hold the holder directory's feature-load lock (exclusive, across processes).

    If another load holds it, ``on_wait`` gets one message and this waits up to ``timeout``
    seconds, then raises :class:`~fedcredit.errors.ResourceLimit`. The lock is released
    when the block ends or the process dies (``flock``); the file itself stays.
    """
    path = cfg.dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            if on_wait is not None:
                on_wait(f"another `fedcredit holder load-features` (pid {other}) is loading "
                        f"into {cfg.dir}; waiting up to {timeout:g} s for it to finish")
            deadline = time.monotonic() + timeout
            while True:
                time.sleep(0.05)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ResourceLimit(
                            f"another `fedcredit holder load-features` (pid {other}) is still "
                            f"loading into {cfg.dir} after {timeout:g} s (lock {path}); run "
                            "this load again when it has finished") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def load_features(cfg: HolderConfig, con: sqlite3.Connection, path, id_column: str,
                  skip_invalid: bool = False, *, lock_timeout: float = LOCK_TIMEOUT,
                  on_wait: Callable[[str], object] | None = None) -> LoadResult:
    """Validate ``path`` and, unless refused, make it the holder's feature table.

    The whole load holds :func:`load_lock` (``lock_timeout``, ``on_wait``: see there).
    """
    with load_lock(cfg, lock_timeout, on_wait):
        return _load(cfg, con, Path(path), id_column, skip_invalid)


def _load(cfg: HolderConfig, con: sqlite3.Connection, path: Path, id_column: str,
          skip_invalid: bool) -> LoadResult:
    frame = read_table(path, id_column)
    prev = current(con)
    prev_kinds = prev["schema"]["kinds"] if prev else {}
    types = {**prev_kinds, **cfg.feature_types}
    clean, kinds, rej = validate(frame, id_column, types)
    version = prev["version"] if prev else 0
    result = LoadResult(len(frame), 0, rej, False, version, kinds)
    if rej.count and not skip_invalid:
        audit.record_operator(con, "features_load_refused",
                              f"file={path.name} rows={len(frame)} rejected={rej.count}")
        return result
    if len(clean) == 0:
        raise InvalidInput(f"{path}: no valid rows to load")
    folder = cfg.features_dir
    folder.mkdir(mode=0o700, exist_ok=True)
    name = f"features-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}.parquet"
    final = write_with(folder / name, lambda tmp: clean.to_parquet(tmp, index=True))
    _fsync_dir(folder)
    digest = _sha256(final)
    schema = {"id_column": id_column, "kinds": kinds}
    with write(con):
        version = current_version(con) + 1
        con.execute("INSERT INTO feature_loads (version, loaded_at, source, file, sha256, rows,"
                    " columns, rejected, schema) VALUES (?,?,?,?,?,?,?,?,?)",
                    (version, time.time(), str(path), name, digest, len(clean), len(kinds),
                     rej.count, json.dumps(schema)))
        audit.append(con, actor=audit.operator(), operation="features_load",
                     enterprises=len(clean),
                     detail=f"file={path.name} version={version} rows={len(frame)} "
                            f"loaded={len(clean)} rejected={rej.count} columns={len(kinds)} "
                            f"sha256={digest[:16]}")
    now = current(con)
    _remove_old(folder, keep={name, now["file"]} if now else {name})
    result.loaded, result.applied, result.version = len(clean), True, version
    return result


def read_current(cfg: HolderConfig, con: sqlite3.Connection) -> tuple[pd.DataFrame, int]:
    """The current table as served: indexed by id (str), columns under their published names.

    Raises if the file recorded for the current load is missing or was changed behind the
    store's back (its SHA-256 no longer matches).
    """
    for attempt in range(3):
        cur = current(con)
        if cur is None:
            return pd.DataFrame(index=pd.Index([], dtype=object, name="uscc")), 0
        path = cfg.features_dir / cur["file"]
        try:
            f = open(path, "rb")
        except (FileNotFoundError, IsADirectoryError):
            if attempt < 2 and current_version(con) != cur["version"]:
                continue  # a load replaced it meanwhile: read the new current table
            raise InvalidInput(f"{path}: the current feature table (version {cur['version']})"
                               " is missing; load the features again") from None
        with f:  # hashed and parsed from one open file: a later unlink cannot get between
            if _sha256(f) != cur["sha256"]:
                raise InvalidInput(f"{path}: the feature file was modified outside `fedcredit "
                                   "holder load-features` (SHA-256 mismatch); load the "
                                   "features again")
            f.seek(0)
            frame = pd.read_parquet(f)
        break
    frame.index = frame.index.astype(str)
    labels = {k: v for k, v in cfg.feature_labels.items() if k in frame.columns}
    for k in sorted(set(cfg.feature_labels) - set(frame.columns)):
        log.warning("feature label for a column the table does not have",
                    extra={"fields": {"column": k}})
    frame = frame.rename(columns=labels)
    if frame.columns.has_duplicates:
        raise InvalidInput("features.labels gives a column the name of another column")
    return frame, int(cur["version"])


def _sha256(source) -> str:
    """SHA-256 of a file, given its path or an open binary file (read from where it is)."""
    h = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        f = source if hasattr(source, "read") else stack.enter_context(open(source, "rb"))
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_old(folder: Path, keep: set[str]) -> None:
    """Remove earlier tables (enterprise data is not kept longer than it is served), never
    one named in ``keep`` (the file just written and the one the store names current).

    Called under the load lock, so no other load's file is half-written or uncommitted."""
    # and what a load killed mid-write left: the atomic helper's ``.features-*.tmp`` files
    for p in [*folder.glob("features-*.parquet*"), *folder.glob(".features-*.tmp")]:
        if p.name not in keep:
            try:
                p.unlink()
            except OSError:
                pass
