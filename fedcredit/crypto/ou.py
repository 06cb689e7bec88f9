"""Okamoto–Uchiyama encryption in the Coron–Naccache–Paillier form: ``c = g**m * h**r mod n``.

**Keys.** ``n = p**2 * q`` of exactly ``bits`` bits, p of ``ceil(bits/3)`` bits, and
``p = 2*t*u + 1``, ``q = 2*s*v + 1`` with t and s primes of ``2*kappa`` bits (kappa: the NIST
strength of n, 112 for 2048 bits, so 224-bit t and s). Modulo ``p**2``, ``h`` has order t and
``g = (1 + p)**alpha * h**beta`` has order ``p*t``; modulo q, ``h`` has order s and
``g = h**gamma``. alpha, beta, gamma are random and known to the key owner only; ``(n, g, h)``
is public. (HEU writes ``G = g**u``, ``H = g'**(n*u)``: the same subgroups mod ``p**2``. Mod q
its H has a large order; here it has the 2*kappa-bit order s, so the key owner's exponent mod
q is short too. g and h are built by CRT so that the key owner knows the logarithms alpha,
beta, gamma it encrypts with.)

**Encryption** of a signed m, ``|m| < 2**plaintext_bits``, is ``g**m * h**r mod n`` with r
uniform below ``2**exponent_bits`` (default ``2*kappa``). With the public key only it takes
fixed-base tables of g and h modulo n. The key owner computes ``(1 + (alpha*m mod p)*p) *
h**a`` modulo ``p**2`` and ``h**b`` modulo q, with a and b drawn independently, each one
table power of ``2*kappa`` bits (rounded up to whole 12-bit windows; moduli of 2/3 and 1/3
of n's size), and recombines by CRT. That is ``g**m * h**R`` with ``R = a - beta*m mod t``
and ``R = b - gamma*m mod s``: R's residues mod t and mod s are independent, so R is closer
to uniform modulo ``t*s`` than a public r below ``2**exponent_bits`` is. And the randomiser
``(h**a mod p**2, h**b mod q)`` does not depend on m: the bank makes it ahead of time
(:mod:`.randomisers`), and an encryption on the critical path is then one multiplication
modulo ``p**2`` and a CRT.

**Decryption** raises to the short exponent t modulo ``p**2``, not to ``p - 1``: every
ciphertext made from g and h has its mod-``p**2`` randomness in the order-t subgroup, so
``c**t = (1 + p)**(alpha*m*t) = 1 + alpha*m*t*p  (mod p**2)`` and
``m = L(c**t mod p**2) * (alpha*t)**-1 mod p`` with ``L(x) = (x - 1) / p``. A ciphertext
whose ``c**t`` is not 1 mod p is not of that form and is refused. The result is read as a
signed number in ``(-p/2, p/2)`` and **refused unless** ``|m| < 2**plaintext_bits``: OU
decrypts modulo the secret p, so a party that learns the decryption v of ``g**M`` for some
``M >= p`` gets ``p = gcd(M - v, n)`` (HEU's warning; protocols such as hetero LR send
decrypted masked values back). ``plaintext_bits = ceil(bits/3) - 2 - 40``: honest values
always decode (``2**plaintext_bits <= p/2``), and an M chosen without knowing p lands in the
accepted window with probability about ``2**-40`` (a statistical parameter of 40, as usual
for online attacks: every miss is a refused decryption, which aborts the session, and
session keys are fresh).

**Security.** Semantic security rests on (1) the p-subgroup assumption of Okamoto and
Uchiyama in the CNP form: an element of ``<h>`` (order ``t*s``) cannot be told from an
element of ``<g, h>`` (order ``p*t*s``) without factoring n; and (2) the short-exponent
assumption: ``h**r`` with ``r < 2**exponent_bits`` cannot be told from a uniform element of
``<h>``. The best attack on (2) is a kangaroo search over r (van Oorschot–Wiener), about
``2**(exponent_bits/2)`` steps to test a guessed plaintext, hence ``exponent_bits >=
2*kappa`` (enforced; NIST SP 800-56A sizes short Diffie–Hellman exponents the same way).
HEU draws ``r < 2**110``: a 2**55 search, too short. Longer r would buy nothing: h's order
mod p is the 2*kappa-bit t, and a rho search for it (collisions of ``h**x mod p`` detected by
gcds with n) factors n in about ``2**kappa`` steps, which is why t and s have ``2*kappa`` bits.

*2048-bit OU against 2048-bit Paillier.* The number field sieve costs the same on a
2048-bit ``p**2*q`` as on a 2048-bit ``p*q`` (about 112 bits). ECM, whose cost depends on the
smallest factor, faces 683-bit primes instead of 1024-bit ones: still far out of reach (the
ECM record is a 274-bit factor). Lattice methods for ``p**r*q`` (Boneh, Durfee and
Howgrave-Graham 1999) beat ECM only for large r, not for r = 2; but they and Coppersmith's
method factor n from about a third of p's bits, and one out-of-range decryption gives all of
them (refused above). So: the same or slightly lower than Paillier at equal size (as HEU's
documentation says), about 112 bits at 2048 bits; use 3072 bits for 128.

**Re-randomisation** (:meth:`~.base.PublicKey.random_zeros`, used by the party *without* the
private key) draws ``R`` uniformly below ``2**(bits(n) + kappa)``, not below
``2**exponent_bits``. The key owner knows p, q, t and s, so it can take discrete logarithms
in ``<h>`` (Pohlig–Hellman down to the 2*kappa-bit orders t and s, index calculus in the
683-bit fields mod p and mod q, about 2**70 work and less per log afterwards). With a short
R it could test a guess S of which of its ciphertexts were combined into a returned ``c'``:
``log_h(c' / prod_{i in S} c_i)`` is short only for the right S. Since ``ord(h) < n`` whatever
h is, R mod ord(h) is within ``2**-kappa`` of uniform, ``c'`` is statistically uniform over
the encryptions of its plaintext in its coset of ``<h>``, and nothing is left to compute,
without trusting the key owner's claims about h. ``y**n`` for a uniform unit y would cover
the whole kernel of decryption but leave the order-t subgroup mod ``p**2`` (so decryption by
t would fail) at ~7x the cost. The limit, as everywhere in this protocol: the key owner is
semi-honest, i.e. it encrypts with g and h as above.
"""
from __future__ import annotations

import json
import secrets
from collections.abc import Sequence

import gmpy2
from gmpy2 import mpz

from ..errors import InvalidCiphertext, InvalidInput, PackingOverflow
from . import parallel
from .base import CipherVector, PublicKey, check_key_size, security_bits
from .fixedbase import FixedBaseTable, batch_invert
from .private import PrivateKey

#: bits between the accepted plaintext range and p/2 (see the module docstring)
RANGE_MARGIN_BITS = 40


def prime_bits(bits: int) -> int:
    """Bit length of p for an n of ``bits`` bits."""
    return -(-int(bits) // 3)


def order_bits(bits: int) -> int:
    """Bit length of the primes t | p - 1 and s | q - 1: 2*kappa (less only for toy keys)."""
    return min(2 * security_bits(bits), prime_bits(bits) // 2)


def _random_prime(nbits: int) -> mpz:
    while True:
        x = mpz(secrets.randbits(nbits)) | (mpz(1) << (nbits - 1)) | 1
        x = gmpy2.next_prime(x)
        if x.bit_length() == nbits:
            return x


def _prime_with_factor(factor: mpz, lo: mpz, hi: mpz) -> mpz:
    """A prime ``2*factor*k + 1`` in [lo, hi] with k uniform."""
    kmin = (lo - 1 + 2 * factor - 1) // (2 * factor)
    kmax = (hi - 1) // (2 * factor)
    if kmax <= kmin:
        raise InvalidInput("key size too small for its subgroup order")
    span = int(kmax - kmin)
    while True:
        cand = 2 * factor * (kmin + secrets.randbelow(span + 1)) + 1
        if gmpy2.is_prime(cand, 40):
            return cand


def _crt(a: mpz, b: mpz, p2: mpz, q: mpz, q_inv_p2: mpz) -> mpz:
    """The x mod p**2 * q with x = a mod p**2 and x = b mod q."""
    return b + q * ((a - b) * q_inv_p2 % p2)


class OUPublicKey(PublicKey):
    scheme = "ou"

    def __init__(self, n: int, g: int, h: int, exponent_bits: int):
        self.n = mpz(n)
        self.g, self.h = mpz(g), mpz(h)
        self.exponent_bits = int(exponent_bits)
        n = self.n
        if n.bit_length() < 256 or n % 2 == 0:
            raise InvalidInput("public key: n is not a plausible OU modulus")
        for name, x in (("g", self.g), ("h", self.h)):
            # a base that is 1 modulo a factor would hand out that factor through a gcd
            if not 1 < x < n or gmpy2.gcd(x, n) != 1 or gmpy2.gcd(x - 1, n) != 1:
                raise InvalidInput(f"public key: {name} is not a suitable unit modulo n")
        if self.exponent_bits < 2 * security_bits(self.bits):
            raise InvalidInput(
                f"public key: exponent of {self.exponent_bits} bits is below twice the "
                f"key's {security_bits(self.bits)}-bit strength"
            )
        self._g_table: FixedBaseTable | None = None
        self._h_table: FixedBaseTable | None = None
        self._zero_table: FixedBaseTable | None = None

    # -- identity ------------------------------------------------------------------------
    @property
    def cipher_modulus(self) -> mpz:
        return self.n

    @property
    def plaintext_bits(self) -> int:
        return prime_bits(self.bits) - 2 - RANGE_MARGIN_BITS

    @property
    def zero_exponent_bits(self) -> int:
        """Length of the re-randomisation exponent: bits(n) + kappa (module docstring)."""
        return self.bits + security_bits(self.bits)

    def _fields(self) -> dict:
        return {"n": format(int(self.n), "x"), "g": format(int(self.g), "x"),
                "h": format(int(self.h), "x"), "exponent_bits": self.exponent_bits}

    @classmethod
    def from_fields(cls, d: dict) -> OUPublicKey:
        try:
            return cls(int(d["n"], 16), int(d["g"], 16), int(d["h"], 16),
                       int(d["exponent_bits"]))
        except (KeyError, ValueError, TypeError) as e:
            raise InvalidInput(f"malformed OU public key: {e}") from None

    # -- encryption with the public key only ---------------------------------------------
    def _tables(self) -> tuple[FixedBaseTable, FixedBaseTable]:
        if self._g_table is None:
            self._g_table = FixedBaseTable(self.g, self.n, self.plaintext_bits, 8)
            self._h_table = FixedBaseTable(self.h, self.n, self.exponent_bits, 8)
        return self._g_table, self._h_table  # type: ignore[return-value]

    def _random_zeros_now(self, count: int, threads: bool = True) -> list:
        """``h**R mod n`` with R uniform below ``2**(bits(n) + kappa)`` (full strength)."""
        if count == 0:
            return []
        table = self._zero_table
        if table is None:
            table = self._zero_table = FixedBaseTable(self.h, self.n,
                                                      self.zero_exponent_bits, 8)
        if not threads:
            return table.random_powers(count)
        sizes = [len(part) for part in parallel.split_evenly(range(count))]
        parts = parallel.thread_map(table.random_powers, sizes)
        return [z for part in parts for z in part]

    def trivial(self, plaintexts: Sequence[int]) -> list:
        """``g**m mod n``: deterministic (a negative m gives the inverse of ``g**-m``)."""
        g, n = self.g, self.n
        return [gmpy2.powmod(g, int(m), n) for m in plaintexts]

    def encrypt(self, plaintexts: Sequence[int]) -> CipherVector:
        ms = [int(m) for m in self._checked(plaintexts)]
        n = self.n
        tg, th = self._tables()
        gm = [tg.pow(abs(m)) for m in ms]
        neg = [i for i, m in enumerate(ms) if m < 0]
        for i, inv in zip(neg, batch_invert([gm[i] for i in neg], n)):
            gm[i] = inv
        return self._wrap([a * b % n for a, b in zip(gm, th.random_powers(len(ms)))], fresh=True)

    def _checked(self, plaintexts: Sequence[int]) -> Sequence[int]:
        limit = 1 << self.plaintext_bits
        for m in plaintexts:
            if not -limit < int(m) < limit:
                raise PackingOverflow("a plaintext exceeds the key's signed plaintext range")
        return plaintexts


class OUPrivateKey(PrivateKey):
    public_key: OUPublicKey

    def __init__(self, p: int, q: int, t: int, s: int, h: int, alpha: int, beta: int,
                 gamma: int, exponent_bits: int, window_bits: int | None = None):
        p, q, t, s = mpz(p), mpz(q), mpz(t), mpz(s)
        self.p, self.q, self.t, self.s = p, q, t, s
        self.alpha, self.beta, self.gamma = mpz(alpha), mpz(beta), mpz(gamma)
        n = p * p * q
        bits = int(n.bit_length())
        if (p == q or p.bit_length() != prime_bits(bits)
                or not all(gmpy2.is_prime(x) for x in (p, q, t, s))
                or (p - 1) % t or (q - 1) % s or gmpy2.gcd(n, (p - 1) * (q - 1)) != 1):
            raise InvalidInput("private key: p, q, t, s do not have the OU structure")
        self.p2 = p2 = p * p
        hp, hq = mpz(h) % p2, mpz(h) % q
        if (hp % p == 1 or hq == 1 or gmpy2.powmod(hp, t, p2) != 1
                or gmpy2.powmod(hq, s, q) != 1):
            raise InvalidInput("private key: h is not of order t mod p**2 and s mod q")
        if not (0 < self.alpha < p and 0 < self.beta < t and 0 < self.gamma < s):
            raise InvalidInput("private key: alpha, beta, gamma out of range")
        self.hp, self.hq = hp, hq
        self.q_inv_p2 = gmpy2.invert(q, p2)
        gp = (1 + self.alpha * p) * gmpy2.powmod(hp, self.beta, p2) % p2
        g = _crt(gp, gmpy2.powmod(hq, self.gamma, q), p2, q, self.q_inv_p2)
        self.public_key = OUPublicKey(n, g, _crt(hp, hq, p2, q, self.q_inv_p2),
                                      exponent_bits)
        # decryption: L(g**t mod p**2) = alpha*t mod p
        self.dec_factor = gmpy2.invert(self.alpha * t % p, p)
        # 12-bit windows: 19 multiplications per 224-bit exponent, tables of ~16 + 9 MB
        if window_bits is None:
            window_bits = 12 if bits >= 2048 else 8
        self.window_bits = int(window_bits)
        self._tables: tuple[FixedBaseTable, FixedBaseTable] | None = None

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def generate(cls, bits: int = 2048, insecure: bool = False, exponent_bits: int | None = None,
                 window_bits: int | None = None) -> OUPrivateKey:
        check_key_size(bits, insecure, "OU key")
        if bits < 512:
            raise InvalidInput(f"OU key of {bits} bits is too small for its structure")
        pb, ob = prime_bits(bits), order_bits(bits)
        while True:
            t, s = _random_prime(ob), _random_prime(ob)
            p = _prime_with_factor(t, mpz(1) << (pb - 1), (mpz(1) << pb) - 1)
            p2 = p * p
            lo = ((mpz(1) << (bits - 1)) + p2 - 1) // p2
            q = _prime_with_factor(s, lo, ((mpz(1) << bits) - 1) // p2)
            if t != s and p != q and gmpy2.gcd(p2 * q, (p - 1) * (q - 1)) == 1:
                break
        while True:  # h of order t mod p**2: kill the p-part and the (p-1)/t part
            hp = gmpy2.powmod(mpz(secrets.randbelow(int(p2) - 2) + 2), (p - 1) // t * p, p2)
            if hp % p != 1:
                break
        while True:
            hq = gmpy2.powmod(mpz(secrets.randbelow(int(q) - 2) + 2), (q - 1) // s, q)
            if hq != 1:
                break
        h = _crt(hp, hq, p2, q, gmpy2.invert(q, p2))
        alpha = secrets.randbelow(int(p) - 1) + 1
        beta = secrets.randbelow(int(t) - 1) + 1
        gamma = secrets.randbelow(int(s) - 1) + 1
        eb = 2 * security_bits(bits) if exponent_bits is None else int(exponent_bits)
        return cls(p, q, t, s, h, alpha, beta, gamma, eb, window_bits)

    def to_bytes(self) -> bytes:
        hexed = {k: format(int(getattr(self, k)), "x")
                 for k in ("p", "q", "t", "s", "alpha", "beta", "gamma")}
        return json.dumps({"scheme": "ou", **hexed, "h": format(int(self.public_key.h), "x"),
                           "exponent_bits": self.public_key.exponent_bits,
                           "window_bits": self.window_bits}, sort_keys=True).encode()

    @classmethod
    def from_fields(cls, d: dict) -> OUPrivateKey:
        try:
            p, q, t, s, h, alpha, beta, gamma = (
                int(d[k], 16) for k in ("p", "q", "t", "s", "h", "alpha", "beta", "gamma"))
            return cls(p, q, t, s, h, alpha, beta, gamma, int(d["exponent_bits"]),
                       d.get("window_bits"))
        except (KeyError, ValueError, TypeError) as e:
            raise InvalidInput(f"malformed OU private key: {e}") from None

    # -- encryption (CRT) -------------------------------------------------------------------
    def _crt_tables(self) -> tuple[FixedBaseTable, FixedBaseTable]:
        if self._tables is None:
            self._tables = (
                FixedBaseTable(self.hp, self.p2, self.t.bit_length(), self.window_bits),
                FixedBaseTable(self.hq, self.q, self.s.bit_length(), self.window_bits),
            )
        return self._tables

    separable_randomisers = True

    def _randomisers_local(self, count: int) -> tuple[list, list]:
        """``h**a mod p**2`` and ``h**b mod q`` for independent random a and b: the whole
        cost of an encryption, and independent of its message (module docstring)."""
        tp, tq = self._crt_tables()
        return tp.random_powers(count), tq.random_powers(count)

    def _randomiser_moduli(self) -> tuple[mpz, mpz]:
        return self.p2, self.q

    def _encrypt_local(self, plaintexts: Sequence[int], randomisers=None) -> list:
        self.public_key._checked(plaintexts)
        ms = [mpz(int(m)) for m in plaintexts]
        if not ms:
            return []
        op, oq = randomisers if randomisers is not None else self._randomisers_local(len(ms))
        if len(op) != len(ms) or len(oq) != len(ms):
            raise InvalidInput(f"{len(op)} randomisers for {len(ms)} plaintexts")
        p, q, p2, alpha, inv = self.p, self.q, self.p2, self.alpha, self.q_inv_p2
        out = []
        for m, a, b in zip(ms, op, oq):
            cp = (1 + (alpha * m % p) * p) * a % p2
            out.append(b + q * ((cp - b) * inv % p2))
        return out

    # -- decryption ---------------------------------------------------------------------------
    def _decrypt_local(self, values: list, offset: int = 0) -> list[int]:
        p, p2 = self.p, self.p2
        xs = gmpy2.powmod_base_list([c % p2 for c in values], self.t, p2)
        half, f = p // 2, self.dec_factor
        limit = 1 << self.public_key.plaintext_bits
        out = []
        for i, x in enumerate(xs):
            k, rem = gmpy2.f_divmod(x - 1, p)
            if rem:
                raise InvalidCiphertext(f"ciphertext {offset + i} is not an encryption "
                                        "under this key")
            m = k * f % p
            if m > half:
                m -= p
            if not -limit < m < limit:
                # never release such a value: with it, the sender could factor n
                raise InvalidCiphertext(f"ciphertext {offset + i} decrypts outside the "
                                        "plaintext range; refused")
            out.append(int(m))
        return out
