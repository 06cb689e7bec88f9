"""The bank's step of alignment."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import InvalidInput, ProtocolError
from ...psi import PsiBank, split_points
from ..messages import Ack
from ..session import BankSession
from ..wire import rows_from_bytes, rows_to_bytes
from . import messages as m
from .math import aligned_order


@dataclass
class Alignment:
    """Result of PSI: which of the bank's rows the holder can serve, in the agreed order."""

    bank_positions: np.ndarray  # positions in the bank's id list, in the session's order
    ids: list[str]  # the aligned ids, same order (the session's row order: sorted by id,
    #                 so the order of the bank's table never reaches the holder)
    holder_offered: int  # size of the holder's consented set (what PSI reveals to the bank)

    def __len__(self) -> int:
        return len(self.ids)


def align(session: BankSession, ids: Sequence[str]) -> Alignment:
    """ECDH-PSI with the holder's consented ids; the result is also ``session.alignment``.

    **Privacy**: the holder learns how many ids the bank has and, at the end, exactly the
    intersection (the enterprises it will answer for); the bank learns which of its ids
    are in the holder's consented set and that set's size. Enterprises whose consent ended
    after PSI are withdrawn by the holder and left out of the alignment. The rows are
    numbered in the order of their ids, so the order of the bank's table (sorted
    by outcome, say) does not reach the holder.
    """
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise InvalidInput("the bank's ids repeat; alignment needs unique ids")
    psi = PsiBank(session.id.encode())
    points = psi.blind(ids)
    parts = list(split_points(points)) or [b""]
    reqs = [m.PsiBlinded(session_id=session.id, points=p, last=(k == len(parts) - 1))
            for k, p in enumerate(parts)]
    doubled, holder_set, offered = [], [], 0
    for r in session.channel.exchange(reqs):
        if isinstance(r, m.PsiDoubleBlinded):
            doubled.append(r.points)
        elif isinstance(r, m.PsiHolderSet):
            holder_set.append(r.points)
            offered = r.total
        else:
            raise ProtocolError(f"unexpected {type(r).__name__} during PSI")
    res = psi.intersect(b"".join(doubled), b"".join(holder_set))
    bank_pos, holder_pos = aligned_order(res.bank_positions, res.holder_positions, ids)
    ack = session.call(m.PsiAlign(session_id=session.id, positions=rows_to_bytes(holder_pos)),
                       Ack)
    bank_pos = _drop_withdrawn(bank_pos, ack.withdrawn)
    if ack.count != len(bank_pos):
        raise ProtocolError("the holder aligned a different number of rows")
    session.alignment = Alignment(bank_pos, [ids[i] for i in bank_pos.tolist()], offered)
    return session.alignment


def _drop_withdrawn(bank_pos: np.ndarray, withdrawn: bytes) -> np.ndarray:
    """The bank's rows minus those the holder withdrew (indices into the PsiAlign request)."""
    if not withdrawn:
        return bank_pos
    gone = rows_from_bytes(withdrawn, what="withdrawn alignment positions")
    if len(gone) and (int(gone.max()) >= len(bank_pos) or len(np.unique(gone)) != len(gone)):
        raise ProtocolError("the holder withdrew positions outside its alignment request")
    keep = np.ones(len(bank_pos), dtype=bool)
    keep[gone] = False
    return bank_pos[keep]
