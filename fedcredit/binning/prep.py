"""Local feature preparation for linear models: each party turns its own table into a
float matrix (standardised numeric columns, missing indicators, one-hot categoricals).

Fitted on the party's own training rows; the fitted state never leaves its owner.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InvalidInput

#: fraction bits of both parties' features
FEATURE_BITS = 12
#: features are clipped to |x| < 2**FEATURE_INT_BITS after preparation
FEATURE_INT_BITS = 7


def quantize(x: np.ndarray, frac_bits: int = FEATURE_BITS) -> np.ndarray:
    lim = 2.0 ** FEATURE_INT_BITS - 1
    return np.round(np.clip(x, -lim, lim) * 2.0 ** frac_bits) / 2.0 ** frac_bits


class FeaturePrep:
    """One party's features -> a float matrix: numeric columns standardised (missing -> mean,
    plus a missing-indicator column when training rows had missing values), categorical
    columns one-hot over their training levels (at most ``max_levels``; others and missing
    -> all zero). Fitted on the party's own training rows; never leaves its owner."""

    def __init__(self, max_levels: int = 16):
        self.max_levels = int(max_levels)
        self.columns: list[dict] = []

    def fit(self, X: pd.DataFrame) -> FeaturePrep:
        cols = []
        for name in X.columns:
            col = X[name]
            if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
                v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                ok = np.isfinite(v)
                mean = float(v[ok].mean()) if ok.any() else 0.0
                std = float(v[ok].std()) if ok.sum() > 1 else 0.0
                cols.append({"name": str(name), "kind": "numeric", "mean": mean,
                             "std": std if std > 1e-12 else 1.0,
                             "indicator": bool((~ok).any())})
            else:
                counts = col.dropna().astype(str).value_counts()
                levels = sorted(counts.index[: self.max_levels].tolist())
                cols.append({"name": str(name), "kind": "categorical", "levels": levels})
        self.columns = cols
        return self

    def output_names(self, publish_levels: bool = True) -> list[str]:
        out = []
        for c in self.columns:
            if c["kind"] == "numeric":
                out.append(c["name"])
                if c["indicator"]:
                    out.append(f"{c['name']}[missing]")
            else:
                for k, lev in enumerate(c["levels"]):
                    out.append(f"{c['name']}={lev}" if publish_levels
                               else f"{c['name']}[level {k}]")
        return out

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        parts = []
        for c in self.columns:
            if c["name"] not in X.columns:
                raise InvalidInput(f"column {c['name']!r} is missing")
            col = X[c["name"]]
            if c["kind"] == "numeric":
                v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                miss = ~np.isfinite(v)
                z = np.where(miss, 0.0, (np.where(miss, 0, v) - c["mean"]) / c["std"])
                parts.append(z[:, None])
                if c["indicator"]:
                    parts.append(miss.astype(np.float64)[:, None])
            else:
                s = col.astype(object).where(col.notna(), None).map(
                    lambda v: None if v is None else str(v))
                parts.append(np.stack([(s == lev).to_numpy(dtype=np.float64)
                                       for lev in c["levels"]], axis=1)
                             if c["levels"] else np.zeros((len(X), 0)))
        if not parts:
            return np.zeros((len(X), 0))
        return quantize(np.hstack(parts))

    def to_dict(self) -> dict:
        return {"max_levels": self.max_levels, "columns": self.columns}

    @classmethod
    def from_dict(cls, d: dict) -> FeaturePrep:
        p = cls(d["max_levels"])
        p.columns = d["columns"]
        return p
