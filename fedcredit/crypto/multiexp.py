"""Exponent-weighted products of ciphertexts: the kernels of hetero logistic regression.

``multi_exp`` computes ``prod_i c_i ** e_i mod N`` by Pippenger's bucket method; the row
kernel evaluates, per row, a ciphertext polynomial ``c_0 * prod_k c_k ** e_k`` (an encrypted
sum of terms with plaintext weights) and the column products the holder needs. All run on
raw ``mpz`` values; ``row_polynomial_products`` is a worker-process task.
"""
from __future__ import annotations

import gmpy2
import numpy as np
from gmpy2 import mpz

from ..errors import InvalidInput


def multi_exp(bases: list, exps: np.ndarray, N) -> mpz:
    """prod_i bases[i] ** exps[i] mod N for non-negative integer exponents (Pippenger's
    bucket method): about ``bits/w * (len + 2**(w+1))`` multiplications instead of
    ``len * bits``."""
    exps = np.asarray(exps, dtype=np.int64)
    if len(bases) == 0 or not exps.any():
        return mpz(1)
    if exps.min() < 0:
        raise InvalidInput("multi_exp needs non-negative exponents")
    bits = int(exps.max()).bit_length()
    n = len(bases)
    w = min(range(1, 13), key=lambda w: -(-bits // w) * (n + (2 << w)))
    mask = (1 << w) - 1
    result = None
    for p in range(-(-bits // w) - 1, -1, -1):
        digits = ((exps >> (p * w)) & mask).tolist()
        buckets: list = [None] * (1 << w)
        for c, d in zip(bases, digits):
            if d:
                cur = buckets[d]
                buckets[d] = c if cur is None else cur * c % N
        running = total = None
        for d in range(mask, 0, -1):
            bd = buckets[d]
            if bd is not None:
                running = bd if running is None else running * bd % N
            if running is not None:
                total = running if total is None else total * running % N
        if result is not None:
            result = gmpy2.powmod(result, 1 << w, N)
            if total is not None:
                result = result * total % N
        else:
            result = total
    return mpz(1) if result is None else result



def row_polynomial_products(task, N: int, width: int, K: int, G: int) -> bytes:
    """Worker: for a chunk of rows, D_ig = C_ig0 * prod_k C_igk^e_ik; returns the chunk's
    product of D_ig per group and, per holder feature, prod_i D_i0^x_ij (offset exponents)."""
    data, E, X = task
    N = mpz(N)
    frm = mpz.from_bytes
    cts = [frm(data[i:i + width], "big") for i in range(0, len(data), width)]
    per_row = (K + 1) * G
    sums = [mpz(1)] * G
    d0 = []
    for i, e in enumerate(E.tolist()):
        base = i * per_row
        for g in range(G):
            at = base + g * (K + 1)
            acc = cts[at] * simultaneous_exp(
                [(cts[at + 1 + k], e[k]) for k in range(K) if e[k]], N) % N
            sums[g] = sums[g] * acc % N
            if g == 0:
                d0.append(acc)
    grads = [multi_exp(d0, X[:, j], N) for j in range(X.shape[1])]
    return b"".join(int(v).to_bytes(width, "big") for v in sums + grads)


def combine_partials(parts, N, width: int, G: int) -> tuple[list, list]:
    """Multiply the workers' per-chunk products: (per group sums, per column products)."""
    N = mpz(N)
    frm = mpz.from_bytes
    sums: list | None = None
    grads: list = []
    for part in parts:
        vals = [frm(part[i:i + width], "big") for i in range(0, len(part), width)]
        if sums is None:
            sums, grads = vals[:G], vals[G:]
            continue
        sums = [a * v % N for a, v in zip(sums, vals[:G])]
        grads = [a * v % N for a, v in zip(grads, vals[G:])]
    if sums is None:
        return [mpz(1)] * G, []
    return sums, grads


def subtract_multiples(values: list, total, multiples: list[int], N) -> list:
    """``values[j] * total ** -multiples[j] mod N``: removes the offsets added to make
    exponents non-negative (Enc(x_j - o_j * t))."""
    N = mpz(N)
    inv = gmpy2.invert(total, N)
    return [v if not o else v * gmpy2.powmod(inv, int(o), N) % N
            for v, o in zip(values, multiples)]


def polynomial_partials(pk, data: bytes, exponents: np.ndarray, X: np.ndarray, degree: int,
                        groups: int, workers: int | None = None):
    """The holder's LR kernel over a batch of serialized ciphertexts.

    ``data`` holds, per row ``i`` and group ``g``, ``degree + 1`` ciphertexts ``C_ig0..C_igK``;
    per row ``D_ig = C_ig0 * prod_k C_igk ** exponents[i, k]``. Returns two derived vectors:
    ``prod_i D_ig`` per group, and per column ``j`` of the integer matrix ``X`` (any sign)
    ``prod_i D_i0 ** X[i, j]``. Rows are split over worker processes.
    """
    from .parallel import map_ordered, resolve_workers

    b = len(exponents)
    width = pk.ciphertext_bytes
    per_row = (degree + 1) * groups
    X = np.asarray(X, dtype=np.int64)
    offs = np.maximum(0, -X.min(axis=0)) if X.size else np.zeros(X.shape[1], np.int64)
    w = resolve_workers(workers)
    size = max(64, -(-b // (2 * w)))
    tasks = [(data[lo * per_row * width:(lo + size) * per_row * width], exponents[lo:lo + size],
              X[lo:lo + size] + offs[None, :]) for lo in range(0, b, size)]
    N = pk.cipher_modulus
    parts = map_ordered(row_polynomial_products, tasks, w, int(N), width, degree, groups)
    sums, grads = combine_partials(parts, N, width, groups)
    if b == 0:  # no rows: every product is the empty product, Enc(0)
        grads = [mpz(1)] * X.shape[1]
    if offs.any():
        grads = subtract_multiples(grads, sums[0], offs.tolist(), N)
    return pk._wrap(sums), pk._wrap(grads)


def polynomial_contract(pk, data: bytes, exponents: np.ndarray, groups: int,
                        workers: int | None = None) -> bytes:
    """One holder's step of the several-holder LR chain over serialized ciphertexts.

    ``data`` holds, per row ``i`` and group ``g``, ``K + 1`` ciphertexts ``C_igk``;
    ``exponents`` is ``b x (K + 1) x (L + 1)`` integers of any sign. Returns, per row and
    group, ``L + 1`` ciphertexts ``O_igl = prod_k C_igk ** exponents[i, k, l]`` (serialized,
    same order): Enc of the plaintext-weighted sums. A negative exponent uses ``C ** -1``
    (one inversion per base that needs it), which is cheaper than offsetting every exponent.
    """
    from .parallel import map_ordered, resolve_workers

    E = np.asarray(exponents, dtype=np.int64)
    if E.ndim != 3:
        raise InvalidInput("contraction exponents must be rows x (K+1) x (L+1)")
    b, k1, _ = E.shape
    width = pk.ciphertext_bytes
    per_row = k1 * groups
    if len(data) != b * per_row * width:
        raise InvalidInput(f"expected {b * per_row} ciphertexts to contract, got "
                           f"{len(data) // width}")
    w = resolve_workers(workers)
    size = max(32, -(-b // (2 * w)))
    tasks = [(data[lo * per_row * width:(lo + size) * per_row * width], E[lo:lo + size])
             for lo in range(0, b, size)]
    return b"".join(map_ordered(row_contractions, tasks, w, int(pk.cipher_modulus), width,
                                groups))


def row_contractions(task, N: int, width: int, G: int) -> bytes:
    """Worker: :func:`polynomial_contract` on a chunk of rows."""
    data, E = task
    N = mpz(N)
    frm = mpz.from_bytes
    cts = [frm(data[i:i + width], "big") for i in range(0, len(data), width)]
    K1 = E.shape[1] if E.ndim == 3 else 0
    out = []
    for i, e in enumerate(E.tolist()):
        for g in range(G):
            at = (i * G + g) * K1
            inv: list = [None] * K1
            for col in zip(*e):  # one output l: its exponent per input k
                terms = []
                for k, x in enumerate(col):
                    if x > 0:
                        terms.append((cts[at + k], x))
                    elif x < 0:
                        if inv[k] is None:
                            try:
                                inv[k] = gmpy2.invert(cts[at + k], N)
                            except ZeroDivisionError:
                                raise InvalidInput("a ciphertext is not invertible") from None
                        terms.append((inv[k], -x))
                out.append(simultaneous_exp(terms, N))
    return b"".join(int(v).to_bytes(width, "big") for v in out)


def simultaneous_exp(terms: list, N) -> mpz:
    """``prod b ** x mod N`` over ``(b, x)`` pairs (x > 0) with shared squarings (Straus):
    one squaring per exponent bit for all bases together, about 1.8 times faster than a
    powmod per base for the 5 to 9 bases of a chain step's output (measured at 4096 bits)."""
    if not terms:
        return mpz(1)
    if len(terms) == 1:
        return gmpy2.powmod(terms[0][0], terms[0][1], N)
    acc = mpz(1)
    for j in range(max(x for _, x in terms).bit_length() - 1, -1, -1):
        acc = acc * acc % N
        for b, x in terms:
            if x >> j & 1:
                acc = acc * b % N
    return acc
