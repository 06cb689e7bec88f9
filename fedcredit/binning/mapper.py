"""Quantile bin mapper for mixed numeric and categorical tables with missing values.

Per feature, non-missing values fall in bins ``0 .. n_bins-1`` and missing values in the
extra bin ``n_bins`` (so a feature has ``n_bins + 1`` bins in all). Numeric features with at
most ``max_bin`` distinct values get one bin per value (cut half-way between neighbours);
others get quantile cuts. Categorical (non-numeric) features get one bin per category,
in the categorical dtype's order if it has one, otherwise sorted; rare categories beyond
``max_bin - 1`` share an "other" bin; unseen categories at transform time count as missing.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import InvalidInput

#: quantiles are computed on at most this many values per feature (a seeded sample beyond)
QUANTILE_SAMPLE = 200_000
#: tables of at most this many rows are binned value by value (online scoring)
SMALL_ROWS = 8
#: rows converted to floats at a time by :meth:`BinMapper.transform` (16 MiB for 16 columns)
TRANSFORM_ROWS = 2 ** 17


@dataclass
class FeatureBins:
    """How one feature maps to bins. ``upper`` holds the right edge of bins 0..n-2."""

    name: str
    kind: str  # "numeric" | "categorical"
    upper: np.ndarray = field(default_factory=lambda: np.zeros(0))
    categories: list = field(default_factory=list)
    other_bin: int | None = None

    @property
    def n_bins(self) -> int:
        """Non-missing bins; the missing bin has this index."""
        if self.kind == "numeric":
            return len(self.upper) + 1
        return len(self.categories) + (1 if self.other_bin is not None else 0)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "upper": [float(u) for u in self.upper],
                "categories": [str(c) for c in self.categories], "other_bin": self.other_bin}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureBins:
        return cls(d["name"], d["kind"], np.asarray(d["upper"], dtype=np.float64),
                   list(d["categories"]), d.get("other_bin"))

    def threshold(self, t: int):
        """The real split value for "bin <= t goes left" (numeric) or the left categories."""
        if self.kind == "numeric":
            return float(self.upper[t]) if t < len(self.upper) else float("inf")
        return list(self.categories[: t + 1])

    def transform(self, col: pd.Series) -> np.ndarray:
        missing = self.n_bins
        if self.kind == "numeric":
            return self.bin_values(pd.to_numeric(col, errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan))
        lookup, unknown = self._lookup
        if _text_or_categories(col):  # str(v) per distinct value, not per row: 1M rows in 50 ms
            codes, uniques = pd.factorize(col, use_na_sentinel=True)
            table = [lookup.get(str(v), unknown) for v in list(uniques)] + [missing]
            return np.asarray(table, dtype=np.int64)[codes]  # code -1 (missing): the last
        absent = col.isna().to_numpy()
        vals = col.to_numpy(dtype=object)
        return np.fromiter((missing if gone else lookup.get(str(v), unknown)
                            for v, gone in zip(vals, absent)), dtype=np.int64, count=len(vals))

    def bin_value(self, v) -> int:
        """The bin of one value, as :meth:`transform` bins a column of it (a value that is
        not a number is missing for a numeric feature, an unseen category for another)."""
        if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
            return self.n_bins
        if self.kind != "numeric":
            lookup, unknown = self._lookup
            return lookup.get(str(v), unknown)
        try:
            x = float(v)
        except (TypeError, ValueError):
            return self.n_bins
        return self.n_bins if x != x else int(np.searchsorted(self.upper, x, side="left"))

    @functools.cached_property
    def _lookup(self) -> tuple[dict, int]:
        """(category -> bin, the bin of an unseen category)."""
        other = self.other_bin
        return ({c: i for i, c in enumerate(self.categories)},
                self.n_bins if other is None else other)

    def bin_values(self, x: np.ndarray) -> np.ndarray:
        """Bins of a numeric feature's float values (NaN: the missing bin)."""
        out = np.searchsorted(self.upper, x, side="left").astype(np.int64)
        out[np.isnan(x)] = self.n_bins
        return out


def _float_block(X: pd.DataFrame, names: list[str]) -> np.ndarray:
    """``X[names]`` as floats in one pandas operation (a column at a time costs ~0.1 ms each:
    most of scoring one enterprise); values that are not numbers become NaN, as with
    ``pd.to_numeric(errors="coerce")``."""
    if not names:
        return np.zeros((len(X), 0))
    try:
        return X[names].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        return np.column_stack([pd.to_numeric(X[c], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan) for c in names])


def _is_categorical(col: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col))


def _numeric_bins(name: str, col: pd.Series, max_bin: int, rng: np.random.Generator) -> FeatureBins:
    x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    x = x[~np.isnan(x)]
    if len(x) > QUANTILE_SAMPLE:
        x = rng.choice(x, QUANTILE_SAMPLE, replace=False)
    x = np.sort(x)  # distinct values by sorting: numpy's hashing unique is ~8x slower here
    distinct = x[np.concatenate(([True], x[1:] != x[:-1]))] if len(x) else x
    if len(distinct) <= max_bin:
        upper = (distinct[:-1] + distinct[1:]) / 2.0
    else:
        qs = np.quantile(x, np.linspace(0, 1, max_bin + 1)[1:-1], method="linear")
        upper = np.unique(qs)
        # a cut equal to the largest value would leave the top bin empty
        upper = upper[upper < distinct[-1]]
    return FeatureBins(name, "numeric", upper=np.asarray(upper, dtype=np.float64))


def _text_or_categories(col: pd.Series) -> bool:
    """Values whose equality is their text's (strings, a categorical's categories): grouping
    them by value first is then the same as looking each one's ``str`` up. Mixed objects are
    not (``1 == 1.0 == True`` but their texts differ)."""
    return isinstance(col.dtype, pd.CategoricalDtype) or \
        pd.api.types.infer_dtype(col, skipna=True) == "string"


def _categorical_bins(name: str, col: pd.Series, max_bin: int) -> FeatureBins:
    present = col[col.notna().to_numpy()]  # no index alignment: a million ids cost 0.3 s
    if isinstance(col.dtype, pd.CategoricalDtype) and col.dtype.ordered:
        cats = [str(c) for c in col.dtype.categories if (present == c).any()]
    elif _text_or_categories(present):
        cats = sorted({str(v) for v in present.unique()})
    else:
        cats = sorted({str(v) for v in present.tolist()})
    if len(cats) <= max_bin:
        return FeatureBins(name, "categorical", categories=cats)
    counts = present.astype(str).value_counts()
    keep = set(counts.index[: max_bin - 1])
    kept = [c for c in cats if c in keep]
    return FeatureBins(name, "categorical", categories=kept, other_bin=len(kept))


class BinMapper:
    """Fit bins on one party's training rows; transform any rows of that party to bin codes.

    Parameters
    ----------
    max_bin : int
        Bins for non-missing values per feature (missing values get one more).
    random_state : int
        Seeds the sample used for quantiles on large tables (models take random_state;
        cryptography never does).
    """

    def __init__(self, max_bin: int = 32, random_state: int | None = 0):
        if not 2 <= int(max_bin) <= 255:
            raise InvalidInput(f"max_bin must be in [2, 255], got {max_bin}")
        self.max_bin = int(max_bin)
        self.random_state = random_state
        self.features_: list[FeatureBins] = []
        self.fitted_ = False

    def fit(self, X: pd.DataFrame, rows: np.ndarray | None = None) -> BinMapper:
        """Bins per column of ``X`` (of its rows at positions ``rows`` if given: taken a column
        at a time, so a million-row table is never copied whole); a table without feature
        columns (a bank that holds only ids and labels) gives a mapper of zero features, whose
        codes have zero columns."""
        if not isinstance(X, pd.DataFrame):
            raise InvalidInput("BinMapper.fit expects a pandas DataFrame")
        if (len(X) if rows is None else len(rows)) == 0:
            raise InvalidInput("no rows to bin")
        rng = np.random.default_rng(self.random_state)
        feats = []
        for name in X.columns:
            col = X[name] if rows is None else X[name].iloc[rows]
            if _is_categorical(col):
                feats.append(_categorical_bins(str(name), col, self.max_bin))
            else:
                if np.isinf(pd.to_numeric(col, errors="coerce").to_numpy(
                        dtype=np.float64, na_value=np.nan)).any():
                    raise InvalidInput(f"feature {name!r} contains infinite values")
                feats.append(_numeric_bins(str(name), col, self.max_bin, rng))
        self.features_ = feats
        self.fitted_ = True
        self.__dict__.pop("n_bins", None)  # a refit changes the bins
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features_]

    @functools.cached_property
    def n_bins(self) -> np.ndarray:
        """Non-missing bins per feature (the missing bin's index); computed once per fit
        (scoring one enterprise reads it for every tree)."""
        return np.array([f.n_bins for f in self.features_], dtype=np.int64)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """Bin codes, shape (rows, features), uint8; missing -> ``n_bins[f]``."""
        if not self.fitted_:
            raise InvalidInput("BinMapper is not fitted")
        missing = [f.name for f in self.features_ if f.name not in X.columns]
        if missing:
            raise InvalidInput(f"columns missing from the table: {missing[:5]}")
        if len(X) <= SMALL_ROWS and X.columns.is_unique:
            return self._transform_small(X)
        out = np.empty((len(X), len(self.features_)), dtype=np.uint8)
        numeric = [j for j, f in enumerate(self.features_) if f.kind == "numeric"]
        names = [self.features_[j].name for j in numeric]
        for a in range(0, len(X), TRANSFORM_ROWS):  # floats a slice at a time: bounded memory
            values = _float_block(X.iloc[a:a + TRANSFORM_ROWS], names)
            for k, j in enumerate(numeric):
                out[a:a + TRANSFORM_ROWS, j] = self.features_[j].bin_values(values[:, k])
        for j, f in enumerate(self.features_):
            if f.kind != "numeric":
                out[:, j] = f.transform(X[f.name])
        return out

    def _transform_small(self, X: pd.DataFrame) -> np.ndarray:
        """:meth:`transform` value by value: for the few rows of an online score, pandas'
        per-column machinery (~0.1 ms an operation) cost more than the binning."""
        cols = X.columns.get_indexer([f.name for f in self.features_])
        values = X.to_numpy(dtype=object)[:, cols] if len(X) else np.zeros((0, len(cols)))
        out = np.empty((len(X), len(self.features_)), dtype=np.uint8)
        for j, f in enumerate(self.features_):
            out[:, j] = [f.bin_value(v) for v in values[:, j]]
        return out

    def fit_transform(self, X: pd.DataFrame) -> np.ndarray:
        return self.fit(X).transform(X)

    def monotone_directions(self, features: Sequence[str], directions: Sequence[int]
                            ) -> np.ndarray:
        """Per feature, the monotone direction asked for it (+1 increasing, -1 decreasing,
        0 free). Refuses unknown, repeated and categorical features (their bins have no
        value order) and directions other than +1/-1."""
        if len(features) != len(directions):
            raise InvalidInput(f"{len(features)} monotone features for {len(directions)} "
                               "directions")
        index = {n: j for j, n in enumerate(self.feature_names)}
        out = np.zeros(len(self.features_), dtype=np.int64)
        for name, d in zip(features, directions):
            j = index.get(str(name))
            if j is None:
                raise InvalidInput(f"monotone constraint on {name!r}, which is not a feature "
                                   f"here ({', '.join(self.feature_names[:8])} ...)")
            if out[j]:
                raise InvalidInput(f"monotone constraint on {name!r} given twice")
            if int(d) not in (1, -1):
                raise InvalidInput(f"monotone direction of {name!r} must be +1 or -1, got {d}")
            if self.features_[j].kind != "numeric":
                raise InvalidInput(f"feature {name!r} is categorical: its bins have no order "
                                   "to be monotone in")
            out[j] = int(d)
        return out

    def candidate_directions(self, cands, features: Sequence[str] = (),
                             directions: Sequence[int] = ()) -> np.ndarray:
        """Per split candidate (``.feature``, ``.bin``: "bins <= bin go left"), the monotone
        direction of its feature if it is a threshold between values, left the lower ones;
        0 for free features and for "every non-missing value left, missing right", which
        orders nothing."""
        per_feature = self.monotone_directions(features, directions)
        f = np.asarray(cands.feature, dtype=np.int64)
        return np.where(np.asarray(cands.bin) <= self.n_bins[f] - 2, per_feature[f], 0)

    def to_dict(self) -> dict:
        return {"max_bin": self.max_bin, "features": [f.to_dict() for f in self.features_]}

    @classmethod
    def from_dict(cls, d: dict) -> BinMapper:
        m = cls(d["max_bin"])
        m.features_ = [FeatureBins.from_dict(f) for f in d["features"]]
        m.fitted_ = True
        return m
