"""A full disk against a real ``fedcredit holder serve`` and the operator's commands.

The disk is filled the way the kernel reports it to one process: ``RLIMIT_FSIZE`` lowered on
the running server (or the command) makes every write past the limit fail with EFBIG, as
ENOSPC would, without filling the machine. The holder must refuse with UNAVAILABLE and a
message that names its store, report NOT_SERVING while the audit log cannot be written,
recover by itself once it can, and an operator command must end in one line, leaving no
temporary file.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
import time

import pytest
from grpc_health.v1 import health_pb2
from test_holder_service import Server, audit_rows, data, fedcredit_cmd, make_holder  # noqa: F401

from fedcredit.errors import StoreUnavailable
from fedcredit.protocol import BankSession, align
from fedcredit.transport import connect

pytestmark = pytest.mark.grpc
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


class PipedServer(Server):
    """A served holder whose output goes through a pipe to the test (which has no file-size
    cap), so that what it logs during the outage is kept."""

    def start(self) -> "PipedServer":
        port_file = self.dir / "port"
        port_file.unlink(missing_ok=True)
        self.lines: list[str] = []
        self.proc = subprocess.Popen(fedcredit_cmd() + ["holder", "serve", "--dir", str(self.dir),
                                                        "--port-file", str(port_file)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True)
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()
        deadline = time.monotonic() + 120
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("holder serve did not start:\n" + self.log_text())
            time.sleep(0.05)
        self.address = f"127.0.0.1:{port_file.read_text().strip()}"
        return self

    def log_text(self) -> str:
        return "".join(self.lines)


def _limit_writes(pid: int, size: int | None) -> None:
    """Cap the file size process ``pid`` may write (None: lift the cap)."""
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard if size is None else size, hard))


def _wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("output", ["pipe", "file on the full disk"])
def test_a_full_disk_is_unavailable_not_serving_and_recovers(tmp_path, data, output):  # noqa: F811
    d = make_holder(tmp_path / "H", data)
    s = (PipedServer if output == "pipe" else Server)(d).start()
    tls_dir = d / "tls"
    try:
        ids = list(data["bank"].index[:200])
        with connect(s.address, tls_dir=tls_dir) as ch:
            assert len(align(BankSession(ch, "align"), ids)) > 0
            _limit_writes(s.proc.pid, 1)  # from now on no write reaches the disk
            for _ in range(3):
                with pytest.raises(StoreUnavailable, match=r"holder\.db cannot be written|"
                                                           "cannot write its audit log"):
                    align(BankSession(ch, "align"), ids)
            assert s.health(tls_dir) == NOT_SERVING
            assert s.proc.poll() is None
            _limit_writes(s.proc.pid, None)  # the operator frees the disk
            assert _wait_for(lambda: s.health(tls_dir) == SERVING, 60), \
                "health did not recover:\n" + s.log_text()[-3000:]
            assert len(align(BankSession(ch, "align"), ids)) > 0
        assert s.stop() == 0
    finally:
        s.kill()
    resumed = [r for r in audit_rows(d) if r[2] == "audit_resumed"]
    assert len(resumed) == 1 and "refused=" in resumed[0][-1]
    events = [json.loads(line) for line in s.log_text().splitlines()]  # every line is JSON
    assert any(e["event"].startswith("audit log writable again") for e in events)
    if output == "pipe":  # a log file on the full disk loses what was logged meanwhile
        assert any(e["event"].startswith("audit log cannot be written") for e in events)


#: lowers RLIMIT_FSIZE, then execs the command: no Python runs in the forked child of this
#: test process (a preexec_fn would, and gRPC's fork handlers of the tests before sometimes
#: print a C-core line into the child's stderr there)
_CAP_THEN_EXEC = ("import os, resource, sys; s = int(sys.argv[1]); "
                  "resource.setrlimit(resource.RLIMIT_FSIZE, "
                  "(s, resource.getrlimit(resource.RLIMIT_FSIZE)[1])); "
                  "os.execvp(sys.argv[2], sys.argv[2:])")


def _run_limited(args, size: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _CAP_THEN_EXEC, str(size), *fedcredit_cmd(),
                           *args],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_operator_commands_on_a_full_disk_end_in_one_line(tmp_path, data):  # noqa: F811
    d = make_holder(tmp_path / "H", data)
    before = sorted(p.name for p in (d / "features").iterdir())
    csv = str(data["dir"] / "holder.csv")
    for args in (["holder", "load-features", "--dir", str(d), "--csv", csv, "--id-column", "uscc"],
                 ["holder", "consent", "revoke", "--dir", str(d), "--uscc",
                  data["holder"].index[0], "--bank", "demo-bank"],
                 ["holder", "audit", "export", "--dir", str(d), "--out", str(tmp_path / "a.csv")]):
        r = _run_limited(args, 1)
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0, args
        assert len(lines) == 1 and "Traceback" not in r.stderr, (args, r.stderr[-2000:])
        assert "cannot be written" in lines[0] or "disk" in lines[0], lines[0]
    assert sorted(p.name for p in (d / "features").iterdir()) == before  # no .tmp, no change
    assert not list(d.rglob("*.tmp")) and not (tmp_path / "a.csv").exists()
    r = _run_limited(["holder", "serve", "--dir", str(d)], 1)
    assert r.returncode == 2, r.stderr[-2000:]
    (event,) = [json.loads(line) for line in r.stderr.strip().splitlines()]
    assert event["level"] == "error" and "cannot be written" in event["reason"]
