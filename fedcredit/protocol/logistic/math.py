"""The arithmetic both parties of hetero logistic regression share: fixed-point constants,
the Chebyshev expansion of the sigmoid, the packed slot layout and the optimizer.

The protocol itself (who sends what) is documented on
:class:`fedcredit.models.HeteroLogisticRegression`; the ciphertext kernels it needs are
:func:`fedcredit.crypto.polynomial_partials` and the public key's operations; the features'
preparation is :class:`fedcredit.binning.FeaturePrep`.
"""
from __future__ import annotations

import math

import numpy as np

from ...binning.prep import FEATURE_BITS, quantize  # noqa: F401  (both sides quantise alike)
from ...errors import InvalidInput

#: fraction bits of the bank's Chebyshev coefficients
COEF_BITS = 20
#: fraction bits of the holder's Chebyshev values T_k(t) + 1 (its exponents)
CHEB_BITS = 12
#: statistical security of the holder's additive masks, in bits
MASK_BITS = 40
#: Chebyshev nodes used to expand sigmoid(a + center + radius * t) in t
NODES = 32
#: the holder's interval covers this quantile of |u - center| (the rest is clamped)
RADIUS_QUANTILE = 0.995
#: center and radius are rounded to multiples of 1/GRID (they are all the bank learns of u)
GRID = 8
#: the holder's partial scores leave it rounded to multiples of this (log-odds, 2^-10, about
#: 1e-3): coarser than the step ``|w_j| 2^-FEATURE_BITS`` one quantum of a feature moves the
#: score by for |w_j| <= 4, so the lattice of exact float64 scores, from which the bank could
#: solve for a row's one-hot level or quantised values, is gone (docs/PRIVACY.md, leak 5);
#: it moves a probability by at most 2^-13
SCORE_RESOLUTION = 2.0 ** -10
#: an honest residual sigmoid(.) - y lies in [-1, 1], its Chebyshev expansion within the
#: bank's ``sigmoid_tol`` (< 0.5) of it: the holder's gradient bound allows this much more
GRADIENT_SLACK = 0.5


def to_fixed(x: np.ndarray, frac_bits: int = FEATURE_BITS) -> np.ndarray:
    return np.rint(np.asarray(x, dtype=np.float64) * 2.0 ** frac_bits).astype(np.int64)


class Adam:
    """Adam on one party's own coordinates (coordinate-wise, so the two parties' halves
    together are exactly Adam on the joint weights), with a learning rate decaying per
    epoch and the average of the iterates of the current epoch kept for the final model."""

    def __init__(self, w: np.ndarray, learning_rate: float, decay: float,
                 beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.w = np.asarray(w, dtype=np.float64).copy()
        self.lr, self.decay = float(learning_rate), float(decay)
        self.b1, self.b2, self.eps = beta1, beta2, eps
        self.m = np.zeros_like(self.w)
        self.v = np.zeros_like(self.w)
        self.t = 0
        self.epoch = 0
        self.epoch_start = self.w.copy()
        self.avg_sum = np.zeros_like(self.w)
        self.avg_count = 0

    def step(self, grad: np.ndarray) -> None:
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * grad
        self.v = self.b2 * self.v + (1 - self.b2) * grad * grad
        mh = self.m / (1 - self.b1 ** self.t)
        vh = self.v / (1 - self.b2 ** self.t)
        lr = self.lr / (1.0 + self.decay * self.epoch)
        self.w = self.w - lr * mh / (np.sqrt(vh) + self.eps)
        self.avg_sum += self.w
        self.avg_count += 1

    def new_epoch(self) -> float:
        """Mark an epoch boundary; returns max |change| of the weights over the epoch."""
        change = float(np.max(np.abs(self.w - self.epoch_start))) if len(self.w) else 0.0
        self.last_avg = self.averaged()
        self.epoch += 1
        self.epoch_start = self.w.copy()
        self.avg_sum = np.zeros_like(self.w)
        self.avg_count = 0
        return change

    def averaged(self) -> np.ndarray:
        """Mean iterate of the current epoch (of the last one right after a boundary)."""
        if self.avg_count:
            return self.avg_sum / self.avg_count
        return getattr(self, "last_avg", self.w).copy()


def interval(u: np.ndarray) -> tuple[float, float]:
    """(center, radius) of the holder's partial scores for a batch, on a coarse grid."""
    if len(u) == 0:
        return 0.0, 1.0 / GRID
    center = round(float(np.mean(u)) * GRID) / GRID
    r = float(np.quantile(np.abs(u - center), RADIUS_QUANTILE))
    radius = max(1.0, math.ceil(r * GRID)) / GRID
    return center, radius


def chebyshev_coefficients(a: np.ndarray, center: float, radius: float) -> np.ndarray:
    """Coefficients c[i, k] with sigmoid(a_i + center + radius*t) = sum_k c[i,k] T_k(t) on
    [-1, 1] (Chebyshev interpolation at ``NODES`` nodes; exact to float precision for
    the degrees used)."""
    th = (np.arange(NODES) + 0.5) * np.pi / NODES
    z = a[:, None] + center + radius * np.cos(th)[None, :]
    f = 0.5 * (1.0 + np.tanh(0.5 * z))
    T = np.cos(np.outer(np.arange(NODES), th))
    c = (2.0 / NODES) * f @ T.T
    c[:, 0] /= 2
    return c


def choose_degree(c: np.ndarray, tol: float, max_degree: int) -> int:
    """Smallest K whose dropped tail sum_{k>K} |c_k| is below ``tol`` for every row: the
    approximation error of the sigmoid on the interval is then at most ``tol``."""
    if len(c) == 0:
        return 1
    tail = np.abs(c[:, ::-1]).cumsum(axis=1)[:, ::-1].max(axis=0)  # tail[k] = sum_{j>=k}
    for K in range(1, max_degree + 1):
        if K + 1 >= tail.shape[0] or tail[K + 1] <= tol:
            return K
    return max_degree


def holder_exponents(t: np.ndarray, degree: int) -> np.ndarray:
    """round(2**CHEB_BITS * (T_k(t) + 1)) for k = 1..degree: non-negative exponents."""
    th = np.arccos(np.clip(t, -1.0, 1.0))
    T = np.cos(np.outer(th, np.arange(1, degree + 1)))
    return np.rint((T + 1.0) * 2.0 ** CHEB_BITS).astype(np.int64)


def slot_layout(plaintext_bits: int, n_rows: int, coef_bound: int, bank_x_bits: int,
                holder_x_bits: int, n_bank: int) -> tuple[list[int], list[int]]:
    """Slot widths and counts of the bank's packed groups.

    Group 0 holds the constant slot (the residual itself, for the intercept and, multiplied
    by the holder's features, for the holder's gradient) plus as many bank features as fit;
    its slots are wide enough for the holder's products and a ``MASK_BITS`` mask. Further
    groups hold the remaining bank features in narrower slots (sums over the batch only).
    """
    rb = int(n_rows).bit_length()
    db = int(coef_bound).bit_length()
    narrow = rb + db + bank_x_bits + 3
    wide = narrow + holder_x_bits + 2 + MASK_BITS
    slots0 = min(plaintext_bits // wide, 1 + n_bank)
    if slots0 < 1:
        raise InvalidInput("the key is too small for one slot of the LR layout")
    widths, counts = [wide], [slots0]
    left = 1 + n_bank - slots0
    per = plaintext_bits // narrow
    while left > 0:
        k = min(per, left)
        widths.append(narrow)
        counts.append(k)
        left -= k
    return widths, counts


def round_scores(u: np.ndarray, resolution: float | None = None) -> np.ndarray:
    """The holder's partial scores on the ``SCORE_RESOLUTION`` grid (0: exact, tests only)."""
    r = SCORE_RESOLUTION if resolution is None else float(resolution)
    u = np.asarray(u, dtype=np.float64)
    return np.round(u / r) * r if r > 0 else u


def gradient_bound(X_batch: np.ndarray) -> np.ndarray:
    """Per holder feature, the largest |sum_i x_ij d_i| honest residuals allow:
    ``(1 + GRADIENT_SLACK) sum_i |x_ij|`` plus the fixed-point rounding of each term.

    A bank that adds offsets to the masked gradient it hands back (to steer the holder's
    weights) is caught when the offset leaves this range; inside it, it is not (partial
    hardening: the holder cannot check a value it only sees summed)."""
    X = np.asarray(X_batch, dtype=np.float64)
    return (1.0 + GRADIENT_SLACK) * np.abs(X).sum(axis=0) + len(X) * 2.0 ** -8


def bank_warm_start(X: np.ndarray, y: np.ndarray, l2: float, max_iter: int = 25,
                    tol: float = 1e-8) -> np.ndarray:
    """(intercept, w_b) of the bank's own penalised logistic regression, by Newton's method.

    Why: started from w_b = 0 every residual of the first step is one constant minus the
    label, and the holder's first gradient ``sum_i x_ij (c - y_i)`` then yields, exactly,
    the default count and each holder column's sum over the batch's defaulters (and with
    them the defaulter set of a small batch). Started here, each row's residual depends on
    the bank's features, which the holder does not know. Penalty ``l2 n ||w_b||^2 / 2``,
    as in the joint objective (the intercept is not penalised)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = X.shape
    rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6)) if n else 0.5
    w = np.r_[math.log(rate / (1 - rate)), np.zeros(d)]
    A = np.hstack([np.ones((n, 1)), X])
    pen = np.full(d + 1, float(l2) * n)
    pen[0] = 0.0
    for _ in range(max_iter):
        p = 0.5 * (1.0 + np.tanh(0.5 * (A @ w)))
        g = A.T @ (p - y) + pen * w
        H = (A * (p * (1 - p))[:, None]).T @ A + np.diag(pen) + 1e-9 * np.eye(d + 1)
        try:
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(H, g, rcond=None)[0]
        if not np.all(np.isfinite(step)):
            break
        step *= min(1.0, 4.0 / max(float(np.max(np.abs(step))), 1e-300))  # damped far out
        w = w - step
        if float(np.max(np.abs(step))) < tol:
            break
    return w
