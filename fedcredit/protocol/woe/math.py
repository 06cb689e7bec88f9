"""The arithmetic of hetero WOE/IV both sides rely on: the holder's floor merges, the shape
of a merge map, and the final bin of a row.

Bins are per holder feature, the missing bin last; a merge map joins adjacent non-missing
bins and keeps the missing bin apart, so a WOE table never reorders a feature's values.
"""
from __future__ import annotations

import numpy as np

from ...binning import BinMapper
from ...errors import InvalidInput

#: the kind of a stored holder binning (its ``mapper["kind"]``)
KIND = "hetero_woe"


#: the widest weights a holder sums (weighted WOE): each row's weight below 2**16
MAX_WEIGHT_BITS = 16


def weighted_half_bits(n_rows: int, weight_bits: int) -> int:
    """Width of one half of a weighted row's plaintext: a sum of ``n_rows`` weights below
    ``2**weight_bits`` fits it, so (w*y, w) sums never carry into each other."""
    return (int(n_rows) << int(weight_bits)).bit_length() + 1


def floor_map(counts: np.ndarray, floor: int) -> tuple[np.ndarray, int]:
    """Merge adjacent non-missing bins until each holds >= floor rows (or is the only one);
    the missing bin (last) stays separate unless it is non-empty and below the floor, in
    which case its rows join the largest bin. Returns raw bin -> prebin; the missing bin
    maps to the last prebin. Returns (map, number of prebins including the missing one)."""
    counts = np.asarray(counts, dtype=np.int64)
    nb = len(counts) - 1
    out = np.zeros(len(counts), dtype=np.int64)
    group, acc = 0, 0
    for k in range(nb):
        out[k] = group
        acc += counts[k]
        if acc >= floor and counts[k + 1:nb].sum() >= floor:
            group, acc = group + 1, 0
    n_groups = group + 1
    out[nb] = n_groups
    if 0 < counts[nb] < floor:  # too few missing values to describe apart
        sizes = np.bincount(out[:nb], weights=counts[:nb], minlength=n_groups)
        out[nb] = int(np.argmax(sizes))
    return out, n_groups + 1


def final_bins(binning: dict, frame) -> np.ndarray:
    """Final bin index per row and holder feature (missing bin last)."""
    raw = BinMapper.from_dict(binning["mapper"]).transform(frame).astype(np.int64)
    out = np.empty_like(raw)
    for f in range(raw.shape[1]):
        pre = np.asarray(binning["pre"][f])[raw[:, f]]
        out[:, f] = np.asarray(binning["merge"][f])[pre]
    return out


def check_merge_map(mp: np.ndarray, size: int) -> None:
    """A merge map joins adjacent non-missing bins; the missing bin stays last and apart."""
    if len(mp) != size:
        raise InvalidInput(f"a merge map needs {size} entries, got {len(mp)}")
    body = mp[:-1]
    if len(body) and (body[0] != 0 or np.any(np.diff(body) < 0) or np.any(np.diff(body) > 1)):
        raise InvalidInput("a merge map must join adjacent bins, numbered from 0")
    if mp[-1] != (int(body[-1]) + 1 if len(body) else 0):
        raise InvalidInput("the missing bin must stay last and separate")
