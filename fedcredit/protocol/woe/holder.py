"""The holder's state and steps of hetero WOE/IV.

The holder quantile-bins its own features on the bank's rows, merges bins holding fewer
than ``min_node_samples`` enterprises into a neighbour (so no aggregate describes fewer),
receives the bank's encrypted labels, and returns per bin the count in the clear and the
encrypted sum of labels, packed several per ciphertext and re-randomised. Later the bank may
send merge maps (its optimal binning); the holder stores its binning under an id, so that
a logistic regression or scorecard can encode the holder's features by bin. Bin edges never
leave the holder; bins are published as ``bin k`` and ``missing``.

**Privacy** (what the bank learns): per holder bin, the number of enterprises and of
events among them (every bin >= the holder's ``min_node_samples``); the bin's rank order
within its feature (bins are numbered in order of the feature's values), never its edges
or any value. What the holder learns: from ``WoeStart``/``WoeLabels``, which rows the bank
asks about (the aligned ids it already knows), their number, and ciphertexts it cannot
decrypt — no label count, not even the total; from ``WoeMerge``, which adjacent bins the
bank's optimal binning joins: inequalities on the bins' event rates (a monotonic trend
holds across the joined bins, each final bin holds ``min_bin_size``), never a count. The
bank's default counts reach the holder only if the bank later sends it its bins' WOE in the
clear (``Scorecard(blind_woe=False)``: the holder then solves for every bin's count and the
total); the scorecard's default sends a secret affine image instead, whose remaining leak
(its affine invariants) ``docs/PRIVACY.md`` states. Which features a scorecard then uses
tells the holder which of its features the bank found predictive.
"""
from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator

import numpy as np

from ...binning import BinMapper
from ...crypto import EncryptedHistogram
from ...errors import InvalidCiphertext, InvalidInput, ProtocolError
from ..channel import Caller
from ..context import HolderContext
from ..hooks import StoredModel
from ..messages import Ack
from ..session import Session
from ..wire import rows_from_bytes
from . import messages as m
from .math import KIND, MAX_WEIGHT_BITS, check_merge_map, floor_map, weighted_half_bits

OPERATIONS = ("woe_stats", "woe_merge")


def load_binning(core: HolderContext, session: Session, binning_id: str) -> dict:
    """A binning this bank's earlier WOE session stored (for WOE-encoded LR)."""
    stored = core.models.load(binning_id)
    if stored.bank != session.bank or stored.mapper.get("kind") != KIND:
        raise InvalidInput(f"the holder knows no binning {binning_id!r} for this bank")
    return stored.mapper


class HolderWOE:
    def __init__(self, core: HolderContext, session: Session, msg: m.WoeStart):
        self.core, self.session = core, session
        self.pk = session.key
        if msg.key_fingerprint != self.pk.fingerprint:
            raise InvalidCiphertext("labels announced under another key than the session's")
        feats = core.aligned_features(session)
        rows = rows_from_bytes(msg.rows, len(feats), "WOE rows")
        floor = core.policy.min_node_samples
        if len(rows) < 2 * floor or np.any(np.diff(rows) <= 0):
            raise InvalidInput("WOE rows must be strictly increasing and hold at least "
                               "twice the holder's min_node_samples")
        if not 2 <= msg.max_bin <= 255:
            raise InvalidInput("max_bin must lie in [2, 255]")
        if not 0 <= msg.weight_bits <= MAX_WEIGHT_BITS:
            raise InvalidInput(f"weight_bits must lie in [0, {MAX_WEIGHT_BITS}]")
        self.weight_bits = int(msg.weight_bits)
        frame = feats.iloc[rows]
        self.names = [str(c) for c in feats.columns]
        self.row_ids = list(frame.index)
        mapper = BinMapper(int(msg.max_bin)).fit(frame)
        raw = mapper.transform(frame).astype(np.int64)
        consented = core.consent_mask(session, [feats.index[i] for i in rows.tolist()])
        raw[~consented] = mapper.n_bins[None, :]  # withdrawn consent: treated as missing
        self.pre, sizes = [], []
        bins = np.empty_like(raw)
        for f in range(raw.shape[1]):
            cnt = np.bincount(raw[:, f], minlength=int(mapper.n_bins[f]) + 1)
            fm, size = floor_map(cnt, floor)
            self.pre.append(fm.tolist())
            sizes.append(size)
            bins[:, f] = fm[raw[:, f]]
        self.sizes = np.array(sizes, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        self.bins = bins
        self.counts = np.concatenate([np.bincount(bins[:, f], minlength=int(self.sizes[f]))
                                      for f in range(bins.shape[1])])
        self.hist = EncryptedHistogram(self.pk, bins, self.sizes, self.offsets)
        self.n = len(rows)
        self.got = 0
        self.binning = {"kind": KIND, "mapper": mapper.to_dict(), "pre": self.pre,
                        "n_pre": [int(v) for v in self.sizes],
                        "merge": [list(range(int(s))) for s in self.sizes],
                        "n_final": [int(s) for s in self.sizes]}

    def add(self, msg: m.WoeLabels) -> None:
        if msg.offset != self.got:
            raise ProtocolError(f"label chunk at offset {msg.offset}, expected {self.got}")
        batch = self.pk.from_bytes_batch(msg.ciphertexts, what="label ciphertexts")
        if self.got + len(batch) > self.n:
            raise InvalidInput("more label ciphertexts than rows")
        self.hist.add(batch)
        self.got += len(batch)

    def finish(self) -> m.WoeStats:
        """**Privacy**: the bank receives the counts in the clear and one packed, re-randomised
        ciphertext per group of bins: the event count per bin once decrypted, no per-row
        value, and no hint of which rows sit in which bin."""
        if self.got != self.n:
            raise ProtocolError(f"expected {self.n} label ciphertexts, got {self.got}")
        sums = self.hist.finish()
        slot_bits = (2 * weighted_half_bits(self.n, self.weight_bits) + 1 if self.weight_bits
                     else int(self.n).bit_length() + 2)
        slots = max(1, self.pk.plaintext_bits // slot_bits)
        packed = self.pk.pack_flat(sums, slot_bits, slots)
        s = self.session
        binning_id = uuid.UUID(bytes=secrets.token_bytes(16)).hex
        self.core.models.save(StoredModel(binning_id, s.bank, s.purpose, list(self.names),
                                           self.binning, columns=list(self.names)))
        labels = []
        for size in self.sizes.tolist():
            labels.extend([f"bin {k}" for k in range(size - 1)] + ["missing"])
        return m.WoeStats(binning_id=binning_id, feature_names=list(self.names),
                          n_bins=[int(v) for v in self.sizes], bin_labels=labels,
                          counts=self.counts.astype("<u4").tobytes(),
                          packed=self.pk.to_bytes_batch(packed), slots=slots,
                          slot_bits=slot_bits)


def start(core: HolderContext, caller: Caller, first: m.WoeStart, rest) -> Iterator:
    s = core.session(caller, first.session_id, task="woe")
    with s.lock:
        st = HolderWOE(core, s, first)
        for msg in rest:
            if not isinstance(msg, m.WoeLabels):
                raise ProtocolError("a label stream mixes in other messages")
            st.add(msg)
        out = st.finish()
        core.audit(caller, s, "woe_stats", st.n, f"binning={out.binning_id} "
                   f"features={len(st.sizes)} bins={int(st.sizes.sum())}", ids=st.row_ids)
    yield out


def merge(core: HolderContext, caller: Caller, msg: m.WoeMerge, rest) -> Iterator:
    s = core.session(caller, msg.session_id, task="woe")
    with s.lock:
        stored = core.models.load(msg.binning_id)
        if stored.bank != s.bank or stored.mapper.get("kind") != KIND:
            raise InvalidInput(f"the holder knows no binning {msg.binning_id!r} for this bank")
        b = stored.mapper
        maps = rows_from_bytes(msg.maps, what="merge maps")
        at = 0
        for f in msg.features:
            if not 0 <= f < len(b["pre"]):
                raise InvalidInput(f"no holder feature {f}")
            size = b["n_pre"][f]
            mp = maps[at:at + size]
            at += size
            check_merge_map(mp, size)
            b["merge"][f] = mp.tolist()
            b["n_final"][f] = int(mp[-1]) + 1
        if at != len(maps):
            raise InvalidInput("merge maps do not match the features named")
        core.models.save(stored)
        core.audit(caller, s, "woe_merge", 0, f"features={len(msg.features)}")
    yield Ack(session_id=s.id, count=len(msg.features))


HANDLERS: dict[type, Callable[..., Iterator]] = {m.WoeStart: start, m.WoeMerge: merge}
