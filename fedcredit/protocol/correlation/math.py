"""What both sides of correlation analysis agree on.

Each party standardises its own numeric columns over the session's rows: a missing value
counts as the column's mean (so its z-score is 0), the standard deviation is the population
one, and a constant column is left out. Then the Pearson correlation of two columns is the
mean of their z-scores' products, exactly as ``numpy.corrcoef`` gives on the mean-imputed
columns. Z-scores travel as fixed-point integers (``frac_bits``); per slot the holder adds
a bias so that the signed sum decodes from its packed slot without borrowing.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...errors import InvalidInput

#: fixed-point fraction bits of z-scores: correlations exact to ~1e-10
FRAC_BITS = 32
MIN_FRAC_BITS, MAX_FRAC_BITS = 16, 40  # 2**frac_bits >= sqrt(rows): the bias bound holds


def standardized(frame: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """(names, rows x columns z-scores) of the frame's numeric, non-constant columns."""
    names, cols = [], []
    for c in frame.columns:
        col = frame[c]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            continue
        x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        present = ~np.isnan(x)
        if present.sum() < 2:
            continue
        x = np.where(present, x, x[present].mean())
        sd = x.std()
        if not sd > 0 or not np.isfinite(sd):
            continue
        names.append(str(c))
        cols.append((x - x.mean()) / sd)
    z = np.column_stack(cols) if cols else np.zeros((len(frame), 0))
    return names, z


def to_fixed(z: np.ndarray, frac_bits: int) -> np.ndarray:
    return np.rint(np.asarray(z, dtype=np.float64) * 2.0 ** frac_bits).astype(np.int64)


def check_frac_bits(frac_bits: int) -> int:
    if not MIN_FRAC_BITS <= int(frac_bits) <= MAX_FRAC_BITS:
        raise InvalidInput(f"frac_bits must lie in [{MIN_FRAC_BITS}, {MAX_FRAC_BITS}]")
    return int(frac_bits)


def bias(n: int, frac_bits: int) -> int:
    """A bound on |sum of n products of fixed-point z-scores| (|z| <= sqrt(n), and by
    Cauchy-Schwarz the exact sum is at most n in magnitude; the rounding adds less than
    the margin)."""
    return 1 << (int(n).bit_length() + 2 * int(frac_bits) + 1)


def slot_bits(n: int, frac_bits: int) -> int:
    """Width of one slot: sum + bias lies in [0, 2 * bias]."""
    return (2 * bias(n, frac_bits)).bit_length() + 1


def pack_row(values: np.ndarray, width: int) -> int:
    """One row's values in one plaintext, value k in slot k (slot 0 lowest), signed."""
    out = 0
    for v in reversed([int(x) for x in values]):
        out = (out << width) + v
    return out


def unpack_sums(plain: int, width: int, slots: int, offset: int) -> list[int]:
    """Slots of ``plain`` (each a sum plus ``offset``), the offset taken off again."""
    mask = (1 << width) - 1
    return [((int(plain) >> (width * k)) & mask) - offset for k in range(slots)]


def variance_inflation(corr: np.ndarray) -> np.ndarray:
    """Each column's VIF, 1 / (1 - R^2) of its regression on the others with an intercept:
    the diagonal of the inverse correlation matrix."""
    c = np.asarray(corr, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or np.isnan(c).any():
        raise InvalidInput("VIF needs a complete square correlation matrix")
    try:
        return np.diag(np.linalg.inv(c))
    except np.linalg.LinAlgError:
        raise InvalidInput("the features are exactly collinear: VIF is infinite") from None
