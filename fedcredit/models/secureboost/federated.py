"""The holder as the grower sees it, over an encrypted session (any channel); with several
holders, one per holder, sharing one encryption of each tree's gradients."""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from ...errors import ProtocolError
from ...protocol.secureboost import bank as steps
from ...protocol.secureboost import messages as m
from ...protocol.secureboost.bank import NodeStats
from ...protocol.secureboost.math import GradientLayout
from ...protocol.session import BankSession
from ...protocol.wire import rows_from_bytes, rows_to_bytes
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

    With several holders: ``index`` is this holder's place in the model (its splits are
    ``Node.holder == index``), ``local`` maps training rows to its session positions (None:
    the same), and ``shared`` encrypts each tree's gradients once for all of them.
    """

    def __init__(self, session: BankSession, index: int = 0, local: np.ndarray | None = None,
                 shared: SharedGradients | None = None):
        self.session = session
        self.index = index
        self.local = local
        self.shared = shared
        self.min_node_samples = session.min_node_samples
        self.layout: GradientLayout | None = None
        self._prev: dict[int, NodeStats] = {}

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        return rows if self.local is None else self.local[rows]

    def start_tree(self, tree: int, rows, g_int, h_int) -> None:
        pk, _ = self.session.key
        layout = self.layout = GradientLayout.for_rows(g_int, h_int, pk.plaintext_bits)
        chunks = None if self.shared is None else self.shared.chunks(
            tree, lambda: steps.encrypt_gradients(self.session, layout, g_int, h_int))
        try:
            steps.send_gradients(self.session, tree, self._rows(rows), layout, g_int, h_int,
                                 ciphertexts=chunks)
        except BaseException:
            if self.shared is not None:
                self.shared.abort()  # the other holders' uploads end instead of waiting
            raise
        self._prev = {}

    def layer(self, tree: int, depth: int, tasks: list[m.NodeTask]) -> dict[int, NodeStats]:
        if self.layout is None:
            raise ProtocolError("a layer before the tree's gradients")
        if self.local is not None:  # name the rows as this holder numbers them
            tasks = [replace(t, rows=rows_to_bytes(self._rows(rows_from_bytes(t.rows))))
                     if t.rows else t for t in tasks]
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
        steps.finish_tree(self.session, tree, result.topology(self.index))
        self._prev = {}


_END = object()


class _Outlet:
    """One holder's bounded queue of gradient chunks; ``stop`` ends every outlet of a tree."""

    def __init__(self, depth: int, stop: threading.Event):
        self.q: queue.Queue = queue.Queue(depth)
        self.closed = False
        self.stop = stop

    def put(self, item) -> None:
        while not (self.closed or self.stop.is_set()):  # a holder that stopped reading
            try:  # does not hold the others
                self.q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def drain(self) -> Iterator[bytes]:
        try:
            while True:
                try:
                    item = self.q.get(timeout=0.2)
                except queue.Empty:
                    if self.stop.is_set():
                        raise ProtocolError("another holder's gradient upload failed") from None
                    continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed = True


class SharedGradients:
    """Each tree's gradients encrypted once (every holder's session has the same key) and
    streamed to every holder: each upload reads the chunks from its own bounded queue as
    they are made, so encryption overlaps all uploads and memory stays a few chunks per
    holder."""

    DEPTH = 16

    def __init__(self, n_holders: int):
        self.n = int(n_holders)
        self._lock = threading.Lock()
        self._tree: int | None = None
        self._outlets: list[_Outlet] = []
        self._taken = 0
        self._stop = threading.Event()

    def chunks(self, tree: int, encrypt: Callable[[], Iterator[bytes]]) -> Iterator[bytes]:
        """Tree ``tree``'s chunks for one holder; the first holder to ask starts ``encrypt``."""
        with self._lock:
            if self._tree != tree or self._taken == self.n:
                self._tree, self._taken, self._stop = tree, 0, threading.Event()
                self._outlets = [_Outlet(self.DEPTH, self._stop) for _ in range(self.n)]
                threading.Thread(target=_produce, args=(encrypt, self._outlets), daemon=True,
                                 name="fedcredit-gradients").start()
            outlet = self._outlets[self._taken]
            self._taken += 1
        return outlet.drain()

    def abort(self) -> None:
        """End the current tree's uploads (one of them failed)."""
        self._stop.set()


def _produce(encrypt: Callable[[], Iterator[bytes]], outlets: list[_Outlet]) -> None:
    try:
        for data in encrypt():
            if all(o.closed or o.stop.is_set() for o in outlets):
                return
            for o in outlets:
                o.put(data)
        for o in outlets:
            o.put(_END)
    except BaseException as e:  # noqa: BLE001 - handed to every upload, which re-raises it
        for o in outlets:
            o.put(e)
