"""Which holder owns what in a SecureBoost model trained with one or several holders.

A model records, per holder, its name, the id under which that holder keeps its half, and
the features it published (:class:`~fedcredit.models.holders.HolderPart`); each holder split
names its holder by position (``Node.holder``). Scoring asks every holder which leaves its
splits allow and ANDs the answers with the bank's: the one leaf all parties allow remains.
"""
from __future__ import annotations

import numpy as np

from ...errors import InvalidInput, SessionNotFound
from ...protocol import messages as pm
from ...protocol.secureboost import bank as steps
from ..holders import HolderPart
from ..scoring import as_channel


def holder_parts(est) -> list[HolderPart]:
    """The model's holders, in training order (a one-holder model from its own fields)."""
    parts = est.__dict__.get("holders_")
    if parts:
        return list(parts)
    return [HolderPart(est.holder_name_, est.model_id_, list(est.holder_feature_names_))]


def feature_columns(est) -> list[int]:
    """Per holder, the column of its first feature among :attr:`feature_names_` (the bank's
    features come first)."""
    at, out = len(est.feature_names_bank_), []
    for p in holder_parts(est):
        out.append(at)
        at += len(p.features)
    return out


def holder_feature_names(est) -> list[str]:
    """The holders' features as the model names them: ``holder:<feature>`` with one holder,
    ``<holder name>:<feature>`` with several."""
    parts = holder_parts(est)
    if len(parts) == 1:
        return [f"holder:{f}" for f in parts[0].features]
    return [f"{p.name}:{f}" for p in parts for f in p.features]


def scoring_channels(est, holder) -> list[tuple[HolderPart, object]]:
    """(part, channel) per holder of the model from a scoring call's ``holder=`` (one
    channel) or ``holders=`` (``(name or None, channel)`` pairs: a list in training order,
    or a mapping by name)."""
    parts = holder_parts(est)
    if not isinstance(holder, list):
        if len(parts) > 1:
            raise InvalidInput(f"this model was trained with {len(parts)} holders "
                               f"({', '.join(p.name for p in parts)}): pass holders=")
        return [(parts[0], holder)]
    if all(name is not None for name, _ in holder):
        by_name = dict(holder)
        missing = [p.name for p in parts if p.name not in by_name]
        if missing:
            raise InvalidInput(f"holders= lacks {missing[0]!r}, a holder of this model")
        return [(p, by_name[p.name]) for p in parts]
    if len(holder) != len(parts):
        raise InvalidInput(f"holders= names {len(holder)} holders; this model was trained "
                           f"with {len(parts)} ({', '.join(p.name for p in parts)})")
    return [(p, ch) for p, (_, ch) in zip(parts, holder)]


def _wrong_holder(found: str, expected: str) -> InvalidInput:
    return InvalidInput(f"the holder at this channel is {found!r}; the model expects "
                        f"{expected!r} here (holders= lists a model's holders in training "
                        "order, or maps their names)")


def leaf_masks(est, ids: list, holder, trees: list[int]) -> tuple[dict, np.ndarray | None]:
    """Per tree, the leaves every holder's splits allow (ids x leaves), and per id whether
    every holder had its data and a current consent."""
    masks: dict[int, np.ndarray] = {}
    covers = []
    pairs = scoring_channels(est, holder)
    for part, channel in pairs:
        def request(s, part=part):
            if len(pairs) > 1 and s.holder_name != part.name:
                raise _wrong_holder(s.holder_name, part.name)
            return steps.leaf_masks_covered(s, ids, trees)
        others = tuple(p.name for p, _ in pairs if p is not part)
        try:
            got, cov = est._scoring().run(channel, part.model_id, request, others)
        except SessionNotFound:
            if len(pairs) > 1:  # the model's holders given in another order?
                name = str(as_channel(channel).call(pm.Ping()).holder_name)
                if name != part.name:
                    raise _wrong_holder(name, part.name) from None
            raise
        for t, mat in got.items():
            masks[t] = mat if t not in masks else masks[t] & mat
        covers.append(cov)
    if any(c is None for c in covers):  # a holder too old to say
        return masks, None
    return masks, np.logical_and.reduce(covers)
