"""The holder's steps of population scoring, in a ``score`` session of a model trained for
a population purpose (``pre_credit``).

``PopulationPage``: the holder enumerates, at this request, the enterprises of its table
that authorise this bank for the session's purpose (:meth:`consented_ids`: revocations and
expiries honoured, the ``"*"`` platform scope included), sorts them and answers the next
page after the bank's ``after`` (at most ``policy.max_predict_ids`` ids), recording which ids
it listed in the session. ``PopulationScoreRequest``: the bank names listed ids; the holder
re-checks consent (an enterprise that withdrew since the listing is answered as not
covered), and answers exactly what scoring by id answers: leaf masks of every tree of a
SecureBoost model (``StoredModel.leaf_paths``) or the partial scores of a logistic regression
(``partial_scores``). Both steps are audited with the ids; the scoring step is a scoring
request (``SCORING_REQUESTS``), so the service counts it against ``max_scored_per_day``.

**Privacy** (what the bank learns): which enterprises authorise it for the purpose — the
disclosure their consent for pre-credit covers (docs/PRIVACY.md) — and for each the answer
scoring it by id would give. What the holder learns: which listed enterprises the bank
scored (all of them, normally).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ...errors import InvalidInput, PolicyViolation, ProtocolError
from ..channel import Caller
from ..context import HolderContext
from ..hooks import StoredModel
from ..logistic import messages as lr_messages
from ..logistic.holder import KIND as LR_KIND
from ..logistic.holder import partial_scores
from ..secureboost import messages as sb_messages
from ..session import Session
from ..wire import flags_to_bytes
from . import messages as m
from .math import POPULATION_PURPOSES, next_page

OPERATIONS = ("population_page", "population_score")


@dataclass
class PopulationState:
    """The ids a session listed: the only ones it may score."""

    listed: set[str] = field(default_factory=set)


def _model(core: HolderContext, s: Session) -> StoredModel:
    if s.purpose not in POPULATION_PURPOSES:
        raise PolicyViolation(f"population scoring enumerates consents for "
                              f"{', '.join(POPULATION_PURPOSES)} only, not {s.purpose!r}")
    model = core.models.load(s.model_id)
    if model.purpose != s.purpose:
        raise PolicyViolation(f"model {model.model_id!r} was trained for purpose "
                              f"{model.purpose!r}; population scoring for {s.purpose!r} needs "
                              "a model trained for it")
    core.require_columns(s, model.columns, f"model {model.model_id!r}")
    return model


def _state(s: Session) -> PopulationState:
    if s.state is None:
        s.replace_state(PopulationState())
    if not isinstance(s.state, PopulationState):
        raise ProtocolError("this session runs another protocol: open a new one to score "
                            "the population")
    return s.state


def page(core: HolderContext, caller: Caller, msg: m.PopulationPage, rest) -> Iterator:
    s = core.session(caller, msg.session_id, task="score")
    with s.lock:
        _model(core, s)
        state = _state(s)
        if msg.limit < 1:
            raise InvalidInput(f"a population page holds at least one id, not {msg.limit}")
        limit = min(int(msg.limit), int(core.policy.max_predict_ids))
        ids = sorted(core.consented_ids(s.bank, s.purpose))  # at this request: consent now
        listed, more = next_page(ids, str(msg.after), limit)
        state.listed.update(listed)
        core.audit(caller, s, "population_page", len(listed),
                   f"limit={limit} first_page={not msg.after} more={more}", ids=listed)
    yield m.PopulationIds(ids=listed, more=more)


def score(core: HolderContext, caller: Caller, msg: m.PopulationScoreRequest,
          rest) -> Iterator:
    s = core.session(caller, msg.session_id, task="score")
    with s.lock:
        model = _model(core, s)
        state = _state(s)
        ids = [str(i) for i in msg.ids]
        if len(set(ids)) != len(ids):
            raise InvalidInput("a population scoring request names an enterprise twice")
        unlisted = [i for i in ids if i not in state.listed]
        if unlisted:
            raise InvalidInput(f"{len(unlisted)} ids were not listed in this session "
                               "(population scoring scores listed pages only)")
        rows, served = core.scoring_rows(s, ids, model)  # consent re-checked here
        kind = model.mapper.get("kind")
        if kind is None:  # SecureBoost
            if not core.policy.allow_plain_scoring:
                raise PolicyViolation("this holder answers plain leaf masks to no one "
                                      "(policy.allow_plain_scoring = false), so it cannot "
                                      "score a population with a SecureBoost model")
            mapper = model.bin_mapper()
            bins = mapper.transform(rows)
            trees = sorted(model.trees)
            if not trees:
                raise InvalidInput(f"model {model.model_id!r} has no tree at the holder")
            answers = model.leaf_paths(trees).packed(bins, mapper.n_bins)
            covered = flags_to_bytes(served)
            out: list = [sb_messages.LeafMasks(tree=t, n_leaves=n, masks=b,
                                               covered=covered if k == 0 else b"")
                         for k, (t, (n, b)) in enumerate(zip(trees, answers))]
        elif kind == LR_KIND:
            u = partial_scores(model, rows)
            out = [lr_messages.PartialScores(scores=np.asarray(u, dtype="<f8").tobytes(),
                                             covered=flags_to_bytes(served))]
        else:
            raise InvalidInput(f"model {model.model_id!r} ({kind}) cannot score a population")
        core.audit(caller, s, "population_score", int(served.sum()), f"ids={len(ids)}",
                   ids=rows.index[served])
    yield from out


HANDLERS: dict[type, Callable[..., Iterator]] = {
    m.PopulationPage: page, m.PopulationScoreRequest: score,
}
