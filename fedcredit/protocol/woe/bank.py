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
from .math import MAX_WEIGHT_BITS, weighted_half_bits


@dataclass
class HolderBinStats:
    binning_id: str
    feature_names: list[str]
    n_bins: list[int]
    bin_labels: list[str]
    counts: np.ndarray
    events: np.ndarray  # per bin: events; with weights, the weighted event sum
    totals: np.ndarray | None = None  # with weights: the weighted row sum per bin


def woe_stats(session: BankSession, rows: np.ndarray, y: np.ndarray, max_bin: int,
              chunk: int = 2048, weights: np.ndarray | None = None) -> HolderBinStats:
    """Encrypt the labels, stream them; decrypt the holder's per-bin event sums.

    With ``weights`` each row's plaintext packs its weight and weight x label as
    ``MAX_WEIGHT_BITS``-bit fixed-point integers (integer weights below 2**16 exactly, others
    relative to the largest), and the bank reads weighted event and row sums per bin.

    **Privacy**: the holder receives one ciphertext per row under the bank's key (no label,
    no label count, no weight); the bank learns per holder bin (>= ``min_node_samples``
    rows) the count and the number (or weighted sum) of events, and the bins' order within
    a feature — no edge, no value.
    """
    pk, sk = session.key
    values = [int(v) for v in y]
    wb, scale = 0, 1.0
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        wb = MAX_WEIGHT_BITS
        whole = np.all(w == np.rint(w)) and float(w.max()) <= 2.0 ** wb
        scale = 1.0 if whole else 2.0 ** wb / float(w.max())
        wq = np.rint(w * scale).astype(np.int64)
        half = weighted_half_bits(len(rows), wb)
        values = [(int(q) * int(v) << half) | int(q) for q, v in zip(wq, y)]

    def requests() -> Iterator:
        yield m.WoeStart(session_id=session.id, rows=rows_to_bytes(rows), max_bin=int(max_bin),
                         key_fingerprint=pk.fingerprint, weight_bits=wb)
        offset = 0
        for data in sk.encrypt_bytes_iter(values, chunk=chunk, workers=session.workers):
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
    sums = [int(cols[j][i]) for i in range(len(plain)) for j in range(r.slots)][:total]
    if wb:
        mask = (1 << half) - 1
        tot = [v & mask for v in sums]
        ev = [v >> half for v in sums]
        if any(v < 0 or e > t or t > (int(c) << wb) for v, e, t, c in zip(sums, ev, tot, counts)):
            raise ProtocolError("decrypted weighted sums are out of range")
        return HolderBinStats(r.binning_id, list(r.feature_names), [int(v) for v in r.n_bins],
                              list(r.bin_labels), counts,
                              np.array(ev, dtype=np.float64) / scale,
                              np.array(tot, dtype=np.float64) / scale)
    events = np.array(sums, dtype=np.int64)
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
