"""The bank's step of alignment."""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ...errors import InvalidInput, ProtocolError
from ...psi import DEFAULT_GROUP, PsiBank, split_points
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


def align(session: BankSession, ids: Sequence[str], group: str = DEFAULT_GROUP) -> Alignment:
    """ECDH-PSI with the holder's consented ids; the result is also ``session.alignment``.

    ``group``: the PSI group (``"x25519"``, the default, or ``"ristretto255"``; see
    :mod:`fedcredit.psi`), sent to the holder in the first message.

    **Privacy**: the holder learns how many ids the bank has and, at the end, exactly the
    intersection (the enterprises it will answer for); the bank learns which of its ids
    are in the holder's consented set and that set's size. Enterprises whose consent ended
    after PSI are withdrawn by the holder and left out of the alignment. The rows are
    numbered in the order of their ids, so the order of the bank's table (sorted
    by outcome, say) does not reach the holder.
    """
    ids = _unique(ids)
    return _confirm(session, ids, *_psi(session, ids, group))


def _unique(ids: Sequence[str]) -> list[str]:
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise InvalidInput("the bank's ids repeat; alignment needs unique ids")
    return ids


def _psi(session: BankSession, ids: list[str], group: str = DEFAULT_GROUP
         ) -> tuple[np.ndarray, np.ndarray, int]:
    """PSI: (the bank's rows in the intersection, the holder's slots of them, both sorted
    by id; the size of the holder's consented set)."""
    psi = PsiBank(session.id.encode(), group=group)
    points = psi.blind(ids)
    parts = list(split_points(points)) or [b""]
    reqs = [m.PsiBlinded(session_id=session.id, points=p, last=(k == len(parts) - 1),
                         group=psi.group if k == 0 else "")
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
    return bank_pos, holder_pos, int(offered)


def _confirm(session: BankSession, ids: list[str], bank_pos: np.ndarray,
             holder_pos: np.ndarray, offered: int) -> Alignment:
    """Align the session on ``holder_pos`` (the bank's rows ``bank_pos``); the holder may
    withdraw enterprises whose consent ended since PSI."""
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


def align_many(sessions: Sequence[BankSession], ids: Sequence[str], any_holder: bool = False,
               group: str = DEFAULT_GROUP) -> tuple[Alignment, list[np.ndarray | None]]:
    """PSI with every holder, then alignment on the enterprises all of them serve (or, with
    ``any_holder``, on those at least one of them serves).

    Returns the training alignment (the bank's rows, sorted by id, as with one holder) and,
    per holder, its session position of each training row (-1 where it does not serve the
    row), or None where that is the row's own index (every holder aligned exactly the
    training rows).

    **Privacy**: each holder learns what one-holder alignment shows it (the bank's id count
    and, at the end, its own aligned rows: the enterprises it will answer for). It does not
    learn which of its own consented enterprises another holder lacks beyond that they are
    not aligned, nor, with ``any_holder``, anything of the enterprises only the others
    serve. The bank learns each holder's consented set within its ids, as with one.
    """
    ids = _unique(ids)
    with ThreadPoolExecutor(max(1, len(sessions))) as pool:  # the holders work side by side
        found = list(pool.map(lambda s: _psi(s, ids, group), sessions))
    if any_holder:
        aligned = [_confirm(s, ids, *f) for s, f in zip(sessions, found)]
        final = np.unique(np.concatenate([al.bank_positions for al in aligned]))
        final = final[np.argsort([ids[i] for i in final.tolist()], kind="stable")]
    else:
        common = found[0][0]
        for bank_pos, _, _ in found[1:]:
            common = common[np.isin(common, bank_pos)]
        aligned = [_confirm(s, ids, bank_pos[np.isin(bank_pos, common)],
                            holder_pos[np.isin(bank_pos, common)], offered)
                   for s, (bank_pos, holder_pos, offered) in zip(sessions, found)]
        final = aligned[0].bank_positions
        for al in aligned[1:]:
            final = final[np.isin(final, al.bank_positions)]
    local: list[np.ndarray | None] = []
    for al in aligned:
        if len(al.bank_positions) == len(final) and np.array_equal(al.bank_positions, final):
            local.append(None)
            continue
        at = np.full(len(final), -1, dtype=np.int64)  # both sorted by id
        where = np.flatnonzero(np.isin(final, al.bank_positions))
        at[where] = np.flatnonzero(np.isin(al.bank_positions, final))
        local.append(at)
    # holder_offered: the smallest consented set (each session.alignment keeps its own)
    return Alignment(final, [ids[i] for i in final.tolist()],
                     min(al.holder_offered for al in aligned)), local
