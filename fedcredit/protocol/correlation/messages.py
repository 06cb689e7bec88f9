"""Messages of joint correlation analysis: Enc(standardised bank columns) in, Enc(sums of
products with the holder's standardised columns) out."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CorrelationStart:
    """Correlate over these rows; Enc(packed bank z-scores), ``groups`` per row, follow."""

    session_id: str = ""
    rows: bytes = b""
    frac_bits: int = 0
    slot_bits: int = 0
    slots: int = 0  # bank columns per ciphertext
    groups: int = 0  # ciphertexts per row
    key_fingerprint: str = ""


@dataclass
class CorrelationChunk:
    offset: int = 0  # ciphertexts before this chunk (row-major: row, then group)
    ciphertexts: bytes = b""


@dataclass
class CorrelationResult:
    """Per holder column and group, Enc(sum_r z_bank * z_holder + bias per slot); and the
    holder's own columns' correlation matrix."""

    feature_names: list[str] = field(default_factory=list)
    sums: bytes = b""
    holder_corr: bytes = b""  # float64, columns x columns
    count: int = 0  # rows correlated over


#: in wire order (field and envelope tags are append-only)
MESSAGE_TYPES: tuple[type, ...] = (CorrelationStart, CorrelationChunk, CorrelationResult)
