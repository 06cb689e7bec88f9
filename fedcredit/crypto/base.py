"""The scheme interface every additively homomorphic scheme implements.

Both schemes fedcredit ships (Paillier, Okamoto–Uchiyama) have ciphertexts that are units
modulo a public number ``N`` (``n**2`` for Paillier, ``n`` for OU) and add plaintexts by
multiplying ciphertexts. So the kernels the protocol needs — grouped sums (histograms),
subtraction, shifts for packing, re-randomisation, serialization and validation — are
written once here over raw ``gmpy2.mpz`` lists; a scheme supplies key generation,
encryption and decryption. The protocol sees only this interface and never imports gmpy2.
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import gmpy2
import numpy as np
from gmpy2 import mpz

from ..errors import InsecureParameters, InvalidCiphertext, InvalidInput, UnsafeReply
from .fixedbase import batch_invert
from .histogram import EncryptedHistogram
from .multiexp import multi_exp
from .parallel import split_evenly, thread_map

if TYPE_CHECKING:
    from .zeropool import ZeroPool

#: Smallest modulus accepted without ``insecure=True``.
MIN_SECURE_BITS = 2048


def security_bits(modulus_bits: int) -> int:
    """NIST SP 800-57 strength of a factoring-based modulus of this size."""
    for limit, strength in ((2048, 80), (3072, 112), (7680, 128), (15360, 192)):
        if modulus_bits < limit:
            return strength
    return 256


def check_key_size(bits: int, insecure: bool, what: str = "key") -> None:
    if bits < MIN_SECURE_BITS and not insecure:
        raise InsecureParameters(
            f"{what} of {bits} bits is below the {MIN_SECURE_BITS}-bit minimum; "
            "pass insecure=True only in tests"
        )
    if bits < 256:
        raise InvalidInput(f"{what} of {bits} bits is too small even for tests")


class CipherVector:
    """A batch of ciphertexts under one key: a list of raw ``mpz`` plus the key fingerprint.

    Deliberately thin: arithmetic lives on the public key, so one object knows the modulus.
    ``fresh`` is true only for fresh encryptions and re-randomised vectors: those are the
    only ones :meth:`PublicKey.to_bytes_batch` lets leave a party. A vector derived by
    homomorphic operations (sums, packing, shifts) would show the key owner which of its
    ciphertexts were combined, so serializing one is refused (safe by construction, as phe's
    ``ciphertext(be_secure=True)``).
    """

    __slots__ = ("fingerprint", "fresh", "values")

    def __init__(self, values: list, fingerprint: str, fresh: bool = False):
        self.values = values
        self.fingerprint = fingerprint
        self.fresh = fresh

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, item) -> CipherVector:
        if isinstance(item, slice):
            return CipherVector(self.values[item], self.fingerprint, self.fresh)
        if isinstance(item, (int, np.integer)):
            return CipherVector([self.values[int(item)]], self.fingerprint, self.fresh)
        idx = np.asarray(item)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        vals = self.values
        return CipherVector([vals[i] for i in idx.tolist()], self.fingerprint, self.fresh)

    def __repr__(self) -> str:  # never print ciphertext values
        return f"CipherVector(len={len(self.values)}, key={self.fingerprint[:12]})"

    @staticmethod
    def concat(parts: Sequence[CipherVector]) -> CipherVector:
        if not parts:
            raise InvalidInput("nothing to concatenate")
        fp = parts[0].fingerprint
        if any(p.fingerprint != fp for p in parts):
            raise InvalidCiphertext("ciphertexts under different keys cannot be combined")
        out: list = []
        for p in parts:
            out.extend(p.values)
        return CipherVector(out, fp, all(p.fresh for p in parts))


class PublicKey(ABC):
    """Public half of an additively homomorphic key pair over ciphertexts mod ``N``."""

    scheme: str = ""
    _zero_pool: ZeroPool | None = None

    # -- identity ------------------------------------------------------------------------
    n: mpz  # the public modulus

    @property
    def bits(self) -> int:
        """Bit length of the public modulus n."""
        return int(self.n.bit_length())

    @property
    @abstractmethod
    def cipher_modulus(self) -> mpz:
        """``N``: ciphertexts are units modulo N."""

    @property
    @abstractmethod
    def plaintext_bits(self) -> int:
        """Signed plaintexts must satisfy ``|m| < 2**plaintext_bits``."""

    @abstractmethod
    def _fields(self) -> dict:
        """Public parameters as a JSON-friendly dict (integers as hex)."""

    def to_bytes(self) -> bytes:
        body = {"scheme": self.scheme, **self._fields()}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the canonical serialization: names the key in messages and logs."""
        fp = getattr(self, "_fingerprint", None)
        if fp is None:
            fp = hashlib.sha256(self.to_bytes()).hexdigest()
            self._fingerprint = fp
        return fp

    @property
    def ciphertext_bytes(self) -> int:
        return (int(self.cipher_modulus).bit_length() + 7) // 8

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits={self.bits}, fingerprint={self.fingerprint[:12]})"

    # -- scheme-specific -----------------------------------------------------------------
    @abstractmethod
    def encrypt(self, plaintexts: Sequence[int]) -> CipherVector:
        """Encrypt signed integers with the public key only."""

    def _random_zeros_now(self, count: int, threads: bool = True) -> list:
        """Compute fresh encryptions of zero with full-entropy randomness."""
        raise NotImplementedError

    def random_zeros(self, count: int) -> list:
        """Fresh encryptions of zero (for re-randomisation), from the pool when one runs."""
        pool = getattr(self, "_zero_pool", None)
        got = pool.take(count) if pool is not None else []
        if len(got) < count:
            got.extend(self._random_zeros_now(count - len(got)))
        return got

    def start_zero_pool(self, capacity: int = 2048) -> None:
        """Precompute encryptions of zero in the background (see :mod:`.zeropool`)."""
        from .zeropool import ZeroPool

        if getattr(self, "_zero_pool", None) is None:
            self._zero_pool = ZeroPool(self, capacity)

    def stop_zero_pool(self) -> None:
        pool = getattr(self, "_zero_pool", None)
        if pool is not None:
            pool.close()
            self._zero_pool = None

    def _checked(self, plaintexts: Sequence[int]) -> Sequence[int]:
        """The plaintexts, refused with an error if any is out of the scheme's range."""
        raise NotImplementedError

    @abstractmethod
    def trivial(self, plaintexts: Sequence[int]) -> list:
        """Deterministic, randomness-free encodings of plaintexts (to add constants)."""

    # -- kernels shared by every scheme ----------------------------------------------------
    def _wrap(self, values: list, fresh: bool = False) -> CipherVector:
        return CipherVector(values, self.fingerprint, fresh)

    def empty(self) -> CipherVector:
        """A vector of no ciphertexts under this key."""
        return self._wrap([], fresh=True)

    def trivial_vector(self, plaintexts: Sequence[int]) -> CipherVector:
        """Randomness-free encodings as a vector (constants to add; never to send as is)."""
        return self._wrap(self.trivial(plaintexts))

    def _check(self, *vectors: CipherVector) -> None:
        fp = self.fingerprint
        for v in vectors:
            if v.fingerprint != fp:
                raise InvalidCiphertext("ciphertexts were made under another key")

    def add(self, a: CipherVector, b: CipherVector) -> CipherVector:
        """Elementwise Enc(x + y)."""
        self._check(a, b)
        if len(a) != len(b):
            raise InvalidInput(f"cannot add {len(a)} ciphertexts to {len(b)}")
        N = self.cipher_modulus
        return self._wrap([x * y % N for x, y in zip(a.values, b.values)])

    def neg(self, a: CipherVector) -> CipherVector:
        self._check(a)
        try:
            return self._wrap(batch_invert(a.values, self.cipher_modulus))
        except ZeroDivisionError:
            raise InvalidCiphertext("a ciphertext is not invertible") from None

    def sub(self, a: CipherVector, b: CipherVector) -> CipherVector:
        """Elementwise Enc(x - y): one modular inversion for the whole batch."""
        return self.add(a, self.neg(b))

    def add_plain(self, a: CipherVector, plaintexts: Sequence[int]) -> CipherVector:
        """Elementwise Enc(x + k) for public integers k."""
        self._check(a)
        if len(a) != len(plaintexts):
            raise InvalidInput(f"{len(plaintexts)} constants for {len(a)} ciphertexts")
        N = self.cipher_modulus
        return self._wrap([x * t % N for x, t in zip(a.values, self.trivial(plaintexts))])

    def sum(self, a: CipherVector) -> CipherVector:
        """Enc(sum of all): a one-element vector."""
        self._check(a)
        N = self.cipher_modulus
        acc = None
        for x in a.values:
            acc = x if acc is None else acc * x % N
        return self._wrap([self.trivial([0])[0] if acc is None else acc])

    def grouped_sum(self, a: CipherVector, groups, n_groups: int) -> CipherVector:
        """``out[g] = Enc(sum of a[i] for i with groups[i] == g)``: a one-feature histogram,
        computed by the one histogram kernel (:class:`~.histogram.EncryptedHistogram`).

        Groups that receive nothing hold the trivial encryption of zero; anything that leaves
        a party must be re-randomised first (:meth:`rerandomize`).
        """
        self._check(a)
        g = np.asarray(groups)
        if g.shape != (len(a),):
            raise InvalidInput(f"{g.shape[0] if g.ndim else 0} group ids for {len(a)} ciphertexts")
        if len(g) and (g.min() < 0 or g.max() >= n_groups):
            raise InvalidInput(f"group ids must lie in [0, {n_groups})")
        hist = EncryptedHistogram(self, g.astype(np.int64)[:, None],
                                  np.array([int(n_groups)], dtype=np.int64),
                                  np.zeros(1, dtype=np.int64))
        hist.add(a)
        return hist.finish()

    def shift(self, a: CipherVector, bits: int) -> CipherVector:
        """Elementwise Enc(x * 2**bits): moves a value up into a higher packing slot."""
        self._check(a)
        if bits < 0:
            raise InvalidInput("shift must be non-negative")
        e, N = mpz(1) << int(bits), self.cipher_modulus
        parts = thread_map(lambda vs: gmpy2.powmod_base_list(vs, e, N), split_evenly(a.values))
        return self._wrap([x for part in parts for x in part])

    def pack(self, columns: Sequence[CipherVector], slot_bits: int) -> CipherVector:
        """Horner packing: out[i] = Enc(sum_j columns[j][i] * 2**(slot_bits * j)).

        Column 0 lands in the lowest slot. Each value must fit a signed ``slot_bits`` slot
        (see :class:`~fedcredit.crypto.encoding.SlotLayout`); that is the caller's layout.
        """
        if not columns:
            raise InvalidInput("nothing to pack")
        self._check(*columns)
        if (len(columns) * int(slot_bits)) > self.plaintext_bits:
            raise InvalidInput(
                f"{len(columns)} slots of {slot_bits} bits exceed {self.plaintext_bits} "
                "plaintext bits"
            )
        acc = columns[-1]
        for col in reversed(columns[:-1]):
            acc = self.add(self.shift(acc, slot_bits), col)
        return acc

    def rerandomize(self, a: CipherVector, full: bool = True) -> CipherVector:
        """Multiply each ciphertext by a fresh encryption of zero.

        ``full``: of full entropy. The key owner can recover the randomness of any
        ciphertext; without this step it could tell which of its own ciphertexts were
        multiplied together. ``full=False``: with the randomness :meth:`encrypt` uses (the
        short-exponent obfuscator of the DJN form, an order of magnitude cheaper), enough
        against parties without the private key (who could otherwise recompute a
        deterministic product and recognise it), not against the key owner.
        """
        self._check(a)
        N = self.cipher_modulus
        zeros = self.random_zeros(len(a)) if full else self.encrypt([0] * len(a)).values
        return self._wrap([x * z % N for x, z in zip(a.values, zeros)], fresh=True)

    def pack_flat(self, a: CipherVector, slot_bits: int, slots: int) -> CipherVector:
        """Pack a flat vector ``slots`` values per ciphertext, in order, then re-randomise.

        ``out[i]`` holds ``a[i*slots + j]`` in slot ``j`` (slot 0 lowest); the tail is padded
        with zeros. The result is ready to leave the party.
        """
        self._check(a)
        if slots < 1:
            raise InvalidInput("at least one slot per ciphertext")
        if len(a) == 0:
            return self.empty()
        vals = list(a.values)
        groups = -(-len(vals) // slots)
        vals += self.trivial([0] * (groups * slots - len(vals)))
        columns = [self._wrap(vals[j::slots]) for j in range(slots)]
        return self.rerandomize(self.pack(columns, slot_bits))

    def weighted_sums(self, a: CipherVector, weights: np.ndarray) -> CipherVector:
        """``out[j] = Enc(sum_i weights[i, j] * x_i)`` for integer weights (|w| < 2**62):
        one Pippenger multi-exponentiation per column and sign, negatives through one
        inverse. The result is derived, so it must be re-randomised before it leaves."""
        self._check(a)
        w = np.asarray(weights)
        if w.ndim != 2 or w.shape[0] != len(a) or w.dtype.kind not in "iu":
            raise InvalidInput(f"weights must be an integer matrix of {len(a)} rows")
        if w.size and int(np.abs(w).max()) >= 1 << 62:
            raise InvalidInput("weights must lie below 2**62 in magnitude")
        N, bases = self.cipher_modulus, a.values
        w = w.astype(np.int64)

        def column(j: int):
            pos = multi_exp(bases, np.maximum(w[:, j], 0), N)
            neg = multi_exp(bases, np.maximum(-w[:, j], 0), N)
            return pos if neg == 1 else pos * batch_invert([neg], N)[0] % N
        return self._wrap(thread_map(column, list(range(w.shape[1]))))

    # -- bytes -----------------------------------------------------------------------------
    def to_bytes_batch(self, a: CipherVector) -> bytes:
        """Fixed-width big-endian concatenation: ``len(a) * ciphertext_bytes`` bytes.

        Only fresh encryptions and re-randomised vectors may be serialized (see
        :class:`CipherVector`); anything else raises :class:`~fedcredit.errors.UnsafeReply`.
        """
        self._check(a)
        if not a.fresh:
            raise UnsafeReply("a ciphertext vector derived by homomorphic operations must be "
                              "re-randomised (PublicKey.rerandomize) before it leaves")
        return self._serialize(a.values)

    def _serialize(self, values: list) -> bytes:
        width = self.ciphertext_bytes
        return b"".join(x.to_bytes(width, "big") for x in values)

    def from_bytes_batch(self, data: bytes, count: int | None = None,
                         fingerprint: str | None = None, what: str = "ciphertexts") -> CipherVector:
        """Parse and validate a received batch: ``0 < c < N`` and ``gcd(c, n) = 1``."""
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise InvalidCiphertext(f"{what} were made under key {fingerprint[:12]}, "
                                    f"expected {self.fingerprint[:12]}")
        width = self.ciphertext_bytes
        if len(data) % width:
            raise InvalidCiphertext(f"{what}: {len(data)} bytes is not a multiple of {width}")
        k = len(data) // width
        if count is not None and k != count:
            raise InvalidCiphertext(f"{what}: expected {count} ciphertexts, got {k}")
        frm = mpz.from_bytes
        values = [frm(data[i:i + width], "big") for i in range(0, len(data), width)]
        self.validate(values, what)
        return self._wrap(values)

    def validate(self, values: list, what: str = "ciphertexts") -> None:
        N, n = self.cipher_modulus, self.unit_modulus
        for i, c in enumerate(values):
            if not 0 < c < N:
                raise InvalidCiphertext(f"{what}[{i}] is outside (0, N)")
        # One gcd for the whole batch: the product of units mod n is a unit.
        acc = mpz(1)
        for c in values:
            acc = acc * (c % n) % n
        if gmpy2.gcd(acc, n) != 1:
            for i, c in enumerate(values):
                if gmpy2.gcd(c, n) != 1:
                    raise InvalidCiphertext(f"{what}[{i}] shares a factor with the modulus")

    @property
    def unit_modulus(self) -> mpz:
        """Received ciphertexts must be coprime to this number (n)."""
        return self.n
