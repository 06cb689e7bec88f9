"""The arithmetic of hetero LR with several holders: how the sigmoid expansion in the sum
of the holders' partial scores is contracted one holder at a time.

With holders ``1..n`` each normalising its partial score ``u_h = center_h + radius_h t_h``
(``t_h`` in [-1, 1], as with one holder), the joint score is ``a + C + R t`` with
``C = sum center_h``, ``R = sum radius_h`` and ``t = sum_h b_h t_h``, ``b_h = radius_h / R``.
The bank expands ``sigmoid(a + C + R t) - y`` in Chebyshev polynomials of ``t`` (as for one
holder). Holder 1 writes ``t = beta t_1 + (1 - beta) rho`` (``beta = b_1``, ``rho`` the rest,
normalised to [-1, 1]) and re-expands each ``T_k(t)`` in Chebyshev polynomials of ``rho``:
``T_k(beta t_1 + (1 - beta) rho) = sum_l M_kl T_l(rho)``, a polynomial of degree k in
``rho`` bounded by 1, so ``|M_kl| <= 2`` (a well-conditioned change of basis, unlike powers
of a sum). Holder 2 does the same with its own ``beta``, and the last holder (``beta = 1``)
evaluates: ``M_k0 = T_k(t_n)``. Each step multiplies the fixed-point scale by
``2 ** CHAIN_BITS``.
"""
from __future__ import annotations

import numpy as np

from ...errors import InvalidInput
from ..logistic.math import COEF_BITS

#: fraction bits of each holder's change-of-basis weights M_kl
CHAIN_BITS = 16
#: the most holders one LR model chains (each adds CHAIN_BITS to the slot width)
MAX_HOLDERS = 8


def shares(radii) -> list[float]:
    """Each holder's ``beta``: its radius over the radii of itself and the holders after it
    (the last holder's is 1: it evaluates what is left)."""
    r = [float(v) for v in radii]
    if len(r) < 2 or min(r) <= 0:
        raise InvalidInput("a chain needs two or more holders with positive radii")
    rest = np.cumsum(r[::-1])[::-1]
    out = [v / s for v, s in zip(r, rest)]
    out[-1] = 1.0
    return out


def scale_bits(n_holders: int) -> int:
    """Fraction bits of the residuals at the end of a chain of ``n_holders``."""
    return COEF_BITS + int(n_holders) * CHAIN_BITS


def change_of_basis(t: np.ndarray, beta: float, degree: int) -> np.ndarray:
    """``M[i, k, l]``: ``T_k(beta t_i + (1 - beta) rho) = sum_l M[i, k, l] T_l(rho)``.

    Exact Chebyshev interpolation at ``degree + 1`` nodes (each ``T_k`` of the sum has degree
    ``k <= degree`` in ``rho``); entries above the diagonal are structurally zero. With
    ``beta == 1`` the result is ``b x (K+1) x 1``: ``T_k(t_i)``."""
    t = np.clip(np.asarray(t, dtype=np.float64), -1.0, 1.0)
    K = int(degree)
    ks = np.arange(K + 1)
    if beta >= 1.0:
        return np.cos(np.outer(np.arccos(t), ks))[:, :, None]
    th = (np.arange(K + 1) + 0.5) * np.pi / (K + 1)
    x = np.clip(beta * t[:, None] + (1.0 - beta) * np.cos(th)[None, :], -1.0, 1.0)
    vals = np.cos(ks[None, :, None] * np.arccos(x)[:, None, :])  # i, k, node
    M = (2.0 / (K + 1)) * vals @ np.cos(np.outer(th, ks))  # i, k, l
    M[:, :, 0] /= 2
    return np.where(np.tril(np.ones((K + 1, K + 1), dtype=bool))[None], M, 0.0)


def exponents(t: np.ndarray, beta: float, degree: int) -> np.ndarray:
    """The holder's fixed-point weights ``round(2**CHAIN_BITS * M)`` (any sign)."""
    return np.rint(change_of_basis(t, beta, degree) * 2.0 ** CHAIN_BITS).astype(np.int64)


def residual_bound(coef_abs_sum: int, degree: int, n_holders: int) -> int:
    """An upper bound on |residual| in the chain's final fixed point, from the largest
    per-row ``sum_k |gamma_k|`` of the bank's coefficients: each intermediate step spreads
    one input over at most ``degree + 1`` outputs with weights ``<= 2 * 2**CHAIN_BITS`` (plus
    rounding), the last weighs each by at most ``2**CHAIN_BITS``."""
    w = (2 << CHAIN_BITS) + 1
    return int(coef_abs_sum) * (((degree + 1) * w) ** (int(n_holders) - 1)) * w
