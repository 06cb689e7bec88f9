"""Fixed-point encoding of float vectors and packing of several integers per plaintext.

Homomorphic schemes add integers modulo a plaintext modulus. Floats become integers by
scaling with ``2**frac_bits`` and rounding; a signed integer ``v`` is represented by
``v mod M`` so that sums of negative numbers work, and decoded back by reading values above
``M/2`` as negative.

Packing puts k signed integers in one plaintext, low slot first::

    P = v_0 + v_1 * 2**w_0 + v_2 * 2**(w_0 + w_1) + ...

Because every slot is decoded in balanced form (a slot value at or above ``2**(w-1)`` is
negative and borrows one from the slot above), slots may hold negative values and sums of
packed plaintexts stay exact **as long as every slot's sum keeps ``|sum| < 2**(w-1)``**.
:meth:`SlotLayout.for_sums` sizes the slots from bounds on the values and on the number of
terms that will ever be added, and refuses (:class:`~fedcredit.errors.PackingOverflow`) a
layout that does not fit the plaintext space: an overflow is an error, never a silent wrap.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInput, PackingOverflow


def _bits_for(bound: int) -> int:
    """Slot width that holds every integer in [-bound, bound] in balanced form."""
    return int(bound).bit_length() + 1


@dataclass(frozen=True)
class FixedPoint:
    """Scale floats by ``2**frac_bits`` and round to the nearest integer.

    The same quantisation is used by the encrypted protocol and by its plaintext reference,
    so both see exactly the same integers (that is what makes training lossless).
    """

    frac_bits: int = 32

    def __post_init__(self):
        if not 0 <= self.frac_bits <= 62:
            raise InvalidInput(f"frac_bits must be in [0, 62], got {self.frac_bits}")

    @property
    def scale(self) -> float:
        return float(2 ** self.frac_bits)

    def encode(self, values, name: str = "values") -> np.ndarray:
        """float array -> int64 array; NaN, inf and values too large for int64 are refused."""
        x = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise InvalidInput(f"{name} contain NaN or infinite entries")
        scaled = np.rint(x * self.scale)
        if scaled.size and np.max(np.abs(scaled)) >= 2.0 ** 62:
            raise PackingOverflow(
                f"{name} exceed the fixed-point range at frac_bits={self.frac_bits}"
            )
        return scaled.astype(np.int64)

    def decode(self, ints) -> np.ndarray:
        """Integers (numpy or Python ints of any size) -> float64."""
        if isinstance(ints, np.ndarray) and ints.dtype != object:
            return ints.astype(np.float64) / self.scale
        return np.array([float(int(v)) for v in ints], dtype=np.float64) / self.scale


@dataclass(frozen=True)
class SlotLayout:
    """Bit widths of the slots of a packed plaintext, low slot first."""

    widths: tuple[int, ...]

    def __post_init__(self):
        if not self.widths or any(int(w) < 2 for w in self.widths):
            raise InvalidInput(f"slot widths must be >= 2 bits, got {self.widths}")

    # -- construction -------------------------------------------------------------------
    @classmethod
    def for_sums(cls, bounds: Sequence[int], max_terms: int, plaintext_bits: int) -> SlotLayout:
        """Slots wide enough for sums of up to ``max_terms`` values with ``|v_j| <= bounds[j]``.

        Raises :class:`PackingOverflow` when the slots would not fit in ``plaintext_bits``.
        """
        if max_terms < 1:
            raise InvalidInput(f"max_terms must be >= 1, got {max_terms}")
        widths = tuple(_bits_for(int(b) * int(max_terms)) for b in bounds)
        layout = cls(widths)
        layout.check_fits(plaintext_bits)
        return layout

    @classmethod
    def repeat(cls, width: int, count: int) -> SlotLayout:
        return cls((int(width),) * int(count))

    # -- properties ----------------------------------------------------------------------
    @property
    def total_bits(self) -> int:
        return sum(self.widths)

    @property
    def offsets(self) -> tuple[int, ...]:
        out, acc = [], 0
        for w in self.widths:
            out.append(acc)
            acc += w
        return tuple(out)

    def check_fits(self, plaintext_bits: int) -> None:
        # The whole packed value is itself read as a signed number, so it must stay below
        # half the plaintext space: total_bits <= plaintext_bits.
        if self.total_bits > plaintext_bits:
            raise PackingOverflow(
                f"packing needs {self.total_bits} bits but the plaintext space holds "
                f"{plaintext_bits}; use fewer slots, fewer terms or fewer fraction bits"
            )

    @staticmethod
    def slots_per_plaintext(width: int, plaintext_bits: int) -> int:
        """How many slots of ``width`` bits fit in one plaintext."""
        k = plaintext_bits // int(width)
        if k < 1:
            raise PackingOverflow(
                f"one {width}-bit slot does not fit in {plaintext_bits} plaintext bits"
            )
        return k

    # -- pack / unpack -------------------------------------------------------------------
    def pack(self, columns: Sequence[Sequence[int] | np.ndarray]) -> list[int]:
        """Pack ``columns[j][i]`` into slot j of plaintext i; values must fit their slot."""
        if len(columns) != len(self.widths):
            raise InvalidInput(f"{len(columns)} columns for a {len(self.widths)}-slot layout")
        cols = [np.asarray(c) for c in columns]
        n = len(cols[0])
        if any(len(c) != n for c in cols):
            raise InvalidInput("packed columns differ in length")
        for j, (c, w) in enumerate(zip(cols, self.widths)):
            if n and c.dtype != object:
                limit = 2 ** (w - 1)
                if w - 1 < 63 and np.max(np.abs(c.astype(np.int64))) >= limit:
                    raise PackingOverflow(f"a value does not fit its {w}-bit slot {j}")
            elif n:
                limit = 1 << (w - 1)
                if any(abs(int(v)) >= limit for v in c):
                    raise PackingOverflow(f"a value does not fit its {w}-bit slot {j}")
        # Horner from the top slot down: P = v_0 + 2**w_0 * (v_1 + 2**w_1 * (...)).
        lists = [c.tolist() for c in cols]
        out = [int(v) for v in lists[-1]]
        for j in range(len(self.widths) - 2, -1, -1):
            shift = self.widths[j]
            out = [(acc << shift) + int(v) for acc, v in zip(out, lists[j])]
        return out

    def unpack(self, values: Sequence[int]) -> list[list[int]]:
        """Inverse of :meth:`pack`: returns one list of signed ints per slot.

        A value outside ``|P| < 2**(total_bits-1)`` means an overflow or tampering and is
        refused.
        """
        limit = 1 << (self.total_bits - 1)
        cols: list[list[int]] = [[] for _ in self.widths]
        for v in values:
            v = int(v)
            if not -limit <= v < limit:
                raise PackingOverflow("a decrypted value lies outside its packing layout")
            for j, w in enumerate(self.widths):
                mask = (1 << w) - 1
                half = 1 << (w - 1)
                r = v & mask
                if r >= half:
                    r -= 1 << w
                cols[j].append(r)
                v = (v - r) >> w
            if v != 0:
                raise PackingOverflow("a decrypted value lies outside its packing layout")
        return cols
