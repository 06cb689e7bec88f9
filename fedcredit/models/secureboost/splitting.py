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


@dataclass
class BankCandidates:
    """The bank's own split candidates for its binned features (same rule as the holder's)."""

    feature: np.ndarray
    bin: np.ndarray
    missing_left: np.ndarray

    @classmethod
    def build(cls, n_bins: np.ndarray, has_missing: np.ndarray) -> "BankCandidates":
        f_, t_, m_ = [], [], []
        for f, nb in enumerate(np.asarray(n_bins).tolist()):
            last = nb - 1 if has_missing[f] else nb - 2
            for t in range(last + 1):
                f_.append(f), t_.append(t), m_.append(False)
                if has_missing[f] and t <= nb - 2:
                    f_.append(f), t_.append(t), m_.append(True)
        return cls(np.array(f_, dtype=np.int64), np.array(t_, dtype=np.int64),
                   np.array(m_, dtype=bool))

    def __len__(self) -> int:
        return len(self.feature)


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


def candidate_sums(hist: np.ndarray, cands: BankCandidates, sizes: np.ndarray,
                   offsets: np.ndarray) -> np.ndarray:
    """Left-side sums of every candidate from a flat histogram."""
    out = np.empty(len(cands), dtype=np.int64)
    for f in range(len(sizes)):
        sel = cands.feature == f
        if not sel.any():
            continue
        off, size = int(offsets[f]), int(sizes[f])
        sec = hist[off:off + size]
        cum = np.cumsum(sec[:-1])
        out[sel] = cum[cands.bin[sel]] + np.where(cands.missing_left[sel], sec[-1], 0)
    return out
