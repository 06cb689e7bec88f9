"""Write a file whole or not at all: the one helper every writer of fedcredit uses.

The content goes to a unique temporary file beside the target, is flushed to disk and then
renamed over the target (atomic on POSIX), so a reader never sees half a file and a crash
or a full disk leaves the previous version in place.
"""
from __future__ import annotations

import os
import secrets
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
