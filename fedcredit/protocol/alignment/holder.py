"""The holder's steps of alignment.

The holder offers only the enterprises that authorise this bank for this purpose, doubly
blinds the bank's points, and resolves the positions the bank sends back into the
session's aligned ids. The bank's upload is counted while it arrives and refused past the
policy's ``max_psi_points`` (the session is dropped), so no bank can grow the holder's
memory without bound.

Consent is checked twice: the offered set at PSI, and again when the bank names the rows it
will use, so an enterprise whose consent ends between the two is withdrawn from the session
(the bank is told which of its rows, and drops them) rather than aligned.

**Privacy** (what the bank learns): which of its ids are in the consented set, and its size;
which of those withdrew consent before alignment. What the holder learns: how many ids the
bank has, then the intersection.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ...errors import ProtocolError, ResourceLimit
from ...memory import release_freed_memory
from ...psi import POINT_BYTES, PsiHolder, check_group, join_points, split_points
from ..channel import Caller
from ..context import HolderContext
from ..messages import Ack
from ..wire import rows_from_bytes, rows_to_bytes
from . import messages as m
from .math import points_in

OPERATIONS = ("psi", "align")


def _bank_chunks(first: m.PsiBlinded, rest: Iterator, session_id: str, done: list) -> Iterator:
    yield first.points
    done[0] = first.last
    for msg in rest:
        if not isinstance(msg, m.PsiBlinded) or msg.session_id != session_id:
            raise ProtocolError("PSI stream mixes in other messages")
        if msg.group and msg.group != first.group:
            raise ProtocolError("the PSI stream changes its group after the first chunk")
        yield msg.points
        done[0] = msg.last


def psi(core: HolderContext, caller: Caller, first: m.PsiBlinded, rest: Iterator) -> Iterator:
    s = core.session(caller, first.session_id)
    group = check_group(first.group, "PsiBlinded.group")  # before buffering any points
    with s.lock:
        offered = core.consented_ids(caller.bank, s.purpose)
        last = [False]
        try:
            bank_points = join_points(_bank_chunks(first, rest, s.id, last),
                                      max_points=core.policy.max_psi_points)
        except ResourceLimit:
            core.drop(s, "refused")
            raise ResourceLimit(f"the bank sent more than the holder's "
                                f"max_psi_points={core.policy.max_psi_points} ids; the "
                                "session is closed") from None
        if not last[0]:
            raise ProtocolError("the bank's PSI stream ended without its last chunk")
        holder = PsiHolder(s.id.encode(), offered, group=group)
        doubled = holder.double_blind(bank_points)
        shuffled = holder.shuffled_points()
        s.replace_state(holder)
        core.audit(caller, s, "psi", len(offered),
                   f"bank_ids={points_in(bank_points, POINT_BYTES)}")
    for part in split_points(doubled):
        yield m.PsiDoubleBlinded(points=part)
    for part in split_points(shuffled):
        yield m.PsiHolderSet(points=part, total=len(offered))


def align(core: HolderContext, caller: Caller, msg: m.PsiAlign, rest: Iterator) -> Iterator:
    s = core.session(caller, msg.session_id)
    with s.lock:
        holder = s.state_as(PsiHolder, "PsiBlinded (alignment needs a PSI exchange first)")
        positions = rows_from_bytes(msg.positions, what="PSI positions")
        ids = holder.resolve(positions.tolist())
        still = core.consent_mask(s, ids)
        withdrawn = np.flatnonzero(~still)
        s.aligned_ids = [i for i, ok in zip(ids, still.tolist()) if ok]
        s.replace_state(None)
        release_freed_memory()  # the PSI's points and id strings: ~0.3 GB per million ids
        core.audit(caller, s, "align", len(s.aligned_ids),
                   f"withdrawn={len(withdrawn)}" if len(withdrawn) else "", ids=s.aligned_ids)
    yield Ack(session_id=s.id, count=len(s.aligned_ids),
              withdrawn=rows_to_bytes(withdrawn) if len(withdrawn) else b"")


HANDLERS: dict[type, Callable[..., Iterator]] = {m.PsiBlinded: psi, m.PsiAlign: align}
