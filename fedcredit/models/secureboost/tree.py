"""The bank's half of a federated tree: its own splits in bin space, holder splits by record id.

A node is a leaf (value), a bank split (feature, bin, missing direction) or a holder split
(record id only: the threshold stays with the holder). Scoring intersects the leaves the
bank's splits allow with the leaves the holder's splits allow; exactly one remains.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ...errors import ProtocolError
from ...protocol.leafpaths import BLOCK_ROWS, BOTH_WAYS, LEAF, LeafPaths
from ...protocol.secureboost import messages as m


@dataclass
class Node:
    node_id: int
    depth: int
    owner: str = "leaf"  # "leaf" | "bank" | "holder"
    left: int = -1
    right: int = -1
    feature: int = -1  # bank feature index, or holder feature index (for importance only)
    bin: int = -1  # bank splits only
    missing_left: bool = False  # bank splits only
    record_id: int = -1  # holder splits only
    gain: float = 0.0
    value: float = 0.0  # leaves: already multiplied by the learning rate
    count: int = 0
    holder: int = 0  # holder splits: which of the model's holders (0 with one holder)


@dataclass
class Tree:
    nodes: list[Node] = field(default_factory=list)  # parents before children, root first

    @property
    def leaves(self) -> list[Node]:
        return [n for n in self.nodes if n.owner == "leaf"]

    def topology(self, holder: int = 0) -> list[m.TreeNode]:
        """What holder ``holder`` stores: the tree's shape and its own record ids; the bank's
        splits and other holders' are "bank" to it (a row passes them both ways)."""
        def owner(n: Node) -> tuple[str, int]:
            if n.owner == "holder" and n.holder == holder:
                return "holder", n.record_id
            return ("leaf" if n.owner == "leaf" else "bank"), -1
        return [m.TreeNode(node_id=n.node_id, left=n.left, right=n.right, owner=o, record_id=r)
                for n in self.nodes for o, r in [owner(n)]]

    def bank_reachable(self, bank_bins: np.ndarray, missing_bin: np.ndarray) -> np.ndarray:
        """ids x leaves: leaves reachable given only the bank's own splits."""
        return bank_paths([self]).reach(bank_bins, missing_bin)

    def reached_leaves(self, bank_bins: np.ndarray, missing_bin: np.ndarray,
                       holder_masks: np.ndarray | None) -> np.ndarray:
        """Per row, the position in :attr:`leaves` of the one leaf both parties' splits allow
        (``holder_masks`` None for a bank-only tree)."""
        return reached_leaves(bank_paths([self]), bank_bins, missing_bin, [holder_masks])[0]

    def leaf_values(self) -> np.ndarray:
        return np.array([n.value for n in self.leaves], dtype=np.float64)

    def to_dict(self) -> dict:
        return {"nodes": [vars(n).copy() for n in self.nodes]}

    @classmethod
    def from_dict(cls, d: dict) -> Tree:
        return cls([Node(**n) for n in d["nodes"]])


def bank_paths(trees: Sequence[Tree]) -> LeafPaths:
    """The bank's compiled scoring paths of ``trees`` (holder splits go both ways)."""
    def node(nd: Node) -> tuple:
        split = LEAF if nd.owner == "leaf" else BOTH_WAYS if nd.owner == "holder" else \
            (nd.feature, nd.bin, nd.missing_left)
        return nd.node_id, nd.left, nd.right, split
    return LeafPaths.compile([[node(nd) for nd in t.nodes] for t in trees])


def reached_leaves(paths: LeafPaths, bank_bins: np.ndarray, missing_bin: np.ndarray,
                   holder_masks: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    """Per tree of ``paths``, each row's leaf (position in :attr:`Tree.leaves`): the one the
    bank's splits and the holder's masks (ids x leaves; None for a bank-only tree) allow.
    Rows go in blocks, so memory stays rows x one tree's leaves."""
    n = len(bank_bins)
    out = [np.empty(n, dtype=np.int64) for _ in paths.widths]
    for lo in range(0, n, BLOCK_ROWS):
        hi = min(n, lo + BLOCK_ROWS)
        reach = paths.per_tree(paths.reach(bank_bins[lo:hi], missing_bin))
        for k, (mine, theirs) in enumerate(zip(reach, holder_masks)):
            if theirs is not None:
                if theirs.shape != (n, mine.shape[1]):
                    raise ProtocolError(f"leaf masks of shape {theirs.shape} for {n} rows "
                                        f"and {mine.shape[1]} leaves")
                mine = mine & theirs[lo:hi]
            if not (mine.sum(axis=1) == 1).all():
                raise ProtocolError("bank and holder splits do not single out one leaf per row")
            out[k][lo:hi] = np.argmax(mine, axis=1)
    return out
