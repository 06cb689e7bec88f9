"""``holder serve`` writes one structured event per line to stderr, whoever writes it.

gRPC's C core writes its own lines (the only trace of a refused TLS handshake); start-up
failures used to end in a traceback. Both must reach the operator's log collector as JSON.
"""
from __future__ import annotations

import json
import subprocess

import grpc
import pytest
from test_holder_service import Server, data, fedcredit_cmd, make_holder  # noqa: F401

from fedcredit.holder import devca
from fedcredit.transport import tls

pytestmark = pytest.mark.grpc


def _events(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"a stderr line is not JSON: {line[:300]!r}") from None
    return events


def test_refused_handshakes_reach_the_log_as_json(tmp_path, data):  # noqa: F811
    d = make_holder(tmp_path / "H", data)
    foreign = tmp_path / "foreign"
    devca.make_dev_certs(foreign)
    s = Server(d).start()
    try:
        creds = tls.channel_credentials(d / "tls", cert=foreign / "bank.pem",
                                        key=foreign / "bank.key")
        for _ in range(2):
            with grpc.secure_channel(s.address, creds, tls.channel_options(s.address)) as ch:
                with pytest.raises(grpc.FutureTimeoutError):
                    grpc.channel_ready_future(ch).result(timeout=2)
        s.assert_up(d / "tls")
        assert s.stop() == 0
    finally:
        s.kill()
    events = _events(s.log_text())
    native = [e for e in events if e["logger"] == "fedcredit.grpc"]
    assert any("Handshake failed" in e["event"] for e in native), native[:3]
    assert all(e["source"] for e in native)  # the C core's file:line, kept as a field
    assert events[-1]["event"] == "stopped"


def test_a_start_up_failure_is_one_json_line(tmp_path, data):  # noqa: F811
    d = make_holder(tmp_path / "H", data)
    toml = d / "holder.toml"
    toml.write_text(toml.read_text().replace("max_tree_depth = 10", "max_tree_depth = 0"))
    r = subprocess.run(fedcredit_cmd() + ["holder", "serve", "--dir", str(d)],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2
    (event,) = _events(r.stderr)
    assert event["level"] == "error" and "policy.max_tree_depth" in event["reason"]
