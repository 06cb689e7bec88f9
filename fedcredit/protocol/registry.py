"""The one table of protocols: tasks, message types, holder steps and audit operations.

Everything that lists protocols derives from :data:`PROTOCOLS`: the tasks a session may
open, the wire order of message types (hence the protobuf field and envelope tags, which
are append-only), the handlers the holder's core dispatches to, and the audit operations
that ``fedcredit holder stats`` counts per protocol.

Adding a protocol: copy a package (``protocol/woe/``), rename its messages, add one
:class:`Protocol` line below (last: tags are positional), regenerate the .proto and stubs.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from . import messages as core_messages
from .alignment import holder as alignment_holder
from .alignment import messages as alignment_messages
from .correlation import holder as correlation_holder
from .correlation import messages as correlation_messages
from .drift import holder as drift_holder
from .drift import messages as drift_messages
from .loans import holder as loans_holder
from .loans import messages as loans_messages
from .logistic import holder as logistic_holder
from .logistic import messages as logistic_messages
from .lr_chain import holder as lr_chain_holder
from .lr_chain import messages as lr_chain_messages
from .population import holder as population_holder
from .population import messages as population_messages
from .private_scoring import holder as private_scoring_holder
from .private_scoring import messages as private_scoring_messages
from .secureboost import holder as secureboost_holder
from .secureboost import messages as secureboost_messages
from .woe import holder as woe_holder
from .woe import messages as woe_messages


@dataclass(frozen=True)
class Protocol:
    """One protocol as the core and the operator see it.

    name: how statistics and docs name it; tasks: the session tasks it opens; keyed: its
    sessions carry the bank's public key; messages: its message types in wire order;
    handlers: message type -> holder step; operations: the audit operations its steps write.
    """

    name: str
    tasks: tuple[str, ...]
    keyed: bool
    messages: tuple[type, ...]
    handlers: Mapping[type, Callable[..., Any]]
    operations: tuple[str, ...]


PROTOCOLS: tuple[Protocol, ...] = (
    Protocol("alignment", ("align",), False, alignment_messages.MESSAGE_TYPES,
             alignment_holder.HANDLERS, alignment_holder.OPERATIONS),
    Protocol("secureboost", ("train",), True, secureboost_messages.MESSAGE_TYPES,
             secureboost_holder.HANDLERS, secureboost_holder.OPERATIONS),
    Protocol("logistic", ("lr",), True, logistic_messages.MESSAGE_TYPES,
             logistic_holder.HANDLERS, logistic_holder.OPERATIONS),
    Protocol("woe", ("woe",), True, woe_messages.MESSAGE_TYPES,
             woe_holder.HANDLERS, woe_holder.OPERATIONS),
    Protocol("private_scoring", (), False, private_scoring_messages.MESSAGE_TYPES,
             private_scoring_holder.HANDLERS, private_scoring_holder.OPERATIONS),
    Protocol("loans", (loans_holder.TASK,), False, loans_messages.MESSAGE_TYPES,
             loans_holder.HANDLERS, loans_holder.OPERATIONS),
    Protocol("population", (), False, population_messages.MESSAGE_TYPES,
             population_holder.HANDLERS, population_holder.OPERATIONS),
    Protocol("drift", (), False, drift_messages.MESSAGE_TYPES,
             drift_holder.HANDLERS, drift_holder.OPERATIONS),
    Protocol("correlation", ("correlation",), True, correlation_messages.MESSAGE_TYPES,
             correlation_holder.HANDLERS, correlation_holder.OPERATIONS),
    Protocol("lr_chain", (), True, lr_chain_messages.MESSAGE_TYPES,
             lr_chain_holder.HANDLERS, lr_chain_holder.OPERATIONS),
)

#: sessions that score with a stored model (any protocol's): the core's own task
SCORE_TASK = "score"
#: requests that score enterprises by id, and the audit operations they write: counted
#: together by ``holder stats`` and by the daily cap on distinct enterprises scored (the
#: cap also counts a drift request's watchlist, whose rows it uses)
SCORING_REQUESTS: tuple[type, ...] = (secureboost_messages.PredictRequest,
                                      logistic_messages.PartialScoreRequest,
                                      private_scoring_messages.PrivateScoreRequest,
                                      population_messages.PopulationScoreRequest,
                                      drift_messages.DriftRequest)
SCORING_OPERATIONS: tuple[str, ...] = ("predict", "lr_score", "private_predict",
                                       "population_score")
TASKS: tuple[str, ...] = tuple(t for p in PROTOCOLS for t in p.tasks) + (SCORE_TASK,)
KEYED_TASKS: frozenset[str] = frozenset(t for p in PROTOCOLS if p.keyed for t in p.tasks)

#: every message type in wire order: the generic ones, then each protocol's
MESSAGE_TYPES: tuple[type, ...] = core_messages.MESSAGE_TYPES + tuple(
    t for p in PROTOCOLS for t in p.messages)
#: messages only ever nested in another (never alone in an envelope)
NESTED_TYPES: frozenset[type] = frozenset({
    secureboost_messages.NodeTask, secureboost_messages.SplitChoice,
    secureboost_messages.SplitOutcome, secureboost_messages.TreeNode})
ENVELOPE_TYPES: tuple[type, ...] = tuple(t for t in MESSAGE_TYPES if t not in NESTED_TYPES)
#: every message by name (``MESSAGES.TreeStart``): for tools and tests
MESSAGES = SimpleNamespace(**{t.__name__: t for t in MESSAGE_TYPES})


def holder_handlers() -> dict[type, Callable]:
    out: dict[type, Callable] = {}
    for p in PROTOCOLS:
        for kind, handler in p.handlers.items():
            if kind in out:
                raise RuntimeError(f"{kind.__name__} is served by two protocols")
            out[kind] = handler
    return out


def protocol_of_operation(operation: str) -> str:
    """The protocol an audit operation belongs to ("" for the core's own)."""
    for p in PROTOCOLS:
        if operation in p.operations:
            return p.name
    return ""
