"""The bank's half of a federated tree: its own splits in bin space, holder splits by record id.

A node is a leaf (value), a bank split (feature, bin, missing direction) or a holder split
(record id only: the threshold stays with the holder). Scoring intersects the leaves the
bank's splits allow with the leaves the holder's splits allow; exactly one remains.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...protocol import messages as m


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


@dataclass
class Tree:
    nodes: list[Node] = field(default_factory=list)  # parents before children, root first

    @property
    def leaves(self) -> list[Node]:
        return [n for n in self.nodes if n.owner == "leaf"]

    def topology(self) -> list[m.TreeNode]:
        """What the holder stores: the tree's shape and its own record ids, no bank splits."""
        return [m.TreeNode(node_id=n.node_id, left=n.left, right=n.right, owner=n.owner,
                           record_id=n.record_id) for n in self.nodes]

    def bank_reachable(self, bank_bins: np.ndarray, missing_bin: np.ndarray) -> np.ndarray:
        """ids x leaves: leaves reachable given only the bank's own splits."""
        n = bank_bins.shape[0]
        reach = {0: np.ones(n, dtype=bool)}
        cols = []
        for nd in self.nodes:
            r = reach[nd.node_id]
            if nd.owner == "leaf":
                cols.append(r)
            elif nd.owner == "holder":
                reach[nd.left], reach[nd.right] = r, r
            else:
                b = bank_bins[:, nd.feature].astype(np.int64)
                go_left = np.where(b == missing_bin[nd.feature], nd.missing_left, b <= nd.bin)
                reach[nd.left], reach[nd.right] = r & go_left, r & ~go_left
        return np.stack(cols, axis=1)

    def leaf_values(self) -> np.ndarray:
        return np.array([n.value for n in self.leaves], dtype=np.float64)

    def to_dict(self) -> dict:
        return {"nodes": [vars(n).copy() for n in self.nodes]}

    @classmethod
    def from_dict(cls, d: dict) -> "Tree":
        return cls([Node(**n) for n in d["nodes"]])

    def same_structure(self, other: "Tree", atol: float = 1e-6) -> bool:
        """Same splits (owner, feature, bin or holder partition) and leaf values within atol."""
        if len(self.nodes) != len(other.nodes):
            return False
        for a, b in zip(self.nodes, other.nodes):
            if (a.node_id, a.owner, a.left, a.right) != (b.node_id, b.owner, b.left, b.right):
                return False
            if a.owner == "bank" and (a.feature, a.bin, a.missing_left) != (
                    b.feature, b.bin, b.missing_left):
                return False
            if a.owner == "holder" and a.feature != b.feature:
                return False
            if a.owner == "leaf" and abs(a.value - b.value) > atol:
                return False
        return True
