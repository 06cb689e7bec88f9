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
    the same; -1 where it does not serve the row, ``align="any"``), and ``shared`` encrypts
    each tree's gradients once for all of them.

    Rows a holder does not serve never reach it: it gets the gradients of its own rows, and
    per node one encrypted (g, h) sum of the others, which it adds to its missing bins;
    its splits send them where they send missing values (``SplitOutcome.unserved_left``).
    """

    def __init__(self, session: BankSession, index: int = 0, local: np.ndarray | None = None,
                 shared: SharedGradients | None = None):
        self.session = session
        self.index = index
        self.local = local
        self.shared = shared
        self.min_node_samples = session.min_node_samples
        #: per training row, whether this holder serves it (None: every row)
        self.served = None if local is None or (local >= 0).all() else local >= 0
        self.layout: GradientLayout | None = None
        self._prev: dict[int, NodeStats] = {}
        self._tree_rows = np.zeros(0, dtype=np.int64)
        self.last_tree = 0  # the fit's last tree: no randomisers are made after it
        self._gh = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        """Training rows as this holder numbers them (those it serves)."""
        if self.local is None:
            return rows
        at = self.local[rows]
        return at[at >= 0]

    def count(self, rows: np.ndarray) -> int:
        """How many of ``rows`` this holder serves (its floors count only those)."""
        return len(rows) if self.served is None else int(np.count_nonzero(self.served[rows]))

    def start_tree(self, tree: int, rows, g_int, h_int) -> None:
        pk, _ = self.session.key
        layout = self.layout = GradientLayout.for_rows(g_int, h_int, pk.plaintext_bits)
        mine = None if self.served is None else self.served[rows]
        self._tree_rows, self._gh = np.asarray(rows), (np.asarray(g_int), np.asarray(h_int))
        chunks = None if self.shared is None else self.shared.chunks(
            tree, lambda: steps.encrypt_gradients(self.session, layout, g_int, h_int))
        if mine is not None:  # only the rows it serves
            chunks = _served_chunks(chunks, mine, pk.ciphertext_bytes) if chunks is not None \
                else None
            g_int, h_int = g_int[mine], h_int[mine]
        try:
            steps.send_gradients(self.session, tree, self._rows(rows), layout, g_int, h_int,
                                 ciphertexts=chunks,
                                 rows_total=0 if mine is None else len(rows))
        except BaseException:
            if self.shared is not None:
                self.shared.abort()  # the other holders' uploads end instead of waiting
            raise
        self._prev = {}
        if self.index == 0 and steps.PRECOMPUTE_RANDOMISERS and tree < self.last_tree:
            self.session.key[1].stock_randomisers(len(rows), self.session.workers)

    def layer(self, tree: int, depth: int, tasks: list[m.NodeTask]) -> dict[int, NodeStats]:
        if self.layout is None:
            raise ProtocolError("a layer before the tree's gradients")
        if self.local is not None:
            tasks = self._own_tasks(tasks, self.layout)
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

    def _own_tasks(self, tasks: list[m.NodeTask], layout: GradientLayout) -> list[m.NodeTask]:
        """The layer's tasks with rows as this holder numbers them, and for each node it
        sums directly that holds rows it does not serve, their encrypted (g, h) sum."""
        out, others = [], []
        for t in tasks:
            if t.sibling_id >= 0:  # derived: parent - sibling carries the others' sums too
                out.append(t)
                continue
            rows = self._tree_rows if t.node_id == 0 else rows_from_bytes(t.rows)
            out.append(replace(t, rows=rows_to_bytes(self._rows(rows)) if t.rows else b""))
            if self.served is not None and not self.served[rows].all():
                others.append((len(out) - 1, rows[~self.served[rows]]))
        if others:
            at = np.searchsorted(self._tree_rows, np.concatenate([r for _, r in others]))
            g, h = self._gh
            bounds = np.cumsum([0] + [len(r) for _, r in others])
            spans = list(zip(bounds[:-1], bounds[1:]))
            cts = steps.unserved_sums(self.session, layout,
                                      np.array([g[at[a:b]].sum() for a, b in spans]),
                                      np.array([h[at[a:b]].sum() for a, b in spans]))
            for (k, _), ct in zip(others, cts):
                out[k] = replace(out[k], unserved=ct)
        return out

    def split(self, tree: int, choices: list[m.SplitChoice], node_rows) -> dict[int, HolderSplit]:
        mine: dict[int, np.ndarray | None] = {
            ch.node_id: None if self.served is None else self.served[node_rows[ch.node_id]]
            for ch in choices}
        choices = [replace(ch, unserved=not _all(mine[ch.node_id])) for ch in choices]
        outcomes = steps.split(self.session, tree, choices)
        res = {}
        for ch in choices:
            o = outcomes.get(ch.node_id)
            if o is None:
                raise ProtocolError(f"the holder did not split node {ch.node_id}")
            own = mine[ch.node_id]
            n = len(node_rows[ch.node_id]) if own is None else int(own.sum())
            bits = np.unpackbits(np.frombuffer(o.left_rows, dtype=np.uint8))
            if len(bits) < n:
                raise ProtocolError(f"node {ch.node_id}: partition of the wrong size")
            left = bits[:n].astype(bool)
            if own is not None:  # the rows it does not serve go where it said
                full = np.full(len(own), bool(o.unserved_left) and ch.unserved)
                full[own] = left
                left = full
            res[ch.node_id] = HolderSplit(o.record_id, o.feature, left)
        return res

    def finish_tree(self, tree: int, result: Tree) -> None:
        steps.finish_tree(self.session, tree, result.topology(self.index))
        self._prev = {}


def _all(flags: np.ndarray | None) -> bool:
    return flags is None or bool(flags.all())


def _served_chunks(chunks: Iterator[bytes], mine: np.ndarray, width: int) -> Iterator[bytes]:
    """The ciphertexts of the rows ``mine`` marks, from chunks of every row's, in order."""
    at = 0
    try:
        for data in chunks:
            k = len(data) // width
            keep = mine[at:at + k]
            at += k
            if keep.any():
                yield np.frombuffer(data, dtype=np.uint8).reshape(k, width)[keep].tobytes()
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


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
