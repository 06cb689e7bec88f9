"""Grows one tree level by level, asking the holder for all of a level's nodes at once.

The grower is the same whether the holder's candidate sums come encrypted over a channel
(:class:`~fedcredit.models.secureboost.federated.FederatedHolder`) or from a plaintext
reference; that is what the lossless tests compare.

Per level: the nodes large enough to split are listed; those with at least the holder's
``min_node_samples`` rows are sent to the holder — the smaller of two siblings summed
directly, the larger derived as parent minus sibling. The bank's own candidates come from
plaintext histograms. The best split per node wins (the bank's on exact ties); a node
splits only if its gain is positive.

Monotone constraints (LightGBM's "basic" method) are enforced here, where the gains are
computed: a candidate of a constrained feature (the bank's own, or a holder candidate the
holder flagged as belonging to a feature the bank constrained) must not put a higher output
left (+1) or right (-1); each node carries output bounds that a monotone split tightens for
its subtrees (the midpoint of its two outputs), and every output below is clipped into
them. Missing values follow each split's learned direction: monotonicity holds over the
non-missing values, and the split "all non-missing left, missing right" is unconstrained.

The floor holds for the bank's splits too: a child whose sibling is below the holder's
floor is never sent, because the holder would derive that sibling as parent minus child (a
row set smaller than ``min_node_samples``, cut out by the bank's features and labels). Both
children of such a split then grow on the bank's features alone.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from ...protocol.secureboost import messages as m
from ...protocol.secureboost.bank import NodeStats
from ...protocol.secureboost.math import (
    SplitCandidates,
    candidate_left_sums,
    feature_layout,
    goes_left,
)
from ...protocol.wire import rows_to_bytes
from .splitting import SplitParams, child_bounds, constrained_gains, int_histograms
from .tree import Node, Tree

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class HolderSplit:
    record_id: int
    feature: int
    left: np.ndarray  # bool over the node's rows (ascending)


class HolderSource(Protocol):
    min_node_samples: int

    def start_tree(self, tree: int, rows: np.ndarray, g_int: np.ndarray,
                   h_int: np.ndarray) -> None: ...

    def layer(self, tree: int, depth: int, tasks: list[m.NodeTask]) -> dict[int, NodeStats]: ...

    def split(self, tree: int, choices: list[m.SplitChoice], node_rows: dict[int, np.ndarray]
              ) -> dict[int, HolderSplit]: ...

    def finish_tree(self, tree: int, result: Tree) -> None: ...


def each(items: Sequence[T], call: Callable[[T], R]) -> list[R]:
    """``call`` on every item, side by side when there are several (each holder computes
    its own histograms; the bank waits for the slowest, not the sum)."""
    if len(items) <= 1:
        return [call(x) for x in items]
    with ThreadPoolExecutor(len(items), thread_name_prefix="fedcredit-holder") as pool:
        return list(pool.map(call, items))


class TreeGrower:
    #: never send a node whose sibling is below the holder's floor (off only in the attack
    #: tests, to show what the holder derives without it)
    hide_small_siblings = True

    def __init__(self, bank_bins: np.ndarray, n_bins: np.ndarray, params: SplitParams,
                 max_depth: int, holder: HolderSource | Sequence[HolderSource] | None,
                 monotone: np.ndarray | None = None):
        self.bins = bank_bins
        self.missing = np.asarray(n_bins, dtype=np.int64)
        self.sizes, self.offsets = feature_layout(self.missing)
        self.cands = SplitCandidates.for_bins(bank_bins, self.missing)
        # per bank candidate: the feature's monotone direction for a threshold between
        # values; 0 for unconstrained features and for "non-missing left, missing right"
        mono = np.zeros(len(self.missing), dtype=np.int64) if monotone is None else \
            np.asarray(monotone, dtype=np.int64)
        f = self.cands.feature
        self.cand_direction = np.where(self.cands.bin <= self.missing[f] - 2, mono[f], 0) \
            if len(f) else np.zeros(0, dtype=np.int64)
        self.params = params
        self.max_depth = int(max_depth)
        #: the holders, in the model's order (the first wins exact ties after the bank)
        self.holders: list[HolderSource] = [] if holder is None else \
            list(holder) if isinstance(holder, (list, tuple)) else [holder]  # type: ignore
        self.split_seconds = 0.0  # the bank's split finding, for the time budget

    # -- bank side --------------------------------------------------------------------------
    def _bank_best(self, rows: np.ndarray, g_int, h_int, G: int, H: int, p: SplitParams,
                   bounds: tuple[float, float]):
        """(gain, candidate, direction, left output, right output) of the bank's best."""
        if len(self.cands) == 0:
            return -np.inf, -1, 0, 0.0, 0.0
        b = self.bins[rows]
        hg, hh, hc = int_histograms(b, self.sizes, self.offsets,
                                    [g_int[rows], h_int[rows], np.ones(len(rows))])
        GL = candidate_left_sums(hg, self.cands, self.sizes, self.offsets)
        HL = candidate_left_sums(hh, self.cands, self.sizes, self.offsets)
        CL = candidate_left_sums(hc, self.cands, self.sizes, self.offsets)
        mcs = p.min_child_samples
        gain, wl, wr = constrained_gains(GL, HL, G, H, p, *bounds, self.cand_direction)
        gain[(CL < mcs) | (len(rows) - CL < mcs)] = -np.inf
        k = int(np.argmax(gain))
        return float(gain[k]), k, int(self.cand_direction[k]), float(wl[k]), float(wr[k])

    @staticmethod
    def _holder_best(stats: NodeStats | None, G: int, H: int, p: SplitParams,
                     bounds: tuple[float, float]):
        """(gain, tied positions, direction, left output, right output) of the holder's
        best; the ties named share one monotone direction (the holder picks among them)."""
        none = (-np.inf, np.zeros(0, dtype=np.int64), 0, 0.0, 0.0)
        if stats is None or len(stats.positions) == 0:
            return none
        direction = stats.direction if stats.direction is not None else \
            np.zeros(len(stats.positions), dtype=np.int64)
        gain, wl, wr = constrained_gains(stats.G, stats.H, G, H, p, *bounds, direction)
        best = float(np.max(gain))
        if not np.isfinite(best):
            return none
        k = int(np.argmax(gain))
        ties = (gain == best) & (direction == direction[k])
        return best, stats.positions[ties], int(direction[k]), float(wl[k]), float(wr[k])

    # -- one tree ---------------------------------------------------------------------------
    def grow(self, tree_index: int, rows: np.ndarray, g: np.ndarray, h: np.ndarray,
             g_int: np.ndarray, h_int: np.ndarray, learning_rate: float,
             progress=None, params: SplitParams | None = None
             ) -> tuple[Tree, dict[int, np.ndarray]]:
        """Grow a tree on ``rows``; returns it and, per leaf id, the rows that reached it.
        ``params`` (default the grower's) carries this tree's fixed-point scales."""
        p = self.params if params is None else params
        holders = self.holders
        bounds: dict[int, tuple[float, float]] = {0: (-np.inf, np.inf)}
        each(holders, lambda src: src.start_tree(tree_index, rows, g_int[rows], h_int[rows]))
        nodes: dict[int, Node] = {0: Node(0, 0, count=len(rows))}
        order = [0]
        node_rows = {0: rows}
        parent_of: dict[int, int] = {}
        sibling_of: dict[int, int] = {}
        holder_prev: list[set[int]] = [set() for _ in holders]
        open_ids = [0]
        next_id = 1
        for depth in range(self.max_depth):
            splittable = [i for i in open_ids if len(node_rows[i]) >= 2 * p.min_child_samples]
            if not splittable:
                break
            asks: list[tuple[int, HolderSource, list[m.NodeTask]]] = []
            for k, src in enumerate(holders):
                tasks = self._holder_tasks(src, splittable, node_rows, parent_of, sibling_of,
                                           holder_prev[k])
                holder_prev[k] = {t.node_id for t in tasks}
                if tasks:
                    asks.append((k, src, tasks))

            def ask_layer(a: tuple[int, HolderSource, list[m.NodeTask]], d: int = depth) -> dict:
                return a[1].layer(tree_index, d, a[2])
            stats: list[dict] = [{} for _ in holders]
            for (k, _, _), got in zip(asks, each(asks, ask_layer)):
                stats[k] = got
            choices: list[list[m.SplitChoice]] = [[] for _ in holders]
            winner: dict[int, int] = {}
            bank_splits = {}
            for i in splittable:
                r = node_rows[i]
                G, H = int(g_int[r].sum()), int(h_int[r].sum())
                t_split = time.perf_counter()
                bgain, bk, *b_out = self._bank_best(r, g_int, h_int, G, H, p, bounds[i])
                best, pick = bgain, None  # the bank wins exact ties, then the first holder
                for k in range(len(holders)):
                    hgain, ties, *h_out = self._holder_best(stats[k].get(i), G, H, p, bounds[i])
                    if hgain > best and hgain > 0:
                        best, pick = hgain, (k, ties, h_out)
                self.split_seconds += time.perf_counter() - t_split
                if pick is not None:
                    k, ties, out = pick
                    choices[k].append(m.SplitChoice(node_id=i, positions=rows_to_bytes(ties),
                                                    left_id=next_id, right_id=next_id + 1))
                    winner[i] = k
                    nodes[i].gain = best
                elif bgain > 0:
                    bank_splits[i] = bk
                    nodes[i].gain, out = bgain, b_out
                else:
                    continue
                nodes[i].left, nodes[i].right = next_id, next_id + 1
                bounds[next_id], bounds[next_id + 1] = child_bounds(*bounds[i], *out)
                next_id += 2
            asked = [(src, choices[k]) for k, src in enumerate(holders) if choices[k]]
            holder_splits: dict[int, HolderSplit] = {}
            for got in each(asked, lambda a: a[0].split(tree_index, a[1], node_rows)):
                holder_splits.update(got)
            new_open = []
            for i in splittable:
                nd = nodes[i]
                if nd.left < 0:
                    continue
                r = node_rows[i]
                if i in bank_splits:
                    k = bank_splits[i]
                    f, t, ml = (int(self.cands.feature[k]), int(self.cands.bin[k]),
                                bool(self.cands.missing_left[k]))
                    left = goes_left(self.bins[r, f], self.missing[f], t, ml)
                    nd.owner, nd.feature, nd.bin, nd.missing_left = "bank", f, t, ml
                else:
                    hs = holder_splits[i]
                    left = hs.left
                    nd.owner, nd.feature, nd.record_id = "holder", hs.feature, hs.record_id
                    nd.holder = winner[i]
                for child, mask in ((nd.left, left), (nd.right, ~left)):
                    node_rows[child] = r[mask]
                    nodes[child] = Node(child, depth + 1, count=int(mask.sum()))
                    parent_of[child] = i
                    order.append(child)
                    new_open.append(child)
                sibling_of[nd.left], sibling_of[nd.right] = nd.right, nd.left
            open_ids = new_open
            if progress is not None:
                progress(depth)
        leaf_rows = {}
        for i in order:
            nd = nodes[i]
            if nd.left < 0:
                r = node_rows[i]
                nd.owner = "leaf"
                lo, hi = bounds[i]
                nd.value = float(np.clip(-g[r].sum() / (h[r].sum() + p.reg_lambda), lo, hi)
                                 * learning_rate)
                leaf_rows[i] = r
        tree = Tree([nodes[i] for i in order])
        each(holders, lambda src: src.finish_tree(tree_index, tree))
        return tree, leaf_rows

    def _holder_tasks(self, holder: HolderSource, splittable, node_rows, parent_of, sibling_of,
                      holder_prev):
        """One holder's nodes of a layer, by its own floor (``min_node_samples``) over the
        rows it serves (a holder's ``count``; every row when it has none)."""
        floor = holder.min_node_samples
        count: Callable[[np.ndarray], int] = getattr(holder, "count", len)

        def sibling_ok(i: int) -> bool:  # else the holder derives it as parent - node
            sib = sibling_of.get(i)
            return not self.hide_small_siblings or sib is None or count(node_rows[sib]) >= floor

        eligible = [i for i in splittable if count(node_rows[i]) >= max(floor, 1)
                    and sibling_ok(i)]
        chosen = set(eligible)
        tasks: list[m.NodeTask] = []
        done: set[int] = set()
        for i in eligible:
            if i in done:
                continue
            sib = sibling_of.get(i)
            par = parent_of.get(i, -1)
            if sib in chosen and par in holder_prev:
                a, b = (i, sib) if count(node_rows[i]) <= count(node_rows[sib]) else (sib, i)
                tasks.append(m.NodeTask(node_id=a, parent_id=par, rows=rows_to_bytes(node_rows[a])))
                tasks.append(m.NodeTask(node_id=b, parent_id=par, sibling_id=a))
                done.update((a, b))
            else:
                rows = b"" if i == 0 else rows_to_bytes(node_rows[i])
                tasks.append(m.NodeTask(node_id=i, parent_id=par, rows=rows))
                done.add(i)
        return tasks
