"""Messages of feature drift: a watchlist in, per holder feature its CSI and the shares of
its merged bins out (flat lists, ``groups`` saying how many bins each feature has)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DriftRequest:
    """The CSI of every holder feature of the session's model over these enterprises."""

    session_id: str = ""
    ids: list[str] = field(default_factory=list)


@dataclass
class DriftReport:
    """Per holder feature (in ``features`` order): its CSI, its merged bins' count and the
    reference (training) and current (watchlist) share of each, concatenated."""

    covered: int = 0  # watchlist enterprises with the holder's data and a current consent
    features: list[str] = field(default_factory=list)
    csi: list[float] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    reference_shares: list[float] = field(default_factory=list)
    current_shares: list[float] = field(default_factory=list)
    features_version: int = 0  # the holder feature table the current shares come from


#: in wire order (field and envelope tags are append-only)
MESSAGE_TYPES: tuple[type, ...] = (DriftRequest, DriftReport)
