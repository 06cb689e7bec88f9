"""The arithmetic both sides of SecureBoost share: the gradient plaintext layout, the one
split-candidate rule and the one "row goes left" rule.

Per row the bank encrypts one plaintext ``P = g * 2**w_h + h`` (fixed-point g and h; h >= 0
in the low slot, the sign carried by g in the high slot). A sum of such plaintexts over any
set of rows is ``G * 2**w_h + H`` and decodes exactly while ``|G| < 2**(w_g-1)`` and
``H < 2**(w_h-1)``; the slot widths come from the number of rows and the largest |g|, h, so
no sum can overflow. The holder packs ``k = plaintext_bits // (w_g + w_h)`` such candidate
sums into one ciphertext by Horner's rule, which divides the bank's decryptions by k.

Split candidates are the same for both parties' features (and for the plaintext reference
of the tests): threshold ``t`` sends bins ``<= t`` left; a feature with missing values gets
each threshold twice, missing right (canonical) and missing left, plus "missing alone on
the left". Bins are per feature, the missing bin last (index ``n_bins[f]``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...crypto import SlotLayout
from ...errors import InvalidInput, PackingOverflow


@dataclass(frozen=True)
class GradientLayout:
    w_h: int
    w_g: int

    @property
    def slot_bits(self) -> int:
        return self.w_h + self.w_g

    @classmethod
    def for_rows(cls, g_int: np.ndarray, h_int: np.ndarray, plaintext_bits: int) -> GradientLayout:
        n = max(1, len(g_int))
        if len(h_int) and int(np.min(h_int)) < 0:
            raise InvalidInput("hessians must be non-negative")
        max_g = int(np.max(np.abs(g_int))) if len(g_int) else 0
        max_h = int(np.max(h_int)) if len(h_int) else 0
        pair = SlotLayout.for_sums([max(1, max_h), max(1, max_g)], n, plaintext_bits)
        return cls(w_h=pair.widths[0], w_g=pair.widths[1])

    def pack_rows(self, g_int: np.ndarray, h_int: np.ndarray) -> list[int]:
        return SlotLayout((self.w_h, self.w_g)).pack([h_int, g_int])

    def candidates_per_ciphertext(self, plaintext_bits: int) -> int:
        return SlotLayout.slots_per_plaintext(self.slot_bits, plaintext_bits)

    def unpack_candidates(self, plaintexts: list[int], slots: int, count: int
                          ) -> tuple[np.ndarray, np.ndarray]:
        """Decrypted packed ciphertexts -> (G, H) int64 arrays of ``count`` candidates."""
        if slots < 1 or len(plaintexts) != -(-count // slots):
            raise PackingOverflow(f"{len(plaintexts)} packed values cannot hold {count} "
                                  f"candidates at {slots} per ciphertext")
        outer = SlotLayout.repeat(self.slot_bits, slots).unpack(plaintexts)
        flat = [outer[j][i] for i in range(len(plaintexts)) for j in range(slots)][:count]
        h, g = SlotLayout((self.w_h, self.w_g)).unpack(flat)
        return np.array(g, dtype=np.int64), np.array(h, dtype=np.int64)


@dataclass
class SplitCandidates:
    """Every split candidate of a party's binned features, in canonical order (feature,
    then threshold, missing right before missing left)."""

    feature: np.ndarray
    bin: np.ndarray
    missing_left: np.ndarray

    @classmethod
    def build(cls, n_bins: np.ndarray, has_missing: np.ndarray) -> SplitCandidates:
        f_: list[int] = []
        t_: list[int] = []
        m_: list[bool] = []
        for f, nb in enumerate(np.asarray(n_bins).tolist()):
            last = nb - 1 if has_missing[f] else nb - 2
            for t in range(last + 1):  # missing goes right (canonical) ...
                f_.append(f)
                t_.append(t)
                m_.append(False)
                if has_missing[f] and t <= nb - 2:  # ... or left
                    f_.append(f)
                    t_.append(t)
                    m_.append(True)
        return cls(np.array(f_, dtype=np.int64), np.array(t_, dtype=np.int64),
                   np.array(m_, dtype=bool))

    @classmethod
    def for_bins(cls, bins: np.ndarray, n_bins: np.ndarray) -> SplitCandidates:
        """Candidates of binned rows: missing-value candidates only where values are missing."""
        n_bins = np.asarray(n_bins, dtype=np.int64)
        has_missing = (bins == n_bins[None, :]).any(axis=0) if len(bins) else \
            np.zeros(len(n_bins), dtype=bool)
        return cls.build(n_bins, has_missing)

    def __len__(self) -> int:
        return len(self.feature)


def goes_left(bins: np.ndarray, missing_bin: int, threshold: int, missing_left: bool
              ) -> np.ndarray:
    """Which rows a split sends left: bins ``<= threshold``, missing values as told."""
    b = np.asarray(bins, dtype=np.int64)
    return np.where(b == int(missing_bin), bool(missing_left), b <= int(threshold))


def feature_layout(n_bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sizes, offsets) of a flat per-(feature, bin) histogram, the missing bin last."""
    sizes = np.asarray(n_bins, dtype=np.int64) + 1
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return sizes, offsets


def candidate_left_sums(hist: np.ndarray, cands: SplitCandidates, sizes: np.ndarray,
                        offsets: np.ndarray) -> np.ndarray:
    """Left-side sums of every candidate from a flat plaintext histogram."""
    out = np.zeros(len(cands), dtype=np.int64)
    for f in range(len(sizes)):
        sel = cands.feature == f
        if not sel.any():
            continue
        off, size = int(offsets[f]), int(sizes[f])
        sec = hist[off:off + size]
        cum = np.cumsum(sec[:-1])
        out[sel] = cum[cands.bin[sel]] + np.where(cands.missing_left[sel], sec[-1], 0)
    return out


def bin_counts(bins: np.ndarray, sizes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Flat per-(feature, bin) row counts."""
    n, F = bins.shape
    flat = (bins.astype(np.int64) + offsets[None, :]).ravel()
    return np.bincount(flat, minlength=int(sizes.sum())).astype(np.int64)


#: the largest tree a bank may report (depth 16, the estimators' limit)
MAX_TREE_NODES = 2 ** 17 - 1


def check_layer_parents(parents: list[int], previous: set[int]) -> None:
    """A layer holds the children of the previous layer's nodes, two at most per parent (and
    the holder checks they are disjoint), so a bank cannot make it sum a node many times."""
    if any(parents.count(p) > 2 for p in set(parents)) or any(
            p >= 0 and p not in previous for p in parents):
        raise InvalidInput("a layer's nodes must be children of the previous layer's nodes")


def check_topology(nodes: list[tuple], n_rows: int) -> None:
    """A tree as the bank reports it: (node, left, right, owner, record), root first; a tree
    grown on ``n_rows`` rows has at most ``2 * n_rows - 1`` nodes."""
    if len(nodes) > min(2 * n_rows - 1, MAX_TREE_NODES):
        raise InvalidInput(f"a tree of {len(nodes)} nodes cannot come from {n_rows} rows")
    ids = {n[0] for n in nodes}
    if not nodes or nodes[0][0] != 0:
        raise InvalidInput("a tree must list its root (node 0) first")
    for nid, left, right, owner, _ in nodes:
        if owner == "leaf":
            continue
        if left not in ids or right not in ids:
            raise InvalidInput(f"tree node {nid} points at a missing child")


def reachable_leaves(nodes: list[tuple], splits: dict, bins: np.ndarray, missing: np.ndarray,
                     what: str = "tree") -> tuple[int, bytes]:
    """(number of leaves, packed bits rows x leaves) of the leaves each row can reach given
    one party's splits (``splits``: record -> (feature, bin, missing_left)); the other
    party's splits let a row go both ways."""
    n = len(bins)
    reach = {0: np.ones(n, dtype=bool)}
    leaves = []
    for nid, left, right, owner, record in nodes:  # parents are listed before children
        r = reach.get(nid)
        if r is None:
            raise InvalidInput(f"{what}: node {nid} is listed before its parent")
        if owner == "leaf":
            leaves.append(r)
        elif owner == "holder":
            if record not in splits:
                raise InvalidInput(f"{what}: node {nid} names an unknown split record")
            f, t, ml = splits[record]
            go_left = goes_left(bins[:, f], missing[f], t, ml)
            reach[left], reach[right] = r & go_left, r & ~go_left
        else:
            reach[left], reach[right] = r, r
    mat = np.stack(leaves, axis=1) if leaves else np.zeros((n, 0), dtype=bool)
    return len(leaves), np.packbits(mat, axis=1).tobytes()


def disclosable(n: int, left: np.ndarray, min_side: int, floor: int, n_sibling: int | None,
                left_sibling: np.ndarray | None) -> np.ndarray:
    """Candidates whose (G, H) the bank may learn at a node of ``n`` rows.

    Both sides must hold ``min_side`` rows (min_child_samples, at least the policy floor).
    The bank can subtract a node's sums from its parent's, so the sibling's sides must also
    hold ``floor``: no disclosed or derivable aggregate describes fewer enterprises.
    """
    ok = (left >= min_side) & (n - left >= min_side)
    if left_sibling is not None and n_sibling is not None:
        ok &= (left_sibling >= floor) & (n_sibling - left_sibling >= floor)
    return ok
