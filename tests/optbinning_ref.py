"""Run optbinning in a child process and return JSON: optbinning imports OR-Tools, whose
protobuf runtime must not share a process with grpc_tools' protoc (the drift test)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest


def run(code: str, **payload):
    if importlib.util.find_spec("optbinning") is None:
        pytest.skip("optbinning is not installed (test extras)")
    prog = ("import json, sys\nimport numpy as np\np = json.loads(sys.stdin.read())\n"
            + code + "\nprint(json.dumps(out))\n")
    r = subprocess.run([sys.executable, "-c", prog], input=json.dumps(payload), text=True,
                       capture_output=True, timeout=300)
    if r.returncode:
        raise RuntimeError(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])
