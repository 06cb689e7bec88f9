"""Sealed envelopes between two holders, carried by the bank.

Why: with several holders, hetero LR passes ciphertexts under the *bank's* key from one
holder to the next (each contracts the sigmoid expansion by its own partial score). The
bank carries them, since holders only ever talk to the bank; were they open, the bank would
decrypt them and read every holder's partial score per row. So each pair of holders agrees
on a key by X25519 (the public halves relayed by the bank) and seals with AES-256-GCM: the
bank sees lengths only.

Semi-honest model, as the rest of the protocol: a bank that swaps the relayed public keys
(a man in the middle) could open the envelopes; authenticating the holders' keys needs a
channel between holders or certificates they both trust, which fedcredit does not assume.
"""
from __future__ import annotations

import hashlib
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import InvalidInput, ProtocolError

PUBLIC_BYTES = 32
NONCE_BYTES = 12
#: HKDF info: a key of this protocol is never a key of another
CONTEXT = b"fedcredit-holder-seal-v1"


class SealKey:
    """One holder's ephemeral key pair for one session (never stored, never reused)."""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public = self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def pair(self, peer_public: bytes, what: str = "peer key") -> Envelope:
        """The envelope shared with the holder whose public key is ``peer_public``."""
        peer_public = bytes(peer_public)
        if len(peer_public) != PUBLIC_BYTES:
            raise InvalidInput(f"{what}: {len(peer_public)} bytes, expected {PUBLIC_BYTES}")
        if peer_public == self.public:
            raise InvalidInput(f"{what} is this holder's own key")
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(peer_public))
        except ValueError:  # a point of small order: OpenSSL refuses the all-zero secret
            raise InvalidInput(f"{what} is not a usable X25519 public key") from None
        lo, hi = sorted([self.public, peer_public])
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=lo + hi,
                   info=CONTEXT).derive(shared)
        return Envelope(key)


class Envelope:
    """AES-256-GCM under one pair's key; ``aad`` binds a blob to where it belongs (step,
    offset, direction), so the bank cannot replay one step's blob in another."""

    def __init__(self, key: bytes):
        self._aead = AESGCM(key)
        self.fingerprint = hashlib.sha256(key).hexdigest()[:16]  # for tests; not the key

    def seal(self, data: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, bytes(data), bytes(aad))

    def open(self, blob: bytes, aad: bytes) -> bytes:
        blob = bytes(blob)
        if len(blob) < NONCE_BYTES + 16:
            raise ProtocolError("a sealed relay blob is too short")
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], bytes(aad))
        except InvalidTag:
            raise ProtocolError("a sealed relay blob failed authentication (altered, or "
                                "meant for another step or holder)") from None
