"""Training weights: ``sample_weight`` per row and ``class_weight`` per label.

SME default rates are a few percent; risk teams weight defaulters up (``class_weight``) or
weight rows by exposure or vintage (``sample_weight``). Both are the bank's alone: they
scale the bank's gradients, residuals and label sums before anything is encrypted, so the
holder sees what it sees without weights (and never a weight).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InvalidInput


def check_sample_weight(sample_weight, n_rows: int) -> np.ndarray | None:
    """``sample_weight`` as float64, one finite non-negative weight per row of ``X``."""
    if sample_weight is None:
        return None
    w = sample_weight.to_numpy() if isinstance(sample_weight, pd.Series) else sample_weight
    try:
        w = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput("sample_weight must hold numbers") from None
    if w.ndim != 1 or len(w) != n_rows:
        raise InvalidInput(f"sample_weight must hold one weight per row of X: got shape "
                           f"{w.shape} for {n_rows} rows")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        raise InvalidInput(f"sample_weight must be finite and >= 0: row {at} holds {w[at]!r}")
    if not w.sum() > 0:
        raise InvalidInput("sample_weight sums to 0: no row would count")
    return w


def check_class_weight(class_weight) -> None:
    """None, "balanced", or a weight per label ({0: w0, 1: w1}; JSON's "0"/"1" keys too)."""
    if class_weight is None or class_weight == "balanced":
        return
    if not isinstance(class_weight, dict):
        raise InvalidInput(f"class_weight must be None, 'balanced' or a dict {{0: w0, 1: w1}}, "
                           f"got {class_weight!r}")
    for k, v in class_weight.items():
        if str(k) not in ("0", "1"):
            raise InvalidInput(f"class_weight names label {k!r}; the labels are 0 and 1")
        if not isinstance(v, (int, float, np.number)) or not np.isfinite(v) or v < 0:
            raise InvalidInput(f"class_weight[{k!r}] must be a finite number >= 0, got {v!r}")


def row_weights(y: np.ndarray, sample_weight: np.ndarray | None, class_weight) -> np.ndarray | None:
    """Per-row training weights: ``sample_weight`` times the label's ``class_weight``
    ("balanced": ``n / (2 * count(label))`` on these rows, as scikit-learn); None when both
    are None (unweighted training, bit for bit as before)."""
    if class_weight is None:
        return sample_weight
    if class_weight == "balanced":
        counts = np.bincount(y, minlength=2).astype(np.float64)
        per_label = np.divide(len(y), 2 * counts, out=np.zeros(2), where=counts > 0)
    else:
        cw = {str(k): float(v) for k, v in class_weight.items()}
        per_label = np.array([cw.get("0", 1.0), cw.get("1", 1.0)])
    w = per_label[y]
    return w if sample_weight is None else w * sample_weight
