#!/usr/bin/env python
"""Dev tool: rewrite protos/fedcredit.proto from the dataclasses in protocol/messages.py.

Run after adding a message type (append it to MESSAGE_TYPES: field numbers are positional
and must only grow), then run protos/generate.py.
"""
import dataclasses, typing, re
from fedcredit.protocol.registry import ENVELOPE_TYPES, MESSAGE_TYPES
def snake(name): return re.sub(r'(?<!^)(?=[A-Z])', '_', name).lower()
lines = ['// fedcredit wire protocol, version 1.', '//', '// One bidirectional stream per exchange: the bank sends one or more Envelopes, the',
'// holder answers with one or more. Each serialized Envelope travels as Frames of at most',
'// 1 MiB (nothing relies on raising gRPC\'s 4 MB message limit). Message and field names',
'// match the dataclasses in the messages.py modules of fedcredit/protocol; transport/serde.py maps them.',
'// Field numbers are append-only.', '', 'syntax = "proto3";', '', 'package fedcredit.v1;', '']
tmap = {int: 'int64', float: 'double', str: 'string', bytes: 'bytes', bool: 'bool'}
for t in MESSAGE_TYPES:
    hints = typing.get_type_hints(t)
    doc = (t.__doc__ or '').strip().splitlines()
    if doc and not doc[0].startswith(t.__name__ + '('):
        lines.append('// ' + doc[0])
    lines.append(f'message {t.__name__} {{')
    for i, f in enumerate(dataclasses.fields(t), 1):
        h = hints[f.name]
        origin = typing.get_origin(h)
        if origin is list:
            (a,) = typing.get_args(h)
            ty = 'repeated ' + (tmap.get(a) or a.__name__)
        else:
            ty = tmap[h]
        lines.append(f'  {ty} {f.name} = {i};')
    lines.append('}'); lines.append('')
lines.append('message Envelope {')
lines.append('  uint32 protocol_version = 1;')
lines.append('  oneof body {')
for i, t in enumerate(ENVELOPE_TYPES, 10):
    lines.append(f'    {t.__name__} {snake(t.__name__)} = {i};')
lines.append('  }'); lines.append('}'); lines.append('')
lines += ['// A slice of one serialized Envelope; the last slice of each has end_of_message set.',
'message Frame {', '  bytes data = 1;', '  bool end_of_message = 2;', '}', '',
'service PassiveParty {', '  // Requests in, responses out, both as framed Envelopes.',
'  rpc Exchange(stream Frame) returns (stream Frame);', '}', '']
open(__import__('pathlib').Path(__file__).with_name('fedcredit.proto'), 'w').write('\n'.join(lines))
