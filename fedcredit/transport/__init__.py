"""gRPC transport: serde (messages <-> protobuf frames), the holder's server, the bank's channel.

Mutual TLS by default (:mod:`fedcredit.transport.tls`); plaintext only with ``insecure=True``.
"""
from .client import GrpcChannel, connect
from .server import HolderServer

__all__ = ["GrpcChannel", "HolderServer", "connect"]
