"""Every protocol message survives protobuf; the checked-in generated code matches the .proto."""
from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path

import pytest

from fedcredit.errors import InvalidInput, ProtocolError, ResourceLimit
from fedcredit.protocol.registry import ENVELOPE_TYPES, MESSAGE_TYPES
from fedcredit.protocol.registry import MESSAGES as m
from fedcredit.transport import serde

ROOT = Path(__file__).resolve().parents[1]


def _sample(cls, depth=0):
    hints = typing.get_type_hints(cls)
    kw = {}
    for i, f in enumerate(dataclasses.fields(cls), 1):
        h = hints[f.name]
        if typing.get_origin(h) is list:
            (item,) = typing.get_args(h)
            kw[f.name] = ([_sample(item, depth + 1), _sample(item, depth + 1)]
                          if dataclasses.is_dataclass(item) else
                          [_scalar(item, i), _scalar(item, i + 1)])
        else:
            kw[f.name] = _scalar(h, i)
    return cls(**kw)


def _scalar(t, i):
    return {int: -(10**12) - i, float: 0.5 + i, str: f"value-{i}-统一", bytes: bytes([i]) * 3,
            bool: True}[t]


@pytest.mark.parametrize("cls", ENVELOPE_TYPES, ids=lambda c: c.__name__)
def test_roundtrip_every_message(cls):
    msg = _sample(cls)
    assert serde.decode(serde.encode(msg)) == msg
    assert serde.decode(serde.encode(cls())) == cls()


def test_large_messages_travel_as_bounded_frames():
    big = m.GradientChunk(offset=3, ciphertexts=bytes(range(256)) * 20_000)  # ~5 MB
    frames = list(serde.to_frames([big, m.Ping()]))
    assert len(frames) >= 6
    assert max(len(f.data) for f in frames) <= serde.FRAME_BYTES
    assert list(serde.from_frames(frames)) == [big, m.Ping()]
    with pytest.raises(ResourceLimit):
        list(serde.from_frames(frames, limit=1 << 20))


def test_bad_envelopes():
    with pytest.raises(InvalidInput):
        serde.decode(b"\xff\xff\xff")
    with pytest.raises(InvalidInput, match="no message"):
        serde.decode(b"")
    from fedcredit.transport.generated import fedcredit_pb2 as pb

    env = pb.Envelope(protocol_version=99)
    env.ping.SetInParent()
    with pytest.raises(ProtocolError, match="version 99"):
        serde.decode(env.SerializeToString())
    with pytest.raises(InvalidInput, match="on its own"):
        serde.encode(m.NodeTask())


def test_generated_code_matches_the_proto(tmp_path):
    import subprocess

    pytest.importorskip("grpc_tools")
    # protoc runs in its own process: native libraries loaded by other tests (OR-Tools)
    # have crashed it when it shared one
    subprocess.run([sys.executable, str(ROOT / "protos" / "generate.py"), "--out",
                    str(tmp_path)], check=True, capture_output=True, timeout=120)
    package = "fedcredit/transport/generated"
    fresh = sorted((tmp_path / package).glob("fedcredit_pb2*.py"))
    assert len(fresh) == 2
    for path in fresh:
        checked_in = ROOT / package / path.name
        assert checked_in.read_text() == path.read_text(), (
            f"{checked_in} drifted from protos/fedcredit.proto: run python protos/generate.py")


def test_proto_declares_every_message_field():
    from fedcredit.transport.generated import fedcredit_pb2 as pb

    for cls in MESSAGE_TYPES:
        desc = getattr(pb, cls.__name__).DESCRIPTOR
        assert [f.name for f in dataclasses.fields(cls)] == [f.name for f in desc.fields]
    assert sys.modules["fedcredit.transport.generated.fedcredit_pb2"] is pb
