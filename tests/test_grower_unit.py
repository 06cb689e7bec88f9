"""Unit tests of the tree grower on hand-made, pre-binned arrays (scikit-learn style).

Every expectation is computed by hand from XGBoost's gain
``1/2 * (GL^2/(HL+lambda) + GR^2/(HR+lambda) - G^2/(H+lambda)) - gamma`` and leaf value
``-G/(H+lambda) * learning_rate``. ``scale=1`` makes the fixed-point sums the gradients
themselves, so the integer and float arrays coincide.

The holder is a small *plaintext* ``HolderSource`` that computes real candidate sums over its
own binned array with the protocol's ``SplitCandidates`` and ``candidate_left_sums`` (no
encryption, no channel): what a holder answers, minus the cryptography.
"""
from __future__ import annotations

import numpy as np
import pytest

from fedcredit.models.secureboost.grower import HolderSplit, TreeGrower
from fedcredit.models.secureboost.splitting import SplitParams
from fedcredit.protocol.secureboost.bank import NodeStats
from fedcredit.protocol.secureboost.math import (
    SplitCandidates,
    bin_counts,
    candidate_left_sums,
    check_topology,
    feature_layout,
    goes_left,
    reachable_leaves,
)
from fedcredit.protocol.wire import rows_from_bytes


def hand_gain(GL, HL, G, H, lam=1.0, gamma=0.0):
    GR, HR = G - GL, H - HL
    return 0.5 * (GL ** 2 / (HL + lam) + GR ** 2 / (HR + lam) - G ** 2 / (H + lam)) - gamma


def params(**kw) -> SplitParams:
    base = dict(reg_lambda=1.0, gamma=0.0, min_child_samples=1, min_child_weight=0.0, scale=1.0)
    base.update(kw)
    return SplitParams(**base)


def grow(bins, n_bins, g, p, max_depth=1, holder=None, lr=1.0, rows=None):
    g = np.asarray(g, dtype=np.float64)
    h = np.ones_like(g)
    grower = TreeGrower(np.asarray(bins, dtype=np.uint8), np.asarray(n_bins), p, max_depth,
                        holder)
    rows = np.arange(len(g)) if rows is None else rows
    return grower.grow(0, rows, g, h, g.astype(np.int64), h.astype(np.int64), lr)


# 6 rows, 2 bank features: f0 has 3 bins (no missing values), f1 has 2
X_SIMPLE = [[0, 1], [0, 0], [1, 1], [2, 0], [2, 1], [1, 0]]
G_SIMPLE = [-3, -3, -1, 2, 2, 3]


def test_exact_root_split_children_and_leaf_values():
    tree, leaf_rows = grow(X_SIMPLE, [3, 2], G_SIMPLE, params(), lr=0.5)
    root, left, right = tree.nodes
    # candidates: f0 <= 0 {0,1}: GL=-6, HL=2 -> 9.6; f0 <= 1 {0,1,2,5}: GL=-4, HL=4 -> 4.27;
    # f1 <= 0 {1,3,5}: GL=2, HL=3 -> 1.0.  G=0, H=6.
    assert hand_gain(-6, 2, 0, 6) == pytest.approx(9.6)
    assert (root.owner, root.feature, root.bin, root.missing_left) == ("bank", 0, 0, False)
    assert root.gain == pytest.approx(9.6)
    assert (root.left, root.right) == (1, 2) and root.count == 6
    assert leaf_rows[1].tolist() == [0, 1] and leaf_rows[2].tolist() == [2, 3, 4, 5]
    assert left.owner == right.owner == "leaf" and (left.count, right.count) == (2, 4)
    assert left.depth == right.depth == 1
    # leaves: -G/(H+lambda) * learning rate
    assert left.value == pytest.approx(6 / (2 + 1) * 0.5)   # G = -6: 1.0
    assert right.value == pytest.approx(-6 / (4 + 1) * 0.5)  # G = 6: -0.6
    # the bank's view of its own tree routes every row to the leaf it was grown into
    reach = tree.bank_reachable(np.asarray(X_SIMPLE, dtype=np.uint8), np.array([3, 2]))
    assert reach.tolist() == [[True, False]] * 2 + [[False, True]] * 4


def test_only_the_given_rows_grow_the_tree():
    rows = np.array([0, 2, 3, 5])  # a subsample: g = -3, -1, 2, 3
    tree, leaf_rows = grow(X_SIMPLE, [3, 2], G_SIMPLE, params(), rows=rows)
    root = tree.nodes[0]
    # G=1, H=4. f0 <= 0 {0}: GL=-3,HL=1 -> 0.5*(9/2+16/4-1/5)=4.15;
    # f0 <= 1 {0,2,5}: GL=-1,HL=3 -> 1.025; f1 <= 0 {3,5}: GL=5,HL=2 -> 6.73
    assert hand_gain(5, 2, 1, 4) == pytest.approx(0.5 * (25 / 3 + 16 / 3 - 1 / 5))
    assert (root.feature, root.bin, root.missing_left) == (1, 0, False)
    assert root.gain == pytest.approx(hand_gain(5, 2, 1, 4))
    assert root.count == 4
    assert leaf_rows[1].tolist() == [3, 5] and leaf_rows[2].tolist() == [0, 2]


def test_missing_left_candidate_wins():
    # f0: bins 0..2, missing bin 3 (rows 1 and 5); the negative gradients sit in bin 0 and
    # in the missing bin, so "bin <= 0, missing left" is the best partition
    X = [[0, 0], [3, 1], [1, 0], [2, 1], [1, 0], [3, 1]]
    g = [-3, -3, 2, 2, 1, -2]
    tree, leaf_rows = grow(X, [3, 2], g, params())
    root = tree.nodes[0]
    assert (root.owner, root.feature, root.bin, root.missing_left) == ("bank", 0, 0, True)
    # left {0,1,5}: GL=-8, HL=3; G=-3, H=6
    assert root.gain == pytest.approx(hand_gain(-8, 3, -3, 6))
    assert root.gain == pytest.approx(0.5 * (64 / 4 + 25 / 4 - 9 / 7))
    assert leaf_rows[1].tolist() == [0, 1, 5] and leaf_rows[2].tolist() == [2, 3, 4]
    assert tree.nodes[1].value == pytest.approx(8 / 4)
    assert tree.nodes[2].value == pytest.approx(-5 / 4)
    # rows with a missing f0 follow the missing direction when the bank routes them
    reach = tree.bank_reachable(np.array([[3, 0], [0, 0], [1, 0]], dtype=np.uint8),
                                np.array([3, 2]))
    assert reach.tolist() == [[True, False], [True, False], [False, True]]


# row 0 is an outlier: isolating it is the best split unless min_child_samples forbids it
X_OUTLIER = [[0, 0], [1, 0], [1, 1], [2, 1], [2, 1], [2, 1]]
G_OUTLIER = [-10, -1, -1, 2, 3, 3]


def test_min_child_samples_blocks_the_best_split():
    tree1, rows1 = grow(X_OUTLIER, [3, 2], G_OUTLIER, params(min_child_samples=1))
    r1 = tree1.nodes[0]
    assert (r1.feature, r1.bin) == (0, 0) and rows1[1].tolist() == [0]
    assert r1.gain == pytest.approx(hand_gain(-10, 1, -4, 6))  # 26.857

    tree2, rows2 = grow(X_OUTLIER, [3, 2], G_OUTLIER, params(min_child_samples=2))
    r2 = tree2.nodes[0]
    # f0 <= 0 leaves one row on the left: refused. f0 <= 1 (3|3): 24.857 beats
    # f1 <= 0 (2|4): 23.92
    assert hand_gain(-12, 3, -4, 6) > hand_gain(-11, 2, -4, 6)
    assert (r2.feature, r2.bin, r2.missing_left) == (0, 1, False)
    assert r2.gain == pytest.approx(hand_gain(-12, 3, -4, 6))
    assert rows2[1].tolist() == [0, 1, 2] and rows2[2].tolist() == [3, 4, 5]


def test_node_smaller_than_twice_min_child_samples_is_a_leaf():
    tree, leaf_rows = grow(X_OUTLIER, [3, 2], G_OUTLIER, params(min_child_samples=4))
    assert len(tree.nodes) == 1
    root = tree.nodes[0]
    assert root.owner == "leaf" and root.left == -1 and root.count == 6
    assert root.value == pytest.approx(4 / 7)  # -G/(H+1) with G=-4, H=6
    assert leaf_rows[0].tolist() == list(range(6))


def test_gamma_blocks_a_split_whose_gain_is_too_small():
    best = hand_gain(-6, 2, 0, 6)  # 9.6, the best split of X_SIMPLE
    tree, _ = grow(X_SIMPLE, [3, 2], G_SIMPLE, params(gamma=best + 0.1))
    assert len(tree.nodes) == 1 and tree.nodes[0].owner == "leaf"
    assert tree.nodes[0].value == pytest.approx(0.0)  # G = 0
    tree, _ = grow(X_SIMPLE, [3, 2], G_SIMPLE, params(gamma=best - 0.1))
    root = tree.nodes[0]
    assert (root.owner, root.feature, root.bin) == ("bank", 0, 0)
    assert root.gain == pytest.approx(0.1)  # the gain net of gamma


def test_reg_lambda_enters_gain_and_leaves():
    tree, _ = grow(X_SIMPLE, [3, 2], G_SIMPLE, params(reg_lambda=3.0))
    root, left, right = tree.nodes
    assert (root.feature, root.bin) == (0, 0)
    assert root.gain == pytest.approx(hand_gain(-6, 2, 0, 6, lam=3.0))  # 0.5*(36/5+36/7)
    assert left.value == pytest.approx(6 / 5) and right.value == pytest.approx(-6 / 7)


def test_second_level_splits_each_child():
    tree, leaf_rows = grow(X_SIMPLE, [3, 2], G_SIMPLE, params(), max_depth=2)
    ids = [n.node_id for n in tree.nodes]
    assert ids[:3] == [0, 1, 2]
    left, right = tree.nodes[1], tree.nodes[2]
    # left child {0,1} (g = -3, -3): no split has positive gain -> leaf
    assert left.owner == "leaf"
    # right child {2,3,4,5} (g = -1, 2, 2, 3): f0 <= 1 {2,5}: GL=2,HL=2 vs f1 <= 0 {3,5}:
    # GL=5,HL=2; G=6, H=4
    assert hand_gain(5, 2, 6, 4) > hand_gain(2, 2, 6, 4)
    assert (right.owner, right.feature, right.bin) == ("bank", 1, 0)
    assert right.gain == pytest.approx(hand_gain(5, 2, 6, 4))
    assert sorted(map(list, leaf_rows.values())) == [[0, 1], [2, 4], [3, 5]]
    assert all(n.count == len(leaf_rows[n.node_id]) for n in tree.leaves)


# -- a plaintext holder -----------------------------------------------------------------------
class PlainHolder:
    """A ``HolderSource`` over its own binned features, in plaintext.

    Answers a layer as the protocol's holder does, minus encryption: per node, the left-side
    (G, H) sums of its candidates that keep ``min_child_samples`` rows on each side, listed
    by secret position (here: the reverse of candidate order); a split names positions, and
    the holder applies the lowest candidate among them and returns the partition.
    """

    def __init__(self, bins, n_bins, min_child_samples, min_node_samples=1):
        self.bins = np.asarray(bins, dtype=np.uint8)
        self.n_bins = np.asarray(n_bins, dtype=np.int64)
        self.sizes, self.offsets = feature_layout(self.n_bins)
        self.min_side = max(int(min_child_samples), int(min_node_samples), 1)
        self.min_node_samples = int(min_node_samples)
        self.tasks: list = []  # every NodeTask received, for the tests
        self.choices: list = []
        self.splits: dict[int, tuple[int, int, bool]] = {}  # record -> (feature, bin, ml)
        self.trees: dict[int, list[tuple]] = {}

    def start_tree(self, tree, rows, g_int, h_int):
        self.root_rows = rows
        self.cands = SplitCandidates.for_bins(self.bins[rows], self.n_bins)
        self.position_of = np.arange(len(self.cands))[::-1].copy()  # candidate -> position
        self.candidate_at = np.argsort(self.position_of)  # position -> candidate
        self.g = np.zeros(len(self.bins), dtype=np.int64)
        self.h = np.zeros(len(self.bins), dtype=np.int64)
        self.g[rows], self.h[rows] = g_int, h_int
        self.node_rows = {0: np.asarray(rows)}

    def _hist(self, rows, weights):
        F = self.bins.shape[1]
        flat = (self.bins[rows].astype(np.int64) + self.offsets[None, :]).ravel()
        out = np.zeros(int(self.sizes.sum()), dtype=np.int64)
        np.add.at(out, flat, np.repeat(weights[rows], F))
        return out

    def layer(self, tree, depth, tasks):
        out = {}
        for task in tasks:
            self.tasks.append((depth, task))
            if task.sibling_id >= 0:  # the larger sibling: parent minus the summed one
                rows = np.setdiff1d(self.node_rows[task.parent_id],
                                    self.node_rows[task.sibling_id], assume_unique=True)
            elif task.node_id == 0:
                rows = self.node_rows[0]
            else:
                rows = rows_from_bytes(task.rows)
            self.node_rows[task.node_id] = rows
            c, s, o = self.cands, self.sizes, self.offsets
            GL = candidate_left_sums(self._hist(rows, self.g), c, s, o)
            HL = candidate_left_sums(self._hist(rows, self.h), c, s, o)
            CL = candidate_left_sums(bin_counts(self.bins[rows], s, o), c, s, o)
            ok = (CL >= self.min_side) & (len(rows) - CL >= self.min_side)
            pos = np.sort(self.position_of[np.flatnonzero(ok)])
            cand = self.candidate_at[pos]
            out[task.node_id] = NodeStats(pos, GL[cand], HL[cand])
        return out

    def split(self, tree, choices, node_rows):
        res = {}
        for ch in choices:
            self.choices.append(ch)
            positions = rows_from_bytes(ch.positions)
            c = int(self.candidate_at[positions].min())
            f, t, ml = (int(self.cands.feature[c]), int(self.cands.bin[c]),
                        bool(self.cands.missing_left[c]))
            rows = node_rows[ch.node_id]
            assert np.array_equal(rows, self.node_rows[ch.node_id])
            left = goes_left(self.bins[rows, f], self.n_bins[f], t, ml)
            record = len(self.splits) + 1
            self.splits[record] = (f, t, ml)
            self.node_rows[ch.left_id], self.node_rows[ch.right_id] = rows[left], rows[~left]
            res[ch.node_id] = HolderSplit(record, f, left)
        return res

    def finish_tree(self, tree, result):
        topo = [(n.node_id, n.left, n.right, n.owner, n.record_id) for n in result.topology()]
        check_topology(topo, len(self.root_rows))
        self.trees[tree] = topo


# the bank's features are weak: f0 <= 0 {0,1,2} and f1 <= 0 {0,3,4} both have GL=-3
X_BANK_WEAK = [[0, 0], [0, 1], [0, 1], [1, 0], [1, 0], [1, 1]]
G_HOLDER = [-3, 2, -2, 3, -3, 3]
# the holder's f1 has bins 0, 1 and missing (2): bin 0 and missing hold exactly the rows
# with negative gradients; its f0 is uninformative
H_BINS = [[0, 0], [1, 1], [0, 2], [1, 1], [2, 2], [2, 1]]


def test_holder_split_wins_at_the_root():
    holder = PlainHolder(H_BINS, [3, 2], min_child_samples=1)
    p = params()
    tree, leaf_rows = grow(X_BANK_WEAK, [2, 2], G_HOLDER, p, holder=holder)
    root = tree.nodes[0]
    # G=0, H=6. Holder f1 <= 0 with missing left {0,2,4}: GL=-8, HL=3 -> 0.5*(64/4+64/4)=16;
    # the bank's best is f0 <= 0 {0,1,2}: GL=-3 -> 0.5*(9/4+9/4) = 2.25
    assert hand_gain(-3, 3, 0, 6) == pytest.approx(2.25)
    assert hand_gain(-8, 3, 0, 6) == pytest.approx(16.0)
    assert root.owner == "holder" and root.feature == 1 and root.record_id == 1
    assert root.gain == pytest.approx(16.0)
    assert holder.splits == {1: (1, 0, True)}
    assert leaf_rows[1].tolist() == [0, 2, 4] and leaf_rows[2].tolist() == [1, 3, 5]
    assert tree.nodes[1].value == pytest.approx(8 / 4)
    assert tree.nodes[2].value == pytest.approx(-8 / 4)
    # the root's layer: one task, the root itself, with no rows on the wire
    ((depth, task),) = holder.tasks
    assert (depth, task.node_id, task.parent_id, task.rows, task.sibling_id) == (0, 0, -1, b"", -1)
    # the holder's stored topology routes each row to its leaf, as the bank grew it
    n_leaves, packed = reachable_leaves(holder.trees[0], holder.splits, holder.bins,
                                        holder.n_bins)
    mat = np.unpackbits(np.frombuffer(packed, np.uint8).reshape(6, -1), axis=1)[:, :n_leaves]
    assert n_leaves == 2
    assert mat.tolist() == [[1, 0], [0, 1], [1, 0], [0, 1], [1, 0], [0, 1]]
    # the bank alone cannot route through a holder split: both leaves stay reachable
    assert tree.bank_reachable(np.asarray(X_BANK_WEAK, np.uint8), np.array([2, 2])).all()


def test_holder_ties_name_every_tied_position_and_the_lowest_candidate_wins():
    # two identical holder features: their candidates tie exactly
    bins = [[r[1], r[1]] for r in H_BINS]
    holder = PlainHolder(bins, [2, 2], min_child_samples=1)
    tree, _ = grow(X_BANK_WEAK, [2, 2], G_HOLDER, params(), holder=holder)
    (choice,) = holder.choices
    positions = rows_from_bytes(choice.positions)
    tied = holder.candidate_at[positions]
    # f0 <= 0 missing left is candidate 1, the same split of f1 is candidate 4
    assert sorted(tied.tolist()) == [1, 4]
    assert holder.splits == {1: (0, 0, True)} and tree.nodes[0].feature == 0


def test_bank_wins_exact_ties_with_the_holder():
    # the holder holds a copy of the bank's f0: equal gains, and the bank's split is kept
    holder = PlainHolder([[r[0]] for r in X_SIMPLE], [3], min_child_samples=1)
    tree, _ = grow(X_SIMPLE, [3, 2], G_SIMPLE, params(), holder=holder)
    root = tree.nodes[0]
    assert (root.owner, root.feature, root.bin) == ("bank", 0, 0)
    assert holder.choices == [] and holder.splits == {}
    assert holder.trees[0][0] == (0, 1, 2, "bank", -1)


def test_holder_candidates_respect_min_child_samples():
    # with min_child_samples=4 nothing of 6 rows can split; at 3 the holder's missing-left
    # split (3|3) is still valid and wins
    holder = PlainHolder(H_BINS, [3, 2], min_child_samples=3)
    tree, _ = grow(X_BANK_WEAK, [2, 2], G_HOLDER, params(min_child_samples=3), holder=holder)
    assert tree.nodes[0].owner == "holder" and holder.splits == {1: (1, 0, True)}
    holder = PlainHolder(H_BINS, [3, 2], min_child_samples=4)
    tree, _ = grow(X_BANK_WEAK, [2, 2], G_HOLDER, params(min_child_samples=4), holder=holder)
    assert len(tree.nodes) == 1 and holder.tasks == []


def test_second_level_sums_the_smaller_sibling_and_derives_the_larger():
    # 8 rows; the holder's f0 splits the root 3|5, the bank then splits both children
    hb = [[0], [0], [0], [1], [1], [1], [1], [1]]
    xb = [[0], [1], [1], [0], [0], [1], [1], [1]]
    # root: holder f0 <= 0 {0,1,2}: GL=-11 -> 32.99 beats the bank's {0,3,4}: GL=3 -> 0.32
    g = [-9, -1, -1, 6, 6, 1, 1, 1]
    holder = PlainHolder(hb, [2], min_child_samples=1)
    tree, leaf_rows = grow(xb, [2], g, params(), max_depth=2, holder=holder)
    root = tree.nodes[0]
    assert root.owner == "holder" and holder.splits[1] == (0, 0, False)
    assert root.gain == pytest.approx(hand_gain(-11, 3, 4, 8))
    depth1 = [t for d, t in holder.tasks if d == 1]
    assert len(depth1) == 2
    small, large = depth1
    # the smaller child (3 rows) travels with its rows; the larger is parent minus sibling
    assert small.node_id == 1 and rows_from_bytes(small.rows).tolist() == [0, 1, 2]
    assert (large.node_id, large.parent_id, large.sibling_id, large.rows) == (2, 0, 1, b"")
    assert holder.node_rows[2].tolist() == [3, 4, 5, 6, 7]
    # both children split on the bank's feature at depth 1: {0}|{1,2} and {3,4}|{5,6,7}
    assert [n.owner for n in tree.nodes[1:3]] == ["bank", "bank"]
    assert tree.nodes[1].gain == pytest.approx(hand_gain(-9, 1, -11, 3))
    assert tree.nodes[2].gain == pytest.approx(hand_gain(12, 2, 15, 5))
    assert sorted(map(list, leaf_rows.values())) == [[0], [1, 2], [3, 4], [5, 6, 7]]


def test_nodes_below_the_holders_floor_are_not_sent():
    holder = PlainHolder(H_BINS, [3, 2], min_child_samples=1, min_node_samples=7)
    tree, _ = grow(X_BANK_WEAK, [2, 2], G_HOLDER, params(), holder=holder)
    assert holder.tasks == []  # 6 rows < 7: the holder is never asked
    root = tree.nodes[0]
    assert (root.owner, root.feature, root.bin) == ("bank", 0, 0)
    assert root.gain == pytest.approx(hand_gain(-3, 3, 0, 6))


@pytest.mark.parametrize("hide", [True, False])
def test_a_node_whose_sibling_is_below_the_floor_is_not_sent(hide, monkeypatch):
    # the bank's f0 cuts rows {0, 1} off the root (min_child_samples=1); the holder's floor
    # is 3, so sending the 8-row sibling would let it derive {0, 1} as root minus sibling
    xb = [[0, 0], [0, 0], [1, 0], [1, 1], [1, 0], [1, 1], [1, 0], [1, 1], [1, 0], [1, 1]]
    g = [-9, -9, -1, 3, -1, 3, -1, 3, -1, 3]
    hb = [[0]] * 10  # one bin: the holder has no candidate, only the rows it is sent
    monkeypatch.setattr(TreeGrower, "hide_small_siblings", hide)
    holder = PlainHolder(hb, [1], min_child_samples=1, min_node_samples=3)
    tree, leaf_rows = grow(xb, [2, 2], g, params(), max_depth=2, holder=holder)
    root = tree.nodes[0]
    assert (root.owner, root.feature, root.bin) == ("bank", 0, 0)
    depth1 = [t for d, t in holder.tasks if d == 1]
    if hide:
        assert depth1 == []  # neither child: the holder learns nothing below the root
    else:  # what the floor closes: the 8 rows sent, {0, 1} = root - them
        (task,) = depth1
        assert rows_from_bytes(task.rows).tolist() == list(range(2, 10))
    # the tree is the same either way: the bank's f1 splits the 8 rows
    assert tree.nodes[2].owner == "bank" and tree.nodes[2].feature == 1
    assert sorted(map(list, leaf_rows.values())) == [[0, 1], [2, 4, 6, 8], [3, 5, 7, 9]]
