"""The holder's state and steps of SecureBoost training and scoring.

Per training session the holder bins its own features on the bank's training rows, then per
tree: receives the bank's encrypted (g, h) per row, builds encrypted histograms per open
node (summing the smaller child, deriving the larger by subtraction from the parent), and
returns the cumulative sums of its split candidates — all of its features mixed in one
secret per-tree order, only candidates that leave at least ``min_child_samples`` (and the
policy's ``min_node_samples``) enterprises on each side, packed several per ciphertext and
re-randomised. When one of its candidates wins, it records the split under a record id and
returns only the partition of the node's rows. Of rows other holders serve and it does not
(``align="any"``) it gets one encrypted sum per node, added to its missing bins.

**Privacy** (what the bank learns from the holder): per node, the (G, H) sums of each valid
candidate, without the feature or bin it belongs to; for a split the holder won, the
partition of the node's rows and the feature's index (for feature importance), never the
threshold or bin. Every set of rows the bank can isolate from those sums (between two known
thresholds of one feature, the missing rows, two nearly nested candidates of two features,
parent - child) holds at least ``policy.min_bin_samples`` enterprises (default 30; see
``math.bin_mass_keep``), and the floor ``min_node_samples`` bounds every node and side. What
the holder learns: the rows of each node the bank asks about, and the ciphertexts, which it
cannot decrypt. Partial hardening against a crafting bank (a full defence needs MPC): slots
no wider than honest gradients need (``TreeStart.slot_bits``, ``BoostStart.frac_bits`` <=
32), at most ``policy.max_tree_depth`` layers per tree, two children per parent that
partition it.
"""
from __future__ import annotations

import random
import secrets
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from ...binning import BinMapper
from ...crypto import CipherVector, EncryptedHistogram, PublicKey, StoredCiphertexts
from ...crypto.histogram import with_unserved
from ...crypto.parallel import current_engine
from ...crypto.sharded import ShardedCiphertexts, node_histogram
from ...errors import InvalidCiphertext, InvalidInput, PolicyViolation, ProtocolError, ResourceLimit
from ...memory import release_freed_memory
from ..channel import Caller
from ..context import HolderContext
from ..drift.math import bin_distribution
from ..hooks import StoredModel
from ..messages import Ack
from ..policy import HolderPolicy
from ..session import Session
from ..timing import Stopwatch
from ..wire import flags_to_bytes, increasing_rows, rows_from_bytes
from . import messages as m
from .math import (
    MAX_FRAC_BITS,
    GradientLayout,
    LayerNode,
    SplitCandidates,
    bin_counts,
    candidate_left_sums,
    candidates_message,
    check_layer_parents,
    check_topology,
    disclose_layer,
    feature_layout,
    goes_left,
    scored_trees,
)

OPERATIONS = ("boost_start", "tree_start", "histograms", "split", "tree_finish",
              "model_finish", "predict")

_SYSRAND = random.SystemRandom()


class _Tree:
    """State of the tree being grown: ciphertexts, node rows and node histograms."""

    def __init__(self, index: int, slot_bits: int, rows: np.ndarray, n_aligned: int,
                 n_candidates: int, bins: np.ndarray, pk: PublicKey, others: bool = False):
        self.index, self.slot_bits, self.rows = index, slot_bits, rows
        self.pos = np.full(n_aligned, -1, dtype=np.int64)
        self.pos[rows] = np.arange(len(rows))
        self.received, self.layers = 0, 0  # layers answered: the depth, as the holder counts
        self.cts, self.complete = StoredCiphertexts(pk), False  # all in once the last chunk is
        self.bins = bins  # this tree's bins (revoked consents read as missing)
        perm = list(range(n_candidates))
        _SYSRAND.shuffle(perm)  # cryptographic randomness: the bank must not predict it
        self.position_of = np.array(perm, dtype=np.int64)  # candidate -> position
        self.candidate_at = np.argsort(self.position_of)  # position -> candidate
        self.node_rows: dict[int, np.ndarray] = {0: rows}
        self.node_hist: dict[int, CipherVector] = {}
        self.node_valid: dict[int, np.ndarray] = {}  # candidates the bank knows, per node
        self.node_sent: dict[int, np.ndarray] = {}  # same, for the last layer (derivations)
        self.root_hist: EncryptedHistogram | None = None
        self.sharded: ShardedCiphertexts | None = None  # on a Dask engine
        self.others = others  # the tree holds rows other holders serve (align="any")
        self.split_nodes: set[int] = set()


class HolderBoost:
    """Holder-side SecureBoost state for one training session."""

    def __init__(self, feats: pd.DataFrame, train_rows: np.ndarray, public_key: PublicKey,
                 policy: HolderPolicy, max_bin: int, min_child_samples: int, bank: str,
                 purpose: str, frac_bits: int = 0, monotone: tuple = ((), ())):
        if not 0 <= frac_bits <= MAX_FRAC_BITS:
            raise InvalidInput(f"frac_bits {frac_bits} is outside [0, {MAX_FRAC_BITS}]")
        self.frac_bits = int(frac_bits) or MAX_FRAC_BITS
        train_rows = np.sort(train_rows)  # repeats by sorting: 1M rows in 0.1 s, not 1.2
        if len(train_rows) == 0 or np.any(train_rows[1:] == train_rows[:-1]):
            raise InvalidInput("training rows must be non-empty and never repeat")
        self.pk, self.policy = public_key, policy
        self.n_aligned, self.train_rows = len(feats), train_rows
        self.mapper = BinMapper(max_bin).fit(feats, rows=self.train_rows)
        self.bins = self.mapper.transform(feats)
        self.sizes, self.offsets = feature_layout(self.mapper.n_bins)  # missing bin last
        self.min_side = max(int(min_child_samples), int(policy.min_node_samples), 1)
        self.cands = SplitCandidates.for_bins(self.bins[self.train_rows], self.mapper.n_bins)
        names = [str(c) for c in feats.columns]
        self.cand_direction = self.mapper.candidate_directions(self.cands, *monotone)
        self.model = StoredModel(uuid.UUID(bytes=secrets.token_bytes(16)).hex, bank, purpose,
                                 names, self.mapper.to_dict(), columns=names,  # CSI's reference
                                 bin_counts=bin_distribution(self.bins[train_rows], self.sizes))
        self._next_record, self.watch, self.engine = 1, Stopwatch(), current_engine()
        self.tree: _Tree | None = None
        # re-randomisers are computed while the holder waits for the bank
        public_key.start_zero_pool(capacity=min(4096, 8 * self.n_candidates + 64))

    def close(self) -> None:  # background work stops when the session ends
        self.pk.stop_zero_pool()

    @property
    def n_candidates(self) -> int:
        return len(self.cands)

    def node_size(self, node_id: int) -> int:
        rows = None if self.tree is None else self.tree.node_rows.get(node_id)
        return 0 if rows is None else len(rows)

    # -- per tree ---------------------------------------------------------------------------
    def start_tree(self, index: int, slot_bits: int, rows: np.ndarray, fingerprint: str,
                   consented: np.ndarray, rows_total: int = 0) -> None:
        cap = self.policy.max_trees_per_session
        if len(self.model.trees) >= cap:
            raise PolicyViolation(f"the holder's policy allows at most {cap} trees per session")
        if fingerprint != self.pk.fingerprint:
            raise InvalidCiphertext("gradients announced under another key than the session's")
        if len(rows) == 0 or np.any(np.diff(rows) <= 0):
            raise InvalidInput("tree rows must be non-empty and strictly increasing")
        if not (rows_total == 0 or len(rows) <= rows_total < 2 ** 32):
            raise InvalidInput(f"a tree of {rows_total} rows cannot hold {len(rows)} of them")
        n = max(len(rows), int(rows_total))  # others' rows join the missing bins' sums
        cap = GradientLayout.honest_bound(n, self.frac_bits, self.pk.plaintext_bits)
        if not 2 <= slot_bits <= cap:
            raise InvalidInput(f"slot width {slot_bits} is outside [2, {cap}], what gradients "
                               f"at frac_bits={self.frac_bits} over {n} rows need")
        if not np.isin(rows, self.train_rows).all():
            raise InvalidInput("tree rows must be training rows")
        if len(rows) < self.policy.min_node_samples:
            raise PolicyViolation(f"a tree on {len(rows)} rows is below the holder's "
                                  f"min_node_samples={self.policy.min_node_samples}")
        bins = self.bins
        if not consented.all():  # enterprises that withdrew: their data is not used
            bins = bins.copy()
            bins[~consented] = (self.sizes - 1)[None, :]
        self.tree = _Tree(index, slot_bits, rows, self.n_aligned, self.n_candidates, bins,
                          self.pk, others=n > len(rows))  # TreeStart.rows_total: others' rows join
        self.tree.root_hist = EncryptedHistogram(self.pk, bins[rows], self.sizes, self.offsets)

    def _current(self, index: int) -> _Tree:
        if self.tree is None or self.tree.index != index:
            raise ProtocolError(f"tree {index} is not the tree being grown")
        return self.tree

    def add_gradients(self, offset: int, data: bytes) -> None:
        t = self.tree
        if t is None or t.root_hist is None:
            raise ProtocolError("gradients arrived outside a tree's stream: before its "
                                "TreeStart or after its last chunk")
        if offset != t.received:
            raise ProtocolError(f"gradient chunk at offset {offset}, expected {t.received}")
        with self.watch("holder_validate"):
            batch = self.pk.from_bytes_batch(data, what="gradient ciphertexts")
        if t.received + len(batch) > len(t.rows):
            raise InvalidInput("more gradient ciphertexts than tree rows")
        held = (t.received + len(batch)) * self.pk.ciphertext_bytes * 2  # values + histograms
        if held > self.policy.max_session_bytes:
            raise ResourceLimit(f"the tree's ciphertexts would exceed the holder's "
                                f"{self.policy.max_session_mib} MiB session limit")
        t.cts.append(data, batch)  # kept as the wire's bytes: ~12 % less than as mpz
        t.received += len(batch)
        with self.watch("holder_histograms"):
            t.root_hist.add(batch)  # overlap: sum while later chunks are encrypted

    def finish_gradients(self) -> int:
        t = self.tree
        if t is None or t.received != len(t.rows) or t.root_hist is None:
            got = 0 if t is None else t.received
            raise ProtocolError(f"expected {0 if t is None else len(t.rows)} gradient "
                                f"ciphertexts, got {got}")
        t.node_hist[0], t.root_hist, t.complete = t.root_hist.finish(), None, True
        if self.engine is not None:  # the tree's shards go to the workers once
            t.sharded = ShardedCiphertexts(self.engine, self.pk, t.cts, t.bins[t.rows],
                                           self.sizes, self.offsets)
        return t.received

    # -- layers -----------------------------------------------------------------------------
    def _node_hist(self, t: _Tree, rows: np.ndarray) -> CipherVector:
        if not t.complete:
            raise ProtocolError("the tree's gradients are not complete")
        return node_histogram(self.pk, t.cts, t.bins, t.pos, rows, self.sizes, self.offsets,
                              t.sharded)

    def _check_rows(self, t: _Tree, task: m.NodeTask) -> np.ndarray:
        rows = increasing_rows(task.rows, self.n_aligned, f"node {task.node_id} rows")
        parent = t.node_rows.get(task.parent_id)
        if parent is None:
            raise ProtocolError(f"node {task.node_id}: unknown parent {task.parent_id}")
        if not np.isin(rows, parent, assume_unique=True).all():
            raise InvalidInput(f"node {task.node_id} rows are not rows of its parent")
        return rows

    def layer(self, index: int, depth: int, tasks: list[m.NodeTask]) -> list[m.NodeCandidates]:
        t = self._current(index)
        floor, cap = self.policy.min_node_samples, int(self.policy.max_tree_depth)
        if depth != t.layers:  # the holder counts the layers itself
            raise ProtocolError(f"layer at depth {depth}, expected {t.layers}")
        if cap and t.layers >= cap:
            raise PolicyViolation(f"a tree deeper than the holder's max_tree_depth={cap}")
        check_layer_parents([task.parent_id for task in tasks], set(t.node_hist))
        direct: dict[int, np.ndarray] = {}
        rows_of: dict[int, np.ndarray] = {}
        hist_of: dict[int, CipherVector] = {}
        views: list[LayerNode] = []
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
                other = direct.get(task.parent_id)
                if other is not None and (np.intersect1d(other, rows, assume_unique=True).size
                                          or len(other) + len(rows)
                                          != len(t.node_rows[task.parent_id])):
                    raise InvalidInput(f"node {nid} and its sibling must partition their parent")
                direct[task.parent_id] = rows
            if len(rows) < floor:
                raise PolicyViolation(f"node {nid} holds {len(rows)} enterprises, below the "
                                      f"holder's min_node_samples={floor}")
            if task.unserved and (task.sibling_id >= 0 or not t.others):
                raise InvalidInput(f"node {nid}: a sum of others' rows it was not told of")
            with self.watch("holder_histograms"):
                if task.sibling_id >= 0:
                    hist = self.pk.sub(t.node_hist[task.parent_id], hist_of[task.sibling_id])
                else:
                    hist = with_unserved(self.pk, t.node_hist[0] if nid == 0 else
                                         self._node_hist(t, rows), task.unserved, self.sizes,
                                         self.offsets, f"node {nid} unserved sum")
            rows_of[nid], hist_of[nid] = rows, hist
            node_bins = t.bins[rows]
            counts = bin_counts(node_bins, self.sizes, self.offsets)
            views.append(LayerNode(nid, task.parent_id, task.sibling_id, rows, counts,
                                   candidate_left_sums(counts, self.cands, self.sizes,
                                                       self.offsets), node_bins))
        # 2. what may be disclosed (floor, minimum bin mass), and what the bank derives itself
        parents = {v.parent_id for v in views if v.parent_id >= 0}
        known, derive = disclose_layer(
            views, {p: t.node_rows[p] for p in parents},
            {p: bin_counts(t.bins[t.node_rows[p]], self.sizes, self.offsets) for p in parents},
            t.node_sent, self.cands, self.sizes, self.offsets, self.min_side, floor,
            int(self.policy.min_bin_samples), t.bins)
        out = [candidates_message(self.pk, self.cands, self.sizes, self.offsets, t.position_of,
                                  t.slot_bits, v.node_id, hist_of[v.node_id],
                                  known[v.node_id] & ~derive[v.node_id], derive[v.node_id],
                                  self.watch, self.cand_direction) for v in views]
        t.node_hist = hist_of  # the previous layer's histograms are no longer needed
        t.node_rows.update(rows_of)
        t.node_sent = t.node_valid = known
        t.layers += 1
        return out

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
            f = int(self.cands.feature[c])
            tt, ml = int(self.cands.bin[c]), bool(self.cands.missing_left[c])
            rows = t.node_rows[nid]
            left = goes_left(t.bins[rows, f], int(self.sizes[f]) - 1, tt, ml)
            record = self._next_record
            self._next_record += 1
            self.model.splits[record] = (f, tt, ml)
            t.split_nodes.add(nid)
            t.node_rows[ch.left_id] = rows[left]
            t.node_rows[ch.right_id] = rows[~left]
            out.append(m.SplitOutcome(node_id=nid, record_id=record, feature=f,
                                      left_rows=np.packbits(left).tobytes(),
                                      unserved_left=ml and ch.unserved))
        return out

    def finish_tree(self, index: int, nodes: list[m.TreeNode]) -> None:
        t = self._current(index)
        topology = []
        for nd in nodes:
            if nd.owner not in ("bank", "holder", "leaf"):
                raise InvalidInput(f"tree node {nd.node_id}: unknown owner {nd.owner!r}")
            if nd.owner == "holder" and nd.record_id not in self.model.splits:
                raise InvalidInput(f"tree node {nd.node_id}: unknown holder record {nd.record_id}")
            topology.append((int(nd.node_id), int(nd.left), int(nd.right), nd.owner,
                             int(nd.record_id)))
        check_topology(topology, len(t.rows))
        self.model.trees[index] = topology
        self.tree = None  # free the tree's ciphertexts, and hand their pages back
        release_freed_memory()


# -- the steps ------------------------------------------------------------------------------------
def _boost(s: Session) -> HolderBoost:
    return s.state_as(HolderBoost, "BoostStart before tree messages")


def boost_start(core: HolderContext, caller: Caller, msg: m.BoostStart, rest) -> Iterator:
    s = core.session(caller, msg.session_id, task="train")
    with s.lock:
        feats = core.aligned_features(s)
        rows = rows_from_bytes(msg.rows, len(feats), "training rows")
        s.replace_state(HolderBoost(feats, rows, s.key, core.policy, msg.max_bin,
                                    msg.min_child_samples, s.bank, s.purpose, msg.frac_bits,
                                    (msg.monotone_features, msg.monotone_directions)))
        ids = feats.index if s.aligned_ids is None else s.aligned_ids  # no second million
        core.audit(caller, s, "boost_start", len(rows), ids=[ids[i] for i in rows.tolist()])
        ready = m.BoostReady(n_features=feats.shape[1], n_candidates=_boost(s).n_candidates,
                             monotone_features=len(msg.monotone_features))
        del feats  # the aligned copy and the binning's transients: pages back before the tree
        release_freed_memory()
    yield ready


def tree_start(core: HolderContext, caller: Caller, msg: m.TreeStart, rest) -> Iterator:
    s = core.session(caller, msg.session_id, task="train")
    with s.lock:
        boost = _boost(s)
        ids = s.aligned_ids or []
        rows = rows_from_bytes(msg.rows, len(ids), "tree rows")
        boost.start_tree(msg.tree, msg.slot_bits, rows, msg.key_fingerprint,
                         core.consent_mask(s, ids), msg.rows_total)
        core.audit(caller, s, "tree_start", len(rows), f"tree={msg.tree}")
        for chunk in rest:
            if not isinstance(chunk, m.GradientChunk):
                raise ProtocolError("a tree's gradient stream mixes in other messages")
            boost.add_gradients(chunk.offset, chunk.ciphertexts)
        count = boost.finish_gradients()
    yield Ack(session_id=s.id, count=count)


def layer(core: HolderContext, caller: Caller, msg: m.LayerRequest, rest) -> Iterator:
    s = core.session(caller, msg.session_id, task="train")
    with s.lock:
        boost = _boost(s)
        results = boost.layer(msg.tree, msg.depth, msg.tasks)
        core.audit(caller, s, "histograms", sum(boost.node_size(t.node_id) for t in msg.tasks),
                   f"tree={msg.tree} depth={msg.depth} nodes={len(msg.tasks)}")
    yield from results


def split(core: HolderContext, caller: Caller, msg: m.SplitRequest, rest) -> Iterator:
    s = core.session(caller, msg.session_id, task="train")
    with s.lock:
        boost = _boost(s)
        outcomes = boost.split(msg.tree, msg.choices)
        core.audit(caller, s, "split", sum(boost.node_size(c.node_id) for c in msg.choices),
                   f"tree={msg.tree} splits={len(msg.choices)}")
    yield m.SplitResult(outcomes=outcomes)


def tree_finish(core: HolderContext, caller: Caller, msg: m.TreeFinish, rest) -> Iterator:
    s = core.session(caller, msg.session_id, task="train")
    with s.lock:
        boost = _boost(s)
        boost.finish_tree(msg.tree, msg.nodes)
        core.models.save(boost.model)
        core.audit(caller, s, "tree_finish", 0, f"tree={msg.tree}")
    yield Ack(session_id=s.id, count=len(boost.model.trees))


def model_finish(core: HolderContext, caller: Caller, msg: m.ModelFinish, rest) -> Iterator:
    s = core.session(caller, msg.session_id, task="train")
    with s.lock:
        boost = _boost(s)
        core.models.save(boost.model)
        core.audit(caller, s, "model_finish", 0, f"model={boost.model.model_id}")
    yield m.ModelSaved(model_id=boost.model.model_id, n_trees=len(boost.model.trees))


def predict(core: HolderContext, caller: Caller, msg: m.PredictRequest, rest) -> Iterator:
    s = core.session(caller, msg.session_id)
    with s.lock:
        if s.task not in ("train", "score"):
            raise ProtocolError(f"a {s.task} session cannot score")
        model = _boost(s).model if s.task == "train" else core.stored_model(s, msg.trees)
        if "kind" in model.mapper:  # other protocols' models name their kind
            raise InvalidInput(f"model {model.model_id!r} is not a SecureBoost model")
        if not core.policy.allow_plain_scoring:
            raise PolicyViolation("this holder scores SecureBoost models privately only (policy"
                                  ".allow_plain_scoring = false): score with scoring='private'")
        rows, served = core.scoring_rows(s, msg.ids, model)
        trees = scored_trees(msg.trees, model.trees)
        mapper = model.bin_mapper()
        bins = mapper.transform(rows)  # once, not per tree (~23 ms each for one enterprise)
        answers = model.leaf_paths(trees).packed(bins, mapper.n_bins)
        core.audit(caller, s, "predict", int(served.sum()),
                   f"ids={len(msg.ids)} trees={len(trees)}", ids=rows.index[served])
    covered = flags_to_bytes(served)
    if msg.batched:  # every tree in one message: one gRPC message for an online score
        yield m.LeafMasks(masks=b"".join(b for _, b in answers), covered=covered,
                          trees=list(trees), widths=[k for k, _ in answers])
        return
    for k, (tree, (n_leaves, masks)) in enumerate(zip(trees, answers)):
        yield m.LeafMasks(tree=tree, n_leaves=n_leaves, masks=masks,
                          covered=covered if k == 0 else b"")


HANDLERS: dict[type, Callable[..., Iterator]] = {
    m.BoostStart: boost_start, m.TreeStart: tree_start, m.LayerRequest: layer,
    m.SplitRequest: split, m.TreeFinish: tree_finish, m.ModelFinish: model_finish,
    m.PredictRequest: predict,
}
