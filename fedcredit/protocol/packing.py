"""The SecureBoost plaintext layouts both parties agree on.

Per row the bank encrypts one plaintext ``P = g * 2**w_h + h`` (fixed-point g and h; h >= 0
in the low slot, the sign carried by g in the high slot). A sum of such plaintexts over any
set of rows is ``G * 2**w_h + H`` and decodes exactly while ``|G| < 2**(w_g-1)`` and
``H < 2**(w_h-1)``; the slot widths come from the number of rows and the largest |g|, h, so
no sum can overflow. The holder packs ``k = plaintext_bits // (w_g + w_h)`` such candidate
sums into one ciphertext by Horner's rule, which divides the bank's decryptions by k.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..crypto import SlotLayout
from ..errors import InvalidInput, PackingOverflow


@dataclass(frozen=True)
class GradientLayout:
    w_h: int
    w_g: int

    @property
    def slot_bits(self) -> int:
        return self.w_h + self.w_g

    @classmethod
    def for_rows(cls, g_int: np.ndarray, h_int: np.ndarray, plaintext_bits: int) -> "GradientLayout":
        n = max(1, len(g_int))
        if len(h_int) and int(np.min(h_int)) < 0:
            raise InvalidInput("hessians must be non-negative")
        max_g = int(np.max(np.abs(g_int))) if len(g_int) else 0
        max_h = int(np.max(h_int)) if len(h_int) else 0
        pair = SlotLayout.for_sums([max(1, max_h), max(1, max_g)], n, plaintext_bits)
        return cls(w_h=pair.widths[0], w_g=pair.widths[1])

    def pack_rows(self, g_int: np.ndarray, h_int: np.ndarray) -> list[int]:
        return SlotLayout((self.w_h, self.w_g)).pack([h_int, g_int])

    def candidates_per_ciphertext(self, plaintext_bits: int) -> int:
        return SlotLayout.slots_per_plaintext(self.slot_bits, plaintext_bits)

    def unpack_candidates(self, plaintexts: list[int], slots: int, count: int
                          ) -> tuple[np.ndarray, np.ndarray]:
        """Decrypted packed ciphertexts -> (G, H) int64 arrays of ``count`` candidates."""
        if slots < 1 or len(plaintexts) != -(-count // slots):
            raise PackingOverflow(f"{len(plaintexts)} packed values cannot hold {count} "
                                  f"candidates at {slots} per ciphertext")
        outer = SlotLayout.repeat(self.slot_bits, slots).unpack(plaintexts)
        flat = [outer[j][i] for i in range(len(plaintexts)) for j in range(slots)][:count]
        h, g = SlotLayout((self.w_h, self.w_g)).unpack(flat)
        return np.array(g, dtype=np.int64), np.array(h, dtype=np.int64)


def rows_to_bytes(rows) -> bytes:
    return np.asarray(rows, dtype="<u4").tobytes()


def rows_from_bytes(data: bytes, limit: int | None = None, what: str = "rows") -> np.ndarray:
    if len(data) % 4:
        raise InvalidInput(f"{what}: {len(data)} bytes is not a whole number of uint32")
    rows = np.frombuffer(data, dtype="<u4").astype(np.int64)
    if limit is not None and len(rows) and int(rows.max()) >= limit:
        raise InvalidInput(f"{what}: row {int(rows.max())} is beyond the {limit} aligned rows")
    return rows
