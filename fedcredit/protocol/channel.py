"""The channel between the parties: one abstraction, an in-process and a gRPC implementation.

A call is an *exchange*: the bank sends one or more messages (a request, possibly followed
by chunks such as ciphertext batches) and receives one or more messages back. Requests are
consumed lazily, so a generator that encrypts chunk by chunk overlaps encryption with the
holder's work on earlier chunks — over gRPC and in-process alike. Protocol code sees only
:class:`Channel`; it never knows which transport it has.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import ProtocolError


@dataclass(frozen=True)
class Caller:
    """Who is calling the holder: from the client certificate over gRPC."""

    bank: str
    purpose: str = ""


class Channel(ABC):
    """The bank's handle on a holder."""

    purpose: str = "credit"

    @abstractmethod
    def exchange(self, requests: Iterable) -> Iterator:
        """Send the request messages, yield the response messages."""

    def call(self, request):
        """One request, exactly one response."""
        responses = list(self.exchange([request]))
        if len(responses) != 1:
            raise ProtocolError(f"expected one response to {type(request).__name__}, "
                                f"got {len(responses)}")
        return responses[0]

    def close(self) -> None:  # noqa: B027  (most channels hold nothing to release)
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class InProcessChannel(Channel):
    """Both parties in one Python process: unit tests and quick notebooks.

    Parameters
    ----------
    passive : PassiveParty
        The holder's protocol object.
    bank : str
        The caller identity the holder sees (over gRPC it comes from the client certificate).
    purpose : str
        Purpose of use presented with every session.
    """

    def __init__(self, passive, bank: str = "demo-bank", purpose: str = "credit"):
        self.passive = passive
        self.caller = Caller(bank=bank, purpose=purpose)
        self.purpose = purpose

    def exchange(self, requests: Iterable) -> Iterator:
        yield from self.passive.handle(self.caller, iter(requests))

    def __repr__(self) -> str:
        return f"InProcessChannel(bank={self.caller.bank!r}, purpose={self.purpose!r})"
