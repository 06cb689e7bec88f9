"""The use record's byte formats (see :mod:`fedcredit.holder.uses`): a pending set, a
postings block, and the digest an audit record carries for its set.

- A **pending set** is its sorted enterprise numbers as little-endian uint32 behind a tag
  byte (searchable as stored: every report binary-searches the pending sets); past 2**32
  enterprises, deltas + LEB128 varints (zlib when smaller).
- A **postings block** (one per segment and block of 1024 enterprise numbers): per use
  the key ``offset in the block * sets in the segment + ordinal of the set``, sorted, as
  deltas + varints (zlib when smaller). A **postings row** holds consecutive blocks of one
  segment, about :data:`ROW_BYTES`: the number of blocks, their block numbers (deltas from
  the row's first), their byte lengths (varints), then the blocks.
- The **digest**: SHA-256 over the set's USCCs in enterprise-number order, each followed by
  a newline, first 32 hex digits: it commits to the set and to the numbering.
"""
from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable

import numpy as np

from ..errors import InvalidInput

BLOCK_BITS = 10  # enterprise numbers per postings block: 1024
MAX_SEGMENT_SETS = 16384  # sets per segment: bounds its seq list (128 KiB) and keys
#: postings rows group consecutive blocks up to this size: a row that overflows fills whole
#: pages (SQLite sizes overflow chains exactly), where rows of 1-3 KB left pages a third empty
ROW_BYTES = 8192
_RAW, _ZLIB, _U32 = 0, 1, 2  # blob tags: varint stream, zlib of one, little-endian uint32
_TAG = re.compile(r"(?:^| )uses=([0-9a-f]{32})$")


def _varints(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LEB128 bytes of non-negative integers, and the byte count of each."""
    v = np.asarray(v, dtype=np.uint64)
    size = np.ones(v.size, dtype=np.uint8)
    top, width = (int(v.max()) if v.size else 0), 1
    while top >> (7 * width):
        size += v >= np.uint64(1 << (7 * width))
        width += 1
    mat = np.empty((v.size, width), dtype=np.uint8)
    for k in range(width):
        mat[:, k] = ((v >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        if k < width - 1:
            mat[:, k] |= (size > k + 1).view(np.uint8) << 7
    return (mat.ravel() if width == 1 else mat[np.arange(width) < size[:, None]]), size


def _unvarints(raw: bytes | memoryview) -> np.ndarray:
    a = np.frombuffer(raw, dtype=np.uint8)
    if a.size == 0:
        return np.empty(0, dtype=np.int64)
    if a[-1] & 0x80:
        raise InvalidInput("a use record stream ends inside a number")
    ends = np.flatnonzero(a < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    shift = (np.arange(a.size) - np.repeat(starts, ends - starts + 1)).astype(np.uint64)
    if int(shift.max()) > 8:
        raise InvalidInput("a use record number is longer than 63 bits")
    return np.add.reduceat((a & 0x7F).astype(np.uint64) << (np.uint64(7) * shift),
                           starts).astype(np.int64)


def _pack(raw: bytes) -> bytes:
    """A tag byte, then the varint stream as is or zlib-compressed, whichever is smaller."""
    packed = zlib.compress(raw, 6) if len(raw) > 64 else raw
    return bytes([_ZLIB]) + packed if len(packed) < len(raw) else bytes([_RAW]) + raw


def _unpack(blob: bytes) -> np.ndarray:
    if not blob or blob[0] not in (_RAW, _ZLIB):
        raise InvalidInput("a use record blob has an unknown format tag")
    body = memoryview(blob)[1:]
    if blob[0] == _ZLIB:
        try:
            body = memoryview(zlib.decompress(body))
        except zlib.error as e:
            raise InvalidInput(f"a use record blob does not decompress ({e})") from None
    return _unvarints(body)


def encode_set(numbers: np.ndarray) -> bytes:
    """A pending set: its sorted numbers as uint32 (every query binary-searches the pending
    sets, so they stay searchable without decoding; 5 bytes for one enterprise); deltas +
    varint past 2**32 enterprises. Compaction folds them into postings at about 1 byte."""
    n = np.asarray(numbers, dtype=np.int64)
    if not n.size or int(n[-1]) < 1 << 32:
        return bytes([_U32]) + n.astype("<u4").tobytes()
    return _pack(_varints(np.diff(n, prepend=0))[0].tobytes())


def decode_set(blob: bytes) -> np.ndarray:
    if blob[:1] == bytes([_U32]):
        if len(blob) % 4 != 1:
            raise InvalidInput("a use set blob is cut inside a number")
        n = np.frombuffer(blob, dtype="<u4", offset=1).astype(np.int64)
    else:
        n = np.cumsum(_unpack(blob))
    if n.size > 1 and (np.diff(n) <= 0).any():
        raise InvalidInput("a use set's numbers are not strictly increasing")
    return n


def holds(blob: bytes, number: int) -> bool:
    """Whether a pending set holds enterprise ``number`` (a binary search, no decoding)."""
    if blob[:1] == bytes([_U32]) and len(blob) % 4 == 1:
        n = np.frombuffer(blob, dtype="<u4", offset=1)
        p = int(np.searchsorted(n, number)) if number < 1 << 32 else n.size
    else:
        n = decode_set(blob)
        p = int(np.searchsorted(n, number))
    return p < n.size and int(n[p]) == number


def digest(codes: Iterable) -> str:
    """The record's commitment to a set: SHA-256 over its USCCs in enterprise-number order,
    each followed by a newline; the first 32 hex digits. ``codes``: str, or an ``S18``
    array (the fast path of ``uses.check``)."""
    if isinstance(codes, np.ndarray) and codes.dtype == np.dtype("S18"):
        mat = np.full((codes.size, 19), 10, dtype=np.uint8)
        mat[:, :18] = codes.view(np.uint8).reshape(-1, 18)
        data = mat.tobytes()
    else:
        data = "".join(f"{c}\n" for c in codes).encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:32]


def tag(detail: str, set_digest: str) -> str:
    """``detail`` with the set's digest appended (the hash chain then covers the set)."""
    return f"{detail} uses={set_digest}" if detail else f"uses={set_digest}"


def tagged_digest(detail: str) -> str | None:
    m = _TAG.search(detail or "")
    return m.group(1) if m else None


def postings(sets: list[np.ndarray]) -> dict[int, bytes]:
    """block -> packed postings of a segment's ``sets`` (set ordinal k = ``sets[k]``).

    Each use is the key ``(number mod 1024) * len(sets) + k``; a block stores its sorted
    keys as deltas (the first absolute): about one varint byte per use at 100 sets a day."""
    n = len(sets)
    key = np.sort(np.concatenate(sets) * n + np.repeat(np.arange(n), [s.size for s in sets]))
    blk = key // n >> BLOCK_BITS
    local = key - (blk << BLOCK_BITS) * n
    first = np.ones(key.size, dtype=bool)
    first[1:] = blk[1:] != blk[:-1]
    delta = local.copy()
    delta[1:] -= np.where(first[1:], 0, local[:-1])
    raw, size = _varints(delta)
    starts = np.flatnonzero(first)
    ends = np.concatenate(([0], np.cumsum(size, dtype=np.int64)))
    cut = ends[np.append(starts, key.size)].tolist()
    data = raw.tobytes()
    return {b: _pack(data[a:c]) for b, a, c in zip(blk[starts].tolist(), cut[:-1], cut[1:])}


def _keys(blob: bytes, n_sets: int) -> np.ndarray:
    keys = np.cumsum(_unpack(blob))
    if not keys.size or (np.diff(keys) <= 0).any() or int(keys[-1]) >= n_sets << BLOCK_BITS:
        raise InvalidInput("a use postings block is malformed")
    return keys


def block_pairs(blob: bytes, block: int, n_sets: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (enterprise number, set ordinal) of a block of a segment of ``n_sets`` sets."""
    keys = _keys(blob, n_sets)
    return (block << BLOCK_BITS) + keys // n_sets, keys % n_sets


def lookup(blob: bytes, off: int, n_sets: int) -> np.ndarray:
    """The set ordinals of the enterprise at ``off`` in a block (empty if none)."""
    keys = _keys(blob, n_sets)
    lo = off * n_sets
    return keys[np.searchsorted(keys, lo):np.searchsorted(keys, lo + n_sets)] - lo


def postings_rows(blocks: dict[int, bytes]) -> list[tuple[int, bytes]]:
    """Consecutive blocks grouped into rows of about :data:`ROW_BYTES`: (first block, row)."""
    out, group, size = [], [], 0
    order = sorted(blocks)
    for b in order:
        group.append(b)
        size += len(blocks[b])
        if size >= ROW_BYTES or b == order[-1]:
            head = np.concatenate(([len(group)], np.diff(group, prepend=group[0]),
                                   [len(blocks[g]) for g in group]))
            out.append((group[0], _varints(head)[0].tobytes()
                        + b"".join(blocks[g] for g in group)))
            group, size = [], 0
    return out


def row_blocks(row: bytes, first: int) -> dict[int, bytes]:
    """block -> packed block of a postings row whose first block is ``first``."""
    a = np.frombuffer(row, dtype=np.uint8)
    ends = np.flatnonzero(a < 0x80)
    k = int(_unvarints(row[:ends[0] + 1])[0]) if ends.size else 0
    if k < 1 or ends.size < 2 * k + 1:
        raise InvalidInput("a use postings row is malformed")
    head = _unvarints(row[:ends[2 * k] + 1])
    blocks, sizes = first + np.cumsum(head[1:k + 1]), head[k + 1:]
    at = np.concatenate(([ends[2 * k] + 1], ends[2 * k] + 1 + np.cumsum(sizes)))
    if head[1] != 0 or (head[2:k + 1] <= 0).any() or (sizes < 1).any() or at[-1] != len(row):
        raise InvalidInput("a use postings row's directory does not match its blocks")
    return {b: row[x:y] for b, x, y in zip(blocks.tolist(), at[:-1].tolist(), at[1:].tolist())}
