"""The bank's step of joint correlation analysis, over a keyed, aligned session."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ...errors import ProtocolError
from ..session import BankSession
from ..wire import rows_to_bytes
from . import math as cm
from . import messages as m

#: ciphertexts per message
CHUNK = 1024


@dataclass
class CrossCorrelation:
    holder_features: list[str]
    cross: np.ndarray  # bank columns x holder columns
    holder: np.ndarray  # holder columns x holder columns (the holder's own)
    count: int


def correlate(session: BankSession, rows: np.ndarray, z: np.ndarray,
              frac_bits: int = cm.FRAC_BITS) -> CrossCorrelation:
    """Pearson correlations of the bank's z-scores ``z`` (rows x columns, the session's
    ``rows`` in order, standardised by :func:`math.standardized`) with the holder's
    columns.

    **Privacy**: the holder receives one packed ciphertext per row and group of bank
    columns; the bank learns the correlations and the holder's own correlation matrix
    (see :mod:`.holder`)."""
    pk, sk = session.key
    n, p = z.shape
    frac = cm.check_frac_bits(frac_bits)
    width = cm.slot_bits(n, frac)
    slots = max(1, min(p, pk.plaintext_bits // width))
    groups = max(1, -(-p // slots))
    zi = cm.to_fixed(z, frac)
    padded = np.zeros((n, groups * slots), dtype=np.int64)
    padded[:, :p] = zi
    plains = [cm.pack_row(padded[r, g * slots:(g + 1) * slots], width)
              for r in range(n) for g in range(groups)]

    def requests() -> Iterator:
        yield m.CorrelationStart(session_id=session.id, rows=rows_to_bytes(rows),
                                 frac_bits=frac, slot_bits=width, slots=slots, groups=groups,
                                 key_fingerprint=pk.fingerprint)
        offset = 0
        for data in sk.encrypt_bytes_iter(plains, chunk=CHUNK, workers=session.workers):
            yield m.CorrelationChunk(offset=offset, ciphertexts=data)
            offset += len(data) // pk.ciphertext_bytes

    with session.watch("bank_encrypt_and_wait"):
        r = session.stream(requests(), m.CorrelationResult)
    q = len(r.feature_names)
    if r.count != n:
        raise ProtocolError(f"the holder correlated {r.count} rows, not {n}")
    sums = pk.from_bytes_batch(r.sums, count=q * groups, what="correlation sums")
    plain = sk.decrypt(sums, workers=session.workers) if q else []
    offset = cm.bias(n, frac)
    cross = np.zeros((p, q))
    scale = float(n) * 2.0 ** (2 * frac)
    for g in range(groups):
        for j in range(q):
            vals = cm.unpack_sums(plain[g * q + j], width, slots, offset)
            for k, v in enumerate(vals):
                if g * slots + k < p:
                    cross[g * slots + k, j] = v / scale
    holder = np.frombuffer(r.holder_corr, dtype="<f8")
    if holder.size != q * q:
        raise ProtocolError("the holder's correlation matrix has the wrong size")
    return CrossCorrelation(list(r.feature_names), cross, holder.reshape(q, q).copy(), n)
