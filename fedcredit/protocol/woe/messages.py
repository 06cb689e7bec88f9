"""Messages of hetero WOE/IV: encrypted labels in, encrypted per-bin event sums out."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class WoeStart:
    """Bin the holder's features on these rows; Enc(label) per row follows in chunks."""

    session_id: str = ""
    rows: bytes = b""
    max_bin: int = 0
    key_fingerprint: str = ""
    # 0: Enc(label) per row; k > 0: Enc((w*y) * 2**half + w), w a k-bit fixed-point weight
    weight_bits: int = 0


@dataclass
class WoeLabels:
    offset: int = 0
    ciphertexts: bytes = b""


@dataclass
class WoeStats:
    """Per holder prebin: counts in the clear, packed re-randomised Enc(event sums)."""

    binning_id: str = ""
    feature_names: list[str] = field(default_factory=list)
    n_bins: list[int] = field(default_factory=list)  # bins per feature, missing bin last
    bin_labels: list[str] = field(default_factory=list)
    counts: bytes = b""  # uint32 per bin, features in order
    packed: bytes = b""
    slots: int = 0
    slot_bits: int = 0


@dataclass
class WoeMerge:
    """Merge maps (prebin -> final bin, uint32) for some holder features."""

    session_id: str = ""
    binning_id: str = ""
    features: list[int] = field(default_factory=list)
    maps: bytes = b""


#: in wire order (field and envelope tags are append-only)
MESSAGE_TYPES: tuple[type, ...] = (
    WoeStart, WoeLabels, WoeStats, WoeMerge,
)
