"""The bank's steps of SecureBoost, over a :class:`~fedcredit.protocol.session.BankSession`.

Each function sends exactly the messages of one step and returns decoded results; the
grower in :mod:`fedcredit.models.secureboost` is written against these functions only.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...crypto import CipherVector
from ...errors import ProtocolError
from ..messages import Ack
from ..session import BankSession
from ..wire import flags_from_bytes, join_flags, rows_from_bytes, rows_to_bytes
from . import messages as m
from .math import GradientLayout

#: make each tree's randomisers (Paillier's r**n, OU's h**a and h**b) while the bank waits
#: for the holder on the tree before: the critical path then pays a few multiplications a row
PRECOMPUTE_RANDOMISERS = True

#: rows per gradient message: small enough that the holder starts summing early (measured:
#: 1024 beat 256, 512 and 2048 on the benchmark), large enough to amortise the framing
GRADIENT_CHUNK = 1024


@dataclass
class NodeStats:
    """Decrypted cumulative sums of the holder's valid candidates at one node."""

    positions: np.ndarray
    G: np.ndarray  # int64, fixed-point
    H: np.ndarray
    direction: np.ndarray | None = None  # per position: monotone +1/-1, 0 (None: none)
    # as the holder flagged them (sent and derived positions alike)
    increasing: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    decreasing: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def with_directions(self) -> NodeStats:
        """These stats with ``direction`` filled from the holder's flags."""
        d = np.isin(self.positions, self.increasing).astype(np.int64) - \
            np.isin(self.positions, self.decreasing).astype(np.int64)
        return NodeStats(self.positions, self.G, self.H, d, self.increasing, self.decreasing)


def boost_start(session: BankSession, rows: np.ndarray, max_bin: int,
                min_child_samples: int, frac_bits: int = 0,
                monotone: dict[str, int] | None = None) -> int:
    """**Privacy**: the holder learns the training rows, the binning settings and the
    gradients' fixed-point precision (``frac_bits``), from which it caps the packing slot
    width at what honest gradients need (no room for identifiers in the low bits); with
    ``monotone`` (holder feature name -> +1/-1), which of its features the bank constrains
    and how. Per node the bank then learns which disclosed candidates are thresholds of
    those features (see :func:`layer`)."""
    monotone = dict(monotone or {})
    r = session.call(m.BoostStart(session_id=session.id, rows=rows_to_bytes(rows),
                                  max_bin=max_bin, min_child_samples=min_child_samples,
                                  frac_bits=int(frac_bits),
                                  monotone_features=list(monotone),
                                  monotone_directions=[int(v) for v in monotone.values()]),
                     m.BoostReady)
    if int(r.monotone_features) != len(monotone):
        raise ProtocolError(f"the holder accepted {r.monotone_features} of {len(monotone)} "
                            "monotone constraints: it is too old to enforce them")
    return int(r.n_candidates)


def encrypt_gradients(session: BankSession, layout: GradientLayout, g_int: np.ndarray,
                      h_int: np.ndarray, chunk: int | None = None) -> Iterator[bytes]:
    """The ciphertexts of ``g * 2**w_h + h`` per row, chunk by chunk, as they are made."""
    _, sk = session.key
    return sk.encrypt_bytes_iter(layout.pack_rows(g_int, h_int), chunk=chunk or GRADIENT_CHUNK,
                                 workers=session.workers)


def send_gradients(session: BankSession, tree: int, rows: np.ndarray, layout: GradientLayout,
                   g_int: np.ndarray, h_int: np.ndarray, chunk: int | None = None,
                   ciphertexts: Iterable[bytes] | None = None, rows_total: int = 0) -> int:
    """Encrypt ``g * 2**w_h + h`` per row and stream it; encryption overlaps sending.
    ``ciphertexts`` (chunks of :func:`encrypt_gradients` under this session's key) sends
    gradients encrypted once for several holders. ``rows_total``: the tree's rows where the
    holder serves only ``rows`` of them (``align="any"``).

    **Privacy**: the holder receives one ciphertext per row of the tree, and the tree's index.
    The first ``bank_only_trees`` trees (estimator knob, default 1) never come here: tree 0's
    gradients are a constant minus the label, so its node row sets are the most
    label-revealing; those trees grow on the bank's features alone and the holder sees no
    TreeStart, gradient, node or shape for them (it can tell only that the first federated
    tree's index is k). With ``rows_total``, it learns how many rows the tree has, not which.
    """
    pk, _ = session.key
    chunks = encrypt_gradients(session, layout, g_int, h_int, chunk) if ciphertexts is None \
        else ciphertexts

    def requests() -> Iterator:
        yield m.TreeStart(session_id=session.id, tree=tree, slot_bits=layout.slot_bits,
                          rows=rows_to_bytes(rows), key_fingerprint=pk.fingerprint,
                          rows_total=int(rows_total))
        offset = 0
        for data in chunks:
            yield m.GradientChunk(offset=offset, ciphertexts=data)
            offset += len(data) // pk.ciphertext_bytes

    with session.watch("bank_encrypt_and_upload"):
        ack = session.stream(requests(), Ack)
    return int(ack.count)


def unserved_sums(session: BankSession, layout: GradientLayout, g_sums: np.ndarray,
                  h_sums: np.ndarray) -> list[bytes]:
    """Per node, one ciphertext of the packed (g, h) sum over its rows the holder does not
    serve (``NodeTask.unserved``).

    **Privacy**: the holder cannot decrypt them; it learns only that the node holds rows it
    does not serve (the bank sends none otherwise), not how many."""
    if not len(g_sums):
        return []
    pk, sk = session.key
    with session.watch("bank_encrypt_and_upload"):
        cts = sk.encrypt(layout.pack_rows(np.asarray(g_sums), np.asarray(h_sums)))
    return [pk.to_bytes_batch(cts[k:k + 1]) for k in range(len(cts))]


def layer(session: BankSession, tree: int, depth: int, tasks: list[m.NodeTask],
          layout: GradientLayout) -> dict[int, tuple[NodeStats, np.ndarray]]:
    """Encrypted candidate sums for a layer's nodes, decrypted in one parallel batch.

    Returns node id -> (stats received, positions to derive as parent - sibling).

    **Privacy**: the holder learns the rows of each node it is sent (the smaller of two
    siblings; the larger as parent minus it), so also both children of a bank split — a
    partition by the bank's features and labels. The grower never sends a node whose sibling
    is below the holder's ``min_node_samples``, so no row set the holder knows or derives at
    a bank split is under that floor (without it, the holder derived e.g. 22- and 46-row
    sets under a floor of 50). The bank learns each valid holder candidate's (G, H), without
    its feature or bin; under monotone constraints also which of them are thresholds of
    the features it constrained (the grouping the secret order otherwise hides for those
    features: every set it isolates still holds ``min_bin_samples`` rows, the rule being
    written for a bank that can group candidates by feature).
    """
    pk, sk = session.key
    with session.watch("bank_wait_layer"):
        msgs = list(session.channel.exchange([m.LayerRequest(session_id=session.id, tree=tree,
                                                             depth=depth, tasks=tasks)]))
    batches, metas = [], []
    for r in msgs:
        if not isinstance(r, m.NodeCandidates):
            raise ProtocolError(f"unexpected {type(r).__name__} in a layer answer")
        batches.append(pk.from_bytes_batch(r.packed, what=f"node {r.node_id} candidates"))
        metas.append(r)
    total = CipherVector.concat(batches) if batches else pk.empty()
    with session.watch("bank_decrypt"):
        plain = sk.decrypt(total, workers=session.workers) if len(total) else []
    out, at = {}, 0
    for r, cv in zip(metas, batches):
        part = plain[at:at + len(cv)]
        at += len(cv)
        G, H = layout.unpack_candidates(part, r.slots, r.count) if r.count else (
            np.zeros(0, np.int64), np.zeros(0, np.int64))
        pos = rows_from_bytes(r.positions, what="candidate positions")
        if len(pos) != r.count:
            raise ProtocolError(f"node {r.node_id}: {len(pos)} positions for {r.count} values")
        out[r.node_id] = (NodeStats(pos, G, H,
                                    increasing=rows_from_bytes(r.increasing, what="increasing"),
                                    decreasing=rows_from_bytes(r.decreasing, what="decreasing")),
                          rows_from_bytes(r.derived, what="derived"))
    return out


def split(session: BankSession, tree: int, choices: list[m.SplitChoice]
          ) -> dict[int, m.SplitOutcome]:
    """**Privacy**: the holder learns which of its candidates won at a node; the bank learns
    the node's left/right partition and the winning feature's index, never its threshold."""
    with session.watch("bank_wait_split"):
        r = session.call(m.SplitRequest(session_id=session.id, tree=tree, choices=choices),
                         m.SplitResult)
    return {o.node_id: o for o in r.outcomes}


def finish_tree(session: BankSession, tree: int, nodes: list[m.TreeNode]) -> None:
    """**Privacy**: the holder learns the tree's shape (which node is whose split or a leaf),
    so for a bank split whose one child it was sent it derives the other (held to the
    floor, see :func:`layer`)."""
    session.call(m.TreeFinish(session_id=session.id, tree=tree, nodes=nodes), Ack)


def finish_model(session: BankSession) -> str:
    return session.call(m.ModelFinish(session_id=session.id), m.ModelSaved).model_id


def leaf_masks(session: BankSession, ids: Sequence[str], trees: Sequence[int] = (),
               batch: int = 100_000) -> dict[int, np.ndarray]:
    """Per tree, a bool matrix (ids x leaves) of leaves reachable given the holder's splits.

    **Privacy**: the holder learns the ids being scored; the bank learns, per id and tree,
    which leaves the holder's splits allow — never a feature value or threshold.
    """
    return leaf_masks_covered(session, ids, trees, batch)[0]


def leaf_masks_covered(session: BankSession, ids: Sequence[str], trees: Sequence[int] = (),
                       batch: int = 100_000) -> tuple[dict[int, np.ndarray], np.ndarray | None]:
    """:func:`leaf_masks` and, per id, whether the holder had its data and a current consent
    (None from a holder too old to say).

    **Privacy**: coverage is what alignment already shows the bank (which of its ids the
    holder serves)."""
    ids = [str(i) for i in ids]
    out: dict[int, list[np.ndarray]] = {}
    covered: list[np.ndarray | None] = []
    for lo in range(0, len(ids), batch):
        part = ids[lo:lo + batch]
        first = True
        request = m.PredictRequest(session_id=session.id, ids=part, trees=list(trees),
                                   batched=True)
        for r in session.channel.exchange([request]):
            if not isinstance(r, m.LeafMasks):
                raise ProtocolError(f"unexpected {type(r).__name__} in a scoring answer")
            if first:
                covered.append(flags_from_bytes(r.covered, len(part), "holder coverage"))
                first = False
            for tree, mat in _tree_masks(r, len(part)):
                out.setdefault(tree, []).append(mat)
    masks = {t: np.concatenate(v, axis=0) for t, v in out.items()}
    return masks, join_flags(covered, len(ids))


def _tree_masks(r: m.LeafMasks, n: int):
    """(tree, ids x leaves bool matrix) for each tree one LeafMasks carries: one tree, or
    every tree of a batched answer (``trees``/``widths``, matrices back to back)."""
    trees, widths = (list(r.trees), list(r.widths)) if r.trees else ([r.tree], [r.n_leaves])
    if len(trees) != len(widths):
        raise ProtocolError("a batched answer names a different number of trees and widths")
    bits = np.frombuffer(r.masks, dtype=np.uint8)
    at = 0
    for tree, k in zip(trees, widths):
        width = -(-int(k) // 8)
        size = width * n
        if k < 0 or at + size > len(bits):
            raise ProtocolError(f"tree {tree}: leaf masks of the wrong size")
        mat = np.unpackbits(bits[at:at + size].reshape(n, width), axis=1)[:, :k]
        at += size
        yield tree, mat.astype(bool)
    if at != len(bits):
        raise ProtocolError("leaf masks of the wrong size")
