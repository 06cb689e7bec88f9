"""The holder as the grower sees it, over an encrypted session (any channel)."""
from __future__ import annotations

import numpy as np

from ...errors import ProtocolError
from ...protocol.secureboost import bank as steps
from ...protocol.secureboost import messages as m
from ...protocol.secureboost.bank import NodeStats
from ...protocol.secureboost.math import GradientLayout
from ...protocol.session import BankSession
from .grower import HolderSplit
from .tree import Tree


def _lookup(stats: NodeStats, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.searchsorted(stats.positions, positions)
    ok = (idx < len(stats.positions))
    ok[ok] = stats.positions[idx[ok]] == positions[ok]
    if not ok.all():
        raise ProtocolError("the holder asked the bank to derive a candidate it never sent")
    return stats.G[idx], stats.H[idx]


class FederatedHolder:
    """Implements the grower's ``HolderSource`` with a :class:`BankSession`.

    Keeps the previous level's decrypted candidate sums so that the larger of two siblings
    is derived in plaintext as parent minus sibling (no decryption, no holder packing).
    """

    def __init__(self, session: BankSession):
        self.session = session
        self.min_node_samples = session.min_node_samples
        self.layout: GradientLayout | None = None
        self._prev: dict[int, NodeStats] = {}

    def start_tree(self, tree: int, rows, g_int, h_int) -> None:
        pk, _ = self.session.key
        self.layout = GradientLayout.for_rows(g_int, h_int, pk.plaintext_bits)
        steps.send_gradients(self.session, tree, rows, self.layout, g_int, h_int)
        self._prev = {}

    def layer(self, tree: int, depth: int, tasks: list[m.NodeTask]) -> dict[int, NodeStats]:
        if self.layout is None:
            raise ProtocolError("a layer before the tree's gradients")
        got = steps.layer(self.session, tree, depth, tasks, self.layout)
        out: dict[int, NodeStats] = {}
        for task in tasks:
            if task.node_id not in got:
                raise ProtocolError(f"the holder did not answer for node {task.node_id}")
            stats, derive = got[task.node_id]
            if len(derive):
                if task.sibling_id not in out or task.parent_id not in self._prev:
                    raise ProtocolError(f"node {task.node_id}: nothing to derive from")
                pg, ph = _lookup(self._prev[task.parent_id], derive)
                sg, sh = _lookup(out[task.sibling_id], derive)
                pos = np.concatenate([stats.positions, derive])
                G = np.concatenate([stats.G, pg - sg])
                H = np.concatenate([stats.H, ph - sh])
                order = np.argsort(pos, kind="stable")
                stats = NodeStats(pos[order], G[order], H[order], None, stats.increasing,
                                  stats.decreasing)
            out[task.node_id] = stats.with_directions() if len(stats.increasing) or \
                len(stats.decreasing) else stats
        self._prev = out
        return out

    def split(self, tree: int, choices: list[m.SplitChoice], node_rows) -> dict[int, HolderSplit]:
        outcomes = steps.split(self.session, tree, choices)
        res = {}
        for ch in choices:
            o = outcomes.get(ch.node_id)
            if o is None:
                raise ProtocolError(f"the holder did not split node {ch.node_id}")
            n = len(node_rows[ch.node_id])
            bits = np.unpackbits(np.frombuffer(o.left_rows, dtype=np.uint8))
            if len(bits) < n:
                raise ProtocolError(f"node {ch.node_id}: partition of the wrong size")
            res[ch.node_id] = HolderSplit(o.record_id, o.feature, bits[:n].astype(bool))
        return res

    def finish_tree(self, tree: int, result: Tree) -> None:
        steps.finish_tree(self.session, tree, result.topology())
        self._prev = {}
