"""The holder as a real service: `fedcredit holder serve` processes driven over mutual TLS.

One holder directory and one server process serve the module (started once, restarted once
to prove that models, consents and features survive). Operator commands run in-process
through the CLI's ``main`` (the same code as the console script), the server and one bank
command as real processes. Keys are 1024-bit and INSECURE: tests only; the test holder's
policy allows them explicitly.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedcredit.cli import main as cli
from fedcredit.crypto import generate_keypair
from fedcredit.datasets import make_credit_data
from fedcredit.errors import (InsecureParameters, InvalidCiphertext, InvalidInput,
                              PeerUnavailable, PolicyViolation, SessionNotFound)
from fedcredit.holder import store
from fedcredit.models import SecureBoostClassifier
from fedcredit.protocol.alignment.bank import align
from fedcredit.protocol.secureboost import bank as sb
from fedcredit.protocol import ActiveSession
from fedcredit.protocol.registry import MESSAGES as m
from fedcredit.protocol.secureboost.math import GradientLayout
from fedcredit.protocol.wire import rows_to_bytes
from fedcredit.transport import connect, tls
from fedcredit.transport.generated import fedcredit_pb2 as pb

pytestmark = pytest.mark.grpc

KEY_BITS = 1024  # INSECURE, tests only
START_TIMEOUT = 60.0


def fc(*args) -> int:
    return cli([str(a) for a in args])


def set_policy(d: Path, **values) -> None:
    """Rewrite keys of holder.toml in place (the file is ours: one key per line)."""
    path = d / "holder.toml"
    text = path.read_text()
    for key, value in values.items():
        v = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {v}", text)
        assert n == 1, key
    path.write_text(text)


def fedcredit_cmd() -> list[str]:
    script = Path(sys.executable).with_name("fedcredit")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from fedcredit.cli import main; sys.exit(main())"]


class Server:
    """`fedcredit holder serve` as a child process; always stopped by the fixture."""

    def __init__(self, d: Path):
        self.dir = d
        self.proc = None
        self.address = ""
        self.logs: list[Path] = []

    def start(self) -> "Server":
        port_file = self.dir / "port"
        port_file.unlink(missing_ok=True)
        log = self.dir / f"serve-{len(self.logs)}.log"
        self.logs.append(log)
        self._log = open(log, "w")
        self.proc = subprocess.Popen(fedcredit_cmd() + ["holder", "serve", "--dir", str(self.dir),
                                                        "--port-file", str(port_file)],
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("holder serve did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.05)
        self.address = f"127.0.0.1:{port_file.read_text().strip()}"
        return self

    def stop(self, sig=signal.SIGTERM, timeout: float = 20.0) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()

    def health(self, tls_dir) -> int:
        ch = grpc.secure_channel(self.address, tls.channel_credentials(tls_dir),
                                 options=tls.channel_options(self.address))
        try:
            req = health_pb2.HealthCheckRequest(service="fedcredit.v1.PassiveParty")
            return health_pb2_grpc.HealthStub(ch).Check(req, timeout=10).status
        finally:
            ch.close()

    def assert_up(self, tls_dir) -> None:
        assert self.proc.poll() is None, "the holder process died"
        assert self.health(tls_dir) == health_pb2.HealthCheckResponse.SERVING

    def log_text(self) -> str:
        return "".join(p.read_text() for p in self.logs)


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    bank, holder = make_credit_data(rows=3000, seed=11, overlap=0.9)
    d = tmp_path_factory.mktemp("data")
    bank.to_csv(d / "bank.csv", index=False)
    holder.to_csv(d / "holder.csv", index=False)
    consent = pd.DataFrame({"uscc": holder["uscc"], "bank": "demo-bank", "purpose": "credit",
                            "granted_at": "2026-01-01T00:00:00Z",
                            "expires_at": "2099-01-01T00:00:00Z"})
    consent.to_csv(d / "consent.csv", index=False)
    return {"dir": d, "bank": bank.set_index("uscc"), "holder": holder.set_index("uscc")}


def make_holder(d: Path, data, **policy) -> Path:
    assert fc("holder", "init", "--dir", d, "--listen", "127.0.0.1:0") == 0
    set_policy(d, min_key_bits=KEY_BITS, allow_insecure_keys=True, min_node_samples=10,
               **policy)
    assert fc("holder", "load-features", "--dir", d, "--csv", data["dir"] / "holder.csv",
              "--id-column", "uscc") == 0
    assert fc("holder", "consent", "import", "--dir", d, "--csv",
              data["dir"] / "consent.csv") == 0
    return d


@pytest.fixture(scope="module")
def holder_dir(tmp_path_factory, data):
    return make_holder(tmp_path_factory.mktemp("holder") / "H", data)


@pytest.fixture(scope="module")
def server(holder_dir):
    s = Server(holder_dir).start()
    try:
        yield s
    finally:
        s.kill()


@pytest.fixture(scope="module")
def tls_dir(holder_dir):
    return holder_dir / "tls"


@pytest.fixture(scope="module")
def shared():
    return {}


def model_kw(**kw):
    base = dict(n_estimators=2, max_depth=2, learning_rate=0.3, key_bits=KEY_BITS,
                insecure_key=True, verbose=False, n_jobs=1, min_child_samples=20)
    base.update(kw)
    return base


def audit_rows(d: Path) -> list[tuple]:
    con = store.connect(d / "holder.db")
    try:
        return con.execute("SELECT bank, purpose, operation, enterprises, session, detail "
                           "FROM audit_log ORDER BY seq").fetchall()
    finally:
        con.close()


# -- the running service -------------------------------------------------------------------------
def test_serve_answers_health_checks_with_mtls(server, tls_dir):
    server.assert_up(tls_dir)


def test_train_and_score_through_the_service(server, tls_dir, data, shared):
    bank = data["bank"]
    X, y = bank.drop(columns="label"), bank["label"]
    with connect(server.address, tls_dir=tls_dir) as ch:
        model = SecureBoostClassifier(**model_kw()).fit(X, y, holder=ch)
        p = model.predict_proba(X, holder=ch)[:, 1]
    assert len(model.trees_) == 2 and np.isfinite(p).all()
    assert any(n.owner == "holder" for t in model.trees_ for n in t.nodes), \
        "the holder's features should win some splits"
    shared["model"], shared["X"] = model, X
    ops = [r[2] for r in audit_rows(server.dir) if r[0] == "demo-bank"]
    for op in ("open_session:train", "psi", "align", "tree_start", "histograms", "split",
               "model_finish", "open_session:score", "predict", "close_session"):
        assert op in ops, op


def test_revoked_and_expired_consent_leave_the_next_request(server, tls_dir, data, shared):
    model, X = shared["model"], shared["X"]
    shared_ids = [i for i in X.index if i in data["holder"].index]
    revoked, expiring, kept = shared_ids[:15], shared_ids[15:25], shared_ids[25:]
    with connect(server.address, tls_dir=tls_dir) as ch:
        before = pd.Series(model.predict_proba(X, holder=ch)[:, 1], index=X.index)
        for u in revoked:
            assert fc("holder", "consent", "revoke", "--dir", server.dir, "--uscc", u,
                      "--bank", "demo-bank") == 0
        soon = pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=2)
        regrant = pd.DataFrame({"uscc": expiring, "bank": "demo-bank", "purpose": "credit",
                                "granted_at": "2026-01-01T00:00:00Z",
                                "expires_at": soon.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
        regrant.to_csv(server.dir / "expiring.csv", index=False)
        assert fc("holder", "consent", "import", "--dir", server.dir, "--csv",
                  server.dir / "expiring.csv") == 0
        time.sleep(max(0.0, (soon - pd.Timestamp.now(tz="UTC")).total_seconds()) + 0.3)
        after = pd.Series(model.predict_proba(X, holder=ch)[:, 1], index=X.index)
        # an enterprise without consent is scored as one the holder does not know
        gone = revoked + expiring
        unknown = X.loc[gone].copy()
        unknown.index = [f"unknown-{k}" for k in range(len(gone))]
        as_unknown = model.predict_proba(unknown, holder=ch)[:, 1]
        session = ActiveSession(ch, "align")
        aligned = set(align(session, X.index.tolist()).ids)
        session.close()
    np.testing.assert_allclose(after.loc[gone].to_numpy(), as_unknown)
    np.testing.assert_allclose(after.loc[kept], before.loc[kept])
    assert not aligned & set(gone), "PSI offered enterprises whose consent is gone"
    assert set(kept) <= aligned
    scored = [r[3] for r in audit_rows(server.dir) if r[2] == "predict"]
    assert scored[-2:] == [len(kept), 0]  # enterprises whose holder data was used


def test_bank_commands_align_train_score(server, tls_dir, data, tmp_path, capsys):
    bank_csv = data["dir"] / "bank.csv"
    out = tmp_path / "aligned.csv"
    r = subprocess.run(fedcredit_cmd() + ["bank", "align", "--holder", server.address,
                                          "--tls-dir", str(tls_dir), "--csv", str(bank_csv),
                                          "--id-column", "uscc", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "aligned" in r.stdout
    aligned = pd.read_csv(out, dtype={"uscc": str})
    assert 0 < len(aligned) < len(data["bank"]) and set(aligned.columns) >= {"uscc", "label"}
    model = tmp_path / "model.json"
    assert fc("bank", "train", "--holder", server.address, "--tls-dir", tls_dir, "--csv",
              bank_csv, "--id-column", "uscc", "--label-column", "label", "--model-out",
              model, "--trees", 2, "--depth", 2, "--key-bits", KEY_BITS, "--insecure-key",
              "--workers", 1, "--quiet") == 0
    scores = tmp_path / "scores.csv"
    assert fc("bank", "score", "--holder", server.address, "--tls-dir", tls_dir, "--model",
              model, "--csv", bank_csv, "--id-column", "uscc", "--out", scores) == 0
    s = pd.read_csv(scores, dtype={"uscc": str})
    assert len(s) == len(data["bank"]) and s["score"].between(0, 1).all()
    assert "trained 2 trees" in capsys.readouterr().out


# -- what a bank may send --------------------------------------------------------------------------
def _raw_channel(server, tls_dir, **options):
    opts = [(k, v) for k, v in options.items()] + tls.channel_options(server.address)
    ch = grpc.secure_channel(server.address, tls.channel_credentials(tls_dir), options=opts)
    from fedcredit.transport.generated import fedcredit_pb2_grpc as pbg

    return ch, pbg.PassivePartyStub(ch)


def _status(frames, stub) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Exchange(iter(frames), timeout=60))
    return err.value.code()


def test_malformed_and_oversized_input_gets_an_error_status(server, tls_dir):
    ch, stub = _raw_channel(server, tls_dir,
                            **{"grpc.max_send_message_length": 8 << 20})
    try:
        garbage = [pb.Frame(data=b"\xff\x00not protobuf", end_of_message=True)]
        assert _status(garbage, stub) == grpc.StatusCode.INVALID_ARGUMENT
        half = [pb.Frame(data=b"\x08", end_of_message=False)]
        assert _status(half, stub) == grpc.StatusCode.FAILED_PRECONDITION
        big = [pb.Frame(data=bytes(3 << 20), end_of_message=True)]  # beyond the frame limit
        assert _status(big, stub) == grpc.StatusCode.RESOURCE_EXHAUSTED
        chunk = bytes(1 << 20)
        endless = (pb.Frame(data=chunk, end_of_message=False) for _ in range(300))
        assert _status(endless, stub) == grpc.StatusCode.RESOURCE_EXHAUSTED  # > 256 MiB
    finally:
        ch.close()
    server.assert_up(tls_dir)


def test_bad_keys_ciphertexts_and_sessions(server, tls_dir, data):
    X = data["bank"].drop(columns="label")
    with connect(server.address, tls_dir=tls_dir) as ch:
        _, small = generate_keypair("paillier", bits=512, insecure=True)
        with pytest.raises(InsecureParameters, match="below the holder's 1024-bit minimum"):
            ActiveSession(ch, "train", small)
        with pytest.raises(InvalidInput):
            ch.call(m.OpenSession(purpose="credit", task="train", scheme="paillier",
                                  public_key=b"{not a key"))
        with pytest.raises(PolicyViolation, match="purpose"):
            ch.call(m.OpenSession(purpose="marketing", task="align"))
        with pytest.raises(SessionNotFound, match="unknown to the holder"):
            ch.call(m.BoostStart(session_id="0" * 32, rows=rows_to_bytes([0])))
        pk, sk = generate_keypair("paillier", bits=KEY_BITS, insecure=True)
        s = ActiveSession(ch, "train", sk, workers=1)
        al = align(s, X.index.tolist())
        sb.boost_start(s, np.arange(len(al)), 16, 20)
        start = m.TreeStart(session_id=s.id, tree=0, slot_bits=60,
                            rows=rows_to_bytes(range(40)), key_fingerprint=pk.fingerprint)
        width = pk.ciphertext_bytes
        for payload in (bytes(width * 2), int(pk.cipher_modulus).to_bytes(width, "big"),
                        bytes(width)[:-3]):
            with pytest.raises(InvalidCiphertext):
                list(ch.exchange([start, m.GradientChunk(offset=0, ciphertexts=payload)]))
        assert ch.call(m.Ping()).holder_name == "credit-data-holder"
        s.close()
    server.assert_up(tls_dir)


def test_a_bank_that_vanishes_mid_stream(server, tls_dir, data):
    import threading

    X = data["bank"].drop(columns="label")
    pk, sk = generate_keypair("paillier", bits=KEY_BITS, insecure=True)
    with connect(server.address, tls_dir=tls_dir) as ch:
        s = ActiveSession(ch, "train", sk, workers=1)
        al = align(s, X.index.tolist())
        sb.boost_start(s, np.arange(len(al)), 16, 20)
        sent, hang = threading.Event(), threading.Event()
        one = pk.to_bytes_batch(sk.encrypt([1] * 8, workers=1))

        def frames():
            from fedcredit.transport import serde

            yield from serde.to_frames([m.TreeStart(
                session_id=s.id, tree=0, slot_bits=60, rows=rows_to_bytes(range(len(al))),
                key_fingerprint=pk.fingerprint), m.GradientChunk(offset=0, ciphertexts=one)])
            sent.set()
            hang.wait(30)  # the bank goes silent mid-stream ...

        call = ch._stub.Exchange(frames(), timeout=60)
        assert sent.wait(20)
        time.sleep(0.3)
        call.cancel()  # ... and disconnects
        hang.set()
        # the session is usable again: its lock was released, the broken tree replaced
        n = len(al)
        g = np.linspace(-1, 1, n)
        g_int, h_int = (g * 2**20).astype(np.int64), np.full(n, 2**18, dtype=np.int64)
        layout = GradientLayout.for_rows(g_int, h_int, pk.plaintext_bits)
        assert sb.send_gradients(s, 0, np.arange(n), layout, g_int, h_int) == n
        s.close()
    server.assert_up(tls_dir)


def test_banks_outside_the_policy_or_the_ca_are_refused(server, tls_dir, tmp_path):
    from fedcredit.holder.devca import make_dev_certs

    assert fc("holder", "issue-bank-cert", "--dir", server.dir, "--bank", "other-bank") == 0
    with connect(server.address, tls_dir=tls_dir, bank_name="other-bank") as ch:
        with pytest.raises(PolicyViolation, match="not served by this holder"):
            ch.call(m.Ping())
    foreign = tmp_path / "foreign"
    make_dev_certs(foreign)
    mixed = tmp_path / "mixed"  # trusts the holder, presents a certificate from another CA
    mixed.mkdir()
    for name in ("bank.pem", "bank.key"):
        (mixed / name).write_bytes((foreign / name).read_bytes())
        os.chmod(mixed / name, 0o600)
    (mixed / "ca.pem").write_bytes((tls_dir / "ca.pem").read_bytes())
    with pytest.raises(PeerUnavailable):
        with connect(server.address, tls_dir=mixed, wait=2) as ch:
            ch.call(m.Ping())
    refused = [r for r in audit_rows(server.dir) if r[2].startswith("refused:")]
    assert any(r[0] == "other-bank" for r in refused)
    server.assert_up(tls_dir)


# -- operations ------------------------------------------------------------------------------------
def test_logs_are_json_lines_without_enterprise_ids(server, tls_dir, data):
    lines = [ln for ln in server.log_text().splitlines() if ln.startswith("{")]
    events = [json.loads(ln) for ln in lines]
    assert any(e["event"] == "serving" for e in events)
    assert any(e["event"] == "request" and e.get("operation") == "predict" for e in events)
    text = server.log_text()
    ids = set(data["holder"].index) | set(data["bank"].index)
    leaked = [i for i in ids if i in text]
    assert not leaked, f"{len(leaked)} enterprise ids in the server log"


def test_stats_and_audit_after_serving(server, capsys):
    assert fc("holder", "stats", "--dir", server.dir, "--json") == 0
    rows = json.loads(capsys.readouterr().out)["requests"]
    mine = next(r for r in rows if r["bank"] == "demo-bank" and r["purpose"] == "credit")
    assert mine["requests"] > 10 and mine["enterprises_aligned"] > 0
    assert mine["enterprises_scored"] > 0 and mine["trees_trained"] >= 2
    assert fc("holder", "audit", "verify", "--dir", server.dir) == 0
    assert "audit log intact" in capsys.readouterr().out
    assert fc("holder", "audit", "export", "--dir", server.dir, "--since", "1d") == 0
    exported = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert {"seq", "bank", "operation", "enterprises", "hash"} <= set(exported[0])


def test_restart_keeps_models_consents_and_features(server, tls_dir, shared):
    model, X = shared["model"], shared["X"]
    with connect(server.address, tls_dir=tls_dir) as ch:
        before = model.predict_proba(X, holder=ch)[:, 1]
    assert server.stop(signal.SIGTERM) == 0
    server.start()
    server.assert_up(tls_dir)
    with connect(server.address, tls_dir=tls_dir) as ch:
        after = model.predict_proba(X, holder=ch)[:, 1]
    np.testing.assert_array_equal(before, after)
    assert fc("holder", "audit", "verify", "--dir", server.dir) == 0
    ops = [r[2] for r in audit_rows(server.dir)]
    assert ops.count("serve_start") == 2 and ops.count("serve_stop") == 1


def test_sigint_stops_the_server_cleanly(server):
    assert server.stop(signal.SIGINT) == 0
    assert '"event": "stopped"' in server.log_text()
