"""The bank's steps of hetero WOE/IV, over a :class:`BankSession`.

The estimator :class:`fedcredit.models.HeteroWOE` is written against these functions only.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ...crypto import SlotLayout
from ...errors import ProtocolError
from ..messages import Ack
from ..session import BankSession
from ..wire import rows_to_bytes
from . import messages as m


@dataclass
class HolderBinStats:
    binning_id: str
    feature_names: list[str]
    n_bins: list[int]
    bin_labels: list[str]
    counts: np.ndarray
    events: np.ndarray


def woe_stats(session: BankSession, rows: np.ndarray, y: np.ndarray, max_bin: int,
              chunk: int = 2048) -> HolderBinStats:
    """Encrypt the labels, stream them; decrypt the holder's per-bin event sums.

    **Privacy**: the holder receives one ciphertext per row under the bank's key (no label,
    no label count); the bank learns per holder bin (>= ``min_node_samples`` rows) the count
    and the number of events, and the bins' order within a feature — no edge, no value.
    """
    pk, sk = session.key

    def requests() -> Iterator:
        yield m.WoeStart(session_id=session.id, rows=rows_to_bytes(rows), max_bin=int(max_bin),
                         key_fingerprint=pk.fingerprint)
        offset = 0
        for data in sk.encrypt_bytes_iter([int(v) for v in y], chunk=chunk,
                                          workers=session.workers):
            yield m.WoeLabels(offset=offset, ciphertexts=data)
            offset += len(data) // pk.ciphertext_bytes

    r = session.stream(requests(), m.WoeStats)
    total = int(sum(r.n_bins))
    counts = np.frombuffer(r.counts, dtype="<u4").astype(np.int64)
    if len(counts) != total or len(r.bin_labels) != total:
        raise ProtocolError("the holder's bin statistics do not match its bin counts")
    cv = pk.from_bytes_batch(r.packed, what="WOE sums")
    plain = sk.decrypt(cv, workers=session.workers)
    cols = SlotLayout.repeat(r.slot_bits, r.slots).unpack(plain)
    events = np.array([cols[j][i] for i in range(len(plain)) for j in range(r.slots)][:total],
                      dtype=np.int64)
    if np.any(events < 0) or np.any(events > counts):
        raise ProtocolError("decrypted event counts are out of range")
    return HolderBinStats(r.binning_id, list(r.feature_names), [int(v) for v in r.n_bins],
                          list(r.bin_labels), counts, events)


def woe_merge(session: BankSession, binning_id: str, maps: dict[int, np.ndarray]) -> None:
    """**Privacy**: the holder learns which of its adjacent bins the bank's optimal binning
    joins, a function of the labels aggregated per bin: inequalities between the bins'
    event rates (monotonic trend, minimum bin size), not the trend's direction, no count.
    Its bins' WOE, if the bank ever sent them in the clear, would give the counts away: the
    scorecard blinds them (``Scorecard(blind_woe=True)``)."""
    feats = sorted(maps)
    data = b"".join(np.asarray(maps[f], dtype="<u4").tobytes() for f in feats)
    session.call(m.WoeMerge(session_id=session.id, binning_id=binning_id, features=feats,
                            maps=data), Ack)
