"""Every message the two parties exchange, as plain dataclasses.

Only ``transport/serde`` knows protobuf: a message here maps field by field (same names) to
the message of the same name in ``protos/fedcredit.proto``. Arrays travel as little-endian
bytes (``rows``: uint32 row positions in the session's aligned order); ciphertext batches
as fixed-width big-endian bytes under the named key.

The messages every protocol shares (ping, sessions, acknowledgements) live here; each
protocol package holds its own in its ``messages.py``. :mod:`fedcredit.protocol.registry`
puts them all in one wire order. What each message reveals is documented on the step that
sends it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PROTOCOL_VERSION = 1


# -- generic ----------------------------------------------------------------------------------
@dataclass
class Ack:
    session_id: str = ""
    count: int = 0
    #: answering PsiAlign: the request's positions (uint32) the holder withdrew because the
    #: enterprise's consent ended between PSI and alignment; empty otherwise
    withdrawn: bytes = b""


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
    #: the other holders of a model trained or scored with several, by name (audited)
    parties: list[str] = field(default_factory=list)


@dataclass
class SessionOpened:
    session_id: str = ""
    holder_name: str = ""
    feature_names: list[str] = field(default_factory=list)
    min_node_samples: int = 0
    max_trees: int = 0
    #: the version of the holder's feature table serving this session (a monitor re-scores
    #: its watchlist when it changes); 0 from a holder that does not say
    features_version: int = 0


@dataclass
class CloseSession:
    session_id: str = ""


MESSAGE_TYPES: tuple[type, ...] = (Ack, Ping, Pong, OpenSession, SessionOpened, CloseSession)
