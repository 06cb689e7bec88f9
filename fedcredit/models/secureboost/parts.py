"""Which holder owns what in a SecureBoost model trained with one or several holders.

A model records, per holder, its name, the id under which that holder keeps its half, and
the features it published (:class:`~fedcredit.models.holders.HolderPart`); each holder split
names its holder by position (``Node.holder``). Scoring asks every holder which leaves its
splits allow and ANDs the answers with the bank's: the one leaf all parties allow remains.
"""
from __future__ import annotations

import numpy as np

from ...protocol.secureboost import bank as steps
from ..holders import all_covered, holder_feature_names, holder_parts, per_holder, scoring_channels

__all__ = ["feature_columns", "holder_feature_names", "holder_parts", "leaf_masks",
           "scoring_channels"]


def feature_columns(est) -> list[int]:
    """Per holder, the column of its first feature among :attr:`feature_names_` (the bank's
    features come first)."""
    at, out = len(est.feature_names_bank_), []
    for p in holder_parts(est):
        out.append(at)
        at += len(p.features)
    return out


def leaf_masks(est, ids: list, holder, trees: list[int]) -> tuple[dict, np.ndarray | None]:
    """Per tree, the leaves every holder's splits allow (ids x leaves), and per id whether
    every holder had its data and a current consent."""
    masks: dict[int, np.ndarray] = {}
    covers = []
    for got, cov in per_holder(est, holder, lambda s: steps.leaf_masks_covered(s, ids, trees)):
        for t, mat in got.items():
            masks[t] = mat if t not in masks else masks[t] & mat
        covers.append(cov)
    return masks, all_covered(covers)
