"""The multi-exponentiation kernel and the holder's LR polynomial kernel against plain
Python integers.

Keys are 1024-bit and made with ``insecure=True``: INSECURE, for tests only.
"""
from __future__ import annotations

import random

import gmpy2
import numpy as np
import pytest

from fedcredit.crypto import SCHEMES, generate_keypair, polynomial_partials
from fedcredit.crypto.multiexp import (
    combine_partials,
    multi_exp,
    row_polynomial_products,
    subtract_multiples,
)
from fedcredit.errors import InvalidInput
from fedcredit.protocol.logistic.math import holder_exponents

KEY_BITS = 1024  # INSECURE: tests only


def naive(bases, exps, N):
    out = 1
    for b, e in zip(bases, exps):
        out = out * pow(int(b), int(e), int(N)) % int(N)
    return out


def random_modulus(rng: random.Random, bits: int) -> int:
    return rng.getrandbits(bits) | (1 << (bits - 1)) | 1


@pytest.mark.parametrize("n, max_exp", [(1, 5), (3, 1), (7, 2**13), (40, 2**20), (300, 2**40),
                                        (25, 2**62)])
def test_multi_exp_equals_the_product_of_powmods(n, max_exp):
    rng = random.Random(n * 1000 + max_exp.bit_length())
    N = random_modulus(rng, 256)
    bases = [gmpy2.mpz(rng.randrange(2, N)) for _ in range(n)]
    exps = np.array([rng.randrange(max_exp + 1) for _ in range(n)], dtype=np.int64)
    exps[::3] = 0  # zero exponents contribute nothing
    if n > 1:
        exps[-1] = max_exp  # the top window is reached
    assert int(multi_exp(bases, exps, N)) == naive(bases, exps, N)


def test_multi_exp_edge_cases():
    N = 1009 * 1013
    assert multi_exp([], np.array([], dtype=np.int64), N) == 1
    assert multi_exp([gmpy2.mpz(5), gmpy2.mpz(7)], np.array([0, 0]), N) == 1
    assert multi_exp([gmpy2.mpz(5)], np.array([1]), N) == 5
    assert multi_exp([gmpy2.mpz(5), gmpy2.mpz(7)], np.array([2, 1]), N) == 175
    with pytest.raises(InvalidInput, match="non-negative"):
        multi_exp([gmpy2.mpz(5), gmpy2.mpz(7)], np.array([2, -1]), N)


def test_subtract_multiples_and_combine_partials():
    N = gmpy2.mpz(1009 * 1013)
    total = gmpy2.mpz(12345)
    vals = [gmpy2.powmod(total, 5, N) * 7 % N, gmpy2.mpz(11)]
    got = subtract_multiples(vals, total, [5, 0], N)
    assert got == [7, 11]
    width = 4
    enc = lambda vs: b"".join(int(v).to_bytes(width, "big") for v in vs)  # noqa: E731
    sums, grads = combine_partials([enc([2, 3, 5]), enc([7, 11, 13])], N, width, G=1)
    assert sums == [14] and grads == [33, 65]
    assert combine_partials([], N, width, G=2) == ([1, 1], [])


@pytest.fixture(scope="module", params=SCHEMES)
def keys(request):
    return generate_keypair(request.param, bits=KEY_BITS, insecure=True)


def plain_partials(M, E, X, degree, groups):
    """D_ig = m_ig0 + sum_k m_igk * E[i, k]; per group sum_i D_ig; per column
    sum_i D_i0 * X[i, j] (Python ints)."""
    b = len(E)
    D = [[M[i][g][0] + sum(M[i][g][1 + k] * int(E[i, k]) for k in range(degree))
          for g in range(groups)] for i in range(b)]
    sums = [sum(D[i][g] for i in range(b)) for g in range(groups)]
    grads = [sum(D[i][0] * int(X[i, j]) for i in range(b)) for j in range(X.shape[1])]
    return sums, grads


@pytest.mark.parametrize("rows, degree, groups, cols, workers", [
    (5, 3, 1, 2, 1),
    (150, 2, 2, 3, 1),   # two chunks of rows, combined
    (150, 2, 2, 3, 2),   # the same on worker processes
    (3, 1, 1, 0, 1),     # no holder feature
])
def test_polynomial_partials_equal_the_plaintext_polynomials(keys, rows, degree, groups, cols,
                                                             workers):
    pk, sk = keys
    rng = np.random.default_rng(rows)
    # plaintexts of either sign; the holder's features include negative values and a
    # column that is negative throughout (its offset is the largest)
    M = [[[int(v) for v in rng.integers(-2**30, 2**30, degree + 1)] for _ in range(groups)]
         for _ in range(rows)]
    E = holder_exponents(rng.uniform(-1, 1, rows), degree)
    X = rng.integers(-2**12, 2**12, (rows, cols)).astype(np.int64)
    if cols >= 2:
        X[:, 1] = -np.abs(X[:, 1]) - 1
        X[0, 0] = 0
    flat = [v for row in M for grp in row for v in grp]  # per row, per group, k = 0..K
    data = pk.to_bytes_batch(sk.encrypt(flat, workers=1))
    sums, grads = polynomial_partials(pk, data, E, X, degree, groups, workers=workers)
    want_sums, want_grads = plain_partials(M, E, X, degree, groups)
    assert len(sums) == groups and len(grads) == cols
    assert sk.decrypt(sums) == want_sums
    assert sk.decrypt(grads) == want_grads
    assert not sums.fresh and not grads.fresh  # derived: re-randomise before replying
    assert sk.decrypt(pk.rerandomize(grads)) == want_grads


def test_row_kernel_chunks_multiply_to_the_whole(keys):
    """Two chunks through the worker task, combined, equal one pass over all rows."""
    pk, sk = keys
    rng = np.random.default_rng(9)
    rows, K, G = 6, 2, 1
    vals = [int(v) for v in rng.integers(-1000, 1000, rows * (K + 1) * G)]
    data = pk.to_bytes_batch(sk.encrypt(vals, workers=1))
    E = rng.integers(0, 50, (rows, K)).astype(np.int64)
    X = rng.integers(0, 9, (rows, 2)).astype(np.int64)
    w, N, per = pk.ciphertext_bytes, int(pk.cipher_modulus), (K + 1) * G * pk.ciphertext_bytes
    whole = row_polynomial_products((data, E, X), N, w, K, G)
    parts = [row_polynomial_products((data[:2 * per], E[:2], X[:2]), N, w, K, G),
             row_polynomial_products((data[2 * per:], E[2:], X[2:]), N, w, K, G)]
    s1, g1 = combine_partials([whole], N, w, G)
    s2, g2 = combine_partials(parts, N, w, G)
    assert sk.decrypt(pk._wrap(s1 + g1)) == sk.decrypt(pk._wrap(s2 + g2))
    M = [[vals[i * (K + 1):(i + 1) * (K + 1)]] for i in range(rows)]
    want_sums, want_grads = plain_partials(M, E, X, K, G)
    assert sk.decrypt(pk._wrap(s2 + g2)) == want_sums + want_grads


def test_polynomial_partials_of_an_empty_batch_has_one_gradient_per_column(keys):
    pk, sk = keys
    sums, grads = polynomial_partials(pk, b"", np.zeros((0, 2), np.int64),
                                      np.zeros((0, 3), np.int64), 2, 1, workers=1)
    assert sk.decrypt(sums) == [0]
    assert sk.decrypt(grads) == [0, 0, 0]
