"""The arithmetic of the characteristic stability index (CSI), written once.

CSI compares one feature's distribution over bins now (``actual``) with its distribution
when the model was trained (``expected``), with the formula of the population stability
index (:func:`fedcredit.metrics.psi_table`): ``sum (a - e) * ln(a / e)`` over bins, shares
below ``eps`` raised to ``eps`` inside the formula.

Before anything is disclosed the bins are merged so that every merged bin holds at least
``floor`` enterprises in both distributions (the holder's ``min_node_samples``): adjacent
bins are gathered left to right in the model's bin order (missing values last) until both
counts reach the floor, and a short remainder joins the group before it. The bank learns
the shares of the merged bins only, never an edge or a value.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import InvalidInput

#: floor on a share inside the index (as in ``fedcredit.metrics.psi``)
CSI_EPS = 1e-4


def bin_distribution(bins: np.ndarray, sizes: Sequence[int] | np.ndarray) -> list[list[int]]:
    """Per feature (column of ``bins``), its rows per bin; ``sizes[f]`` bins in all (the
    missing bin last)."""
    bins = np.asarray(bins)
    if bins.dtype.kind not in "iu":  # codes stay uint8: no int64 copy of a million rows
        bins = bins.astype(np.int64)
    if bins.ndim != 2 or bins.shape[1] != len(sizes):
        raise InvalidInput(f"bins of shape {bins.shape} for {len(sizes)} features")
    return [np.bincount(bins[:, f], minlength=int(z))[:int(z)].tolist()
            for f, z in enumerate(sizes)]


def merge_groups(expected: Sequence[int], actual: Sequence[int], floor: int) -> list[int]:
    """The first bin of each merged group: adjacent bins gathered until both counts reach
    ``floor``; a remainder below it joins the previous group (one group at least)."""
    e = np.asarray(expected, dtype=np.int64)
    a = np.asarray(actual, dtype=np.int64)
    if len(e) != len(a) or len(e) == 0:
        raise InvalidInput(f"{len(e)} reference bins for {len(a)} current bins")
    floor = max(int(floor), 1)
    starts, se, sa, start = [], 0, 0, 0
    for b in range(len(e)):
        se, sa = se + int(e[b]), sa + int(a[b])
        if se >= floor and sa >= floor:
            starts.append(start)
            start, se, sa = b + 1, 0, 0
    if not starts:
        return [0]
    return starts  # the bins after the last full group belong to it


def grouped(counts: Sequence[int], starts: Sequence[int]) -> np.ndarray:
    """Counts summed per merged group (``starts`` from :func:`merge_groups`)."""
    return np.add.reduceat(np.asarray(counts, dtype=np.int64), np.asarray(starts, np.int64))


def stability_index(expected_share, actual_share, eps: float = CSI_EPS) -> float:
    """``sum (a - e) ln(a / e)`` with shares floored at ``eps`` (the PSI formula)."""
    e = np.maximum(np.asarray(expected_share, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual_share, dtype=np.float64), eps)
    if e.shape != a.shape:
        raise InvalidInput(f"{e.size} reference shares for {a.size} current shares")
    return float(np.sum((a - e) * np.log(a / e)))


def feature_csi(expected: Sequence[int], actual: Sequence[int], floor: int
                ) -> tuple[float, np.ndarray, np.ndarray]:
    """(CSI, reference shares, current shares) of one feature over its merged groups."""
    starts = merge_groups(expected, actual, floor)
    e, a = grouped(expected, starts), grouped(actual, starts)
    if e.sum() <= 0 or a.sum() <= 0:
        raise InvalidInput("a distribution with no rows has no shares")
    es, as_ = e / e.sum(), a / a.sum()
    return stability_index(es, as_), es, as_


def split_flat(flat: Sequence[float], sizes: Sequence[int], what: str) -> list[np.ndarray]:
    """A flat list cut into consecutive parts of ``sizes`` (how shares travel)."""
    sizes = [int(z) for z in sizes]
    if any(z < 1 for z in sizes) or sum(sizes) != len(flat):
        raise InvalidInput(f"{what}: {len(flat)} values for groups of sizes {sizes}")
    bounds = np.cumsum([0] + sizes)
    arr = np.asarray(flat, dtype=np.float64)
    return [arr[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]
