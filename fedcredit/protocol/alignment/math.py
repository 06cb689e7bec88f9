"""What both sides of alignment agree on: the session's row order.

After PSI the aligned ids are numbered in the order of the holder's secret shuffle of its
offered ids, not in the order of the bank's table: a bank table sorted by outcome (or by
date of default) would otherwise hand the holder its labels through the row order. Every
later message names rows by these positions (uint32, see :mod:`fedcredit.protocol.wire`).
"""
from __future__ import annotations

import numpy as np

#: the mitigation's switch, for the attack test that shows it off (tests/attacks/)
ORDER_BY_HOLDER_SLOT = True


def aligned_order(bank_positions, holder_positions) -> tuple[np.ndarray, np.ndarray]:
    """The intersection in the holder's shuffled order: (bank rows, holder's slots).

    The holder drew its shuffle itself, so the order tells it nothing about the bank's
    table; with ``ORDER_BY_HOLDER_SLOT`` off the bank's own order is kept (the leak)."""
    bank = np.asarray(bank_positions, dtype=np.int64)
    holder = np.asarray(holder_positions, dtype=np.int64)
    order = np.argsort(holder if ORDER_BY_HOLDER_SLOT else bank, kind="stable")
    return bank[order], holder[order]


def points_in(data: bytes, point_bytes: int) -> int:
    """How many points a received buffer holds."""
    return len(data) // point_bytes
