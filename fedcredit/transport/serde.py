"""Protocol dataclasses <-> protobuf Envelopes <-> framed bytes.

The only module that knows protobuf. Fields map by name (a round-trip test covers every
message type); an Envelope is serialized once and cut into frames of at most
:data:`FRAME_BYTES`, so no single gRPC message comes near the 4 MB default limit whatever the
payload (a tree's ciphertexts for a million rows are about 500 MB).
"""
from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Iterable, Iterator
from functools import cache

from google.protobuf.message import DecodeError

from ..errors import InvalidInput, ProtocolError, ResourceLimit
from ..protocol import messages as m
from ..protocol.registry import ENVELOPE_TYPES, MESSAGE_TYPES
from .generated import fedcredit_pb2 as pb

FRAME_BYTES = 1 << 20
#: largest single message accepted (a gradient chunk is ~1 MB; a layer answer a few MB)
MAX_MESSAGE_BYTES = 256 << 20

_BY_NAME = {t.__name__: t for t in MESSAGE_TYPES}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@cache
def _fields(cls: type) -> tuple[tuple[str, object], ...]:
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))


def to_proto(msg):
    cls = type(msg)
    out = getattr(pb, cls.__name__)()
    for name, hint in _fields(cls):
        value = getattr(msg, name)
        if typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            target = getattr(out, name)
            if dataclasses.is_dataclass(item):
                for v in value:
                    target.add().CopyFrom(to_proto(v))
            else:
                target.extend(value)
        else:
            setattr(out, name, value)
    return out


def from_proto(cls: type, pbmsg):
    kwargs = {}
    for name, hint in _fields(cls):
        value = getattr(pbmsg, name)
        if typing.get_origin(hint) is list:
            (item,) = typing.get_args(hint)
            if isinstance(item, type) and dataclasses.is_dataclass(item):
                kwargs[name] = [from_proto(item, v) for v in value]
            else:
                kwargs[name] = list(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def encode(msg) -> bytes:
    name = type(msg).__name__
    if type(msg) not in ENVELOPE_TYPES:
        raise InvalidInput(f"{name} cannot be sent on its own")
    env = pb.Envelope(protocol_version=m.PROTOCOL_VERSION)
    getattr(env, _snake(name)).CopyFrom(to_proto(msg))
    return env.SerializeToString()


def decode(data: bytes):
    env = pb.Envelope()
    try:
        env.ParseFromString(data)
    except DecodeError:
        raise InvalidInput("a received message is not a valid fedcredit Envelope") from None
    which = env.WhichOneof("body")
    if which is None:
        raise InvalidInput("a received Envelope carries no message")
    if env.protocol_version != m.PROTOCOL_VERSION:
        raise ProtocolError(f"peer speaks protocol version {env.protocol_version}, "
                            f"this side {m.PROTOCOL_VERSION}")
    cls = _BY_NAME[getattr(env, which).DESCRIPTOR.name]
    return from_proto(cls, getattr(env, which))


def to_frames(messages: Iterable) -> Iterator:
    """Messages -> Frames (each serialized message cut into <= FRAME_BYTES slices)."""
    for msg in messages:
        data = encode(msg)
        if len(data) <= FRAME_BYTES:
            yield pb.Frame(data=data, end_of_message=True)
            continue
        view = memoryview(data)
        for lo in range(0, len(data), FRAME_BYTES):
            hi = min(lo + FRAME_BYTES, len(data))
            yield pb.Frame(data=bytes(view[lo:hi]), end_of_message=hi == len(data))


def from_frames(frames: Iterable, limit: int = MAX_MESSAGE_BYTES) -> Iterator:
    """Frames -> messages; a message larger than ``limit`` is refused before it is held."""
    parts, size = [], 0
    for fr in frames:
        size += len(fr.data)
        if size > limit:
            raise ResourceLimit(f"a message exceeds the {limit >> 20} MiB limit")
        parts.append(fr.data)
        if fr.end_of_message:
            yield decode(b"".join(parts))
            parts, size = [], 0
    if parts:
        raise ProtocolError("the stream ended in the middle of a message")
