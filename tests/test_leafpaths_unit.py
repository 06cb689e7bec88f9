"""LeafPaths: every tree's leaf paths compiled once, checked against a node-by-node walk."""
from __future__ import annotations

import numpy as np
import pytest

from fedcredit.errors import InvalidInput, ProtocolError
from fedcredit.models.secureboost.tree import Node, Tree, bank_paths, reached_leaves
from fedcredit.protocol.leafpaths import BLOCK_ROWS, BOTH_WAYS, LEAF, LeafPaths, holder_paths
from fedcredit.protocol.secureboost.math import goes_left


def walk(nodes, bins, missing):
    """The plain walk: rows x leaves reachable, node by node (the reference)."""
    reach = {0: np.ones(len(bins), dtype=bool)}
    cols = []
    for nid, left, right, split in nodes:
        r = reach[nid]
        if split == LEAF:
            cols.append(r)
        elif split == BOTH_WAYS:
            reach[left] = reach[right] = r
        else:
            f, t, ml = split
            go = goes_left(bins[:, f], missing[f], t, ml)
            reach[left], reach[right] = r & go, r & ~go
    return np.stack(cols, axis=1)


def random_tree(rng, n_features, n_bins, depth):
    """A random tree, parents first: own splits, the other party's, leaves at any depth."""
    nodes, queue, next_id = [], [(0, 0)], 1
    while queue:
        nid, d = queue.pop(0)
        if d == depth or (d and rng.random() < 0.25):
            nodes.append((nid, -1, -1, LEAF))
            continue
        left, right = next_id, next_id + 1
        next_id += 2
        if rng.random() < 0.4:
            split = BOTH_WAYS
        else:
            f = int(rng.integers(n_features))
            split = (f, int(rng.integers(n_bins[f] + 1)), bool(rng.integers(2)))
        nodes.append((nid, left, right, split))
        queue += [(left, d + 1), (right, d + 1)]
    return nodes


def test_compiled_paths_reach_what_the_node_walk_reaches():
    rng = np.random.default_rng(5)
    n_bins = np.array([3, 5, 1, 8])
    bins = np.column_stack([rng.integers(0, b + 1, 300) for b in n_bins]).astype(np.uint8)
    trees = [random_tree(rng, 4, n_bins, int(rng.integers(1, 5))) for _ in range(20)]
    paths = LeafPaths.compile(trees)
    got = list(paths.per_tree(paths.reach(bins, n_bins)))
    assert len(got) == 20 and paths.n_leaves == sum(paths.widths)
    for nodes, mat in zip(trees, got):
        assert np.array_equal(mat, walk(nodes, bins, n_bins))
    one = paths.reach(bins[:1], n_bins)  # one enterprise, as online scoring asks
    assert np.array_equal(one, paths.reach(bins, n_bins)[:1])


def test_rows_beyond_one_block_and_no_rows():
    nodes = [(0, 1, 2, (0, 0, True)), (1, -1, -1, LEAF), (2, -1, -1, LEAF)]
    paths = LeafPaths.compile([nodes])
    bins = np.array([[0], [1], [2]] * (BLOCK_ROWS // 3 + 2), dtype=np.uint8)
    got = paths.reach(bins, np.array([2]))
    assert got.shape == (len(bins), 2)
    assert got[:6].tolist() == [[True, False], [False, True], [True, False]] * 2
    assert np.array_equal(got, walk(nodes, bins, np.array([2])))
    assert paths.reach(bins[:0], np.array([2])).shape == (0, 2)


def test_a_tree_of_one_leaf_and_a_tree_without_own_splits():
    paths = LeafPaths.compile([[(0, -1, -1, LEAF)],
                               [(0, 1, 2, BOTH_WAYS), (1, -1, -1, LEAF), (2, -1, -1, LEAF)]])
    assert paths.widths == (1, 2) and len(paths.feature) == 0
    assert paths.reach(np.zeros((2, 1), np.uint8), np.array([1])).all()


def test_a_child_listed_before_its_parent_is_named():
    nodes = [(0, 1, 2, BOTH_WAYS), (3, -1, -1, LEAF), (1, 3, 4, BOTH_WAYS)]
    with pytest.raises(InvalidInput, match="tree 7: node 3 is listed before its parent"):
        LeafPaths.compile([nodes], ["tree 7"])


def test_packed_is_the_holders_wire_layout():
    nodes = [(0, 1, 2, (0, 1, True)), (1, -1, -1, LEAF), (2, -1, -1, LEAF)]
    bins = np.array([[0], [1], [2], [3]], dtype=np.uint8)
    (k, data), = LeafPaths.compile([nodes]).packed(bins, np.array([3]))
    assert k == 2 and data == bytes([0b10000000, 0b10000000, 0b01000000, 0b10000000])


def test_holder_paths_read_stored_topologies_and_refuse_unknown_records():
    trees = {4: [(0, 1, 2, "bank", -1), (1, 3, 4, "holder", 9), (2, -1, -1, "leaf", -1),
                 (3, -1, -1, "leaf", -1), (4, -1, -1, "leaf", -1)]}
    bins = np.array([[0], [1]], dtype=np.uint8)
    reach = holder_paths(trees, {9: (0, 0, False)}, [4]).reach(bins, np.array([2]))
    assert reach.tolist() == [[True, True, False], [True, False, True]]
    with pytest.raises(InvalidInput, match="tree 4: node 1 names an unknown split record"):
        holder_paths(trees, {}, [4])


def test_the_bank_ands_its_paths_with_the_holders_masks():
    tree = Tree([Node(0, 0, "holder", 1, 2, record_id=3), Node(1, 1, "bank", 3, 4, feature=0,
                                                               bin=0),
                 Node(2, 1), Node(3, 2), Node(4, 2)])
    bins = np.array([[0], [1], [2]], dtype=np.uint8)  # 2 = missing, goes right
    assert tree.bank_reachable(bins, np.array([2])).tolist() == \
        [[True, True, False], [True, False, True], [True, False, True]]
    holder = np.array([[False, True, True], [True, False, False], [False, True, True]])
    (leaf,) = reached_leaves(bank_paths([tree]), bins, np.array([2]), [holder])
    assert leaf.tolist() == [1, 0, 2]  # positions in tree.leaves: nodes 3, 2, 4
    with pytest.raises(ProtocolError, match="single out one leaf"):
        reached_leaves(bank_paths([tree]), bins, np.array([2]), [np.ones((3, 3), bool)])
    with pytest.raises(ProtocolError, match="leaf masks of shape"):
        reached_leaves(bank_paths([tree]), bins, np.array([2]), [np.ones((2, 3), bool)])
