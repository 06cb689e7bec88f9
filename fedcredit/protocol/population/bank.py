"""The bank's steps of population scoring, over a ``score`` :class:`BankSession` opened for
a population purpose (``pre_credit``).

    with BankSession(channel, "score", model_id=model_id, purpose="pre_credit") as session:
        for page in score_population(session, "secureboost"):
            ...   # page.ids, page.covered, page.masks (per tree) or page.partial

The bank lists a page, then scores it, until the holder says no page follows; each page
re-reads the holder's consents, so a withdrawal stops an enterprise at the next page.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import InvalidInput, ProtocolError
from ..logistic import messages as lr_messages
from ..secureboost import messages as sb_messages
from ..session import BankSession
from ..wire import flags_from_bytes
from . import messages as m
from .math import DEFAULT_PAGE, check_page, unpack_masks

#: what the holder's model answers with: SecureBoost leaf masks or LR partial scores
KINDS = ("secureboost", "hetero_lr")


@dataclass
class ScoredPage:
    """One page: its ids, whether the holder still served each (data and a current consent),
    and per tree the ids x leaves masks (SecureBoost) or the partial scores (LR)."""

    ids: list[str]
    covered: np.ndarray
    masks: dict[int, np.ndarray] | None = None
    partial: np.ndarray | None = None


def list_page(session: BankSession, after: str = "", limit: int = DEFAULT_PAGE
              ) -> tuple[list[str], bool]:
    """The next page of enterprises that authorise this bank for the session's purpose.

    **Privacy**: the holder learns nothing new (the bank's identity and purpose are the
    session's); the bank learns which enterprises authorise it, page by page."""
    if int(limit) < 1:
        raise InvalidInput(f"page size must be >= 1, got {limit}")
    r = session.call(m.PopulationPage(session_id=session.id, after=after, limit=int(limit)),
                     m.PopulationIds)
    ids = [str(i) for i in r.ids]
    check_page(ids, after)
    if len(ids) > int(limit) or (r.more and not ids):
        raise ProtocolError("the holder's page does not match the request")
    return ids, bool(r.more)


def score_page(session: BankSession, ids: Sequence[str], kind: str) -> ScoredPage:
    """Score listed ids; the holder answers as scoring by id does.

    **Privacy**: the holder learns which listed enterprises the bank scores; the bank learns
    for each what scoring by id shows (leaf masks, or the holder's partial score)."""
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    ids = [str(i) for i in ids]
    answers = list(session.channel.exchange([m.PopulationScoreRequest(session_id=session.id,
                                                                      ids=ids)]))
    if kind == "hetero_lr":
        if len(answers) != 1 or not isinstance(answers[0], lr_messages.PartialScores):
            raise ProtocolError("expected one PartialScores answering a population page")
        u = np.frombuffer(answers[0].scores, dtype="<f8")
        if len(u) != len(ids):
            raise ProtocolError("the holder scored a different number of ids")
        return ScoredPage(ids, _covered(answers[0].covered, len(ids)), partial=u)
    masks: dict[int, np.ndarray] = {}
    for k, r in enumerate(answers):
        if not isinstance(r, sb_messages.LeafMasks) or r.tree in masks:
            raise ProtocolError("expected one LeafMasks per tree answering a population page")
        if k == 0:
            covered = _covered(r.covered, len(ids))
        masks[r.tree] = unpack_masks(r.masks, len(ids), r.n_leaves, f"tree {r.tree}")
    if not masks:
        raise ProtocolError("the holder answered a population page with no tree")
    return ScoredPage(ids, covered, masks=masks)


def score_population(session: BankSession, kind: str, page_size: int = DEFAULT_PAGE
                     ) -> Iterator[ScoredPage]:
    """List and score page after page until the holder says none follows."""
    after = ""
    while True:
        ids, more = list_page(session, after, page_size)
        if ids:
            yield score_page(session, ids, kind)
            after = ids[-1]
        if not more:
            return


def _covered(data: bytes, n: int) -> np.ndarray:
    flags = flags_from_bytes(data, n, "holder coverage")
    if flags is None:
        raise ProtocolError("the holder did not say which listed enterprises it served")
    return flags
