"""Hashing ids into the PSI group, blinding in batches, and fixed-width point byte strings.

Two groups, both with 32-byte points: ``"x25519"`` (the default: OpenSSL's X25519 through
``cryptography``, see :mod:`fedcredit.psi.x25519`) and ``"ristretto255"`` (libsodium, a
prime-order group; what fedcredit used before and what a peer that names no group means).

The kernels work on whole chunks of concatenated 32-byte points: one library call per point
(libsodium or OpenSSL), writing straight into the chunk's output buffer. Large inputs are
cut into tasks of :data:`TASK_POINTS` and run in the process pool of
:mod:`fedcredit.crypto.parallel` (both libraries hold the GIL for each call, so threads
would not help). A secret scalar reaches a worker only as an argument of the task that needs
it; workers keep nothing.
"""
from __future__ import annotations

import ctypes
import hashlib
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

from ..errors import FedCreditError, InvalidInput, ResourceLimit
from . import _sodium, x25519
from ._sodium import POINT_BYTES

#: domain-separation tag hashed in front of every id: these points are ours, version 1
DOMAIN = b"fedcredit-psi-v1"
#: most points in one streamed chunk: 32,768 x 32 bytes = 1 MiB
MAX_CHUNK_POINTS = 32_768
#: most points per worker task (about half a second of libsodium work)
TASK_POINTS = 8_192
#: below this many points the pool's overhead outweighs a second core
MIN_PARALLEL_POINTS = 1_024
MIN_SALT_BYTES = 16
MAX_SALT_BYTES = 255
#: the PSI groups by wire name, the default first
GROUPS = ("x25519", "ristretto255")
DEFAULT_GROUP = GROUPS[0]
#: what an empty group name on the wire means (a peer from before the group was named)
LEGACY_GROUP = "ristretto255"


class _Suite(NamedTuple):
    """What differs between the groups: the hash's domain tag, the scalars, the kernels."""

    domain: bytes
    random_scalar: Callable[[], bytes]
    hash_blind: Callable[..., bytes]
    blind: Callable[..., tuple[bytes, int, str]]


def _suite(group: str) -> _Suite:
    return _SUITES[check_group(group)]


def check_group(name: object, where: str = "group") -> str:
    """``name`` if it is one of :data:`GROUPS` (``""`` means :data:`LEGACY_GROUP`)."""
    if name == "":
        return LEGACY_GROUP
    if not isinstance(name, str) or name not in GROUPS:
        raise InvalidInput(f"{where} {name!r} is not a PSI group fedcredit knows "
                           f"(one of {', '.join(GROUPS)})")
    return name


# ---------------------------------------------------------------- salts, scalars, ids


def new_salt() -> bytes:
    """A fresh 32-byte session salt from the operating system's CSPRNG.

    Either party may draw it (usually whoever opens the session); it is not secret, but it
    must be new for every session, so that blinded values of one session cannot be
    compared with those of another.
    """
    return secrets.token_bytes(32)


def check_salt(salt: bytes) -> bytes:
    """``salt`` as bytes, after checking its type and length (16 to 255 bytes)."""
    if not isinstance(salt, (bytes, bytearray, memoryview)):
        raise InvalidInput(f"salt must be bytes, not {type(salt).__name__}")
    salt = bytes(salt)
    if not MIN_SALT_BYTES <= len(salt) <= MAX_SALT_BYTES:
        raise InvalidInput(f"salt must be {MIN_SALT_BYTES} to {MAX_SALT_BYTES} bytes, "
                           f"got {len(salt)}")
    return salt


def hash_prefix(salt: bytes, group: str = LEGACY_GROUP) -> bytes:
    """What is hashed before each id: ``domain || len(salt) (1 byte) || salt``.

    The length byte makes the split between salt and id unambiguous, so no two
    (salt, id) pairs hash the same input; each group has its own domain tag.
    """
    salt = check_salt(salt)
    return _suite(group).domain + bytes([len(salt)]) + salt


def random_scalar(group: str = LEGACY_GROUP) -> bytes:
    """A uniformly random secret scalar of ``group``, from ``secrets``.

    ristretto255: 64 random bytes reduced modulo the ~2^252 group order (bias below
    2^-250), never zero. x25519: 32 random bytes, clamped by X25519 itself.
    """
    return _suite(group).random_scalar()


def _ristretto_scalar() -> bytes:
    while True:
        k = _sodium.scalar_reduce(secrets.token_bytes(64))
        if any(k):
            return k


def encode_ids(ids: Sequence[str], who: str = "ids") -> tuple[list[str], list[bytes]]:
    """``ids`` as a list, and their UTF-8 encodings, after checking them.

    Raises :class:`InvalidInput` naming the position (never the value) of the first id
    that is not a string, is empty, cannot be encoded, or repeats an earlier one.
    Ids are compared exactly as given: normalise them (case, spaces, Unicode form)
    the same way on both sides before calling.
    """
    if isinstance(ids, (str, bytes, bytearray)):
        raise InvalidInput(f"{who} must be a sequence of strings, not a single "
                           f"{type(ids).__name__}")
    try:
        ids = list(ids)
    except TypeError:
        raise InvalidInput(f"{who} must be a sequence of strings, not "
                           f"{type(ids).__name__}") from None
    out: list[bytes] = []
    for i, s in enumerate(ids):
        if not isinstance(s, str):
            raise InvalidInput(f"{who}[{i}] is a {type(s).__name__}, not a string")
        if not s:
            raise InvalidInput(f"{who}[{i}] is an empty string")
        try:
            out.append(s.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidInput(f"{who}[{i}] is not valid Unicode (lone surrogate)") from None
    if len(set(out)) != len(out):
        first: dict[bytes, int] = {}
        for i, e in enumerate(out):
            if e in first:
                raise InvalidInput(f"{who}[{i}] repeats {who}[{first[e]}]: ids must be unique")
            first[e] = i
    return ids, out


# ---------------------------------------------------------------- fixed-width point bytes


def _as_bytes(data, what: str) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInput(f"{what} must be bytes, not {type(data).__name__}")
    return bytes(data)


def count_points(data: bytes, what: str = "points") -> int:
    """How many 32-byte points ``data`` holds; :class:`InvalidInput` if it is not whole."""
    data = _as_bytes(data, what)
    if len(data) % POINT_BYTES:
        raise InvalidInput(f"{what}: {len(data)} bytes is not a whole number of "
                           f"{POINT_BYTES}-byte points (point {len(data) // POINT_BYTES} "
                           f"is cut short)")
    return len(data) // POINT_BYTES


def split_points(data: bytes, chunk_points: int = MAX_CHUNK_POINTS) -> Iterator[bytes]:
    """Cut concatenated points into chunks of at most ``chunk_points`` points, in order.

    For streaming: each chunk is at most ``32 * chunk_points`` bytes (1 MiB by default).
    An empty input yields no chunk.
    """
    if isinstance(chunk_points, bool) or not isinstance(chunk_points, int) or not (
            1 <= chunk_points <= MAX_CHUNK_POINTS):
        raise InvalidInput(f"chunk_points must be an integer from 1 to {MAX_CHUNK_POINTS}")
    data = _as_bytes(data, "points")
    count_points(data)
    step = chunk_points * POINT_BYTES
    for start in range(0, len(data), step):
        yield data[start:start + step]


def join_points(chunks: Iterable[bytes], *, max_points: int | None = None,
                max_chunk_points: int = MAX_CHUNK_POINTS) -> bytes:
    """Concatenate received chunks of points, checking each one as it arrives.

    Raises :class:`InvalidInput` for a chunk that is not bytes, not a whole number of
    points, or longer than ``max_chunk_points``; :class:`ResourceLimit` as soon as the
    total passes ``max_points`` (so a peer cannot make the receiver buffer without bound).
    """
    parts: list[bytes] = []
    total = 0
    for c, chunk in enumerate(chunks):
        n = count_points(chunk, f"chunk {c}")
        if n > max_chunk_points:
            raise InvalidInput(f"chunk {c} holds {n} points, more than the "
                               f"{max_chunk_points} allowed per chunk")
        total += n
        if max_points is not None and total > max_points:
            raise ResourceLimit(f"more than {max_points} points received")
        parts.append(bytes(chunk))
    return b"".join(parts)


# ---------------------------------------------------------------- kernels (run in workers)


def _address(data: bytes) -> int:
    return int(ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0)


def _hash_blind_chunk(encoded: list[bytes], prefix: bytes, scalar: bytes) -> bytes:
    """``scalar * H(id)`` for each encoded id, concatenated."""
    lib = _sodium.lib()
    from_hash, mult = lib.crypto_core_ristretto255_from_hash, lib.crypto_scalarmult_ristretto255
    base = hashlib.sha512(prefix)
    h = ctypes.create_string_buffer(POINT_BYTES)
    h_at = ctypes.addressof(h)
    out = ctypes.create_string_buffer(POINT_BYTES * len(encoded))
    at = ctypes.addressof(out)
    for e in encoded:
        d = base.copy()
        d.update(e)
        from_hash(h_at, d.digest())
        if mult(at, scalar, h_at) != 0:  # H(id) is the identity: probability 2^-252
            raise FedCreditError("an id hashed to the identity element")
        at += POINT_BYTES
    return out.raw


def _blind_chunk(points: bytes, scalar: bytes) -> tuple[bytes, int, str]:
    """``scalar * P`` for each received point; stops at the first bad one.

    Returns ``(result, -1, "")``, or ``(b"", index, reason)`` for the first point that is
    not a canonical encoding or is the identity (libsodium refuses both).
    """
    lib = _sodium.lib()
    mult = lib.crypto_scalarmult_ristretto255
    n = len(points) // POINT_BYTES
    out = ctypes.create_string_buffer(POINT_BYTES * n)
    at, src = ctypes.addressof(out), _address(points)
    for i in range(n):
        if mult(at, scalar, src) != 0:
            p = points[i * POINT_BYTES:(i + 1) * POINT_BYTES]
            bad = "is the identity element" if _sodium.is_valid_point(p) else \
                "is not a valid ristretto255 encoding"
            return b"", i, bad
        at += POINT_BYTES
        src += POINT_BYTES
    return out.raw, -1, ""


# ---------------------------------------------------------------- batch drivers


def _task_size(n: int, workers: int) -> int:
    """Points per task: one task when small, else a multiple of ``workers`` equal tasks."""
    if workers <= 1 or n < MIN_PARALLEL_POINTS:
        return max(n, 1)
    rounds = -(-n // (workers * TASK_POINTS))
    return -(-n // (workers * rounds))


def _map(fn, tasks: list, workers: int, *args) -> Iterator:
    if workers <= 1 or len(tasks) <= 1:
        return (fn(t, *args) for t in tasks)
    from ..crypto.parallel import map_ordered  # the process's one worker pool

    return map_ordered(fn, tasks, workers, *args)


def hash_and_blind(encoded: Sequence[bytes], prefix: bytes, scalar: bytes,
                   workers: int = 1, group: str = LEGACY_GROUP) -> bytes:
    """``scalar * H(id)`` for every encoded id, in order, as concatenated points."""
    kernel = _suite(group).hash_blind
    size = _task_size(len(encoded), workers)
    tasks = [list(encoded[i:i + size]) for i in range(0, len(encoded), size)]
    return b"".join(_map(kernel, tasks, workers, prefix, scalar))


def blind_points(points: bytes, scalar: bytes, workers: int = 1, *, what: str = "point",
                 offset: int = 0, group: str = LEGACY_GROUP) -> bytes:
    """``scalar * P`` for every received point, in order, after validating each one.

    Raises :class:`InvalidInput` naming the first bad point's position (``offset`` plus
    its index in ``points``): a cut-short last point, a non-canonical encoding, or the
    identity (x25519: a point of small order).
    """
    kernel = _suite(group).blind
    n = count_points(points, f"{what}s")
    points = bytes(points)
    size = _task_size(n, workers)
    step = size * POINT_BYTES
    tasks = [points[i:i + step] for i in range(0, n * POINT_BYTES, step)]
    parts = []
    for t, (res, bad, reason) in enumerate(_map(kernel, tasks, workers, scalar)):
        if bad >= 0:
            raise InvalidInput(f"{what} {offset + t * size + bad} {reason}")
        parts.append(res)
    return b"".join(parts)


_SUITES = {
    "x25519": _Suite(x25519.DOMAIN, x25519.random_scalar, x25519.hash_blind_chunk,
                     x25519.blind_chunk),
    "ristretto255": _Suite(DOMAIN, _ristretto_scalar, _hash_blind_chunk, _blind_chunk),
}
