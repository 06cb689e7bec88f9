"""Split gains and the best split of a node, from (G, H) sums of split candidates.

Sums are fixed-point integers (the quantised gradients both parties agree on), turned into
floats the same way for the bank's own candidates and the holder's decrypted ones; this is
what makes encrypted training reproduce plaintext training exactly.

Gain of a split (XGBoost's second-order objective)::

    gain = 1/2 * (G_L^2/(H_L+lambda) + G_R^2/(H_R+lambda) - G^2/(H+lambda)) - gamma

Under monotone constraints (LightGBM's "basic" method) a node carries bounds [lo, hi] on its
output: each child's output ``-G/(H+lambda)`` is clipped into them and the gain is the drop
of the objective ``G w + (H+lambda) w^2 / 2`` at the clipped outputs; a candidate of a +1
feature whose left (lower-value) output exceeds its right one is no split (-1: the other
way). Without bounds and constraints the gains are the formula above, bit for bit.
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
    scale: float = float(2 ** 24)  # fixed-point scale of G (and of H unless h_scale is set)
    h_scale: float = 0.0  # fixed-point scale of H; 0: the same as G's

    @property
    def hessian_scale(self) -> float:
        return self.h_scale or self.scale


def gains(G: np.ndarray, H: np.ndarray, G_tot: int, H_tot: int, p: SplitParams) -> np.ndarray:
    """Gain of each candidate from its left-side sums; -inf where a child is too light."""
    s, sh = p.scale, p.hessian_scale
    gl, hl = G.astype(np.float64) / s, H.astype(np.float64) / sh
    gt, ht = float(G_tot) / s, float(H_tot) / sh
    gr, hr = gt - gl, ht - hl
    lam = p.reg_lambda
    out = 0.5 * (gl * gl / (hl + lam) + gr * gr / (hr + lam) - gt * gt / (ht + lam)) - p.gamma
    light = (hl < p.min_child_weight) | (hr < p.min_child_weight)
    return np.where(light, -np.inf, out)


def leaf_output(G: float, H: float, p: SplitParams, lo: float = -np.inf,
                hi: float = np.inf) -> float:
    """A node's output from its fixed-point sums, clipped into its bounds."""
    return float(np.clip(-(G / p.scale) / (H / p.hessian_scale + p.reg_lambda), lo, hi))


def constrained_gains(G: np.ndarray, H: np.ndarray, G_tot: int, H_tot: int, p: SplitParams,
                      lo: float, hi: float, direction: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gain, left output, right output) per candidate at a node with output bounds
    [lo, hi]; ``direction`` per candidate: +1/-1 for a threshold of a monotone feature, 0
    otherwise. Without bounds or constraints the gains are :func:`gains`' exactly."""
    base = gains(G, H, G_tot, H_tot, p)
    s, sh, lam = p.scale, p.hessian_scale, p.reg_lambda
    gl, hl = G.astype(np.float64) / s, H.astype(np.float64) / sh
    gt, ht = float(G_tot) / s, float(H_tot) / sh
    gr, hr = gt - gl, ht - hl
    with np.errstate(divide="ignore", invalid="ignore"):
        wl = np.clip(-gl / (hl + lam), lo, hi)
        wr = np.clip(-gr / (hr + lam), lo, hi)
    direction = np.asarray(direction)
    bounded = not (np.isinf(lo) and np.isinf(hi))
    if not bounded and not direction.any():
        return base, wl, wr
    wp = float(np.clip(-gt / (ht + lam), lo, hi))

    def objective(g, h, w):
        return g * w + 0.5 * (h + lam) * w * w

    clipped = objective(gt, ht, wp) - objective(gl, hl, wl) - objective(gr, hr, wr) - p.gamma
    # the clipped objective where bounds or a constraint apply, else the formula as it was
    out = np.where(np.isfinite(base) & (bounded | (direction != 0)), clipped, base)
    out[((direction > 0) & (wl > wr)) | ((direction < 0) & (wl < wr))] = -np.inf
    return out, wl, wr


def child_bounds(lo: float, hi: float, direction: int, w_left: float, w_right: float
                 ) -> tuple[tuple[float, float], tuple[float, float]]:
    """Bounds of (left, right) child after a split: a monotone split puts the midpoint of
    its two outputs between them, so every leaf below the left child stays on one side of
    every leaf below the right one; other splits pass the node's bounds down."""
    if direction == 0:
        return (lo, hi), (lo, hi)
    mid = 0.5 * (w_left + w_right)
    if direction > 0:
        return (lo, min(hi, mid)), (max(lo, mid), hi)
    return (max(lo, mid), hi), (lo, min(hi, mid))


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
