"""The holder's step of feature drift (CSI over a watchlist).

In a ``score`` session of a SecureBoost model the bank names its watchlist; the holder
takes the rows of the model's columns of the enterprises it has data and a current consent
for (:meth:`~fedcredit.protocol.context.HolderContext.scoring_rows`: the ids cap, the column
policy and the consent re-check of scoring), bins them with the model's own bins, and
compares each feature's distribution with the one it stored when the model was trained
(``StoredModel.bin_counts``), after merging bins so that each holds at least
``policy.min_node_samples`` enterprises in both (:mod:`.math`).

**Privacy** (what the bank learns): how many watchlist enterprises the holder covered, and
per holder feature of the model its CSI and the shares of its merged bins, at training and
now — aggregates over at least ``min_node_samples`` enterprises each, never an edge, a
value or which enterprise fell in which bin. A watchlist covering fewer enterprises than
the floor is refused. What the holder learns: the watchlist (audited with its ids, as
scoring is). Two watchlists differing in one enterprise would tell the bank which merged
bin that enterprise falls in per feature; docs/PRIVACY.md weighs that against what scoring
it already shows.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

from ...errors import InvalidInput, PolicyViolation
from ..channel import Caller
from ..context import HolderContext
from . import messages as m
from .math import bin_distribution, feature_csi

OPERATIONS = ("drift_csi",)


def drift(core: HolderContext, caller: Caller, msg: m.DriftRequest, rest) -> Iterator:
    s = core.session(caller, msg.session_id, task="score")
    with s.lock:
        model = core.models.load(s.model_id)
        if "kind" in model.mapper:  # other protocols' models name their kind
            raise InvalidInput(f"model {model.model_id!r} is not a SecureBoost model: CSI "
                               "needs the holder's training bins, which only SecureBoost "
                               "models keep")
        mapper = model.bin_mapper()
        sizes = [int(n) + 1 for n in mapper.n_bins]
        if [len(c) for c in model.bin_counts] != sizes:
            raise InvalidInput(f"model {model.model_id!r} was stored without its training "
                               "distribution (trained before CSI was recorded): retrain it "
                               "to monitor feature drift")
        ids = [str(i) for i in msg.ids]
        if len(set(ids)) != len(ids):
            raise InvalidInput("the watchlist names an enterprise twice")
        rows, served = core.scoring_rows(s, ids, model)
        floor = int(core.policy.min_node_samples)
        n = int(served.sum())
        if n < floor:
            raise PolicyViolation(f"the holder covers {n} enterprises of the watchlist, below "
                                  f"its min_node_samples={floor}: no drift can be reported")
        current = bin_distribution(mapper.transform(rows[served]), sizes)
        out = m.DriftReport(covered=n, features=list(model.feature_names),
                            features_version=int(core.features_version))
        for ref, cur in zip(model.bin_counts, current):
            csi, e, a = feature_csi(ref, cur, floor)
            out.csi.append(csi)
            out.groups.append(len(e))
            out.reference_shares.extend(float(v) for v in e)
            out.current_shares.extend(float(v) for v in a)
        core.audit(caller, s, "drift_csi", n, f"ids={len(ids)} features={len(out.features)}",
                   ids=rows.index[served])
    yield out


HANDLERS: dict[type, Callable[..., Iterator]] = {m.DriftRequest: drift}
