"""ristretto255 from libsodium, loaded with :mod:`ctypes`.

PyNaCl (1.6) bundles libsodium but declares only the Ed25519 point functions to Python, not
the ristretto255 ones (pyca/pynacl#646 has been open since 2020), so this module loads a
shared libsodium >= 1.0.18 itself. It looks, in order, at the path in the environment
variable ``FEDCREDIT_LIBSODIUM``, at what the dynamic linker finds for ``sodium``, and at
the usual library names. On Debian and Ubuntu the library is the package ``libsodium23``;
on macOS ``brew install libsodium``; in conda ``libsodium``.

Any conforming implementation of ristretto255 (RFC 9496) computes the same bytes, so the
two parties need not load their libsodium the same way.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

from ..errors import InvalidInput

POINT_BYTES = 32
SCALAR_BYTES = 32
HASH_BYTES = 64
NONREDUCED_SCALAR_BYTES = 64

_NAMES = ("libsodium.so.26", "libsodium.so.23", "libsodium.so", "libsodium.dylib",
          "libsodium.26.dylib", "libsodium.23.dylib", "libsodium.dll")
_FUNCTIONS = (
    "crypto_core_ristretto255_from_hash",
    "crypto_core_ristretto255_is_valid_point",
    "crypto_core_ristretto255_scalar_reduce",
    "crypto_scalarmult_ristretto255",
)

_LOCK = threading.Lock()
_LIB: ctypes.CDLL | None = None


def _candidates() -> list[str]:
    env = os.environ.get("FEDCREDIT_LIBSODIUM")
    if env:
        return [env]  # an explicit choice is not second-guessed
    found = ctypes.util.find_library("sodium")
    return ([found] if found else []) + list(_NAMES)


def _open() -> ctypes.CDLL:
    tried = []
    for name in _candidates():
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            tried.append(name)
            continue
        missing = [f for f in _FUNCTIONS if not hasattr(lib, f)]
        if missing:
            tried.append(f"{name} (too old: no {missing[0]}; ristretto255 needs >= 1.0.18)")
            continue
        if lib.sodium_init() < 0:
            tried.append(f"{name} (sodium_init failed)")
            continue
        # every pointer as c_void_p: callers pass bytes or raw addresses into a big buffer,
        # which lets the batch kernels write each point in place without a copy
        cp = cb = ctypes.c_void_p
        lib.crypto_core_ristretto255_from_hash.argtypes = [cb, cp]
        lib.crypto_core_ristretto255_from_hash.restype = ctypes.c_int
        lib.crypto_core_ristretto255_is_valid_point.argtypes = [cp]
        lib.crypto_core_ristretto255_is_valid_point.restype = ctypes.c_int
        lib.crypto_core_ristretto255_scalar_reduce.argtypes = [cb, cp]
        lib.crypto_core_ristretto255_scalar_reduce.restype = None
        lib.crypto_scalarmult_ristretto255.argtypes = [cb, cp, cp]
        lib.crypto_scalarmult_ristretto255.restype = ctypes.c_int
        return lib
    raise ImportError(
        "fedcredit.psi needs libsodium >= 1.0.18 for ristretto255 and could not load it "
        f"(tried: {', '.join(tried) or 'nothing'}). Install it (Debian/Ubuntu: "
        "`apt-get install libsodium23`; macOS: `brew install libsodium`; conda: "
        "`conda install libsodium`) or set FEDCREDIT_LIBSODIUM to the library's path.")


def lib() -> ctypes.CDLL:
    """The loaded libsodium (loaded on first use; raises ImportError when absent)."""
    global _LIB
    if _LIB is None:
        with _LOCK:
            if _LIB is None:
                _LIB = _open()
    return _LIB


def available() -> bool:
    """True when a libsodium with ristretto255 can be loaded."""
    try:
        lib()
    except ImportError:
        return False
    return True


def version() -> str:
    """The loaded libsodium's version string, e.g. ``"1.0.18"``."""
    fn = lib().sodium_version_string
    fn.restype = ctypes.c_char_p
    return fn().decode()


def scalar_reduce(wide: bytes) -> bytes:
    """A 64-byte little-endian integer reduced modulo the group order."""
    wide = bytes(wide)
    if len(wide) != NONREDUCED_SCALAR_BYTES:  # libsodium would read past a shorter buffer
        raise InvalidInput(f"scalar_reduce takes {NONREDUCED_SCALAR_BYTES} bytes, got {len(wide)}")
    out = ctypes.create_string_buffer(SCALAR_BYTES)
    lib().crypto_core_ristretto255_scalar_reduce(ctypes.addressof(out), wide)
    return out.raw


def from_hash(digest: bytes) -> bytes:
    """The group element of a 64-byte uniform string (RFC 9496 element derivation)."""
    digest = bytes(digest)
    if len(digest) != HASH_BYTES:
        raise InvalidInput(f"from_hash takes {HASH_BYTES} bytes, got {len(digest)}")
    out = ctypes.create_string_buffer(POINT_BYTES)
    lib().crypto_core_ristretto255_from_hash(ctypes.addressof(out), digest)
    return out.raw


def is_valid_point(point: bytes) -> bool:
    """True when ``point`` is the canonical encoding of a group element."""
    point = bytes(point)
    return len(point) == POINT_BYTES and lib().crypto_core_ristretto255_is_valid_point(point) == 1
