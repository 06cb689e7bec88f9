"""The bank's step of private SecureBoost scoring, over a scoring
:class:`~fedcredit.protocol.session.BankSession`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...crypto import PrivateKey
from ...errors import ProtocolError
from ..session import BankSession
from ..wire import flags_from_bytes
from . import messages as m
from .math import FRAC_BITS, leaf_plaintexts


def private_scores(session: BankSession, sk: PrivateKey, ids: Sequence[str],
                   trees: Sequence[int], leaf_values: Sequence[np.ndarray],
                   bank_reach: Sequence[np.ndarray], frac_bits: int = FRAC_BITS,
                   workers: int | None = 1) -> np.ndarray:
    """Raw scores (sum over ``trees`` of the selected leaf values), one per id
    (:func:`private_scores_covered` also says which ids the holder covered).

    ``leaf_values[t]`` holds tree t's leaf values in node order; ``bank_reach[t]`` is the
    ids x leaves matrix of leaves the bank's own splits allow. Every entry is encrypted
    afresh (values where allowed, 0 elsewhere) under ``sk``'s public key.

    **Privacy**: the holder receives the ids, the tree list, the leaf counts and the
    ciphertexts (fresh, under the bank's key: nothing of the bank's splits or values); the
    bank learns one raw score per id, not the leaves reached nor any holder decision.
    """
    return private_scores_covered(session, sk, ids, trees, leaf_values, bank_reach,
                                  frac_bits, workers)[0]


def private_scores_covered(session: BankSession, sk: PrivateKey, ids: Sequence[str],
                           trees: Sequence[int], leaf_values: Sequence[np.ndarray],
                           bank_reach: Sequence[np.ndarray], frac_bits: int = FRAC_BITS,
                           workers: int | None = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`private_scores` and, per id, whether the holder had its data and a current
    consent (None from a holder too old to say)."""
    ids = [str(i) for i in ids]
    pk = sk.public_key
    plain = leaf_plaintexts(leaf_values, bank_reach, frac_bits)
    with session.watch("bank_encrypt_leaves"):
        data = pk.to_bytes_batch(sk.encrypt(plain, workers=workers))
    req = m.PrivateScoreRequest(session_id=session.id, ids=ids, trees=[int(t) for t in trees],
                                n_leaves=[int(len(v)) for v in leaf_values], scheme=pk.scheme,
                                public_key=pk.to_bytes(), leaf_values=data)
    with session.watch("bank_wait_private_scores"):
        r = session.call(req, m.PrivateScores)
    if r.count != len(ids):
        raise ProtocolError(f"{r.count} private scores for {len(ids)} ids")
    cts = pk.from_bytes_batch(r.scores, count=len(ids), what="private scores")
    with session.watch("bank_decrypt"):
        sums = sk.decrypt(cts, workers=workers)
    raw = np.array([float(v) for v in sums], dtype=np.float64) / float(2 ** int(frac_bits))
    return raw, flags_from_bytes(r.covered, len(ids), "holder coverage")
