"""Which leaves a row can reach given one party's splits, for every tree of a model at once.

Both parties ask it when scoring: the holder for its own splits (a bank split lets a row go
both ways) and the bank for its own (a holder split lets it go both ways); the one leaf
both allow is the row's. Walking node by node costs a few numpy calls per node, which for
one enterprise and 50 trees was most of an online decision. Compiled once per model, every
leaf's path is a row of split columns and wanted directions, and one request is a handful
of vectorised operations whatever the number of trees.

A node is ``(node_id, left, right, split)`` with parents listed before children; ``split``
is :data:`LEAF`, :data:`BOTH_WAYS` (the other party's split) or this party's
``(feature, bin, missing_left)``: a row goes left when its bin is ``<= bin``, a missing
value (the feature's missing bin) as ``missing_left`` says.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInput

LEAF = "leaf"
BOTH_WAYS = "both"
#: rows per vectorised block (rows x leaves x depth booleans stay a few MB)
BLOCK_ROWS = 4096


@dataclass(frozen=True)
class LeafPaths:
    feature: np.ndarray  # per own split: feature index
    threshold: np.ndarray  # per own split: largest bin sent left
    missing_left: np.ndarray  # per own split: where a missing value goes
    path: np.ndarray  # leaves x depth: own split on the leaf's path (len(feature) = none)
    want: np.ndarray  # leaves x depth: the leaf needs that split to send the row left
    widths: tuple[int, ...]  # leaves per tree, trees in the order compiled

    @classmethod
    def compile(cls, trees: Sequence[Sequence[tuple]], names: Sequence[str] = ()) -> LeafPaths:
        """Paths of ``trees`` (each a node list as the module says); ``names`` name the
        trees in errors."""
        splits: list[tuple[int, int, bool]] = []
        paths: list[list[tuple[int, bool]]] = []
        widths = []
        for k, nodes in enumerate(trees):
            what = names[k] if k < len(names) else f"tree {k}"
            on_path: dict[int, list[tuple[int, bool]]] = {0: []}  # the root is node 0
            leaves = 0
            for nid, left, right, split in nodes:
                here = on_path.pop(nid, None)
                if here is None:
                    raise InvalidInput(f"{what}: node {nid} is listed before its parent")
                if split == LEAF:
                    paths.append(here)
                    leaves += 1
                elif split == BOTH_WAYS:
                    on_path[left], on_path[right] = here, here
                else:
                    col = len(splits)
                    splits.append((int(split[0]), int(split[1]), bool(split[2])))
                    on_path[left], on_path[right] = here + [(col, True)], here + [(col, False)]
            widths.append(leaves)
        depth = max((len(p) for p in paths), default=0)
        none = len(splits)
        path = np.full((len(paths), depth), none, dtype=np.int64)
        want = np.ones((len(paths), depth), dtype=bool)
        for i, p in enumerate(paths):
            for d, (col, go_left) in enumerate(p):
                path[i, d], want[i, d] = col, go_left
        f, t, ml = (np.array(v, dtype=dt).reshape(-1) for v, dt in
                    zip(zip(*splits) if splits else ((), (), ()), (np.int64, np.int64, bool)))
        return cls(f, t, ml, path, want, tuple(widths))

    @property
    def n_leaves(self) -> int:
        return len(self.path)

    def reach(self, bins: np.ndarray, missing_bin: np.ndarray) -> np.ndarray:
        """rows x leaves (all trees side by side): the leaves each row can reach."""
        n = len(bins)
        out = np.empty((n, self.n_leaves), dtype=bool)
        missing = np.asarray(missing_bin, dtype=np.int64)[self.feature]
        for lo in range(0, n, BLOCK_ROWS):
            b = np.asarray(bins[lo:lo + BLOCK_ROWS])[:, self.feature].astype(np.int64)
            left = np.where(b == missing, self.missing_left, b <= self.threshold)
            left = np.concatenate([left, np.ones((len(b), 1), dtype=bool)], axis=1)
            out[lo:lo + BLOCK_ROWS] = (left[:, self.path] == self.want).all(axis=2)
        return out

    def per_tree(self, reach: np.ndarray) -> Iterator[np.ndarray]:
        """The columns of each tree in :meth:`reach`'s matrix, tree by tree."""
        at = 0
        for k in self.widths:
            yield reach[:, at:at + k]
            at += k

    def packed(self, bins: np.ndarray, missing_bin: np.ndarray) -> list[tuple[int, bytes]]:
        """Per tree, (leaves, packed bits rows x leaves): what a holder answers."""
        return [(m.shape[1], np.packbits(m, axis=1).tobytes())
                for m in self.per_tree(self.reach(bins, missing_bin))]


def holder_paths(trees: dict[int, list[tuple]], splits: dict, which: Sequence[int],
                 names: Sequence[str] = ()) -> LeafPaths:
    """The holder's compiled paths of trees ``which``: its nodes are ``(node_id, left, right,
    owner, record)`` (:class:`~fedcredit.protocol.hooks.StoredModel`), ``splits`` maps its
    records to (feature, bin, missing_left); the bank's splits let a row go both ways.
    ``names`` name the trees in errors (default ``tree <id>``)."""
    names = list(names) or [f"tree {t}" for t in which]
    def node(nd: Sequence, what: str) -> tuple:
        nid, left, right, owner, record = nd
        if owner == "leaf":
            return nid, left, right, LEAF
        if owner != "holder":
            return nid, left, right, BOTH_WAYS
        if record not in splits:
            raise InvalidInput(f"{what}: node {nid} names an unknown split record")
        return nid, left, right, splits[record]
    return LeafPaths.compile([[node(nd, what) for nd in trees[t]]
                              for t, what in zip(which, names)], names)
