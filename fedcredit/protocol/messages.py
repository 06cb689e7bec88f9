"""Every message the two parties exchange, as plain dataclasses.

Only ``transport/serde`` knows protobuf: a message here maps field by field (same names) to
the message of the same name in ``protos/fedcredit.proto``. Arrays travel as little-endian
bytes (``rows``: uint32 row positions in the session's aligned order); ciphertext batches
as fixed-width big-endian bytes under the named key.

What each message reveals is documented on the party methods that send it and summarised
in ``docs``-style tables in :mod:`fedcredit.protocol.disclosure`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PROTOCOL_VERSION = 1


# -- generic ----------------------------------------------------------------------------------
@dataclass
class Ack:
    session_id: str = ""
    count: int = 0


@dataclass
class Ping:
    pass


@dataclass
class Pong:
    holder_name: str = ""
    protocol_version: int = PROTOCOL_VERSION
    library_version: str = ""


# -- sessions ---------------------------------------------------------------------------------
@dataclass
class OpenSession:
    purpose: str = ""
    task: str = ""  # "train" | "score" | "woe" | "lr"
    scheme: str = ""
    public_key: bytes = b""
    model_id: str = ""  # scoring sessions name the model they score with


@dataclass
class SessionOpened:
    session_id: str = ""
    holder_name: str = ""
    feature_names: list[str] = field(default_factory=list)
    min_node_samples: int = 0
    max_trees: int = 0


@dataclass
class CloseSession:
    session_id: str = ""


# -- alignment (ECDH-PSI) -----------------------------------------------------------------------
@dataclass
class PsiBlinded:
    """One chunk of the bank's blinded ids a*H(id), 32 bytes each, in the bank's order."""

    session_id: str = ""
    points: bytes = b""
    last: bool = False


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


# -- SecureBoost --------------------------------------------------------------------------------
@dataclass
class BoostStart:
    session_id: str = ""
    rows: bytes = b""  # training rows (uint32 positions in the aligned order)
    max_bin: int = 32
    min_child_samples: int = 20


@dataclass
class BoostReady:
    n_features: int = 0
    n_candidates: int = 0


@dataclass
class TreeStart:
    session_id: str = ""
    tree: int = 0
    slot_bits: int = 0  # width of one packed candidate value
    rows: bytes = b""  # the root's rows (the tree's sample); its gradients follow in order
    key_fingerprint: str = ""


@dataclass
class GradientChunk:
    """Enc(g * 2**w_h + h) for consecutive root rows, starting at ``offset``."""

    offset: int = 0
    ciphertexts: bytes = b""


@dataclass
class NodeTask:
    node_id: int = 0
    parent_id: int = -1
    rows: bytes = b""  # rows of a node the holder must sum directly; empty when derived
    sibling_id: int = -1  # for a derived node: parent minus this (already summed) sibling


@dataclass
class LayerRequest:
    session_id: str = ""
    tree: int = 0
    depth: int = 0
    tasks: list[NodeTask] = field(default_factory=list)


@dataclass
class NodeCandidates:
    """Packed encrypted cumulative (G, H) of split candidates valid at one node."""

    node_id: int = 0
    positions: bytes = b""  # uint32 candidate positions (the tree's secret permutation)
    packed: bytes = b""  # ciphertexts, ``slots`` candidate values each, lowest slot first
    slots: int = 0
    count: int = 0
    # positions (uint32) valid here whose values the bank derives as parent - sibling
    derived: bytes = b""


@dataclass
class SplitChoice:
    node_id: int = 0
    positions: bytes = b""  # uint32: the winning candidate and any exact ties
    left_id: int = 0
    right_id: int = 0


@dataclass
class SplitRequest:
    session_id: str = ""
    tree: int = 0
    choices: list[SplitChoice] = field(default_factory=list)


@dataclass
class SplitOutcome:
    node_id: int = 0
    record_id: int = 0
    feature: int = 0  # index into the holder's published feature names
    left_rows: bytes = b""  # bit-packed over the node's rows in ascending order


@dataclass
class SplitResult:
    outcomes: list[SplitOutcome] = field(default_factory=list)


@dataclass
class TreeNode:
    node_id: int = 0
    left: int = -1
    right: int = -1
    owner: str = ""  # "bank" | "holder" | "leaf"
    record_id: int = -1


@dataclass
class TreeFinish:
    session_id: str = ""
    tree: int = 0
    nodes: list[TreeNode] = field(default_factory=list)


@dataclass
class ModelFinish:
    session_id: str = ""


@dataclass
class ModelSaved:
    model_id: str = ""
    n_trees: int = 0


# -- scoring ------------------------------------------------------------------------------------
@dataclass
class PredictRequest:
    session_id: str = ""
    ids: list[str] = field(default_factory=list)
    trees: list[int] = field(default_factory=list)  # empty = all trees of the model


@dataclass
class LeafMasks:
    """For one tree: per id, the bit set of leaves reachable given the holder's splits."""

    tree: int = 0
    n_leaves: int = 0
    masks: bytes = b""  # ids x n_leaves bits, row-major, numpy packbits order


# -- hetero logistic regression (appended: field numbers are positional) ---------------------
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


# -- hetero WOE/IV ---------------------------------------------------------------------------
@dataclass
class WoeStart:
    """Bin the holder's features on these rows; Enc(label) per row follows in chunks."""

    session_id: str = ""
    rows: bytes = b""
    max_bin: int = 0
    key_fingerprint: str = ""


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


MESSAGE_TYPES: tuple[type, ...] = (
    Ack, Ping, Pong, OpenSession, SessionOpened, CloseSession, PsiBlinded, PsiDoubleBlinded,
    PsiHolderSet, PsiAlign, BoostStart, BoostReady, TreeStart, GradientChunk, NodeTask,
    LayerRequest, NodeCandidates, SplitChoice, SplitRequest, SplitOutcome, SplitResult,
    TreeNode, TreeFinish, ModelFinish, ModelSaved, PredictRequest, LeafMasks,
    # appended: hetero LR and WOE/IV
    LrStart, LrReady, LrStep, LrStats, LrTerms, LrPartials, LrFinish, LrModel,
    PartialScoreRequest, PartialScores, WoeStart, WoeLabels, WoeStats, WoeMerge,
)

#: messages that may stand alone in an envelope (the rest only appear nested)
ENVELOPE_TYPES: tuple[type, ...] = tuple(
    t for t in MESSAGE_TYPES if t not in (NodeTask, SplitChoice, SplitOutcome, TreeNode)
)
