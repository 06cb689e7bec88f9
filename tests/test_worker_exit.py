"""Worker processes end when the process that started them is SIGKILLed (no pool left
behind holding a key's tables)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

CHILD = r"""
import os, sys
from fedcredit.crypto import generate_keypair
pk, sk = generate_keypair(bits=1024, insecure=True)  # INSECURE: tests only
sk.encrypt(list(range(3000)), workers=2)  # starts two worker processes
from fedcredit.crypto import parallel
print(" ".join(str(p) for p in parallel.get_pool(2)._processes), flush=True)
sys.stdin.read()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_exit_after_their_parent_is_killed():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
