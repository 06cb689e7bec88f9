"""Messages of alignment: ECDH-PSI (X25519 or ristretto255) on the holder's consented ids."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PsiBlinded:
    """One chunk of the bank's blinded ids a*H(id), 32 bytes each, in the bank's order."""

    session_id: str = ""
    points: bytes = b""
    last: bool = False
    group: str = ""  # "x25519" | "ristretto255" (first chunk; "" from older banks: ristretto255)


@dataclass
class PsiDoubleBlinded:
    """b*(a*H(id)) for a chunk of the bank's points, same order."""

    points: bytes = b""


@dataclass
class PsiHolderSet:
    """A chunk of b*H(id) over the holder's consented ids, in a secret shuffled order."""

    points: bytes = b""
    total: int = 0


@dataclass
class PsiAlign:
    """Positions in the holder's shuffled list, in the order the bank will use for rows."""

    session_id: str = ""
    positions: bytes = b""


#: in wire order (field and envelope tags are append-only)
MESSAGE_TYPES: tuple[type, ...] = (
    PsiBlinded, PsiDoubleBlinded, PsiHolderSet, PsiAlign,
)
