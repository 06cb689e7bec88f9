"""The active party (the bank): its half of every protocol step, over any :class:`Channel`.

An :class:`ActiveSession` is one session with a holder. Its methods send exactly the
messages of one step and return decoded results; the estimators in :mod:`fedcredit.models`
are written against these methods only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ..crypto import PrivateKey
from ..errors import InvalidInput, ProtocolError
from ..psi import PsiBank, split_points
from . import messages as m
from .channel import Channel
from .packing import GradientLayout, rows_from_bytes, rows_to_bytes
from .timing import Stopwatch


#: rows per gradient message: small enough that the holder starts summing early (measured:
#: 1024 beat 256, 512 and 2048 on the benchmark), large enough to amortise the framing
GRADIENT_CHUNK = 1024


@dataclass
class Alignment:
    """Result of PSI: which of the bank's rows the holder can serve, in the agreed order."""

    bank_positions: np.ndarray  # positions in the bank's id list, ascending
    ids: list[str]  # the aligned ids, same order (the session's row order)
    holder_offered: int  # size of the holder's consented set (what PSI reveals to the bank)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class NodeStats:
    """Decrypted cumulative sums of the holder's valid candidates at one node."""

    positions: np.ndarray
    G: np.ndarray  # int64, fixed-point
    H: np.ndarray


class ActiveSession:
    """One session of the bank with a holder.

    Parameters
    ----------
    channel : Channel
    task : {"train", "score", "woe", "lr"}
    private_key : PrivateKey, optional
        Fresh per training session; only its public half is sent.
    model_id : str
        For scoring sessions: the holder's id of the model to score with.
    workers : int or None
        Processes for encryption and decryption (None: all cores).
    """

    def __init__(self, channel: Channel, task: str, private_key: PrivateKey | None = None,
                 model_id: str = "", workers: int | None = None, purpose: str | None = None):
        self.channel = channel
        self.sk = private_key
        self.pk = private_key.public_key if private_key is not None else None
        self.workers = workers
        opened = channel.call(m.OpenSession(
            purpose=purpose or getattr(channel, "purpose", "credit"), task=task,
            scheme=self.pk.scheme if self.pk else "",
            public_key=self.pk.to_bytes() if self.pk else b"", model_id=model_id))
        if not isinstance(opened, m.SessionOpened):
            raise ProtocolError(f"expected SessionOpened, got {type(opened).__name__}")
        self.id = opened.session_id
        self.holder_name = opened.holder_name
        self.feature_names = list(opened.feature_names)
        self.min_node_samples = int(opened.min_node_samples)
        self.max_trees = int(opened.max_trees)
        self.alignment: Alignment | None = None
        self.watch = Stopwatch()

    def close(self) -> None:
        try:
            self.channel.call(m.CloseSession(session_id=self.id))
        except Exception:  # closing is best effort: the holder expires idle sessions anyway
            pass

    # -- alignment --------------------------------------------------------------------------
    def align(self, ids: Sequence[str]) -> Alignment:
        """ECDH-PSI with the holder's consented ids.

        **Privacy**: the holder learns how many ids the bank has and, at the end, exactly the
        intersection (the enterprises it will answer for); the bank learns which of its ids
        are in the holder's consented set and that set's size.
        """
        ids = [str(i) for i in ids]
        if len(set(ids)) != len(ids):
            raise InvalidInput("the bank's ids repeat; alignment needs unique ids")
        psi = PsiBank(self.id.encode())
        points = psi.blind(ids)
        parts = list(split_points(points)) or [b""]
        reqs = [m.PsiBlinded(session_id=self.id, points=p, last=(k == len(parts) - 1))
                for k, p in enumerate(parts)]
        doubled, holder_set, offered = [], [], 0
        for r in self.channel.exchange(reqs):
            if isinstance(r, m.PsiDoubleBlinded):
                doubled.append(r.points)
            elif isinstance(r, m.PsiHolderSet):
                holder_set.append(r.points)
                offered = r.total
            else:
                raise ProtocolError(f"unexpected {type(r).__name__} during PSI")
        res = psi.intersect(b"".join(doubled), b"".join(holder_set))
        order = np.argsort(res.bank_positions, kind="stable")
        bank_pos = np.asarray(res.bank_positions, dtype=np.int64)[order]
        holder_pos = np.asarray(res.holder_positions, dtype=np.int64)[order]
        ack = self.channel.call(m.PsiAlign(session_id=self.id, positions=rows_to_bytes(holder_pos)))
        if ack.count != len(bank_pos):
            raise ProtocolError("the holder aligned a different number of rows")
        self.alignment = Alignment(bank_pos, [ids[i] for i in bank_pos.tolist()], offered)
        return self.alignment

    # -- SecureBoost ------------------------------------------------------------------------
    def boost_start(self, rows: np.ndarray, max_bin: int, min_child_samples: int) -> int:
        r = self.channel.call(m.BoostStart(session_id=self.id, rows=rows_to_bytes(rows),
                                           max_bin=max_bin, min_child_samples=min_child_samples))
        return int(r.n_candidates)

    def send_gradients(self, tree: int, rows: np.ndarray, layout: GradientLayout,
                       g_int: np.ndarray, h_int: np.ndarray, chunk: int | None = None) -> int:
        """Encrypt ``g * 2**w_h + h`` per row and stream it; encryption overlaps sending.

        **Privacy**: the holder receives one Paillier ciphertext per row of the tree.
        """
        plain = layout.pack_rows(g_int, h_int)
        chunk = chunk or GRADIENT_CHUNK

        def requests() -> Iterator:
            yield m.TreeStart(session_id=self.id, tree=tree, slot_bits=layout.slot_bits,
                              rows=rows_to_bytes(rows), key_fingerprint=self.pk.fingerprint)
            offset = 0
            for data in self.sk.encrypt_bytes_iter(plain, chunk=chunk, workers=self.workers):
                yield m.GradientChunk(offset=offset, ciphertexts=data)
                offset += len(data) // self.pk.ciphertext_bytes

        with self.watch("bank_encrypt_and_upload"):
            ack = _single(self.channel.exchange(requests()))
        return int(ack.count)

    def layer(self, tree: int, depth: int, tasks: list[m.NodeTask], layout: GradientLayout
              ) -> dict[int, tuple[NodeStats, np.ndarray]]:
        """Encrypted candidate sums for a layer's nodes, decrypted in one parallel batch.

        Returns node id -> (stats received, positions to derive as parent - sibling).
        """
        with self.watch("bank_wait_layer"):
            msgs = list(self.channel.exchange([m.LayerRequest(session_id=self.id, tree=tree,
                                                              depth=depth, tasks=tasks)]))
        pk = self.pk
        batches, metas = [], []
        for r in msgs:
            if not isinstance(r, m.NodeCandidates):
                raise ProtocolError(f"unexpected {type(r).__name__} in a layer answer")
            cv = pk.from_bytes_batch(r.packed, what=f"node {r.node_id} candidates")
            batches.append(cv)
            metas.append(r)
        total = pk._wrap([]) if not batches else type(batches[0]).concat(batches)
        with self.watch("bank_decrypt"):
            plain = self.sk.decrypt(total, workers=self.workers) if len(total) else []
        out, at = {}, 0
        for r, cv in zip(metas, batches):
            part = plain[at:at + len(cv)]
            at += len(cv)
            G, H = layout.unpack_candidates(part, r.slots, r.count) if r.count else (
                np.zeros(0, np.int64), np.zeros(0, np.int64))
            pos = rows_from_bytes(r.positions, what="candidate positions")
            if len(pos) != r.count:
                raise ProtocolError(f"node {r.node_id}: {len(pos)} positions for {r.count} values")
            out[r.node_id] = (NodeStats(pos, G, H), rows_from_bytes(r.derived, what="derived"))
        return out

    def split(self, tree: int, choices: list[m.SplitChoice]) -> dict[int, m.SplitOutcome]:
        with self.watch("bank_wait_split"):
            r = self.channel.call(m.SplitRequest(session_id=self.id, tree=tree, choices=choices))
        return {o.node_id: o for o in r.outcomes}

    def finish_tree(self, tree: int, nodes: list[m.TreeNode]) -> None:
        self.channel.call(m.TreeFinish(session_id=self.id, tree=tree, nodes=nodes))

    def finish_model(self) -> str:
        r = self.channel.call(m.ModelFinish(session_id=self.id))
        return r.model_id

    # -- scoring ----------------------------------------------------------------------------
    def leaf_masks(self, ids: Sequence[str], trees: Sequence[int] = (), batch: int = 100_000
                   ) -> dict[int, np.ndarray]:
        """Per tree, a bool matrix (ids x leaves) of leaves reachable given the holder's splits.

        **Privacy**: the holder learns the ids being scored; the bank learns, per id and tree,
        which leaves the holder's splits allow — never a feature value or threshold.
        """
        ids = [str(i) for i in ids]
        out: dict[int, list[np.ndarray]] = {}
        for lo in range(0, len(ids), batch):
            part = ids[lo:lo + batch]
            for r in self.channel.exchange([m.PredictRequest(session_id=self.id, ids=part,
                                                             trees=list(trees))]):
                if not isinstance(r, m.LeafMasks):
                    raise ProtocolError(f"unexpected {type(r).__name__} in a scoring answer")
                bits = np.frombuffer(r.masks, dtype=np.uint8)
                width = -(-r.n_leaves // 8)
                if len(bits) != width * len(part):
                    raise ProtocolError(f"tree {r.tree}: leaf masks of the wrong size")
                mat = np.unpackbits(bits.reshape(len(part), width), axis=1)[:, :r.n_leaves]
                out.setdefault(r.tree, []).append(mat.astype(bool))
        return {t: np.concatenate(v, axis=0) for t, v in out.items()}


def _single(responses):
    items = list(responses)
    if len(items) != 1:
        raise ProtocolError(f"expected one response, got {len(items)}")
    return items[0]
