"""Messages of private SecureBoost scoring: encrypted leaf values in, one ciphertext out."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PrivateScoreRequest:
    """Per id and tree, every leaf's value encrypted under the bank's key.

    A leaf the bank's own splits rule out for that id carries a fresh encryption of 0, so
    the holder cannot tell which leaves the bank's splits allow.
    """

    session_id: str = ""
    ids: list[str] = field(default_factory=list)
    trees: list[int] = field(default_factory=list)  # the model's trees to sum, in this order
    n_leaves: list[int] = field(default_factory=list)  # per tree, as the bank counts them
    scheme: str = ""
    public_key: bytes = b""  # the bank's scoring key (public half)
    leaf_values: bytes = b""  # ids x sum(n_leaves) ciphertexts, id-major, trees in order


@dataclass
class PrivateScores:
    """Per id, Enc(sum over trees of the one leaf both parties' splits allow), re-randomised."""

    count: int = 0
    scores: bytes = b""
    covered: bytes = b""  # per id, the holder had its data and a current consent (packbits)


#: in wire order (field and envelope tags are append-only)
MESSAGE_TYPES: tuple[type, ...] = (PrivateScoreRequest, PrivateScores)
