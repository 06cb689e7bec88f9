"""Additively homomorphic encryption: keys, fixed-point encoding, packing and batch kernels.

The only package of fedcredit that imports ``phe`` and ``gmpy2``. Everything above it sees
:class:`PublicKey`, :class:`PrivateKey` and :class:`CipherVector`, whatever the scheme.

>>> pk, sk = generate_keypair("paillier", bits=1024, insecure=True)
>>> sk.decrypt(pk.add(pk.encrypt([2, -5]), pk.encrypt([40, 1])))
[42, -4]
"""
from __future__ import annotations

import json

from ..errors import InvalidInput, ResourceLimit
from .base import MIN_SECURE_BITS, CipherVector, PublicKey, security_bits
from .encoding import FixedPoint, SlotLayout
from .histogram import EncryptedHistogram, candidate_sums, plan_groups
from .multiexp import polynomial_contract, polynomial_partials
from .ou import OUPrivateKey, OUPublicKey
from .paillier import PaillierPrivateKey, PaillierPublicKey
from .private import PrivateKey
from .stored import StoredCiphertexts

_PUBLIC = {"paillier": PaillierPublicKey}
_PRIVATE = {"paillier": PaillierPrivateKey}

SCHEMES = tuple(_PUBLIC)


def _register(name: str, public_cls, private_cls) -> None:
    _PUBLIC[name] = public_cls
    _PRIVATE[name] = private_cls
    global SCHEMES
    SCHEMES = tuple(_PUBLIC)


_register("ou", OUPublicKey, OUPrivateKey)


def generate_keypair(scheme: str = "paillier", bits: int = 2048, insecure: bool = False,
                     **options) -> tuple[PublicKey, PrivateKey]:
    """A fresh key pair. Keys below 2048 bits need ``insecure=True`` (tests only)."""
    if scheme not in _PRIVATE:
        raise InvalidInput(f"unknown scheme {scheme!r}; choose one of {SCHEMES}")
    sk = _PRIVATE[scheme].generate(bits=bits, insecure=insecure, **options)
    return sk.public_key, sk


def _parse(data: bytes, what: str) -> dict:
    try:
        d = json.loads(bytes(data).decode())
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, RecursionError):
        raise InvalidInput(f"{what} is not a serialized fedcredit key") from None
    if not isinstance(d, dict) or d.get("scheme") not in _PUBLIC:
        raise InvalidInput(f"{what} names no known scheme (known: {SCHEMES})")
    return d


def load_public_key(data: bytes, max_bits: int | None = None) -> PublicKey:
    """Parse and check a public key received from a peer.

    With ``max_bits``, a key whose modulus (or exponent) is larger is refused before any
    table is built for it: a peer must not choose how much memory and CPU its key costs.
    """
    if max_bits is not None and len(data) > max_bits + 4096:  # hex digits and JSON framing
        raise ResourceLimit(f"a public key of {len(data)} bytes exceeds the holder's "
                            f"{max_bits}-bit maximum")
    d = _parse(data, "public key")
    if max_bits is not None:
        try:
            n_bits = int(str(d.get("n", "0")), 16).bit_length()
            e_bits = int(d.get("exponent_bits", 0))
        except (ValueError, TypeError):
            raise InvalidInput("malformed public key: n or exponent_bits") from None
        if max(n_bits, e_bits) > max_bits:
            raise ResourceLimit(f"a key of {max(n_bits, e_bits)} bits exceeds the holder's "
                                f"{max_bits}-bit maximum")
    return _PUBLIC[d["scheme"]].from_fields(d)


def load_private_key(data: bytes) -> PrivateKey:
    d = _parse(data, "private key")
    return _PRIVATE[d["scheme"]].from_fields(d)


__all__ = ["MIN_SECURE_BITS", "SCHEMES", "CipherVector", "EncryptedHistogram", "FixedPoint",
           "PrivateKey", "PublicKey", "SlotLayout", "StoredCiphertexts", "candidate_sums",
           "generate_keypair", "load_private_key", "load_public_key", "plan_groups",
           "polynomial_contract", "polynomial_partials", "security_bits"]
