"""The bank's step of feature drift, over a ``score`` :class:`BankSession` of the model.

    with BankSession(channel, "score", model_id=model.model_id_) as session:
        drift = feature_drift(session, watchlist_ids)     # FeatureDrift
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ...errors import InvalidInput, ProtocolError
from ..session import BankSession
from . import messages as m
from .math import split_flat


@dataclass
class FeatureDrift:
    """What the holder reported: ``csi`` (one row per holder feature: ``feature``, ``csi``,
    ``bins``) and ``bins`` (one row per merged bin: ``feature``, ``bin`` from 1,
    ``reference_share``, ``current_share``); ``covered``: watchlist enterprises the holder
    had data and a current consent for."""

    covered: int
    csi: pd.DataFrame
    bins: pd.DataFrame
    features_version: int


def feature_drift(session: BankSession, ids: Sequence[str]) -> FeatureDrift:
    """The characteristic stability index of every holder feature of the session's model
    over ``ids`` (at most the holder's ``max_predict_ids``).

    **Privacy**: the holder learns the watchlist; the bank learns per holder feature its CSI
    and the shares of bins merged to hold at least the holder's ``min_node_samples``
    enterprises each, at training and now (never an edge or a value).
    """
    ids = [str(i) for i in ids]
    if not ids:
        raise InvalidInput("the watchlist is empty")
    r = session.call(m.DriftRequest(session_id=session.id, ids=ids), m.DriftReport)
    n = len(r.features)
    if len(r.csi) != n or len(r.groups) != n or not 0 <= r.covered <= len(ids):
        raise ProtocolError("the holder's drift report does not add up")
    try:
        ref = split_flat(r.reference_shares, r.groups, "reference shares")
        cur = split_flat(r.current_shares, r.groups, "current shares")
    except InvalidInput as e:
        raise ProtocolError(f"the holder's drift report: {e}") from None
    csi = pd.DataFrame({"feature": list(r.features), "csi": [float(v) for v in r.csi],
                        "bins": [int(g) for g in r.groups]})
    rows = [(f, b + 1, float(e[b]), float(a[b]))
            for f, e, a in zip(r.features, ref, cur) for b in range(len(e))]
    bins = pd.DataFrame(rows, columns=["feature", "bin", "reference_share", "current_share"])
    return FeatureDrift(int(r.covered), csi, bins, int(r.features_version))
