"""Sessions, as each party holds them.

:class:`BankSession` is the bank's handle on one session with a holder: it opens the session
(sending only the public half of a fresh key), carries the channel, the key and the
stopwatch, and closes it. Every protocol's bank steps are functions over a BankSession.

:class:`Session` is the holder's record of one session: who opened it, for what task and
purpose, under which key, the aligned ids and the state of the one protocol it runs.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..crypto import PrivateKey, PublicKey
from ..errors import ProtocolError
from . import messages as m
from .channel import Channel
from .timing import Stopwatch

S = TypeVar("S")


@dataclass
class Session:
    """The holder's state of one bank session."""

    id: str
    bank: str
    purpose: str
    task: str
    public_key: PublicKey | None
    model_id: str = ""
    #: the holder columns this session may use (the column policy when it opened)
    columns: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    aligned_ids: list[str] | None = None
    #: the running protocol's state (one per session: alignment, a model being trained ...)
    state: Any = None
    #: what a scoring session parses once (its stored model), see HolderCore.stored_model
    cache: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def key(self) -> PublicKey:
        """The bank's public key of this session (keyed tasks only)."""
        if self.public_key is None:
            raise ProtocolError(f"a {self.task} session carries no key")
        return self.public_key

    def state_as(self, kind: type[S], first_step: str) -> S:
        """This session's protocol state, which must be a ``kind``."""
        if not isinstance(self.state, kind):
            raise ProtocolError(f"send {first_step} first")
        return self.state

    def replace_state(self, state: Any) -> None:
        """Install a protocol's state, releasing what the previous one held."""
        close = getattr(self.state, "close", None)
        if close is not None:
            close()
        self.state = state


class BankSession:
    """One session of the bank with a holder.

    Parameters
    ----------
    channel : Channel
    task : str
        A task of :data:`fedcredit.protocol.registry.TASKS` ("align", "train", "lr", ...).
    private_key : PrivateKey, optional
        Fresh per training session; only its public half is sent.
    model_id : str
        For scoring sessions: the holder's id of the model to score with.
    workers : int or None
        Processes for encryption and decryption (None: all cores).
    purpose : str, optional
        Purpose of use; defaults to the channel's.
    parties : list of str
        The other holders of a model trained or scored with several (the holder audits
        them).

    **Privacy**: the holder learns the bank's identity (its certificate), the task, the
    purpose and the public key; with ``parties``, the names of the other holders.
    """

    def __init__(self, channel: Channel, task: str, private_key: PrivateKey | None = None,
                 model_id: str = "", workers: int | None = None, purpose: str | None = None,
                 parties: Iterable[str] = ()):
        self.channel = channel
        self.sk = private_key
        self.pk = private_key.public_key if private_key is not None else None
        self.workers = workers
        opened = channel.call(m.OpenSession(
            purpose=str(purpose or getattr(channel, "purpose", "credit")), task=task,
            scheme=self.pk.scheme if self.pk else "",
            public_key=self.pk.to_bytes() if self.pk else b"", model_id=model_id,
            parties=[str(p) for p in parties]))
        if not isinstance(opened, m.SessionOpened):
            raise ProtocolError(f"expected SessionOpened, got {type(opened).__name__}")
        self.id = opened.session_id
        self.task = task
        self.holder_name = opened.holder_name
        self.feature_names = list(opened.feature_names)
        self.min_node_samples = int(opened.min_node_samples)
        self.max_trees = int(opened.max_trees)
        #: the holder's feature table version when the session opened (0: not told)
        self.features_version = int(opened.features_version)
        self.alignment: Any = None  # set by fedcredit.protocol.alignment.bank.align
        self.watch = Stopwatch()

    @property
    def key(self) -> tuple[PublicKey, PrivateKey]:
        """The session's key pair (training sessions only)."""
        if self.pk is None or self.sk is None:
            raise ProtocolError(f"a {self.task} session has no key")
        return self.pk, self.sk

    def call(self, request, expect: type):
        """One request, one response of type ``expect``."""
        r = self.channel.call(request)
        if not isinstance(r, expect):
            raise ProtocolError(f"expected {expect.__name__}, got {type(r).__name__}")
        return r

    def stream(self, requests: Iterable, expect: type):
        """A stream of requests answered by one response of type ``expect``."""
        items = list(self.channel.exchange(requests))
        if len(items) != 1 or not isinstance(items[0], expect):
            got = ", ".join(type(i).__name__ for i in items) or "nothing"
            raise ProtocolError(f"expected one {expect.__name__}, got {got}")
        return items[0]

    def close(self) -> None:
        try:
            self.channel.call(m.CloseSession(session_id=self.id))
        except Exception:  # closing is best effort: the holder expires idle sessions anyway
            pass

    def __enter__(self) -> BankSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
