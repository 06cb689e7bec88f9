"""The bank's half of a federated tree: its own splits in bin space, holder splits by record id.

A node is a leaf (value), a bank split (feature, bin, missing direction) or a holder split
(record id only: the threshold stays with the holder). Scoring intersects the leaves the
bank's splits allow with the leaves the holder's splits allow; exactly one remains.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import ProtocolError
from ...protocol.secureboost import messages as m
from ...protocol.secureboost.math import goes_left


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
                go_left = goes_left(bank_bins[:, nd.feature], missing_bin[nd.feature], nd.bin,
                                    nd.missing_left)
                reach[nd.left], reach[nd.right] = r & go_left, r & ~go_left
        return np.stack(cols, axis=1)

    def reached_leaves(self, bank_bins: np.ndarray, missing_bin: np.ndarray,
                       holder_masks: np.ndarray | None) -> np.ndarray:
        """Per row, the position in :attr:`leaves` of the one leaf both parties' splits allow
        (``holder_masks`` None for a bank-only tree)."""
        reach = self.bank_reachable(bank_bins, missing_bin)
        if holder_masks is not None:
            if holder_masks.shape != reach.shape:
                raise ProtocolError(f"leaf masks of shape {holder_masks.shape} for "
                                    f"{reach.shape[0]} rows and {reach.shape[1]} leaves")
            reach &= holder_masks
        if not (reach.sum(axis=1) == 1).all():
            raise ProtocolError("bank and holder splits do not single out one leaf per row")
        return np.argmax(reach, axis=1)

    def leaf_values(self) -> np.ndarray:
        return np.array([n.value for n in self.leaves], dtype=np.float64)

    def to_dict(self) -> dict:
        return {"nodes": [vars(n).copy() for n in self.nodes]}

    @classmethod
    def from_dict(cls, d: dict) -> Tree:
        return cls([Node(**n) for n in d["nodes"]])
