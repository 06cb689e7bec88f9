"""The rules both sides of population scoring share: which purposes may enumerate, the
page rule, and how a page's leaf masks are laid out."""
from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from ...errors import InvalidInput, ProtocolError

#: the purpose an enterprise authorises pre-credit screening under
PRE_CREDIT = "pre_credit"
#: purposes whose consents a bank may enumerate: consent for pre-credit covers being listed
POPULATION_PURPOSES: tuple[str, ...] = (PRE_CREDIT,)
#: ids per page unless the bank asks otherwise
DEFAULT_PAGE = 10_000


def next_page(sorted_ids: Sequence[str], after: str, limit: int) -> tuple[list[str], bool]:
    """The first ``limit`` ids after ``after`` and whether more follow.

    Keyset paging over the ids in sorted order: an enterprise whose consent ends between two
    pages just leaves the next one, one that arrives appears in order, and no id is listed
    twice or skipped because others left."""
    if limit < 1:
        raise InvalidInput(f"a page holds at least one id, not {limit}")
    lo = bisect.bisect_right(sorted_ids, after) if after else 0
    page = list(sorted_ids[lo:lo + limit])
    return page, lo + limit < len(sorted_ids)


def check_page(ids: Sequence[str], after: str) -> None:
    """The bank's check of a listed page: strictly increasing, all after ``after``."""
    if any(b <= a for a, b in zip(ids, ids[1:])) or (ids and after and ids[0] <= after):
        raise ProtocolError("the holder's page is not in increasing id order after the "
                            "previous page")


def unpack_masks(data: bytes, n_ids: int, n_leaves: int, what: str) -> np.ndarray:
    """ids x leaves bool matrix from packed rows (numpy packbits, one row per id)."""
    width = -(-int(n_leaves) // 8)
    bits = np.frombuffer(data, dtype=np.uint8)
    if n_leaves < 1 or len(bits) != width * n_ids:
        raise ProtocolError(f"{what}: leaf masks of the wrong size")
    return np.unpackbits(bits.reshape(n_ids, width), axis=1)[:, :n_leaves].astype(bool)
