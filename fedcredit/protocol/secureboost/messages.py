"""Messages of SecureBoost: training (gradients, layers, splits, trees) and leaf-set scoring."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BoostStart:
    session_id: str = ""
    rows: bytes = b""  # training rows (uint32 positions in the aligned order)
    max_bin: int = 32
    min_child_samples: int = 20
    frac_bits: int = 0  # fixed-point fraction bits of (g, h); 0: unstated, the holder's cap
    # monotone constraints on holder features, by published name: +1 increasing, -1 decreasing
    monotone_features: list[str] = field(default_factory=list)
    monotone_directions: list[int] = field(default_factory=list)


@dataclass
class BoostReady:
    n_features: int = 0
    n_candidates: int = 0
    monotone_features: int = 0  # monotone constraints accepted (an older holder says 0)


@dataclass
class TreeStart:
    session_id: str = ""
    tree: int = 0
    slot_bits: int = 0  # width of one packed candidate value
    rows: bytes = b""  # the root's rows (the tree's sample); its gradients follow in order
    key_fingerprint: str = ""
    #: rows of the whole tree where the holder serves only some of them (``align="any"``):
    #: the slot width is sized for their sums; 0 means ``rows``
    rows_total: int = 0


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
    #: one ciphertext, Enc(packed (g, h) summed over the node's rows the holder does not
    #: serve), added to each feature's missing bin: those rows go where missing values go
    unserved: bytes = b""


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
    # positions (uint32, sent or derived) of thresholds of features the bank constrained
    # monotone increasing / decreasing
    increasing: bytes = b""
    decreasing: bytes = b""


@dataclass
class SplitChoice:
    node_id: int = 0
    positions: bytes = b""  # uint32: the winning candidate and any exact ties
    left_id: int = 0
    right_id: int = 0
    #: the node holds rows the holder does not serve: say which side they go
    unserved: bool = False


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
    #: asked by ``SplitChoice.unserved``: the rows the holder does not serve go left
    unserved_left: bool = False


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
    #: answer every tree in one LeafMasks (its ``trees``/``widths``), not one per tree
    batched: bool = False


@dataclass
class LeafMasks:
    """For one tree: per id, the bit set of leaves reachable given the holder's splits."""

    tree: int = 0
    n_leaves: int = 0
    masks: bytes = b""  # ids x n_leaves bits, row-major, numpy packbits order
    #: per id, whether the holder had its data and a current consent (packbits); sent on
    #: the first LeafMasks of an answer only
    covered: bytes = b""
    #: a batched answer: its trees and their leaf counts, ``masks`` their matrices in order
    trees: list[int] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)


#: in wire order (field and envelope tags are append-only)
MESSAGE_TYPES: tuple[type, ...] = (
    BoostStart, BoostReady, TreeStart, GradientChunk, NodeTask, LayerRequest, NodeCandidates,
    SplitChoice, SplitRequest, SplitOutcome, SplitResult, TreeNode, TreeFinish, ModelFinish,
    ModelSaved, PredictRequest, LeafMasks,
)
