"""A tree's ciphertexts spread over a Dask engine's workers, so node histograms are summed
where the rows lie and only per-bin partial sums travel.

The holder ships each shard (about ``SHARD_ROWS`` consecutive rows of the tree: their
ciphertexts as fixed-width bytes, their bins) once per tree; per node it sends each shard
the node's positions within it, each worker sums its part with the same kernel as the local
path (:class:`~fedcredit.crypto.histogram.EncryptedHistogram`), and the partial histograms
are multiplied together. Ciphertext products mod N are the same in any order, so the
histogram is the local one exactly. A shard whose worker died is shipped again and its part
summed anew.
"""
from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import numpy as np

from .histogram import EncryptedHistogram
from .stored import StoredCiphertexts

if TYPE_CHECKING:
    from .base import CipherVector, PublicKey
    from .engine import DaskEngine

#: rows per shard: one task's work per node is then a few seconds at most
SHARD_ROWS = 2 ** 18
#: how often a layer is re-tried after losing a shard with its worker
RESHIPS = 2

_PARSED: dict[str, list] = {}  # worker side: this tree's shards, parsed once
_KEYS: dict[bytes, PublicKey] = {}


class ShardedCiphertexts:
    """The ciphertexts and bins of one tree's rows (in tree order), sharded on ``engine``."""

    def __init__(self, engine: DaskEngine, pk: PublicKey, cts: CipherVector | StoredCiphertexts,
                 bins: np.ndarray, sizes: np.ndarray, offsets: np.ndarray,
                 shard_rows: int | None = None):
        self.engine, self.pk = engine, pk
        self.sizes, self.offsets = np.asarray(sizes), np.asarray(offsets)
        n = len(cts)
        per = max(1, min(int(shard_rows or SHARD_ROWS), -(-n // max(1, engine.workers))))
        self.bounds = list(range(0, n, per)) + [n]
        self._data = [(uuid.uuid4().hex, pk.to_bytes(), _byte_range(pk, cts, a, b),
                       np.ascontiguousarray(bins[a:b]))
                      for a, b in zip(self.bounds[:-1], self.bounds[1:])]
        self._ship()

    def _ship(self) -> None:
        self.shards = self.engine.client.scatter(self._data, hash=False)

    def __len__(self) -> int:
        return len(self._data)

    def histogram(self, positions: np.ndarray) -> CipherVector:
        """The flat histogram of the rows at ``positions`` (increasing, in tree order)."""
        positions = np.asarray(positions, dtype=np.int64)
        cut = np.searchsorted(positions, self.bounds)
        parts = [(k, positions[cut[k]:cut[k + 1]] - self.bounds[k]) for k in range(len(self))
                 if cut[k + 1] > cut[k]]
        for attempt in range(RESHIPS + 1):
            try:
                futures = [self.engine.client.submit(_shard_histogram, self.shards[k], idx,
                                                     self.sizes, self.offsets, pure=False)
                           for k, idx in parts]
                partial = [f.result() for f in futures]
                break
            except Exception:  # noqa: BLE001 - a lost shard: ship it again, then re-raise
                if attempt == RESHIPS:
                    raise
                self._ship()
        out = self.pk.trivial_vector([0] * int(self.sizes.sum()))
        for data in partial:
            out = self.pk.add(out, self.pk._wrap(_parse(data, self.pk.ciphertext_bytes)))
        return out


def _byte_range(pk: PublicKey, cts: CipherVector | StoredCiphertexts, a: int, b: int) -> bytes:
    """Rows ``a``..``b`` as fixed-width bytes: a slice of stored ones, or serialized."""
    if isinstance(cts, StoredCiphertexts):
        return cts.byte_range(a, b)
    return pk._serialize(cts.values[a:b])


def _parse(data: bytes, width: int) -> list:
    from gmpy2 import mpz

    return [mpz.from_bytes(data[i:i + width], "big") for i in range(0, len(data), width)]


def _shard_histogram(shard, idx: np.ndarray, sizes: np.ndarray, offsets: np.ndarray) -> bytes:
    """Worker side: the histogram of rows ``idx`` of one shard, as fixed-width bytes."""
    from . import load_public_key

    token, pk_bytes, cts, bins = shard
    pk = _KEYS.get(pk_bytes)
    if pk is None:
        _KEYS.clear()
        pk = _KEYS[pk_bytes] = load_public_key(pk_bytes)
    values = _PARSED.get(token)
    if values is None:
        if len(_PARSED) > 64:  # an earlier tree's shards: not needed any more
            _PARSED.clear()
        values = _PARSED[token] = _parse(cts, pk.ciphertext_bytes)
    h = EncryptedHistogram(pk, bins[idx], sizes, offsets)
    h.add(pk._wrap([values[i] for i in idx.tolist()]))
    return pk._serialize(h.finish().values)


#: nodes at least this large are summed by the workers holding the tree's shards (on a Dask
#: engine); smaller ones here, where a task's round trip would cost more than the sums
SHARDED_MIN_ROWS = 4096
#: stored ciphertexts parsed per slice of a node's rows (9 MB of 4096-bit mpz at a time)
PARSE_ROWS = 2 ** 14


def node_histogram(pk: PublicKey, cts: CipherVector | StoredCiphertexts, bins: np.ndarray,
                   pos: np.ndarray, rows: np.ndarray, sizes: np.ndarray, offsets: np.ndarray,
                   sharded: ShardedCiphertexts | None = None) -> CipherVector:
    """A node's encrypted histogram from the tree's ciphertexts (``pos``: aligned row ->
    tree position), on the engine's workers or here: the same ciphertexts either way."""
    if sharded is not None and len(rows) >= SHARDED_MIN_ROWS:
        return sharded.histogram(pos[rows])
    h = EncryptedHistogram(pk, bins[rows], sizes, offsets)
    if not isinstance(cts, StoredCiphertexts):
        h.add(cts[pos[rows]])
        return h.finish()
    at = pos[rows]
    for a in range(0, len(at), PARSE_ROWS):  # parsed a slice at a time: bounded memory
        h.add(cts.take(at[a:a + PARSE_ROWS]))
    return h.finish()
