"""The protocol core: messages, the channel abstraction, and each party's steps.

Written once; the in-process channel and the gRPC transport both carry it.
"""
from .active import ActiveSession, Alignment
from .channel import Caller, Channel, InProcessChannel
from .hooks import AllowAll, HolderPolicy, MemoryAuditor, MemoryModelStore
from .messages import PROTOCOL_VERSION
from .passive import PassiveParty

__all__ = ["ActiveSession", "Alignment", "AllowAll", "Caller", "Channel", "HolderPolicy",
           "InProcessChannel", "MemoryAuditor", "MemoryModelStore", "PROTOCOL_VERSION",
           "PassiveParty"]
