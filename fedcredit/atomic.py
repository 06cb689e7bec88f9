"""Write a file whole or not at all: the one helper every writer of fedcredit uses.

The content goes to a unique temporary file beside the target, is flushed to disk and then
renamed over the target (atomic on POSIX), so a reader never sees half a file and a crash
or a full disk leaves the previous version in place.
"""
from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: bytes | str, *, mode: int | None = None,
                 encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``data`` atomically; returns the path."""
    raw = data.encode(encoding) if isinstance(data, str) else bytes(data)
    return write_with(path, lambda tmp: tmp.write_bytes(raw), mode=mode)


def write_with(path: str | os.PathLike, writer: Callable[[Path], object], *,
               mode: int | None = None) -> Path:
    """Let ``writer`` fill a temporary file, then move it over ``path`` atomically.

    For writers that need a file name (``DataFrame.to_parquet``, ``to_csv``). On any error
    the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    remove_stale_tmp(target)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        writer(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    return target


#: a temporary file this old was left by a writer that was killed (a live one renames it
#: within seconds); younger ones may belong to a concurrent writer of the same target
STALE_TMP_SECONDS = 300.0


def remove_stale_tmp(target: Path, older_than: float = STALE_TMP_SECONDS) -> int:
    """Remove what killed writers of ``target`` left (``.<name>.<hex>.tmp``); returns how
    many. A SIGKILL skips the cleanup above, and the file may hold data (audit records)."""
    n, now = 0, time.time()
    try:
        stale = list(target.parent.glob(f".{target.name}.*.tmp"))
    except OSError:
        return 0
    for p in stale:
        try:
            if now - p.stat().st_mtime > older_than:
                p.unlink()
                n += 1
        except OSError:
            continue
    return n
