"""Split gains, split candidates, the gradient layout and tree topology on tiny inputs."""
from __future__ import annotations

import numpy as np
import pytest

from fedcredit.errors import InvalidInput, PackingOverflow
from fedcredit.models.secureboost.splitting import SplitParams, gains, int_histograms
from fedcredit.protocol.secureboost.math import (
    GradientLayout,
    SplitCandidates,
    bin_counts,
    candidate_left_sums,
    check_topology,
    feature_layout,
    goes_left,
    reachable_leaves,
)


# -- gains ------------------------------------------------------------------------------------
def test_gains_match_the_hand_formula_and_light_children_are_minus_inf():
    p = SplitParams(reg_lambda=1.0, gamma=0.5, min_child_weight=1.0, scale=4.0)
    # fixed point at scale 4: G = -2.0, H = 4.0
    G_tot, H_tot = -8, 16
    GL = np.array([-12, 4, -8], dtype=np.int64)  # -3.0, 1.0, -2.0
    HL = np.array([8, 12, 2], dtype=np.int64)    # 2.0, 3.0, 0.5 (< min_child_weight)
    got = gains(GL, HL, G_tot, H_tot, p)
    parent = 4.0 / 5.0  # G^2/(H+lambda)
    # c0: left (-3, 2), right (1, 2); c1: left (1, 3), right (-3, 1)
    assert got[0] == pytest.approx(0.5 * (9 / 3 + 1 / 3 - parent) - 0.5)
    assert got[1] == pytest.approx(0.5 * (1 / 4 + 9 / 2 - parent) - 0.5)
    assert got[2] == -np.inf
    assert int(np.argmax(got)) == 1
    # the right child can be the light one too
    assert gains(np.array([-4]), np.array([15]), G_tot, H_tot, p)[0] == -np.inf  # HR = 0.25


def test_gains_with_zero_regularisation_and_no_gamma():
    p = SplitParams(reg_lambda=0.0, gamma=0.0, min_child_weight=0.0, scale=1.0)
    got = gains(np.array([-3, 0]), np.array([1, 2]), 3, 4, p)
    # G = 3, H = 4. c0: left (-3, 1), right (6, 3); c1: left (0, 2), right (3, 2)
    assert got[0] == pytest.approx(0.5 * (9 + 12 - 9 / 4))
    assert got[1] == pytest.approx(0.5 * (0 / 2 + 9 / 2 - 9 / 4))


def test_int_histograms_are_bincounts_of_integer_weights():
    bins = np.array([[0, 1], [1, 1], [0, 2], [2, 0]], dtype=np.uint8)
    sizes, offsets = feature_layout(np.array([2, 2]))  # f0: bins 0, 1, missing 2
    assert sizes.tolist() == [3, 3] and offsets.tolist() == [0, 3]
    g = np.array([5, -3, 2**40, -7])
    hg, hc = int_histograms(bins, sizes, offsets, [g, np.ones(4)])
    assert hg.tolist() == [5 + 2**40, -3, -7, -7, 5 - 3, 2**40]
    assert hc.tolist() == [2, 1, 1, 1, 2, 1]
    assert bin_counts(bins, sizes, offsets).tolist() == hc.tolist()


# -- candidates -------------------------------------------------------------------------------
def test_split_candidates_are_listed_in_canonical_order():
    c = SplitCandidates.build(np.array([3, 2]), np.array([True, False]))
    got = list(zip(c.feature.tolist(), c.bin.tolist(), c.missing_left.tolist()))
    assert got == [
        (0, 0, False), (0, 0, True),
        (0, 1, False), (0, 1, True),
        (0, 2, False),              # all values left, missing alone on the right
        (1, 0, False),              # f1: two bins, no missing values, one threshold
    ]
    assert len(c) == 6


def test_candidates_from_bins_know_which_features_have_missing_values():
    bins = np.array([[0, 1], [1, 0], [3, 1]], dtype=np.uint8)  # only f0 has a missing value (3)
    c = SplitCandidates.for_bins(bins, np.array([3, 2]))
    ref = SplitCandidates.build(np.array([3, 2]), np.array([True, False]))
    assert c.feature.tolist() == ref.feature.tolist() and c.bin.tolist() == ref.bin.tolist()
    assert c.missing_left.tolist() == ref.missing_left.tolist()
    # a one-bin feature without missing values has no candidate at all
    assert len(SplitCandidates.build(np.array([1]), np.array([False]))) == 0
    assert len(SplitCandidates.for_bins(np.zeros((0, 1), np.uint8), np.array([4]))) == 3


def test_goes_left():
    b = np.array([0, 1, 2, 3, 3])  # 3 is the missing bin
    assert goes_left(b, 3, 1, False).tolist() == [True, True, False, False, False]
    assert goes_left(b, 3, 1, True).tolist() == [True, True, False, True, True]
    assert goes_left(b, 3, 2, False).tolist() == [True, True, True, False, False]
    assert goes_left(b, 3, 0, True).tolist() == [True, False, False, True, True]


def test_candidate_left_sums_by_hand():
    sizes, offsets = feature_layout(np.array([3, 2]))
    hist = np.array([1, 2, 4, 8, 16, 32, 64])  # f0: 1, 2, 4, missing 8; f1: 16, 32, missing 64
    c = SplitCandidates.build(np.array([3, 2]), np.array([True, True]))
    got = dict(zip(zip(c.feature.tolist(), c.bin.tolist(), c.missing_left.tolist()),
                   candidate_left_sums(hist, c, sizes, offsets).tolist()))
    assert got == {(0, 0, False): 1, (0, 0, True): 9, (0, 1, False): 3, (0, 1, True): 11,
                   (0, 2, False): 7, (1, 0, False): 16, (1, 0, True): 80, (1, 1, False): 48}


# -- the gradient layout ----------------------------------------------------------------------
def test_gradient_layout_round_trip_with_negative_g():
    g = np.array([-5, 3, -(2**20), 7, 0], dtype=np.int64)
    h = np.array([1, 2, 3, 2**18, 0], dtype=np.int64)
    layout = GradientLayout.for_rows(g, h, plaintext_bits=150)
    # slots hold sums over all 5 rows: 5 * 2**18 needs 21 bits + sign, 5 * 2**20 needs 23 + 1
    assert (layout.w_h, layout.w_g) == (22, 24) and layout.slot_bits == 46
    rows = layout.pack_rows(g, h)
    assert rows == [int(gi) * 2**22 + int(hi) for gi, hi in zip(g, h)]
    subsets = [[0], [2], [0, 1, 2, 3, 4], [1, 3], [2, 4], []]
    sums = [sum(rows[i] for i in s) for s in subsets]  # what the homomorphic sums decrypt to
    slots = layout.candidates_per_ciphertext(150)
    assert slots == 3  # 6 candidates in 2 packed values
    packed = [sum(v << (layout.slot_bits * j) for j, v in enumerate(sums[k:k + slots]))
              for k in range(0, len(sums), slots)]
    G, H = layout.unpack_candidates(packed, slots, len(subsets))
    assert G.tolist() == [int(g[s].sum()) for s in subsets]
    assert H.tolist() == [int(h[s].sum()) for s in subsets]


def test_gradient_layout_refuses_overflow():
    g = np.array([-(2**30), 2**30])
    h = np.array([2**30, 1])
    with pytest.raises(PackingOverflow):  # 2 slots of 33 bits do not fit in 60
        GradientLayout.for_rows(g, h, plaintext_bits=60)
    with pytest.raises(InvalidInput, match="non-negative"):
        GradientLayout.for_rows(g, -h, plaintext_bits=300)
    small = GradientLayout.for_rows(np.array([1, -1]), np.array([1, 1]), plaintext_bits=300)
    with pytest.raises(PackingOverflow):  # rows beyond the layout's bounds
        small.pack_rows(np.array([2**10]), np.array([1]))
    with pytest.raises(PackingOverflow):  # one slot wider than the plaintext
        GradientLayout(w_h=40, w_g=40).candidates_per_ciphertext(79)
    with pytest.raises(PackingOverflow):  # too few values for the announced count
        small.unpack_candidates([0], slots=2, count=3)
    with pytest.raises(PackingOverflow):  # a value beyond its slots (overflow or tampering)
        small.unpack_candidates([1 << 200], slots=2, count=2)


# -- topology ---------------------------------------------------------------------------------
def test_check_topology_errors():
    ok = [(0, 1, 2, "holder", 1), (1, -1, -1, "leaf", -1), (2, -1, -1, "leaf", -1)]
    assert check_topology(ok, 10) is None
    with pytest.raises(InvalidInput, match="root"):
        check_topology([], 10)
    with pytest.raises(InvalidInput, match="root"):
        check_topology([(1, -1, -1, "leaf", -1), (0, 1, 2, "bank", -1)], 10)
    with pytest.raises(InvalidInput, match="node 0 points at a missing child"):
        check_topology([(0, 1, 2, "bank", -1), (1, -1, -1, "leaf", -1)], 10)
    assert check_topology([(0, -1, -1, "leaf", -1)], 10) is None  # a single leaf
    # a tree on 2 rows has at most 3 nodes: a bank cannot make the holder store more
    five = [(0, 1, 2, "bank", -1), (1, 3, 4, "bank", -1), (2, -1, -1, "leaf", -1),
            (3, -1, -1, "leaf", -1), (4, -1, -1, "leaf", -1)]
    assert check_topology(five, 3) is None
    with pytest.raises(InvalidInput, match="cannot come from 2 rows"):
        check_topology(five, 2)


def test_layer_parents_must_be_the_previous_layer_and_at_most_two_children():
    from fedcredit.protocol.secureboost.math import check_layer_parents

    assert check_layer_parents([-1], set()) is None
    assert check_layer_parents([0, 0], {0}) is None
    with pytest.raises(InvalidInput, match="children of the previous layer"):
        check_layer_parents([0, 0, 0], {0})
    with pytest.raises(InvalidInput, match="children of the previous layer"):
        check_layer_parents([5], {0})


def unpack(n_leaves, data, rows):
    bits = np.unpackbits(np.frombuffer(data, np.uint8).reshape(rows, -1), axis=1)
    return bits[:, :n_leaves].tolist()


def test_reachable_leaves_on_a_three_node_tree():
    nodes = [(0, 1, 2, "holder", 7), (1, -1, -1, "leaf", -1), (2, -1, -1, "leaf", -1)]
    bins = np.array([[0], [1], [2], [3]], dtype=np.uint8)  # 3 = missing
    n, data = reachable_leaves(nodes, {7: (0, 1, True)}, bins, np.array([3]))
    assert n == 2
    assert data == bytes([0b10000000, 0b10000000, 0b01000000, 0b10000000])
    assert unpack(n, data, 4) == [[1, 0], [1, 0], [0, 1], [1, 0]]


def test_reachable_leaves_lets_rows_pass_both_ways_through_the_other_partys_splits():
    nodes = [(0, 1, 2, "bank", -1), (1, 3, 4, "holder", 5), (2, -1, -1, "leaf", -1),
             (3, -1, -1, "leaf", -1), (4, -1, -1, "leaf", -1)]
    bins = np.array([[0, 1], [1, 0], [2, 0]], dtype=np.uint8)
    n, data = reachable_leaves(nodes, {5: (1, 0, False)}, bins, np.array([2, 1]))
    assert n == 3  # leaves in listing order: 2, 3, 4
    assert unpack(n, data, 3) == [[1, 0, 1], [1, 1, 0], [1, 1, 0]]
    with pytest.raises(InvalidInput, match="unknown split record"):
        reachable_leaves(nodes, {6: (1, 0, False)}, bins, np.array([2, 1]))
    with pytest.raises(InvalidInput, match="listed before its parent"):
        reachable_leaves([nodes[0], nodes[3], nodes[1]], {5: (1, 0, False)}, bins,
                         np.array([2, 1]), what="tree 3")


# -- the minimum bin mass (docs/PRIVACY.md, leak 1) -------------------------------------------
def _atoms(bins, nb, cands, keep):
    """Sizes of the row sets the bank can isolate from the kept candidates' left sets (and
    the node's total): rows grouped by which known sets hold them."""
    cols = [goes_left(bins[:, cands.feature[c]], nb[cands.feature[c]], cands.bin[c],
                      cands.missing_left[c]) for c in np.flatnonzero(keep)]
    if not cols:
        return np.array([len(bins)])
    _, sizes = np.unique(np.stack(cols, 1), axis=0, return_counts=True)
    return sizes


def _view(bins, nb, cands, sizes, offsets):
    from fedcredit.protocol.secureboost.math import NodeView

    counts = bin_counts(bins, sizes, offsets)
    left = candidate_left_sums(counts, cands, sizes, offsets)
    return NodeView(len(bins), counts, (left >= 1) & (len(bins) - left >= 1))


def test_bin_mass_leaves_no_small_set_the_bank_can_isolate():
    from fedcredit.protocol.secureboost.math import bin_mass_keep

    rng = np.random.default_rng(0)
    nb = np.array([12, 8, 5])
    sizes, offsets = feature_layout(nb)
    for trial in range(20):
        n = int(rng.integers(60, 400))
        p = rng.dirichlet(np.full(13, 0.4))  # skewed: sparse bins, few or many missing
        bins = np.stack([np.minimum(rng.choice(13, n, p=p), 12),
                         rng.integers(0, 9, n), rng.integers(0, 5, n)], 1)
        bins[rng.random(n) < 0.02, 2] = 5  # a few missing values in f2
        cands = SplitCandidates.for_bins(bins, nb)
        view = _view(bins, nb, cands, sizes, offsets)
        keep, = bin_mass_keep(cands, sizes, offsets, 30, [view], np.zeros(len(cands), bool))
        assert not (keep & ~view.eligible).any()
        for f in range(3):  # per feature: every set it lets the bank isolate holds >= 30 rows
            at = _atoms(bins, nb, cands, keep & (cands.feature == f))
            assert at.min() >= 30, (trial, f, at)
        miss = int((bins[:, 2] == 5).sum())
        if 0 < miss < 30:  # one missing-value direction only
            assert not (keep & cands.missing_left & (cands.feature == 2)).any()
        if n >= 200:  # the rule still leaves candidates to split on
            assert keep.sum() >= 3
        # off, it keeps every eligible candidate: the bank could isolate single rows
        small = [_atoms(bins, nb, cands, view.eligible & (cands.feature == f)).min()
                 for f in range(3)]
        assert min(small) < 30


def test_bin_mass_keeps_a_parent_candidate_at_both_children_or_neither():
    from fedcredit.protocol.secureboost.math import bin_mass_keep

    rng = np.random.default_rng(1)
    nb = np.array([16])
    sizes, offsets = feature_layout(nb)
    bins = rng.integers(0, 17, (300, 1))
    cands = SplitCandidates.for_bins(bins, nb)
    a, b = bins[:120], bins[120:]
    views = [_view(x, nb, cands, sizes, offsets) for x in (a, b)]
    shared = np.ones(len(cands), bool)  # the bank knows all of them at the parent
    ka, kb = bin_mass_keep(cands, sizes, offsets, 30, views, shared)
    assert (ka == kb).all() and ka.any()
    for x, k in ((a, ka), (b, kb)):  # parent - child = sibling stays within the rule
        assert _atoms(x, nb, cands, k).min() >= 30
    ka1, kb1 = bin_mass_keep(cands, sizes, offsets, 30, views, np.zeros(len(cands), bool))
    assert not (ka1 == kb1).all()  # unconstrained, the children would choose differently


def test_honest_slot_bound_covers_the_banks_layout_and_no_more():
    fp_bits, n = 24, 1000
    rng = np.random.default_rng(2)
    p = rng.random(n)
    y = (rng.random(n) < 0.3).astype(float)
    g = np.rint((p - y) * 2**fp_bits).astype(np.int64)
    h = np.rint(p * (1 - p) * 2**fp_bits).astype(np.int64)
    layout = GradientLayout.for_rows(g, h, 1024)
    cap = GradientLayout.honest_bound(n, fp_bits, 1024)
    assert layout.slot_bits <= cap <= layout.slot_bits + 4
    assert GradientLayout.honest_bound(n, fp_bits + 8, 1024) == cap + 16


def test_cross_feature_check_leaves_no_nearly_nested_pair():
    """Two correlated features (a 3- and a 6-month mean) give left sets that differ in a few
    rows; the check keeps, across features, only pairs differing in 0 or >= 30 rows."""
    from fedcredit.protocol.secureboost.math import bin_mass_keep, cross_feature_keep

    rng = np.random.default_rng(4)
    n, nb = 600, np.array([16, 16])
    sizes, offsets = feature_layout(nb)
    base = rng.integers(0, 16, n)
    bins = np.stack([base, np.clip(base + (rng.random(n) < 0.03), 0, 15)], 1)
    cands = SplitCandidates.for_bins(bins, nb)
    view = _view(bins, nb, cands, sizes, offsets)
    view.bins = bins
    none = np.zeros(len(cands), bool)
    per_feature = bin_mass_keep(cands, sizes, offsets, 30, [view], none)
    keep, = cross_feature_keep(cands, sizes, 30, [view], per_feature, none)

    def worst(k):
        sets = {c: goes_left(bins[:, cands.feature[c]], 16, cands.bin[c], cands.missing_left[c])
                for c in np.flatnonzero(k)}
        d = [int((sets[a] ^ sets[b]).sum()) for a in sets for b in sets
             if cands.feature[a] != cands.feature[b]]
        return min([x for x in d if x > 0], default=n)

    assert worst(per_feature[0]) < 30  # per feature alone: nearly nested pairs remain
    assert worst(keep) >= 30 and keep.sum() >= 10
    assert not (keep & ~per_feature[0]).any()
