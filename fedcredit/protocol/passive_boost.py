"""The holder's side of SecureBoost training and scoring (DESIGN.md section 3, steps 2-6).

Per training session the holder bins its own features on the bank's training rows, then per
tree: receives the bank's encrypted (g, h) per row, builds encrypted histograms per open
node (summing the smaller child, deriving the larger by subtraction from the parent), and
returns the cumulative sums of its split candidates — all of its features mixed in one
secret per-tree order, only candidates that leave at least ``min_child_samples`` (and the
policy's ``min_node_samples``) enterprises on each side, packed several per ciphertext and
re-randomised. When one of its candidates wins, it records the split under a record id and
returns only the partition of the node's rows.

**Privacy** (what the bank learns from the holder): per node, the (G, H) sums of each valid
candidate, without the feature or bin it belongs to; for a split the holder won, the
partition of the node's rows and the feature's index (for feature importance), never the
threshold or bin. What the holder learns: the rows of each node the bank asks about, and the
ciphertexts, which it cannot decrypt.
"""
from __future__ import annotations

import random
import secrets
import uuid

import numpy as np
import pandas as pd

from ..binning import BinMapper
from ..errors import (InvalidCiphertext, InvalidInput, PolicyViolation, ProtocolError,
                      ResourceLimit)
from . import messages as m
from .hooks import HolderPolicy, StoredModel
from .histograms import NodeHistogram, cumulative_by_feature
from .packing import rows_from_bytes, rows_to_bytes
from .timing import Stopwatch

_SYSRAND = random.SystemRandom()


class _Tree:
    """State of the tree being grown: ciphertexts, node rows and node histograms."""

    def __init__(self, index: int, slot_bits: int, rows: np.ndarray, n_aligned: int,
                 n_candidates: int, bins: np.ndarray):
        self.index = index
        self.slot_bits = slot_bits
        self.rows = rows
        self.pos = np.full(n_aligned, -1, dtype=np.int64)
        self.pos[rows] = np.arange(len(rows))
        self.cts: list = []
        self.bins = bins  # this tree's bins (revoked consents read as missing)
        perm = list(range(n_candidates))
        _SYSRAND.shuffle(perm)  # cryptographic randomness: the bank must not predict it
        self.position_of = np.array(perm, dtype=np.int64)  # candidate -> position
        self.candidate_at = np.argsort(self.position_of)  # position -> candidate
        self.node_rows: dict[int, np.ndarray] = {0: rows}
        self.node_hist: dict[int, object] = {}
        self.node_valid: dict[int, np.ndarray] = {}  # candidates the bank knows, per node
        self.node_sent: dict[int, np.ndarray] = {}  # same, for the last layer (derivations)
        self.root_hist: NodeHistogram | None = None
        self.split_nodes: set[int] = set()


class HolderBoost:
    """Holder-side SecureBoost state for one training session."""

    def __init__(self, feats: pd.DataFrame, train_rows: np.ndarray, public_key,
                 policy: HolderPolicy, max_bin: int, min_child_samples: int, bank: str,
                 purpose: str):
        if len(train_rows) == 0:
            raise InvalidInput("no training rows")
        if len(np.unique(train_rows)) != len(train_rows):
            raise InvalidInput("training rows repeat")
        self.pk = public_key
        self.policy = policy
        self.n_aligned = len(feats)
        self.train_rows = np.sort(train_rows)
        self.mapper = BinMapper(max_bin).fit(feats.iloc[self.train_rows])
        self.bins = self.mapper.transform(feats)
        n_bins = self.mapper.n_bins
        self.sizes = n_bins + 1  # with the missing bin
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        has_missing = (self.bins[self.train_rows] == n_bins[None, :]).any(axis=0)
        self.min_side = max(int(min_child_samples), int(policy.min_node_samples), 1)
        cf, ct, cm = [], [], []
        for f, nb in enumerate(n_bins.tolist()):
            last = nb - 1 if has_missing[f] else nb - 2
            for t in range(last + 1):  # missing goes right (canonical) ...
                cf.append(f), ct.append(t), cm.append(False)
                if has_missing[f] and t <= nb - 2:  # ... or left
                    cf.append(f), ct.append(t), cm.append(True)
        self.cand_f = np.array(cf, dtype=np.int64)
        self.cand_t = np.array(ct, dtype=np.int64)
        self.cand_ml = np.array(cm, dtype=bool)
        self.model = StoredModel(uuid.UUID(bytes=secrets.token_bytes(16)).hex, bank, purpose,
                                 [str(c) for c in feats.columns], self.mapper.to_dict())
        self._next_record = 1
        self.tree: _Tree | None = None
        self.watch = Stopwatch()
        # re-randomisers are computed while the holder waits for the bank
        public_key.start_zero_pool(capacity=min(4096, 8 * self.n_candidates + 64))

    def close(self) -> None:
        """Stop background work; called when the session ends."""
        self.pk.stop_zero_pool()

    @property
    def n_candidates(self) -> int:
        return len(self.cand_f)

    def node_size(self, node_id: int) -> int:
        if self.tree is None:
            return 0
        rows = self.tree.node_rows.get(node_id)
        return 0 if rows is None else len(rows)

    # -- per tree ---------------------------------------------------------------------------
    def start_tree(self, index: int, slot_bits: int, rows: np.ndarray, fingerprint: str,
                   consented: np.ndarray) -> None:
        if len(self.model.trees) >= self.policy.max_trees:
            raise PolicyViolation(f"the holder's policy allows at most {self.policy.max_trees} "
                                  "trees per session")
        if fingerprint != self.pk.fingerprint:
            raise InvalidCiphertext("gradients announced under another key than the session's")
        if not 2 <= slot_bits <= self.pk.plaintext_bits:
            raise InvalidInput(f"slot width {slot_bits} is outside [2, {self.pk.plaintext_bits}]")
        if len(rows) == 0 or np.any(np.diff(rows) <= 0):
            raise InvalidInput("tree rows must be non-empty and strictly increasing")
        if not np.isin(rows, self.train_rows).all():
            raise InvalidInput("tree rows must be training rows")
        if len(rows) < self.policy.min_node_samples:
            raise PolicyViolation(f"a tree on {len(rows)} rows is below the holder's "
                                  f"min_node_samples={self.policy.min_node_samples}")
        bins = self.bins
        if not consented.all():  # enterprises that withdrew: their data is not used
            bins = bins.copy()
            bins[~consented] = (self.sizes - 1)[None, :]
        self.tree = _Tree(index, slot_bits, rows, self.n_aligned, self.n_candidates, bins)
        t = self.tree
        t.root_hist = NodeHistogram(self.pk, bins[rows], self.sizes, self.offsets)

    def _current(self, index: int) -> _Tree:
        if self.tree is None or self.tree.index != index:
            raise ProtocolError(f"tree {index} is not the tree being grown")
        return self.tree

    def add_gradients(self, offset: int, data: bytes) -> None:
        t = self.tree
        if t is None:
            raise ProtocolError("gradients arrived before TreeStart")
        if offset != len(t.cts):
            raise ProtocolError(f"gradient chunk at offset {offset}, expected {len(t.cts)}")
        with self.watch("holder_validate"):
            batch = self.pk.from_bytes_batch(data, what="gradient ciphertexts")
        if len(t.cts) + len(batch) > len(t.rows):
            raise InvalidInput("more gradient ciphertexts than tree rows")
        held = (len(t.cts) + len(batch)) * self.pk.ciphertext_bytes * 2  # values + histograms
        if held > self.policy.max_session_bytes:
            raise ResourceLimit(f"the tree's ciphertexts would exceed the holder's "
                                f"{self.policy.max_session_bytes >> 20} MiB session limit")
        t.cts.extend(batch.values)
        with self.watch("holder_histograms"):
            t.root_hist.add(batch.values)  # overlap: sum while later chunks are encrypted

    def finish_gradients(self) -> int:
        t = self.tree
        if t is None or len(t.cts) != len(t.rows):
            got = 0 if t is None else len(t.cts)
            raise ProtocolError(f"expected {0 if t is None else len(t.rows)} gradient "
                                f"ciphertexts, got {got}")
        t.node_hist[0] = t.root_hist.finish()
        t.root_hist = None
        return len(t.cts)

    # -- layers -----------------------------------------------------------------------------
    def _node_hist(self, t: _Tree, rows: np.ndarray):
        h = NodeHistogram(self.pk, t.bins[rows], self.sizes, self.offsets)
        cts = t.cts
        h.add([cts[i] for i in t.pos[rows].tolist()])
        return h.finish()

    def _left_counts(self, t: _Tree, rows: np.ndarray) -> np.ndarray:
        """Per candidate, how many of these rows go left."""
        nb = t.bins[rows]
        left = np.empty(self.n_candidates, dtype=np.int64)
        for f in range(len(self.sizes)):
            cnt = np.bincount(nb[:, f], minlength=int(self.sizes[f]))
            cum = np.cumsum(cnt[:-1])
            sel = self.cand_f == f
            left[sel] = cum[self.cand_t[sel]] + np.where(self.cand_ml[sel], cnt[-1], 0)
        return left

    def _sendable(self, n: int, left: np.ndarray, n_sib: int | None,
                  left_sib: np.ndarray | None) -> np.ndarray:
        """Candidates whose sums the bank may learn at a node.

        Both sides must hold ``min_side`` rows (min_child_samples, at least the policy
        floor). The bank can subtract a node's sums from its parent's, so the sibling's sides
        must also hold the policy floor: no disclosed or derivable aggregate ever describes
        fewer than ``min_node_samples`` enterprises.
        """
        ok = (left >= self.min_side) & (n - left >= self.min_side)
        if left_sib is not None:
            floor = self.policy.min_node_samples
            ok &= (left_sib >= floor) & (n_sib - left_sib >= floor)
        return ok

    def _check_rows(self, t: _Tree, task: m.NodeTask) -> np.ndarray:
        rows = rows_from_bytes(task.rows, self.n_aligned, f"node {task.node_id} rows")
        if len(rows) and np.any(np.diff(rows) <= 0):
            raise InvalidInput(f"node {task.node_id} rows must be strictly increasing")
        parent = t.node_rows.get(task.parent_id)
        if parent is None:
            raise ProtocolError(f"node {task.node_id}: unknown parent {task.parent_id}")
        if not np.isin(rows, parent, assume_unique=True).all():
            raise InvalidInput(f"node {task.node_id} rows are not rows of its parent")
        return rows

    def layer(self, index: int, tasks: list[m.NodeTask]) -> list[m.NodeCandidates]:
        t = self._current(index)
        floor = self.policy.min_node_samples
        rows_of, hist_of, left_of = {}, {}, {}
        for task in tasks:  # 1. rows and histograms: sum directly, or parent - sibling
            nid = task.node_id
            if nid in rows_of:
                raise InvalidInput(f"node {nid} is listed twice")
            if task.sibling_id >= 0:
                sib, par = task.sibling_id, task.parent_id
                if sib not in hist_of or par not in t.node_hist:
                    raise ProtocolError(f"node {nid}: derive it after its sibling {sib}, "
                                        "from a parent summed in the previous layer")
                rows = np.setdiff1d(t.node_rows[par], rows_of[sib], assume_unique=True)
            elif nid == 0:
                if task.parent_id >= 0 or 0 not in t.node_hist or t.split_nodes:
                    raise ProtocolError("node 0 is the root and only the first layer has it")
                rows = t.rows
            else:
                rows = self._check_rows(t, task)
                if nid in t.node_rows and not np.array_equal(t.node_rows[nid], rows):
                    raise InvalidInput(f"node {nid} rows differ from the split that made it")
            if len(rows) < floor:
                raise PolicyViolation(f"node {nid} holds {len(rows)} enterprises, below the "
                                      f"holder's min_node_samples={floor}")
            with self.watch("holder_histograms"):
                if task.sibling_id >= 0:
                    hist = self.pk.sub(t.node_hist[task.parent_id], hist_of[task.sibling_id])
                elif nid == 0:
                    hist = t.node_hist[0]
                else:
                    hist = self._node_hist(t, rows)
            rows_of[nid], hist_of[nid] = rows, hist
            left_of[nid] = self._left_counts(t, rows)
        out = []
        sent_of = {}
        for task in tasks:  # 2. what may be disclosed, and what the bank can derive itself
            nid = task.node_id
            rows, left = rows_of[nid], left_of[nid]
            par = task.parent_id
            if par >= 0:
                prow = t.node_rows[par]
                n_sib = len(prow) - len(rows)
                left_sib = self._left_counts(t, prow) - left
            else:
                n_sib, left_sib = None, None
            sent = self._sendable(len(rows), left, n_sib, left_sib)
            sent_of[nid] = sent
            derive = np.zeros_like(sent)
            if task.sibling_id >= 0:
                derive = sent & sent_of[task.sibling_id] & t.node_sent.get(par, derive)
            out.append(self._candidates_message(t, nid, hist_of[nid], sent & ~derive, derive))
        t.node_hist = hist_of  # the previous layer's histograms are no longer needed
        t.node_rows.update(rows_of)
        t.node_sent = sent_of
        t.node_valid = sent_of
        return out

    def _candidates_message(self, t: _Tree, nid: int, hist, send: np.ndarray,
                            derive: np.ndarray) -> m.NodeCandidates:
        derived = rows_to_bytes(np.sort(t.position_of[np.flatnonzero(derive)]))
        cand = np.flatnonzero(send)
        positions = np.sort(t.position_of[cand])
        chosen = t.candidate_at[positions]  # candidates in position order
        slots = self.pk.plaintext_bits // t.slot_bits
        if len(chosen) == 0:
            return m.NodeCandidates(node_id=nid, slots=slots, count=0, derived=derived)
        with self.watch("holder_cumulative"):
            cum = cumulative_by_feature(self.pk, hist, self.sizes, self.offsets)
        N = self.pk.cipher_modulus
        hv = hist.values
        values = []
        for c in chosen.tolist():
            f, tt = int(self.cand_f[c]), int(self.cand_t[c])
            v = cum[f][tt]
            if self.cand_ml[c]:
                v = v * hv[int(self.offsets[f] + self.sizes[f] - 1)] % N
            values.append(v)
        one = self.pk.trivial([0])[0]
        groups = -(-len(values) // slots)
        values += [one] * (groups * slots - len(values))
        columns = [self.pk._wrap(values[j::slots]) for j in range(slots)]
        with self.watch("holder_pack"):
            packed = self.pk.pack(columns, t.slot_bits)
        with self.watch("holder_rerandomize"):
            packed = self.pk.rerandomize(packed)
        return m.NodeCandidates(node_id=nid, positions=rows_to_bytes(positions),
                                packed=self.pk.to_bytes_batch(packed), slots=slots,
                                count=len(chosen), derived=derived)

    # -- splits -----------------------------------------------------------------------------
    def split(self, index: int, choices: list[m.SplitChoice]) -> list[m.SplitOutcome]:
        t = self._current(index)
        out = []
        for ch in choices:
            nid = ch.node_id
            if nid not in t.node_valid or nid in t.split_nodes:
                raise ProtocolError(f"node {nid} is not an open node of tree {index}")
            positions = rows_from_bytes(ch.positions, self.n_candidates, "candidate positions")
            if len(positions) == 0:
                raise InvalidInput(f"node {nid}: no candidate named")
            cands = t.candidate_at[positions]
            if not t.node_valid[nid][cands].all():
                raise InvalidInput(f"node {nid}: a named candidate is not valid at this node")
            c = int(cands.min())  # canonical among exact ties: lowest feature, then bin
            f, tt, ml = int(self.cand_f[c]), int(self.cand_t[c]), bool(self.cand_ml[c])
            rows = t.node_rows[nid]
            b = t.bins[rows, f].astype(np.int64)
            miss = b == int(self.sizes[f]) - 1
            left = np.where(miss, ml, b <= tt)
            record = self._next_record
            self._next_record += 1
            self.model.splits[record] = (f, tt, ml)
            t.split_nodes.add(nid)
            t.node_rows[ch.left_id] = rows[left]
            t.node_rows[ch.right_id] = rows[~left]
            out.append(m.SplitOutcome(node_id=nid, record_id=record, feature=f,
                                      left_rows=np.packbits(left).tobytes()))
        return out

    def finish_tree(self, index: int, nodes: list[m.TreeNode]) -> None:
        self._current(index)
        topology = []
        for nd in nodes:
            if nd.owner not in ("bank", "holder", "leaf"):
                raise InvalidInput(f"tree node {nd.node_id}: unknown owner {nd.owner!r}")
            if nd.owner == "holder" and nd.record_id not in self.model.splits:
                raise InvalidInput(f"tree node {nd.node_id}: unknown holder record {nd.record_id}")
            topology.append((int(nd.node_id), int(nd.left), int(nd.right), nd.owner,
                             int(nd.record_id)))
        _check_topology(topology)
        self.model.trees[index] = topology
        self.tree = None  # free the tree's ciphertexts


def _check_topology(nodes: list[tuple]) -> None:
    ids = {n[0] for n in nodes}
    if not nodes or nodes[0][0] != 0:
        raise InvalidInput("a tree must list its root (node 0) first")
    for nid, left, right, owner, _ in nodes:
        if owner == "leaf":
            continue
        if left not in ids or right not in ids:
            raise InvalidInput(f"tree node {nid} points at a missing child")


def reachable_leaves(model: StoredModel, rows: pd.DataFrame, trees: list[int]
                     ) -> list[tuple[int, bytes]]:
    """Per tree: (number of leaves, packed bits ids x leaves) reachable given holder splits."""
    mapper = BinMapper.from_dict(model.mapper)
    bins = mapper.transform(rows)
    missing = mapper.n_bins
    n = len(rows)
    out = []
    for tree in trees:
        nodes = model.trees[tree]
        reach = {0: np.ones(n, dtype=bool)}
        leaves = []
        for nid, left, right, owner, record in nodes:  # parents are listed before children
            r = reach.get(nid)
            if r is None:
                raise InvalidInput(f"tree {tree}: node {nid} is listed before its parent")
            if owner == "leaf":
                leaves.append(r)
                continue
            if owner == "bank":
                reach[left], reach[right] = r, r
            else:
                f, t, ml = model.splits[record]
                b = bins[:, f].astype(np.int64)
                go_left = np.where(b == missing[f], ml, b <= t)
                reach[left], reach[right] = r & go_left, r & ~go_left
        mat = np.stack(leaves, axis=1) if leaves else np.zeros((n, 0), dtype=bool)
        out.append((len(leaves), np.packbits(mat, axis=1).tobytes()))
    return out
