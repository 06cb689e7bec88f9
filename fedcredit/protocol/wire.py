"""Array encodings every protocol's messages share.

Row positions travel as little-endian uint32 in the session's aligned order; decoding checks
the length and the bound, so a malformed array is a clear error naming what it was.
"""
from __future__ import annotations

import numpy as np

from ..errors import InvalidInput, ProtocolError


def rows_to_bytes(rows) -> bytes:
    return np.asarray(rows, dtype="<u4").tobytes()


def rows_from_bytes(data: bytes, limit: int | None = None, what: str = "rows") -> np.ndarray:
    if len(data) % 4:
        raise InvalidInput(f"{what}: {len(data)} bytes is not a whole number of uint32")
    rows = np.frombuffer(data, dtype="<u4").astype(np.int64)
    if limit is not None and len(rows) and int(rows.max()) >= limit:
        raise InvalidInput(f"{what}: row {int(rows.max())} is beyond the {limit} aligned rows")
    return rows


def increasing_rows(data: bytes, limit: int, what: str) -> np.ndarray:
    """Row positions that must be strictly increasing (node rows, tree samples)."""
    rows = rows_from_bytes(data, limit, what)
    if len(rows) and np.any(np.diff(rows) <= 0):
        raise InvalidInput(f"{what} must be strictly increasing")
    return rows


def flags_to_bytes(flags) -> bytes:
    """A bool per id, packed 8 to a byte (numpy packbits order)."""
    return np.packbits(np.asarray(flags, dtype=bool)).tobytes()


def join_flags(parts: list, count: int) -> np.ndarray | None:
    """Batches of :func:`flags_from_bytes` as one array (None if any batch had none)."""
    if not parts:
        return np.zeros(0, dtype=bool) if count == 0 else None
    if any(p is None for p in parts):
        return None
    return np.concatenate(parts)


def flags_from_bytes(data: bytes, count: int, what: str = "flags") -> np.ndarray | None:
    """The bools :func:`flags_to_bytes` packed; None when the peer sent none (an older
    holder), a clear error when their number is wrong."""
    if not data:
        return None
    if len(data) != -(-count // 8):
        raise ProtocolError(f"{what}: {len(data)} bytes for {count} ids")
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:count].astype(bool)
