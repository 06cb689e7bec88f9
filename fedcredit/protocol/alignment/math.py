"""What both sides of alignment agree on: the session's row order.

After PSI the aligned ids are numbered in the order of the ids themselves (sorted), not in
the order of the bank's table: a bank table sorted by outcome (or by date of default) would
otherwise hand the holder its labels through the row order. Sorted ids tell the holder
nothing it does not know (it learns the intersection anyway), and the same ids give the
same row order in every session, so a fit is reproducible. Every
later message names rows by these positions (uint32, see :mod:`fedcredit.protocol.wire`).
"""
from __future__ import annotations

import numpy as np

#: the mitigation's switch, for the attack test that shows it off (tests/attacks/)
ORDER_BY_ID = True


def aligned_order(bank_positions, holder_positions, ids) -> tuple[np.ndarray, np.ndarray]:
    """The intersection sorted by id: (bank rows, holder's slots); ``ids`` is the bank's id
    list. With ``ORDER_BY_ID`` off the bank's own table order is kept (the leak)."""
    bank = np.asarray(bank_positions, dtype=np.int64)
    holder = np.asarray(holder_positions, dtype=np.int64)
    if ORDER_BY_ID:
        order = np.argsort(np.asarray([ids[i] for i in bank.tolist()], dtype=object),
                           kind="stable")
    else:
        order = np.argsort(bank, kind="stable")
    return bank[order], holder[order]


def points_in(data: bytes, point_bytes: int) -> int:
    """How many points a received buffer holds."""
    return len(data) // point_bytes
