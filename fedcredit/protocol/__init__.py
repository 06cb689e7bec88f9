"""The protocol core, written once; the in-process channel and the gRPC transport carry it.

One package per protocol (:mod:`.alignment`, :mod:`.secureboost`, :mod:`.logistic`,
:mod:`.woe`), each with the same four modules; :mod:`.registry` lists them.
"""
from .alignment.bank import Alignment, align
from .channel import Caller, Channel, InProcessChannel
from .core import HolderCore, PassiveParty
from .hooks import AllowAll, MemoryAuditor, MemoryModelStore, StoredModel
from .messages import PROTOCOL_VERSION
from .policy import HolderPolicy
from .registry import MESSAGES, PROTOCOLS
from .session import BankSession

ActiveSession = BankSession  # the literature's name for the bank's side

__all__ = ["MESSAGES", "PROTOCOLS", "PROTOCOL_VERSION", "ActiveSession", "Alignment",
           "AllowAll", "BankSession", "Caller", "Channel", "HolderCore", "HolderPolicy",
           "InProcessChannel", "MemoryAuditor", "MemoryModelStore", "PassiveParty",
           "StoredModel", "align"]
