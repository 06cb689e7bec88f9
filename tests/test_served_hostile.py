"""A hostile bank against a real ``fedcredit holder serve`` process: an oversized key and an
oversized PSI upload are refused with RESOURCE_EXHAUSTED, audited, and cost the holder no
memory; the server stays healthy for everyone else."""
from __future__ import annotations

import pytest
from test_holder_service import Server, audit_rows, data, make_holder  # noqa: F401

from fedcredit.errors import ResourceLimit
from fedcredit.protocol import BankSession, align
from fedcredit.protocol.registry import MESSAGES as m
from fedcredit.transport import connect

pytestmark = pytest.mark.grpc


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def served(tmp_path_factory, data):  # noqa: F811  (the module fixture imported above)
    d = make_holder(tmp_path_factory.mktemp("hostile") / "H", data, max_psi_points=500)
    s = Server(d).start()
    try:
        yield s
    finally:
        s.kill()


def test_an_oversized_key_costs_the_served_holder_nothing(served):
    tls_dir = served.dir / "tls"
    n = (1 << 32767) | 1  # a 32768-bit "OU key": once enough to get the holder OOM-killed
    key = f'{{"scheme":"ou","n":"{n:x}","g":"3","h":"5","exponent_bits":224}}'.encode()
    before = _rss_mib(served.proc.pid)
    with connect(served.address, tls_dir=tls_dir) as ch:
        for _ in range(5):
            with pytest.raises(ResourceLimit, match="4096-bit maximum"):
                ch.call(m.OpenSession(purpose="credit", task="train", scheme="ou",
                                      public_key=key))
    assert _rss_mib(served.proc.pid) - before < 30
    served.assert_up(tls_dir)
    ops = [r[2] for r in audit_rows(served.dir)]
    assert ops.count("refused:OpenSession") >= 5


def test_an_oversized_psi_upload_is_refused_and_the_session_dropped(served, data):
    tls_dir = served.dir / "tls"
    ids = [f"91{i:016d}" for i in range(2000)]  # 4x the cap (ids need not be known)
    with connect(served.address, tls_dir=tls_dir) as ch:
        s = BankSession(ch, "align")
        with pytest.raises(ResourceLimit, match="max_psi_points=500"):
            align(s, ids)
        ok = BankSession(ch, "align")
        assert len(align(ok, list(data["bank"].index[:300]))) > 0
    served.assert_up(tls_dir)
    ops = [r[2] for r in audit_rows(served.dir)]
    assert "refused:PsiBlinded" in ops
