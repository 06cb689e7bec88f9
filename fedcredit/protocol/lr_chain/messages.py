"""Messages of hetero LR with several holders: the sealed-relay set-up and one step's chain.

They run inside each holder's ``lr`` session (after ``LrStart``, beside ``LrStep``): the
bank carries every holder-to-holder message, sealed, so it sees their lengths only.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SealKeyRequest:
    """Ask the holder for its ephemeral X25519 public key of this session."""

    session_id: str = ""


@dataclass
class SealKeyReply:
    public_key: bytes = b""


@dataclass
class ChainSetup:
    """The chain's order: this holder's position and every holder's public key, in order."""

    session_id: str = ""
    position: int = 0
    public_keys: bytes = b""  # 32 bytes per holder, in chain order


@dataclass
class ChainReady:
    n_holders: int = 0


@dataclass
class ChainStep:
    """The head of one stream of a chain step, with the step's layout.

    ``role`` "contract" is followed by the bank's ``ChainCiphertexts`` for position 0 and
    by the previous holder's sealed ``ChainRelay`` otherwise; "residuals" by the last
    holder's sealed residuals."""

    session_id: str = ""
    step: int = 0
    role: str = ""
    degree: int = 0
    groups: int = 0
    slot_bits: list[int] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    beta: float = 0.0  # this holder's share of the joint normalised score (1: the last)
    scale_bits: int = 0  # fraction bits of the residuals at the chain's end


@dataclass
class ChainCiphertexts:
    """A chunk of the bank's encrypted terms, for the first holder of the chain.

    Enc(coefficient * packed bank features), (K + 1) per row and group."""

    offset: int = 0
    ciphertexts: bytes = b""


@dataclass
class ChainRelay:
    """A sealed chunk from one holder of the chain to another, carried by the bank.

    AES-GCM under the pair's key; ``count`` ciphertexts starting at ``offset``."""

    source: int = 0
    target: int = 0
    offset: int = 0
    count: int = 0
    sealed: bytes = b""


@dataclass
class ChainPartials:
    """The last holder's answer: the bank's sums and its own masked gradient.

    Enc(sums) per group and a masked Enc(packed gradient) per feature (as ``LrPartials``);
    its sealed residuals for the other holders follow as relays."""

    step: int = 0
    sums: bytes = b""
    gradients: bytes = b""


@dataclass
class ChainGradient:
    """From every other holder: its masked Enc(packed gradient) per feature."""

    step: int = 0
    gradients: bytes = b""


#: in wire order (field and envelope tags are append-only)
MESSAGE_TYPES: tuple[type, ...] = (
    SealKeyRequest, SealKeyReply, ChainSetup, ChainReady, ChainStep, ChainCiphertexts,
    ChainRelay, ChainPartials, ChainGradient,
)
