"""The holder's step of joint correlation analysis.

The holder standardises its own numeric columns over the bank's rows (withdrawn consents
count as missing), receives the bank's standardised columns encrypted and packed, and
returns per own column the encrypted sums of products, biased per slot and re-randomised,
with its own columns' correlation matrix.

**Privacy** (what the bank learns): each (bank column, holder column) Pearson correlation
over the rows, and the holder's own columns' correlation matrix: aggregates over at least
twice the holder's ``min_node_samples`` enterprises. A bank choosing its "columns" learns
the correlation of whatever it chose: a column that singles out one enterprise gives that
enterprise's z-scores (the input-choice leak of any secure correlation; each request is
audited with its rows and counted against the session limits). What the holder learns:
the rows and ciphertexts it cannot decrypt.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ...crypto import CipherVector
from ...errors import InvalidCiphertext, InvalidInput, ProtocolError, ResourceLimit
from ..channel import Caller
from ..context import HolderContext
from ..wire import rows_from_bytes
from . import math as cm
from . import messages as m

OPERATIONS = ("correlation",)


def _check_start(core: HolderContext, s, msg: m.CorrelationStart, n_aligned: int):
    pk = s.key
    if msg.key_fingerprint != pk.fingerprint:
        raise InvalidCiphertext("z-scores announced under another key than the session's")
    rows = rows_from_bytes(msg.rows, n_aligned, "correlation rows")
    if len(rows) < 2 * core.policy.min_node_samples or np.any(np.diff(rows) <= 0):
        raise InvalidInput("correlation rows must be strictly increasing and hold at least "
                           "twice the holder's min_node_samples")
    frac = cm.check_frac_bits(msg.frac_bits)
    width = cm.slot_bits(len(rows), frac)
    if msg.slot_bits != width or not 1 <= msg.slots <= pk.plaintext_bits // width:
        raise InvalidInput(f"a correlation slot holds {width} bits here, at most "
                           f"{pk.plaintext_bits // width} per ciphertext")
    if not 1 <= msg.groups <= 1024:
        raise InvalidInput("between 1 and 1024 ciphertexts per row")
    return rows, frac, width


def start(core: HolderContext, caller: Caller, first: m.CorrelationStart, rest) -> Iterator:
    s = core.session(caller, first.session_id, task="correlation")
    with s.lock:
        feats = core.aligned_features(s)
        rows, frac, width = _check_start(core, s, first, len(feats))
        pk = s.key
        frame = feats.iloc[rows].copy()
        ids = [feats.index[i] for i in rows.tolist()]
        frame.loc[~core.consent_mask(s, ids)] = np.nan  # a withdrawn consent: missing
        names, z = cm.standardized(frame)
        expected, batches = len(rows) * first.groups, []
        if expected * pk.ciphertext_bytes > core.policy.max_session_bytes:
            raise ResourceLimit(f"{expected} z-score ciphertexts exceed the holder's "
                                f"{core.policy.max_session_mib} MiB session limit")
        got = 0
        for msg in rest:
            if not isinstance(msg, m.CorrelationChunk) or msg.offset != got:
                raise ProtocolError("a correlation stream carries chunks in order only")
            batch = pk.from_bytes_batch(msg.ciphertexts, what="z-score ciphertexts")
            got += len(batch)
            if got > expected:
                raise InvalidInput("more z-score ciphertexts than rows times groups")
            batches.append(batch)
        if got != expected:
            raise ProtocolError(f"expected {expected} z-score ciphertexts, got {got}")
        cts = CipherVector.concat(batches)
        zi = cm.to_fixed(z, frac)
        offset = cm.bias(len(rows), frac)
        bias = cm.pack_row(np.full(first.slots, offset), width)
        out = []
        for g in range(first.groups):  # per group: one sum per holder column
            sums = pk.weighted_sums(cts[g::first.groups], zi)
            out.append(pk.add_plain(sums, [bias] * len(names)))
        data = pk.to_bytes_batch(pk.rerandomize(CipherVector.concat(out))) if names else b""
        corr = (z.T @ z) / len(rows) if names else np.zeros((0, 0))
        core.audit(caller, s, "correlation", len(rows),
                   f"bank_columns<={first.slots * first.groups} holder_columns={len(names)}",
                   ids=ids)
    yield m.CorrelationResult(feature_names=names, sums=data,
                              holder_corr=np.asarray(corr, dtype="<f8").tobytes(),
                              count=len(rows))


HANDLERS: dict[type, Callable[..., Iterator]] = {m.CorrelationStart: start}
