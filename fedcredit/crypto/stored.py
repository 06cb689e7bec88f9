"""A tree's received ciphertexts, kept as the fixed-width bytes they arrived in.

The holder keeps every row's ciphertext for the whole tree (each layer sums some of them
again). As ``mpz`` objects a 4096-bit Paillier ciphertext costs about 585 bytes of memory
(object header, limbs, allocator overhead), as its wire form exactly 512: about 73 MB less
per million rows, on the party whose peak the tree's ciphertexts set. A node's rows are
parsed when it is summed (about a microsecond a row, against the several multiplications a
row costs in the sum), and a Dask shard is a slice of the bytes, never a re-serialization.

Only bytes that :meth:`PublicKey.from_bytes_batch` validated go in, so every ciphertext
parsed back out is one that passed the range and unit checks.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from gmpy2 import mpz

from ..errors import InvalidInput

if TYPE_CHECKING:
    from .base import CipherVector, PublicKey


class StoredCiphertexts:
    """Validated ciphertexts in arrival order, as fixed-width big-endian bytes in chunks."""

    def __init__(self, pk: PublicKey):
        self.pk, self.width = pk, pk.ciphertext_bytes
        self._chunks: list[bytes] = []
        self._starts: list[int] = []  # row index of each chunk's first ciphertext
        self._n = 0

    def append(self, data: bytes, batch: CipherVector) -> None:
        """Keep ``data``, the wire bytes ``batch`` was parsed (and validated) from."""
        if len(data) != len(batch) * self.width:
            raise InvalidInput(f"{len(data)} bytes are not the {len(batch)} ciphertexts "
                               "parsed from them")
        if len(batch):
            self._chunks.append(bytes(data))  # a bytes object is not copied; a view would be
            self._starts.append(self._n)
            self._n += len(batch)

    def __len__(self) -> int:
        return self._n

    def take(self, positions: np.ndarray) -> CipherVector:
        """The ciphertexts at ``positions`` (any order), parsed."""
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= self._n):
            raise InvalidInput(f"ciphertext positions outside [0, {self._n})")
        starts = np.asarray(self._starts, dtype=np.int64)
        which = np.searchsorted(starts, pos, "right") - 1
        at = (pos - starts[which]) * self.width
        frm, w, chunks = mpz.from_bytes, self.width, self._chunks
        return self.pk._wrap([frm(chunks[c][o:o + w], "big")
                              for c, o in zip(which.tolist(), at.tolist())])

    def byte_range(self, a: int, b: int) -> bytes:
        """Rows ``a`` to ``b`` (exclusive) as one fixed-width buffer (a Dask shard)."""
        if not 0 <= a <= b <= self._n:
            raise InvalidInput(f"rows {a}..{b} outside [0, {self._n}]")
        w, parts = self.width, []
        for start, chunk in zip(self._starts, self._chunks):
            end = start + len(chunk) // w
            if end > a and start < b:
                parts.append(chunk[(max(a, start) - start) * w:(min(b, end) - start) * w])
        return b"".join(parts)
