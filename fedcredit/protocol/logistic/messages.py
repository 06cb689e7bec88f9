"""Messages of hetero logistic regression: training steps and partial-score scoring."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LrStart:
    """Start LR training on the given aligned rows; the holder prepares its features."""

    session_id: str = ""
    rows: bytes = b""  # uint32 training rows in the aligned order
    encoding: str = ""  # "standard" | "woe"
    binning_id: str = ""  # for "woe": the holder's stored binning (from a WOE session)
    features: list[int] = field(default_factory=list)  # for "woe": holder features used
    woe: bytes = b""  # for "woe": float64 WOE per final bin of each used feature, in order
    learning_rate: float = 0.0
    decay: float = 0.0
    l2: float = 0.0
    frac_bits: int = 0  # fixed-point fraction bits of the features


@dataclass
class LrReady:
    n_features: int = 0
    feature_names: list[str] = field(default_factory=list)
    x_bits: int = 0  # bits of the largest fixed-point feature magnitude (an aggregate)


@dataclass
class LrStep:
    """Next mini-batch (rows), plus the masked holder gradient of the previous step."""

    session_id: str = ""
    step: int = 0
    rows: bytes = b""
    masked_gradient: list[str] = field(default_factory=list)  # decimal ints, one per feature
    new_epoch: bool = False
    #: uint32 positions in the batch of enterprises this holder does not serve (several
    #: holders, align="any"): it puts its encoding of no data there; ``rows`` fill the rest
    unserved: bytes = b""


@dataclass
class LrStats:
    """The interval [center - radius, center + radius] holding the batch's holder partials."""

    step: int = 0
    center: float = 0.0
    radius: float = 0.0
    weight_change: float = 0.0  # max |change| of the holder's weights since the epoch began


@dataclass
class LrTerms:
    """A chunk of Enc(coefficient * packed bank features), (degree + 1) * groups per row."""

    session_id: str = ""
    step: int = 0
    degree: int = 0
    groups: int = 0
    slot_bits: list[int] = field(default_factory=list)  # slot width of each group
    slots: list[int] = field(default_factory=list)  # slot count of each group
    offset: int = 0
    ciphertexts: bytes = b""
    last: bool = False


@dataclass
class LrPartials:
    """Enc(sums) per group, and per holder feature a masked Enc(packed gradient)."""

    step: int = 0
    sums: bytes = b""
    gradients: bytes = b""


@dataclass
class LrFinish:
    session_id: str = ""
    masked_gradient: list[str] = field(default_factory=list)


@dataclass
class LrModel:
    model_id: str = ""
    feature_names: list[str] = field(default_factory=list)
    coefficients: list[float] = field(default_factory=list)


@dataclass
class PartialScoreRequest:
    session_id: str = ""
    ids: list[str] = field(default_factory=list)


@dataclass
class PartialScores:
    """Per id, the holder's part of the final model's linear score (float64)."""

    scores: bytes = b""
    covered: bytes = b""  # per id, the holder had its data and a current consent (packbits)


#: in wire order (field and envelope tags are append-only)
MESSAGE_TYPES: tuple[type, ...] = (
    LrStart, LrReady, LrStep, LrStats, LrTerms, LrPartials, LrFinish, LrModel, PartialScoreRequest,
    PartialScores,
)
