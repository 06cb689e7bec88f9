"""The wire stays byte-compatible: a snapshot of every protobuf field tag and Envelope tag.

``tests/data/wire_tags.json`` records, for every message of the checked-in stubs
(``fedcredit/transport/generated/fedcredit_pb2.py``), each field's number and type, and the
Envelope ``body`` oneof's tag per message. Tags are positional (``protos/sync_from_messages.py``
numbers fields in dataclass order and Envelope members in ``ENVELOPE_TYPES`` order, from 10),
so inserting a field or a message anywhere but at the end silently renumbers the wire.

New messages and fields may be added freely (only the snapshot's entries are compared). To
record them, or to accept a deliberate break together with a new ``PROTOCOL_VERSION``::

    python tests/test_wire_tags.py --update
"""
from __future__ import annotations

import dataclasses
import json
import sys
import typing
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor

from fedcredit.transport.generated import fedcredit_pb2 as pb

SNAPSHOT = Path(__file__).parent / "data" / "wire_tags.json"
UPDATE_HINT = ("Field and Envelope tags are append-only: a changed or vanished tag breaks "
               "every peer running the previous release. Append new fields/messages at the "
               "end instead (protos/sync_from_messages.py numbers them by position). If the "
               "break is deliberate (with a new PROTOCOL_VERSION), regenerate the snapshot: "
               "python tests/test_wire_tags.py --update")

_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: "double", FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_INT64: "int64", FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_INT32: "int32", FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_FIXED32: "fixed32", FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "string", FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_UINT32: "uint32", FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64", FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_SINT64: "sint64",
}


def _type(f) -> str:
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        name = f.message_type.full_name
    elif f.type == FieldDescriptor.TYPE_ENUM:
        name = f.enum_type.full_name
    else:
        name = _SCALARS[f.type]
    repeated = getattr(f, "is_repeated", None)  # protobuf >= 6; label before
    if repeated is None:
        repeated = f.label == FieldDescriptor.LABEL_REPEATED
    return ("repeated " if repeated else "") + name


def current_wire() -> dict:
    """The tags of the checked-in stubs, in the snapshot's format."""
    msgs = pb.DESCRIPTOR.message_types_by_name
    env = msgs["Envelope"].oneofs_by_name["body"]
    return {
        "package": pb.DESCRIPTOR.package,
        "messages": {name: {f.name: [f.number, _type(f)] for f in d.fields}
                     for name, d in msgs.items()},
        "envelope": {f.message_type.name: [f.name, f.number] for f in env.fields},
    }


def load_snapshot() -> dict:
    return json.loads(SNAPSHOT.read_text())


def wire_differences(old: dict, new: dict) -> list[str]:
    """Every snapshot entry that the current wire changed or dropped (additions are fine)."""
    out = []
    if old["package"] != new["package"]:
        out.append(f"package {old['package']!r} became {new['package']!r}")
    for msg, fields in old["messages"].items():
        cur = new["messages"].get(msg)
        if cur is None:
            out.append(f"message {msg} disappeared")
            continue
        for field, (number, kind) in fields.items():
            got = cur.get(field)
            if got is None:
                out.append(f"{msg}.{field} (tag {number}) disappeared")
            elif got[0] != number:
                out.append(f"{msg}.{field}: tag {number} became {got[0]}")
            elif got[1] != kind:
                out.append(f"{msg}.{field} (tag {number}): type {kind!r} became {got[1]!r}")
    for msg, (field, number) in old["envelope"].items():
        got = new["envelope"].get(msg)
        if got is None:
            out.append(f"Envelope.body lost {msg} (field {field}, tag {number})")
        elif list(got) != [field, number]:
            out.append(f"Envelope.body {msg}: {field} = {number} became {got[0]} = {got[1]}")
    return out


def test_snapshot_is_well_formed():
    snap = load_snapshot()
    assert len(snap["messages"]) >= 40 and len(snap["envelope"]) >= 30
    pkg, env = snap["package"], snap["messages"]["Envelope"]
    assert env["protocol_version"] == [1, "uint32"]
    for msg, (field, number) in snap["envelope"].items():
        assert msg in snap["messages"] and env[field] == [number, f"{pkg}.{msg}"]
    assert snap["messages"]["Frame"] == {"data": [1, "bytes"], "end_of_message": [2, "bool"]}


def test_no_existing_wire_tag_changed_or_disappeared():
    problems = wire_differences(load_snapshot(), current_wire())
    assert not problems, "wire tags changed:\n  " + "\n  ".join(problems) + "\n" + UPDATE_HINT


def test_the_comparison_names_the_message_and_field():
    snap = load_snapshot()
    changed = json.loads(json.dumps(snap))
    changed["messages"]["LayerRequest"]["tasks"][0] = 9
    del changed["messages"]["TreeStart"]["key_fingerprint"]
    changed["messages"]["Ack"]["count"][1] = "sint64"
    changed["envelope"]["Ping"][1] = 99
    changed["messages"]["Ack"]["extra"] = [3, "string"]  # additions are allowed
    changed["messages"]["BrandNew"] = {"x": [1, "bytes"]}
    changed["envelope"]["BrandNew"] = ["brand_new", 200]
    assert wire_differences(snap, changed) == [
        "Ack.count (tag 2): type 'int64' became 'sint64'",
        "TreeStart.key_fingerprint (tag 5) disappeared",
        "LayerRequest.tasks: tag 4 became 9",
        "Envelope.body Ping: ping = 11 became ping = 99",
    ]
    assert wire_differences(snap, snap) == []


def test_message_order_is_the_registry_order():
    """sync_from_messages.py writes messages in MESSAGE_TYPES order, then Envelope, Frame."""
    from fedcredit.protocol.registry import MESSAGE_TYPES

    names = list(pb.DESCRIPTOR.message_types_by_name)
    assert names == [t.__name__ for t in MESSAGE_TYPES] + ["Envelope", "Frame"]


def test_envelope_order_is_the_registry_envelope_order():
    from fedcredit.protocol.registry import ENVELOPE_TYPES, NESTED_TYPES

    env = pb.DESCRIPTOR.message_types_by_name["Envelope"]
    assert env.fields_by_name["protocol_version"].number == 1
    body = sorted(env.oneofs_by_name["body"].fields, key=lambda f: f.number)
    assert [f.message_type.name for f in body] == [t.__name__ for t in ENVELOPE_TYPES]
    assert [f.number for f in body] == list(range(10, 10 + len(ENVELOPE_TYPES)))
    assert not {t.__name__ for t in NESTED_TYPES} & {f.message_type.name for f in body}


def test_dataclass_fields_are_the_proto_fields_in_tag_order():
    """Field i of a message dataclass is proto field number i (from 1), of the same type."""
    from fedcredit.protocol.registry import MESSAGE_TYPES

    scalar = {int: "int64", float: "double", str: "string", bytes: "bytes", bool: "bool"}
    msgs = pb.DESCRIPTOR.message_types_by_name
    for t in MESSAGE_TYPES:
        hints = typing.get_type_hints(t)
        want = []
        for i, f in enumerate(dataclasses.fields(t), 1):
            h = hints[f.name]
            if typing.get_origin(h) is list:
                (item,) = typing.get_args(h)
                nested = f"{pb.DESCRIPTOR.package}.{item.__name__}"
                kind = "repeated " + (scalar.get(item) or nested)
            else:
                kind = scalar[h]
            want.append((f.name, i, kind))
        got = [(f.name, f.number, _type(f)) for f in sorted(msgs[t.__name__].fields,
                                                              key=lambda f: f.number)]
        assert got == want, f"{t.__name__}: dataclass and proto fields differ"


def golden_messages() -> dict:
    """Messages whose encoded Envelopes the snapshot keeps byte for byte."""
    from fedcredit.protocol import messages as core
    from fedcredit.protocol.secureboost import messages as sb

    return {
        "Ack": core.Ack(session_id="s1", count=3),
        "LayerRequest": sb.LayerRequest(session_id="s", tree=2, depth=1, tasks=[
            sb.NodeTask(node_id=1, parent_id=0, rows=b"\x01\x00\x00\x00"),
            sb.NodeTask(node_id=2, parent_id=0, sibling_id=1)]),
    }


def test_envelope_bytes_are_stable():
    """Encoded Envelopes, byte for byte: field tags, nesting, negative ints, the body tag."""
    from fedcredit.transport.serde import decode, encode

    golden = load_snapshot()["golden"]
    for name, msg in golden_messages().items():
        data = encode(msg)
        assert data.hex() == golden[name], f"{name} no longer encodes as before. " + UPDATE_HINT
        assert decode(data) == msg


def _format(snap: dict) -> str:
    """JSON with one line per field: readable diffs when a tag is added or changed."""
    dump = json.dumps
    lines = ["{", f' "package": {dump(snap["package"])},', ' "messages": {']
    msgs = list(snap["messages"].items())
    for i, (name, fields) in enumerate(msgs):
        body = [f'   {dump(f)}: {dump(v)}' for f, v in fields.items()]
        end = "," if i < len(msgs) - 1 else ""
        inner = "\n" + ",\n".join(body) + "\n  }" if body else "}"
        lines.append(f'  {dump(name)}: {{' + inner + end)
    lines.append(" },")
    for key in ("envelope", "golden"):
        items = [f'  {dump(k)}: {dump(v)}' for k, v in snap[key].items()]
        lines.append(f' {dump(key)}: {{')
        lines.append(",\n".join(items))
        lines.append(" }," if key == "envelope" else " }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if argv != ["--update"]:
        print(__doc__)
        return 2
    snap = current_wire()
    from fedcredit.transport.serde import encode

    snap["golden"] = {name: encode(msg).hex() for name, msg in golden_messages().items()}
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(_format(snap))
    print(f"wrote {SNAPSHOT} ({len(snap['messages'])} messages, {len(snap['envelope'])} "
          "envelope members)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
