#!/usr/bin/env python
"""Regenerate the checked-in gRPC/protobuf code from protos/fedcredit.proto.

    python protos/generate.py            # writes fedcredit/transport/generated/
    python protos/generate.py --out DIR  # writes DIR/fedcredit/transport/generated/ (drift test)

Needs grpcio-tools (in the test extras). The virtual include path makes the generated
modules import each other as ``fedcredit.transport.generated``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "fedcredit/transport/generated"


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    (out / PACKAGE).mkdir(parents=True, exist_ok=True)
    proto = ROOT / "protos" / "fedcredit.proto"
    args = ["protoc", f"-I{PACKAGE}={proto.parent}", f"--python_out={out}",
            f"--grpc_python_out={out}", str(proto)]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out / PACKAGE).glob("fedcredit_pb2*.py"))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT))
    a = ap.parse_args()
    for p in generate(Path(a.out)):
        print(p)
    sys.exit(0)
