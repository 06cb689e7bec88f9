"""What both sides of alignment agree on: the session's row order.

After PSI the aligned ids are numbered in the order of the bank's own id list; every later
message names rows by these positions (uint32, see :mod:`fedcredit.protocol.wire`).
"""
from __future__ import annotations

import numpy as np


def aligned_order(bank_positions, holder_positions) -> tuple[np.ndarray, np.ndarray]:
    """The intersection sorted by the bank's positions: (bank rows, holder's shuffled slots)."""
    bank = np.asarray(bank_positions, dtype=np.int64)
    holder = np.asarray(holder_positions, dtype=np.int64)
    order = np.argsort(bank, kind="stable")
    return bank[order], holder[order]


def points_in(data: bytes, point_bytes: int) -> int:
    """How many points a received buffer holds."""
    return len(data) // point_bytes
