"""The holder's side of hetero WOE/IV (DESIGN.md section 3, step 8).

The holder quantile-bins its own features on the bank's rows, merges bins holding fewer
than ``min_node_samples`` enterprises into a neighbour (so no aggregate describes fewer),
receives the bank's encrypted labels, and returns per bin the count in the clear and the
encrypted sum of labels, packed several per ciphertext and re-randomised. Later the bank may
send merge maps (its optimal binning); the holder stores its binning under an id, so that
a logistic regression or scorecard can encode the holder's features by bin. Bin edges never
leave the holder; bins are published as ``bin k`` and ``missing``.

**Privacy** (what the bank learns): per holder bin, the number of enterprises and of
events among them; the bin's rank order within its feature (bins are numbered in order of
the feature's values), never its edges or any value. What the holder learns: which rows
the bank asks about (the aligned ids it already knows) and ciphertexts it cannot decrypt.
"""
from __future__ import annotations

import secrets
import uuid

import numpy as np

from ..binning import BinMapper
from ..errors import InvalidCiphertext, InvalidInput, ProtocolError
from . import messages as m
from .hooks import StoredModel
from .histograms import NodeHistogram
from .packing import rows_from_bytes

KIND = "hetero_woe"


def floor_map(counts: np.ndarray, floor: int) -> np.ndarray:
    """Merge adjacent non-missing bins until each holds >= floor rows (or is the only one);
    the missing bin (last) stays separate unless it is non-empty and below the floor, in
    which case its rows join the largest bin. Returns raw bin -> prebin; the missing bin
    maps to the last prebin. Returns (map, number of prebins including the missing one)."""
    counts = np.asarray(counts, dtype=np.int64)
    nb = len(counts) - 1
    out = np.zeros(len(counts), dtype=np.int64)
    group, acc = 0, 0
    for k in range(nb):
        out[k] = group
        acc += counts[k]
        if acc >= floor and counts[k + 1:nb].sum() >= floor:
            group, acc = group + 1, 0
    n_groups = group + 1
    out[nb] = n_groups
    if 0 < counts[nb] < floor:  # too few missing values to describe apart
        sizes = np.bincount(out[:nb], weights=counts[:nb], minlength=n_groups)
        out[nb] = int(np.argmax(sizes))
    return out, n_groups + 1


def load_binning(party, session, binning_id: str) -> dict:
    stored = party.models.load(binning_id)
    if stored.bank != session.bank or stored.mapper.get("kind") != KIND:
        raise InvalidInput(f"the holder knows no binning {binning_id!r} for this bank")
    return stored.mapper


def final_bins(binning: dict, frame) -> np.ndarray:
    """Final bin index per row and holder feature (missing bin last)."""
    raw = BinMapper.from_dict(binning["mapper"]).transform(frame).astype(np.int64)
    out = np.empty_like(raw)
    for f in range(raw.shape[1]):
        pre = np.asarray(binning["pre"][f])[raw[:, f]]
        out[:, f] = np.asarray(binning["merge"][f])[pre]
    return out


class HolderWOE:
    def __init__(self, party, session, msg: m.WoeStart):
        self.party, self.session = party, session
        self.pk = session.public_key
        if msg.key_fingerprint != self.pk.fingerprint:
            raise InvalidCiphertext("labels announced under another key than the session's")
        feats = party.aligned_features(session)
        rows = rows_from_bytes(msg.rows, len(feats), "WOE rows")
        floor = party.policy.min_node_samples
        if len(rows) < 2 * floor or np.any(np.diff(rows) <= 0):
            raise InvalidInput("WOE rows must be strictly increasing and hold at least "
                               "twice the holder's min_node_samples")
        if not 2 <= msg.max_bin <= 255:
            raise InvalidInput("max_bin must lie in [2, 255]")
        frame = feats.iloc[rows]
        mapper = BinMapper(int(msg.max_bin)).fit(frame)
        raw = mapper.transform(frame).astype(np.int64)
        consented = party.consent_mask(session, [feats.index[i] for i in rows.tolist()])
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
        self.hist = NodeHistogram(self.pk, bins, self.sizes, self.offsets)
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
        self.hist.add(batch.values)
        self.got += len(batch)

    def finish(self) -> m.WoeStats:
        if self.got != self.n:
            raise ProtocolError(f"expected {self.n} label ciphertexts, got {self.got}")
        sums = self.hist.finish()
        slot_bits = int(self.n).bit_length() + 2
        slots = max(1, self.pk.plaintext_bits // slot_bits)
        vals = list(sums.values)
        one = self.pk.trivial([0])[0]
        groups = -(-len(vals) // slots)
        vals += [one] * (groups * slots - len(vals))
        cols = [self.pk._wrap(vals[j::slots]) for j in range(slots)]
        packed = self.pk.rerandomize(self.pk.pack(cols, slot_bits))
        s = self.session
        binning_id = uuid.UUID(bytes=secrets.token_bytes(16)).hex
        self.party.models.save(StoredModel(binning_id, s.bank, s.purpose,
                                           list(self.party.feature_names), self.binning))
        labels = []
        for size in self.sizes.tolist():
            labels.extend([f"bin {k}" for k in range(size - 1)] + ["missing"])
        return m.WoeStats(binning_id=binning_id, feature_names=list(self.party.feature_names),
                          n_bins=[int(v) for v in self.sizes], bin_labels=labels,
                          counts=self.counts.astype("<u4").tobytes(),
                          packed=self.pk.to_bytes_batch(packed), slots=slots,
                          slot_bits=slot_bits)


def check_merge_map(mp: np.ndarray, size: int) -> None:
    """A merge map joins adjacent non-missing bins; the missing bin stays last and apart."""
    if len(mp) != size:
        raise InvalidInput(f"a merge map needs {size} entries, got {len(mp)}")
    body = mp[:-1]
    if len(body) and (body[0] != 0 or np.any(np.diff(body) < 0) or np.any(np.diff(body) > 1)):
        raise InvalidInput("a merge map must join adjacent bins, numbered from 0")
    if mp[-1] != (int(body[-1]) + 1 if len(body) else 0):
        raise InvalidInput("the missing bin must stay last and separate")


def register_woe(party) -> None:
    party.register(m.WoeStart, lambda c, msg, rest: _start(party, c, msg, rest))
    party.register(m.WoeMerge, lambda c, msg, rest: _merge(party, c, msg))


def _woe_session(party, caller, sid):
    s = party.session(caller, sid)
    if s.task != "woe":
        raise ProtocolError(f"session {s.id[:16]} is a {s.task} session, not a WOE one")
    return s


def _start(party, caller, first: m.WoeStart, rest):
    s = _woe_session(party, caller, first.session_id)
    with s.lock:
        st = HolderWOE(party, s, first)
        for msg in rest:
            if not isinstance(msg, m.WoeLabels):
                raise ProtocolError("a label stream mixes in other messages")
            st.add(msg)
        out = st.finish()
        party._audit(caller, s, "woe_stats", st.n,
                     f"features={len(st.sizes)} bins={int(st.sizes.sum())}")
    yield out


def _merge(party, caller, msg: m.WoeMerge):
    s = _woe_session(party, caller, msg.session_id)
    with s.lock:
        stored = party.models.load(msg.binning_id)
        if stored.bank != s.bank or stored.mapper.get("kind") != KIND:
            raise InvalidInput(f"the holder knows no binning {msg.binning_id!r} for this bank")
        b = stored.mapper
        maps = np.frombuffer(msg.maps, dtype="<u4").astype(np.int64)
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
        party.models.save(stored)
        party._audit(caller, s, "woe_merge", 0, f"features={len(msg.features)}")
    yield m.Ack(session_id=s.id, count=len(msg.features))
