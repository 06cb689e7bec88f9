"""The arithmetic both sides of private scoring share: the complexity check, the fixed-point
leaf encoding and the holder's sums of reachable leaves.

**Why a complexity check.** The bank decrypts one number per enterprise, the sum over trees
of the leaf values both parties' splits select. It knows every leaf value and which leaves
its own splits allow, so for a tree it can tell apart only the leaves left open by the
holder's splits under its own path. If every tree leaves few such leaves, the bank can try
every combination and read the holder's decisions on the path back from the score. The
holder refuses a model whose *worst-case* number of combinations, over every path the
bank's splits can take, is below ``2**min_bits``: per tree, the fewest leaves any bank path
leaves open (a bank node keeps the smaller of its subtrees' counts, a holder node adds
both), multiplied over trees. FATE's EINI check counts every leaf below a host node and
asks for 10**9 (about 2**30) combinations; ours counts the worst enterprise rather than the
tree's total, and asks for :data:`MIN_PRIVATE_PATH_BITS` bits.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ...crypto import CipherVector, PublicKey
from ...errors import InvalidInput, PolicyViolation

#: the fewest bits of holder decisions a private score must leave ambiguous for every
#: enterprise (2**32 combinations; FATE's EINI threshold is 10**9, about 2**30, and counts
#: more generously); the bank's default, the holder's is ``policy.min_private_path_bits``
MIN_PRIVATE_PATH_BITS = 32.0
#: fixed-point fraction bits of the encrypted leaf values: a score differs from the plain
#: one by at most n_trees * 2**-(FRAC_BITS + 1) in log-odds, and the bank's decrypted sum has
#: no more precision than this to decompose (distinct sums collide below it)
FRAC_BITS = 24

Topology = Sequence[tuple]  # (node_id, left, right, owner, record_id), parents first


def open_leaves(nodes: Topology) -> int:
    """The fewest leaves of one tree that any path of the bank's splits leaves open.

    A leaf counts 1; a bank node, the smaller of its children (the bank knows which way
    an enterprise goes); a holder node, the sum (the bank does not).
    """
    by_id = {int(n[0]): n for n in nodes}
    if not by_id:
        raise InvalidInput("a tree without nodes")
    memo: dict[int, int] = {}
    for nid, left, right, owner, _ in reversed(list(nodes)):  # children before parents
        if owner == "leaf":
            memo[int(nid)] = 1
            continue
        if int(left) not in memo or int(right) not in memo:
            raise InvalidInput(f"node {nid}: a child is listed before its parent")
        a, b = memo[int(left)], memo[int(right)]
        memo[int(nid)] = a + b if owner == "holder" else min(a, b)
    return memo[int(nodes[0][0])]


def path_bits(trees: Sequence[Topology]) -> float:
    """log2 of the fewest leaf combinations a score is consistent with, for any enterprise."""
    return float(sum(math.log2(open_leaves(t)) for t in trees))


def check_complexity(trees: Sequence[Topology], min_bits: float) -> float:
    """The model's :func:`path_bits`, or :class:`PolicyViolation` when below ``min_bits``."""
    bits = path_bits(trees)
    if bits < float(min_bits):
        raise PolicyViolation(
            f"the model leaves {bits:.1f} bits of the holder's decisions hidden in a score, "
            f"below the {float(min_bits):.0f} bits private scoring needs (more trees or more "
            "holder splits; or score with leaf masks)")
    return bits


def leaf_plaintexts(values: Sequence[np.ndarray], bank_reach: Sequence[np.ndarray],
                    frac_bits: int = FRAC_BITS) -> list[int]:
    """ids x leaves, id-major: a leaf's fixed-point value where the bank's splits allow
    it for that id, else 0 (the bank encrypts every entry afresh)."""
    scale = float(2 ** int(frac_bits))
    cols = []
    for v, reach in zip(values, bank_reach):
        q = np.rint(np.asarray(v, dtype=np.float64) * scale)
        if q.size and np.max(np.abs(q)) >= 2.0 ** 62:
            raise InvalidInput("leaf values exceed the fixed-point range")
        cols.append(np.where(reach, q.astype(np.int64)[None, :], 0))
    flat = np.concatenate(cols, axis=1) if cols else np.zeros((0, 0), dtype=np.int64)
    return [int(x) for x in flat.ravel()]


def sum_reachable(pk: PublicKey, leaves: CipherVector, reach: np.ndarray) -> CipherVector:
    """Per id (row of ``reach``), Enc(sum of its leaves' values where ``reach`` is set).

    ``leaves`` is id-major, ``reach.shape[1]`` ciphertexts per id. The result is derived
    by homomorphic products and must be re-randomised before it leaves.
    """
    n, width = reach.shape
    if len(leaves) != n * width:
        raise InvalidInput(f"{len(leaves)} leaf ciphertexts for {n} ids x {width} leaves")
    N = pk.cipher_modulus
    vals = leaves.values
    out = []
    for i in range(n):
        picked = np.flatnonzero(reach[i])
        if len(picked) == 0:
            raise InvalidInput(f"id {i}: no leaf is reachable")
        base = i * width
        acc = vals[base + int(picked[0])]
        for j in picked[1:].tolist():
            acc = acc * vals[base + j] % N
        out.append(acc)
    return CipherVector(out, leaves.fingerprint)
