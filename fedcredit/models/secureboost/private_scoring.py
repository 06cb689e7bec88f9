"""Private scoring of a fitted :class:`SecureBoostClassifier` (Fed-EINI style): the bank
learns each enterprise's score, not the holder's decisions.

Plain scoring asks the holder, per tree, which leaves its splits allow; that mask shows the
holder's decision at every holder node an enterprise could reach, both subtrees of every
bank node included. Here the bank encrypts every leaf value per enterprise, with 0 at the
leaves its own splits rule out; the holder multiplies the ciphertexts of the leaves its
splits allow and returns one ciphertext per enterprise; the bank decrypts the raw score.
See :mod:`fedcredit.protocol.private_scoring` for what each party learns.

>>> raw = private_decision_function(model, X_new, holder=channel)   # doctest: +SKIP
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

from ...crypto import PrivateKey, generate_keypair
from ...protocol.private_scoring import bank as steps
from ...protocol.private_scoring.math import FRAC_BITS, MIN_PRIVATE_PATH_BITS, path_bits
from ...protocol.wire import join_flags
from ..base import check_xy
from .tree import Tree

#: leaf ciphertexts per request: bounds the request (and the holder's memory) at ~16 MiB
#: of 2048-bit Paillier ciphertexts
MAX_REQUEST_CIPHERTEXTS = 32_768

_keys: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_keys_lock = threading.Lock()


def scoring_key(model) -> PrivateKey:
    """The estimator's private-scoring key: made at its first private score, kept in this
    process only (never pickled or saved), with the estimator's key parameters."""
    with _keys_lock:
        sk = _keys.get(model)
        if sk is None:
            _, sk = generate_keypair(model.he_scheme, bits=model.key_bits,
                                     insecure=model.insecure_key)
            _keys[model] = sk
        return sk


def _topology(tree: Tree) -> list[tuple]:
    return [(n.node_id, n.left, n.right, n.owner, n.record_id) for n in tree.nodes]


def _federated(model) -> list[tuple[int, Tree]]:
    """(holder tree id, tree) of the trees the holder knows; a negative id marks a
    bank-only tree, which the bank scores alone."""
    return [(int(i), t) for i, t in zip(model.tree_ids_, model.trees_) if int(i) >= 0]


def private_path_bits(model) -> float:
    """Bits of holder decisions a private score leaves ambiguous for the worst enterprise
    (the holder refuses private scoring below ``min_private_path_bits``, default 32)."""
    return path_bits([_topology(t) for _, t in _federated(model)])


def private_decision_function(model, X, holder, *, id_column: str | None = None,
                              frac_bits: int = FRAC_BITS,
                              min_bits: float | None = MIN_PRIVATE_PATH_BITS,
                              return_coverage: bool = False):
    """Log-odds of default per row, scored privately; equal to
    ``model.decision_function`` within ``len(model.trees_) * 2**-(frac_bits + 1)``.

    Parameters
    ----------
    model : SecureBoostClassifier
        Fitted.
    X, holder, id_column
        As for ``decision_function``.
    frac_bits : int
        Fixed-point fraction bits of the encrypted leaf values.
    min_bits : float or None
        Refuse locally, before encrypting anything, a model below this complexity (the
        holder checks its own floor anyway); None skips the local check.

    return_coverage : bool
        Also return the holder's coverage per row (None for a model of bank-only trees).

    Returns
    -------
    numpy.ndarray (and the coverage, with ``return_coverage``)
    """
    from ...errors import PolicyViolation

    model._check_fitted()
    if min_bits is not None:
        bits = private_path_bits(model)
        if bits < float(min_bits):
            raise PolicyViolation(f"the model leaves {bits:.1f} bits of the holder's decisions "
                                  f"hidden in a score, below {float(min_bits):.0f}: too small "
                                  "to score privately")
    X, _ = check_xy(X, None, id_column)
    bins = model.mapper_.transform(X)
    ids = X.index.tolist()
    n_bins = model.mapper_.n_bins
    raw = np.full(len(X), float(model.base_score_))
    for tid, tree in zip(model.tree_ids_, model.trees_):
        if int(tid) < 0:  # bank-only: its splits alone single out the leaf
            raw += tree.leaf_values()[np.argmax(tree.bank_reachable(bins, n_bins), axis=1)]
    fed = _federated(model)
    if not fed:
        return (raw, None) if return_coverage else raw
    tree_ids = [i for i, _ in fed]
    values = [t.leaf_values() for _, t in fed]
    step = max(1, MAX_REQUEST_CIPHERTEXTS // sum(len(v) for v in values))
    sk = scoring_key(model)
    workers = model.n_jobs
    covered: list = []
    for lo in range(0, len(ids), step):
        part = slice(lo, lo + step)
        reach = [t.bank_reachable(bins[part], n_bins) for _, t in fed]
        sums, cov = model._score_with(holder, lambda s, p=part, r=reach:
                                      steps.private_scores_covered(s, sk, ids[p], tree_ids,
                                                                   values, r, frac_bits, workers))
        raw[part] += sums
        covered.append(cov)
    return (raw, join_flags(covered, len(ids))) if return_coverage else raw


def private_predict_proba(model, X, holder, **kw) -> np.ndarray:
    """Columns (P(no default), P(default)), as ``predict_proba``, scored privately."""
    from ..base import sigmoid

    p = sigmoid(private_decision_function(model, X, holder, **kw))
    return np.column_stack([1 - p, p])
