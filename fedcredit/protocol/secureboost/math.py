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

Which candidates the holder discloses at a node (the floor and the minimum bin mass) is
decided here too, so that the plaintext reference of the tests mirrors one written rule.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...crypto import CipherVector, PublicKey, SlotLayout, candidate_sums
from ...errors import InvalidInput, PackingOverflow
from ..leafpaths import holder_paths
from ..timing import Stopwatch
from ..wire import rows_to_bytes
from . import messages as m

#: the finest gradients a holder accepts: a float64 sigmoid carries nothing below 2**-32 that
#: a split could use, so finer "gradients" would be room for other content
MAX_FRAC_BITS = 32


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

    @classmethod
    def honest_bound(cls, n_rows: int, frac_bits: int, plaintext_bits: int) -> int:
        """The widest slot honest gradients need: |g| = |p - y| <= 1 and h = p(1-p) <= 1/4 at
        ``frac_bits``, summed over ``n_rows``. A wider slot buys a bank only room to hide
        something else (identifiers in low bits), so the holder refuses it."""
        f = int(frac_bits)
        pair = SlotLayout.for_sums([max(1, 2 ** f // 4), 2 ** f], max(1, int(n_rows)),
                                   plaintext_bits)
        return pair.widths[0] + pair.widths[1]

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


def scored_trees(asked, trees) -> list[int]:
    """The trees a scoring request names (none: every tree of the model), each once."""
    out = list(asked) or sorted(trees)
    if len(set(out)) != len(out):
        raise InvalidInput("a scoring request names a tree twice")
    unknown = [t for t in out if t not in trees]
    if unknown:
        raise InvalidInput(f"the model has no tree {unknown[0]}")
    return out


def bin_counts(bins: np.ndarray, sizes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Flat per-(feature, bin) row counts (a column at a time: no int64 copy of the bins)."""
    out = np.zeros(int(sizes.sum()), dtype=np.int64)
    for f in range(bins.shape[1]):
        off, size = int(offsets[f]), int(sizes[f])
        out[off:off + size] = np.bincount(bins[:, f], minlength=size)[:size]
    return out


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
    the holder's splits, for one tree (:func:`holder_paths` compiles many at once)."""
    return holder_paths({0: nodes}, splits, [0], [what]).packed(bins, missing)[0]


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


# -- what the bank may learn: the floor and the minimum bin mass -------------------------
# The bank knows every row's (g, h) and decrypts exact candidate sums: two candidates of one
# feature differ by the rows between their thresholds, the two missing directions by the
# missing rows; over a few trees a subset-sum search names them (docs/PRIVACY.md, leak 1).
# Besides the floor (``disclosable``), the **minimum bin mass** (``policy.min_bin_samples``,
# 0 turns it off): per node and feature every set the bank can isolate from what it knows
# (sent, or parent - sibling) holds ``min_bin_samples`` rows (between consecutive known
# thresholds, below the first, above the last); both missing directions only where the node
# has that many missing rows, else "missing right"; across features two known left sets
# differ in 0 or ``min_bin_samples`` rows or more (correlated features, e.g. 3- and 6-month
# means, give nearly nested sets); a candidate known at the parent is known at both children
# or neither. Kept greedily in canonical order, so the tests' plaintext reference mirrors it;
# dropping a candidate only merges sets, so any subset of what is kept is safe too.

@dataclass
class NodeView:
    """What the holder knows of one node when deciding what to disclose."""

    n: int  # rows
    counts: np.ndarray  # flat per-(feature, bin) row counts, missing bin last
    eligible: np.ndarray  # candidates the floor rule allows
    bins: np.ndarray | None = None  # the rows' bins (for the cross-feature check)


def bin_mass_keep(cands: SplitCandidates, sizes: np.ndarray, offsets: np.ndarray,
                  min_bin: int, nodes: list[NodeView], shared: np.ndarray) -> list[np.ndarray]:
    """Per node, the eligible candidates the minimum bin mass keeps.

    ``nodes`` are one node, or two siblings; ``shared`` marks candidates the bank already knows
    at their parent: such a candidate is kept at every node listed or at none.
    """
    keep = [np.zeros(len(cands), dtype=bool) for _ in nodes]
    for f in range(len(sizes)):
        idx = np.flatnonzero(cands.feature == f)
        if len(idx) == 0:
            continue
        off, size = int(offsets[f]), int(sizes[f])
        cum, n_total, two, top = [], [], [], []
        for nd in nodes:
            sec = nd.counts[off:off + size]
            cum.append(np.cumsum(sec[:-1]))
            n_total.append(int(sec[:-1].sum()))
            two.append(int(sec[-1]) >= min_bin)
            # the largest set the bank knows: the node, or its non-missing rows when the
            # missing rows can be isolated
            top.append(n_total[-1] if two[-1] else nd.n)
        last = [0] * len(nodes)
        at = 0
        while at < len(idx):  # one threshold (its one or two variants) at a time
            t = int(cands.bin[idx[at]])
            group = [int(idx[at])]
            at += 1
            while at < len(idx) and int(cands.bin[idx[at]]) == t:
                group.append(int(idx[at]))
                at += 1
            ok = []
            for x in range(len(nodes)):
                lo = int(cum[x][t])
                gap_ok = lo - last[x] >= min_bin and (
                    top[x] - lo >= min_bin or (two[x] and top[x] == lo))
                ok.append([gap_ok and bool(nodes[x].eligible[c])
                           and (two[x] or not cands.missing_left[c]) for c in group])
            for j, c in enumerate(group):
                if shared[c]:
                    both = all(o[j] for o in ok)
                    for x in range(len(nodes)):
                        ok[x][j] = both
            for x in range(len(nodes)):
                for j, c in enumerate(group):
                    keep[x][c] = ok[x][j]
                if any(ok[x]):
                    last[x] = int(cum[x][t])
    return keep


def _left_indicators(cands: SplitCandidates, sizes: np.ndarray, idx: np.ndarray, f: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(positions in ``idx`` of feature f's candidates, their left-bin indicators)."""
    sel = np.flatnonzero(cands.feature[idx] == f)
    s = int(sizes[f])
    u = np.zeros((len(sel), s))
    u[:, :s - 1] = np.arange(s - 1)[None, :] <= cands.bin[idx[sel]][:, None]
    u[:, s - 1] = cands.missing_left[idx[sel]]
    return sel, u


def cross_feature_gaps(bins: np.ndarray, cands: SplitCandidates, sizes: np.ndarray,
                       idx: np.ndarray) -> np.ndarray:
    """|L_i xor L_j| over the rows of ``bins`` for candidates ``idx`` of different features
    (-1 for pairs of one feature), from per-feature-pair contingency tables."""
    feats = np.unique(cands.feature[idx])
    ind = {int(f): _left_indicators(cands, sizes, idx, int(f)) for f in feats}
    size = np.zeros(len(idx))
    out = np.full((len(idx), len(idx)), -1.0)
    cols = np.ascontiguousarray(bins.T)  # one pass, not one per pair; bins stay one byte
    for f, (sel, u) in ind.items():
        size[sel] = u @ np.bincount(cols[f], minlength=int(sizes[f]))
    for a_i, a in enumerate(feats.tolist()):
        scaled = cols[a].astype(np.int64) * int(sizes.max())
        for b in feats.tolist()[a_i + 1:]:
            sa, ua = ind[a]
            sb, ub = ind[b]
            table = np.bincount(scaled + cols[b], minlength=int(sizes[a] * sizes.max())
                                ).reshape(-1, int(sizes.max()))[:, :sizes[b]]
            gap = size[sa][:, None] + size[sb][None, :] - 2 * (ua @ table @ ub.T)
            out[np.ix_(sa, sb)] = gap
            out[np.ix_(sb, sa)] = gap.T
    return out


def cross_feature_keep(cands: SplitCandidates, sizes: np.ndarray, min_bin: int,
                       nodes: list[NodeView], kept: list[np.ndarray], shared: np.ndarray
                       ) -> list[np.ndarray]:
    """Drop, in canonical order, each kept candidate whose left set differs from an earlier
    kept one of another feature in fewer than ``min_bin`` rows (but not none); a shared
    candidate stays at every node or at none."""
    union = np.flatnonzero(np.logical_or.reduce(kept))
    small = []
    for nd in nodes:
        if nd.bins is None:
            raise ValueError("the cross-feature check needs the node's bins")
        gap = cross_feature_gaps(nd.bins, cands, sizes, union)
        small.append((gap > 0) & (gap < min_bin))
    acc = [np.zeros(len(union), dtype=bool) for _ in nodes]
    for pos, c in enumerate(union.tolist()):
        ok = [bool(kept[x][c]) and not (small[x][pos] & acc[x]).any() for x in range(len(nodes))]
        if shared[c]:
            ok = [all(ok)] * len(nodes)
        for x in range(len(nodes)):
            acc[x][pos] = ok[x]
    out = []
    for x in range(len(nodes)):
        k = np.zeros(len(cands), dtype=bool)
        k[union[acc[x]]] = True
        out.append(k)
    return out


@dataclass
class LayerNode:
    node_id: int
    parent_id: int
    sibling_id: int  # >= 0 for a node the bank derives as parent - sibling
    rows: np.ndarray
    counts: np.ndarray  # flat bin counts of the node's rows
    left: np.ndarray  # per candidate, rows going left
    bins: np.ndarray  # the node's rows' bins


def disclose_layer(nodes: list[LayerNode], parent_rows: dict[int, np.ndarray],
                   parent_counts: dict[int, np.ndarray], parent_known: dict[int, np.ndarray],
                   cands: SplitCandidates, sizes: np.ndarray, offsets: np.ndarray,
                   min_side: int, floor: int, min_bin: int, all_bins: np.ndarray
                   ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """(known, derive) per node: every candidate whose (G, H) the bank will know at the node,
    and the subset it derives itself as parent - sibling (the rest is sent encrypted)."""
    n_c = len(cands)
    eligible: dict[int, np.ndarray] = {}
    sib_view: dict[int, NodeView] = {}
    for nd in nodes:  # the floor rule, within the node and within its sibling
        n_sib = left_sib = None
        if nd.parent_id >= 0:
            prow = parent_rows[nd.parent_id]
            n_sib = len(prow) - len(nd.rows)
            pl = candidate_left_sums(parent_counts[nd.parent_id], cands, sizes, offsets)
            left_sib = pl - nd.left
            sib_view[nd.node_id] = NodeView(n_sib, parent_counts[nd.parent_id] - nd.counts,
                                            (left_sib >= floor) & (n_sib - left_sib >= floor))
        eligible[nd.node_id] = disclosable(len(nd.rows), nd.left, min_side, floor, n_sib,
                                           left_sib)
    known: dict[int, np.ndarray] = {}
    if min_bin <= 0:  # the rule off: what the floor allows (derivable where known on all three)
        known = eligible
    else:
        by_parent: dict[int, list[LayerNode]] = {}
        for nd in nodes:
            by_parent.setdefault(nd.parent_id if nd.parent_id >= 0 else -1 - nd.node_id,
                                 []).append(nd)
        for group in by_parent.values():
            par = group[0].parent_id
            shared = parent_known.get(par, np.zeros(n_c, dtype=bool)) if par >= 0 else \
                np.zeros(n_c, dtype=bool)
            views = [NodeView(len(nd.rows), nd.counts, eligible[nd.node_id], nd.bins)
                     for nd in group]
            if par >= 0 and len(group) == 1:  # the sibling is not asked: the bank still
                sv = sib_view[group[0].node_id]  # derives parent - node where both known
                sib_rows = np.setdiff1d(parent_rows[par], group[0].rows, assume_unique=True)
                views.append(NodeView(sv.n, sv.counts, sv.eligible & shared,
                                      all_bins[sib_rows]))
            kept = bin_mass_keep(cands, sizes, offsets, min_bin, views, shared)
            kept = cross_feature_keep(cands, sizes, min_bin, views, kept, shared)
            for nd, k in zip(group, kept):
                known[nd.node_id] = k
    derive: dict[int, np.ndarray] = {}
    for nd in nodes:
        d = np.zeros(n_c, dtype=bool)
        if nd.sibling_id >= 0 and nd.sibling_id in known:
            d = known[nd.node_id] & known[nd.sibling_id] & parent_known.get(nd.parent_id, d)
        derive[nd.node_id] = d
    return known, derive



def candidates_message(pk: PublicKey, cands: SplitCandidates, sizes: np.ndarray,
                       offsets: np.ndarray, position_of: np.ndarray, slot_bits: int, nid: int,
                       hist: CipherVector, send: np.ndarray, derive: np.ndarray,
                       watch: Stopwatch, direction=None) -> m.NodeCandidates:
    """The packed, re-randomised cumulative sums of ``send`` in the tree's secret order, the
    positions of ``derive``, and of known thresholds of monotone features (``direction``)."""
    d = np.zeros(len(cands), np.int64) if direction is None else direction
    flags = {k: rows_to_bytes(np.sort(position_of[(send | derive) & (d * s > 0)]))
             for k, s in (("increasing", 1), ("decreasing", -1))}
    derived = rows_to_bytes(np.sort(position_of[np.flatnonzero(derive)]))
    positions = np.sort(position_of[np.flatnonzero(send)])
    chosen = np.argsort(position_of)[positions]  # candidates in position order
    slots = pk.plaintext_bits // slot_bits
    if len(chosen) == 0:
        return m.NodeCandidates(node_id=nid, slots=slots, count=0, derived=derived, **flags)
    with watch("holder_cumulative"):
        sums = candidate_sums(pk, hist, sizes, offsets, cands.feature[chosen],
                              cands.bin[chosen], cands.missing_left[chosen])
    with watch("holder_pack_and_rerandomize"):
        packed = pk.pack_flat(sums, slot_bits, slots)
    return m.NodeCandidates(node_id=nid, positions=rows_to_bytes(positions),
                            packed=pk.to_bytes_batch(packed), slots=slots,
                            count=len(chosen), derived=derived, **flags)
