"""Fixed-base exponentiation with precomputed window tables.

For a fixed base ``b`` and modulus ``M``, row ``i`` of the table holds
``b**(d * 2**(w*i)) mod M`` for every w-bit digit ``d``. Then ``b**a`` is the product of one
entry per w-bit digit of ``a``: ``ceil(bits(a) / w)`` modular multiplications and no
squarings, against about ``bits(a)`` squarings for a general exponentiation. This is what
makes the short-exponent obfuscators ``h_s**a`` (Paillier, DJN form) and ``h**r`` (OU) cheap.

Digits come straight from OS randomness: an exponent is never materialised as an integer.
"""
from __future__ import annotations

import secrets

import gmpy2
import numpy as np
from gmpy2 import mpz


class FixedBaseTable:
    """``base**a mod modulus`` for random (or given) exponents below ``2**exponent_bits``."""

    def __init__(self, base, modulus, exponent_bits: int, window_bits: int = 8):
        if not 1 <= window_bits <= 16:
            raise ValueError(f"window_bits must be in [1, 16], got {window_bits}")
        self.modulus = mpz(modulus)
        self.window_bits = int(window_bits)
        self.rows_count = -(-int(exponent_bits) // self.window_bits)
        self.exponent_bits = self.rows_count * self.window_bits
        m = self.modulus
        size = 1 << self.window_bits
        rows = []
        b = mpz(base) % m
        for _ in range(self.rows_count):
            row = [mpz(1), b]
            for _ in range(size - 2):
                row.append(row[-1] * b % m)
            rows.append(row)
            b = row[-1] * b % m  # b**(2**w)
        self.rows = rows

    # -- digits --------------------------------------------------------------------------
    def random_digits(self, count: int) -> list[list[int]]:
        """``count`` uniformly random exponents as digit lists (OS randomness)."""
        w, r = self.window_bits, self.rows_count
        if w == 8:
            raw = secrets.token_bytes(count * r)
            return [list(raw[i * r:(i + 1) * r]) for i in range(count)]
        nbytes = -(-(w * r) // 8)
        packed = np.frombuffer(secrets.token_bytes(count * nbytes), dtype=np.uint8)
        bits = np.unpackbits(packed.reshape(count, nbytes), axis=1, bitorder="little")
        bits = bits[:, : w * r].reshape(count, r, w).astype(np.int64)
        digits = bits @ (1 << np.arange(w, dtype=np.int64))
        return digits.tolist()

    def digits_of(self, exponent: int) -> list[int]:
        e, w = int(exponent), self.window_bits
        if e < 0 or e.bit_length() > self.exponent_bits:
            raise ValueError("exponent outside the table's range")
        mask = (1 << w) - 1
        return [(e >> (w * i)) & mask for i in range(self.rows_count)]

    # -- powers --------------------------------------------------------------------------
    def power(self, digits) -> mpz:
        m = self.modulus
        acc = None
        for row, d in zip(self.rows, digits):
            if d:
                acc = row[d] if acc is None else acc * row[d] % m
        return mpz(1) if acc is None else acc

    def random_powers(self, count: int) -> list[mpz]:
        """``base**a`` for ``count`` fresh random exponents ``a < 2**exponent_bits``."""
        power = self.power
        return [power(d) for d in self.random_digits(count)]

    def pow(self, exponent: int) -> mpz:
        return self.power(self.digits_of(exponent))


def batch_invert(values, modulus) -> list[mpz]:
    """Inverses of many units with one modular inversion (Montgomery's trick).

    Raises ``ZeroDivisionError`` if some value is not invertible.
    """
    m = mpz(modulus)
    n = len(values)
    if n == 0:
        return []
    prefix = [mpz(0)] * n
    acc = mpz(1)
    for i, v in enumerate(values):
        acc = acc * v % m
        prefix[i] = acc
    inv = gmpy2.invert(acc, m)  # raises ZeroDivisionError when acc is not a unit
    out = [mpz(0)] * n
    for i in range(n - 1, 0, -1):
        out[i] = inv * prefix[i - 1] % m
        inv = inv * values[i] % m
    out[0] = inv
    return out
