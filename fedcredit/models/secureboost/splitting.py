"""Split gains and the best split of a node, from (G, H) sums of split candidates.

Sums are fixed-point integers (the quantised gradients both parties agree on), turned into
floats the same way for the bank's own candidates and the holder's decrypted ones; this is
what makes encrypted training reproduce plaintext training exactly.

Gain of a split (XGBoost's second-order objective)::

    gain = 1/2 * (G_L^2/(H_L+lambda) + G_R^2/(H_R+lambda) - G^2/(H+lambda)) - gamma
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SplitParams:
    reg_lambda: float = 1.0
    gamma: float = 0.0
    min_child_samples: int = 20
    min_child_weight: float = 1e-3
    scale: float = float(2 ** 24)  # fixed-point scale of G and H


def gains(G: np.ndarray, H: np.ndarray, G_tot: int, H_tot: int, p: SplitParams) -> np.ndarray:
    """Gain of each candidate from its left-side sums; -inf where a child is too light."""
    s = p.scale
    gl, hl = G.astype(np.float64) / s, H.astype(np.float64) / s
    gt, ht = float(G_tot) / s, float(H_tot) / s
    gr, hr = gt - gl, ht - hl
    lam = p.reg_lambda
    out = 0.5 * (gl * gl / (hl + lam) + gr * gr / (hr + lam) - gt * gt / (ht + lam)) - p.gamma
    light = (hl < p.min_child_weight) | (hr < p.min_child_weight)
    return np.where(light, -np.inf, out)


def int_histograms(bins: np.ndarray, sizes: np.ndarray, offsets: np.ndarray,
                   weights: list[np.ndarray]) -> list[np.ndarray]:
    """Flat per-(feature, bin) sums of integer weights (exact while |sums| < 2**53)."""
    n, F = bins.shape
    flat = (bins.astype(np.int64) + offsets[None, :]).ravel()
    total = int(sizes.sum())
    out = []
    for w in weights:
        rep = np.repeat(np.asarray(w, dtype=np.float64), F)
        out.append(np.rint(np.bincount(flat, weights=rep, minlength=total)).astype(np.int64))
    return out
