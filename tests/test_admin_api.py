"""The platform portal's admin API over real HTTPS (httpx), against a served holder.

A real `fedcredit holder serve` process answers the banks over mutual-TLS gRPC; the admin
API runs either in this test process against the same holder directory (start_admin, as
`holder serve` calls it) or inside the served process itself (the last tests). A consent
granted or withdrawn through the API must reach the bank's next alignment. Keys are 1024-bit
and INSECURE: tests only.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import ssl
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from test_holder_service import Server, set_policy

from fedcredit.cli import main as cli
from fedcredit.datasets import make_credit_data
from fedcredit.errors import InvalidInput
from fedcredit.holder import admin, config, store
from fedcredit.protocol import ActiveSession
from fedcredit.protocol.alignment.bank import align
from fedcredit.transport import connect

pytestmark = pytest.mark.grpc

KEY_BITS = 1024  # INSECURE, tests only


def fc(*args) -> int:
    return cli([str(a) for a in args])


def make_token(d: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert fc("holder", "admin", "token", "--dir", d) == 0
    return out.getvalue().strip()


def set_admin(d: Path, listen: str, tls: bool = True) -> None:
    path = d / "holder.toml"
    text, n = re.subn(r'(?m)^listen = "".*$', f'listen = "{listen}"', path.read_text())
    text, k = re.subn(r"(?m)^tls = (true|false).*$", f"tls = {str(tls).lower()}", text)
    assert n == 1 and k == 1
    path.write_text(text)


def make_holder(d: Path, data: dict) -> Path:
    assert fc("holder", "init", "--dir", d, "--listen", "127.0.0.1:0", "--bank", "demo-bank",
              "--bank", "bank-b") == 0
    set_policy(d, min_key_bits=KEY_BITS, allow_insecure_keys=True, min_node_samples=10)
    assert fc("holder", "load-features", "--dir", d, "--csv", data["dir"] / "holder.csv",
              "--id-column", "uscc") == 0
    assert fc("holder", "consent", "import", "--dir", d, "--csv",
              data["dir"] / "consent.csv") == 0
    return d


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    bank, holder = make_credit_data(rows=600, seed=21, overlap=0.9)
    d = tmp_path_factory.mktemp("admin-data")
    holder.to_csv(d / "holder.csv", index=False)
    ids = holder["uscc"].tolist()
    half = ids[: len(ids) // 2]  # the other half has no consent to start with
    pd.DataFrame({"uscc": half, "bank": "demo-bank", "purpose": "credit",
                  "granted_at": "2026-01-01T00:00:00Z", "expires_at": "2099-01-01T00:00:00Z",
                  "method": "written", "evidence": [f"form-{k}" for k in range(len(half))],
                  "recorded_by": "clerk"}).to_csv(d / "consent.csv", index=False)
    return {"dir": d, "bank_ids": bank["uscc"].tolist(), "consented": half,
            "unconsented": [i for i in ids[len(ids) // 2:] if i in set(bank["uscc"])]}


@pytest.fixture(scope="module")
def hdir(tmp_path_factory, data):
    return make_holder(tmp_path_factory.mktemp("admin") / "H", data)


@pytest.fixture(scope="module")
def token(hdir):
    return make_token(hdir)


@pytest.fixture(scope="module")
def server(hdir, token):
    s = Server(hdir).start()
    try:
        yield s
    finally:
        s.kill()


def admin_cfg(d: Path, listen: str = "127.0.0.1:0", tls: bool = True):
    cfg = config.load_config(d)
    cfg.admin_listen, cfg.admin_tls = listen, tls
    return cfg


@pytest.fixture(scope="module")
def api(hdir, token):
    handle = admin.start_admin(admin_cfg(hdir))
    try:
        yield handle
    finally:
        handle.stop()


def https(d: Path, url: str, token: str | None = None) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(d / "tls" / "ca.pem"))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, verify=ctx, headers=headers, timeout=20)


@pytest.fixture
def client(hdir, api, token):
    with https(hdir, api.url, token) as c:
        yield c


def aligned(server, bank: str, ids) -> set[str]:
    with connect(server.address, tls_dir=server.dir / "tls", bank_name=bank) as ch:
        session = ActiveSession(ch, "align")
        try:
            return set(align(session, list(ids)).ids)
        finally:
            session.close()


def audit_ops(d: Path, operation: str) -> list[tuple[str, str]]:
    con = store.connect(d / "holder.db")
    try:
        return con.execute("SELECT actor, detail FROM audit_log WHERE operation = ? ORDER BY "
                           "seq", (operation,)).fetchall()
    finally:
        con.close()


def grant_body(uscc: str, request_id: str, **kw) -> dict:
    body = {"request_id": request_id, "uscc": uscc, "bank": "*", "purpose": "credit",
            "granted_at": "2026-01-01T00:00:00Z", "expires_at": "2099-01-01T00:00:00Z",
            "method": "online_real_name", "evidence": f"online-record-{request_id}",
            "recorded_by": "portal:zhang"}
    body.update(kw)
    return body


# -- the API against a served holder ------------------------------------------------------------
def test_grant_reaches_the_next_alignment_and_withdrawal_takes_it_away(server, client, data):
    u, v = data["unconsented"][:2]
    ids = data["bank_ids"]
    before = aligned(server, "demo-bank", ids)
    assert u not in before and v not in before and set(data["consented"]) & before
    r = client.post("/v1/consents", json=grant_body(u, "grant-u"))
    assert r.status_code == 200, r.text
    assert r.json()["result"] == "granted" and r.json()["consent"]["scope"] == "platform"
    r = client.post("/v1/consents", json=grant_body(v, "grant-v", bank="demo-bank",
                                                    method="written", evidence="form-88"))
    assert r.status_code == 200, r.text
    assert {u, v} <= aligned(server, "demo-bank", ids)
    assert aligned(server, "bank-b", ids) == {u}  # "*" covers every bank on the platform
    # the enterprise withdraws from one bank: the platform-wide consent stays for the others
    r = client.post("/v1/consents/withdraw", json={
        "request_id": "withdraw-u-demo", "uscc": u, "bank": "demo-bank", "purpose": "credit",
        "reason": "asked on the portal", "recorded_by": "portal:zhang"})
    assert r.status_code == 200, r.text
    assert r.json()["from_platform"] == [{"bank": "demo-bank", "purpose": "credit"}]
    assert u not in aligned(server, "demo-bank", ids)
    assert aligned(server, "bank-b", ids) == {u}
    r = client.post("/v1/consents/withdraw", json={
        "request_id": "withdraw-u-all", "uscc": u, "bank": "*", "recorded_by": "portal:zhang"})
    assert r.status_code == 200 and r.json()["withdrawn"] == [{"bank": "*", "purpose": "credit"}]
    assert aligned(server, "bank-b", ids) == set()
    listed = client.get("/v1/consents", params={"uscc": u}).json()["consents"]
    assert {(c["bank"], c["status"]) for c in listed} == {("*", "revoked"),
                                                         ("demo-bank", "revoked")}
    actors = [a for a, d in audit_ops(server.dir, "consent_grant") if "request_id=grant-" in d]
    assert actors == ["admin-api:portal:zhang"] * 2
    revokes = [d for _, d in audit_ops(server.dir, "consent_revoke") if "withdraw-u-" in d]
    assert len(revokes) == 2 and "reason=asked on the portal" in revokes[0]


def test_a_retried_call_is_answered_from_the_store_and_applied_once(hdir, api, client, data,
                                                                    token):
    u = data["unconsented"][2]
    body = grant_body(u, "retry-1")
    first = client.post("/v1/consents", json=body)
    again = client.post("/v1/consents", json=dict(reversed(list(body.items()))))
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["idempotent-replay"] == "true"
    # the answer outlives the API process: a portal retrying after a crash gets it too
    other = admin.start_admin(admin_cfg(hdir))
    try:
        with https(hdir, other.url, token) as c:
            later = c.post("/v1/consents", json=body)
    finally:
        other.stop()
    assert later.status_code == 200 and later.json() == first.json()
    assert len([d for _, d in audit_ops(hdir, "consent_grant") if "request_id=retry-1" in d]) == 1
    # the same request id with another body is refused and changes nothing
    clash = client.post("/v1/consents", json={**body, "evidence": "another-record"})
    assert clash.status_code == 409 and "already used" in clash.json()["detail"]
    rows = client.get("/v1/consents", params={"uscc": u}).json()["consents"]
    assert [r["evidence"] for r in rows] == ["online-record-retry-1"]
    clash = client.post("/v1/consents/withdraw", json={"request_id": "retry-1", "uscc": u,
                                                       "bank": "*", "recorded_by": "x"})
    assert clash.status_code == 409
    assert client.get("/v1/consents", params={"uscc": u}).json()["consents"][0]["status"] == \
        "active"


def test_a_missing_or_wrong_token_is_401_and_audited(hdir, api, data):
    u = data["unconsented"][3]
    before = len(audit_ops(hdir, "admin_refused"))
    with https(hdir, api.url) as anon, https(hdir, api.url, "fca_not-the-token") as wrong:
        r = anon.post("/v1/consents", json=grant_body(u, "no-token"))
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert wrong.get("/v1/consents", params={"uscc": u}).status_code == 401
        # refused before the body is looked at: no validation detail for a stranger
        assert wrong.post("/v1/consents", json={"junk": 1}).status_code == 401
        assert anon.get("/v1/health").json()["status"] == "ok"  # health needs no token
    refused = audit_ops(hdir, "admin_refused")[before:]
    assert [a for a, _ in refused] == ["admin-api"] * 3
    assert "POST /v1/consents: missing bearer token" in refused[0][1]
    assert "GET /v1/consents: wrong token" in refused[1][1]
    assert not any("fca_not-the-token" in d for _, d in refused)
    con = store.connect(hdir / "holder.db")
    try:
        assert con.execute("SELECT COUNT(*) FROM consent WHERE uscc = ?", (u,)).fetchone()[0] == 0
    finally:
        con.close()


def test_invalid_calls_are_422_naming_the_field_and_change_nothing(hdir, client, data):
    u = data["unconsented"][4]
    bad_check = u[:-1] + ("0" if u[-1] != "0" else "1")
    cases = [({"uscc": bad_check}, "uscc", "check character"),
             ({"purpose": "marketing"}, "purpose", "allowed_purposes"),
             ({"method": "verbal"}, "method", ""),
             ({"evidence": "x" * 257}, "evidence", ""),
             ({"bank": "bad bank"}, "bank", "certificate common name"),
             ({"expires_at": "2020-01-01"}, "expires_at", ""),
             ({"granted_at": "tomorrow"}, "granted_at", "ISO-8601"),
             ({"request_id": "has space"}, "request_id", ""),
             ({"surprise": 1}, "surprise", "")]
    for k, (change, field, words) in enumerate(cases):
        r = client.post("/v1/consents", json={**grant_body(u, f"bad-{k}"), **change})
        assert r.status_code == 422, (change, r.text)
        detail = r.json()["detail"]
        assert any(d["loc"][-1] == field and words in d["msg"] for d in detail), (change, detail)
    r = client.post("/v1/consents", content=b'{"pad": "' + b"x" * 20_000 + b'"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = client.get("/v1/consents", params={"uscc": bad_check})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "uscc"]
    r = client.post("/v1/consents/withdraw", json={"request_id": "nothing-there", "uscc": u,
                                                   "bank": "demo-bank", "recorded_by": "x"})
    assert r.status_code == 404 and "no consent" in r.json()["detail"]
    con = store.connect(hdir / "holder.db")
    try:
        assert con.execute("SELECT COUNT(*) FROM consent WHERE uscc = ?", (u,)).fetchone()[0] == 0
        stored = {r[0] for r in con.execute("SELECT request_id FROM admin_requests")}
    finally:
        con.close()
    assert not {f"bad-{k}" for k in range(len(cases))} & stored and "nothing-there" not in stored


def test_the_openapi_page_is_served(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/v1/consents", "/v1/consents/withdraw", "/v1/health"} <= set(spec["paths"])


# -- credential, transport, refusals to start ----------------------------------------------------
def test_token_is_printed_once_stored_hashed_and_rotates(tmp_path, capsys):
    d = tmp_path / "H"
    assert fc("holder", "init", "--dir", d, "--listen", "127.0.0.1:0") == 0
    old = make_token(d)
    running = admin.start_admin(admin_cfg(d))
    try:
        capsys.readouterr()
        assert fc("holder", "admin", "token", "--dir", d) == 0
        out, err = capsys.readouterr()
        new = out.strip()
        assert re.fullmatch(r"fca_[A-Za-z0-9_-]{43}", new)
        assert "previous one no longer works" in err and new not in err
        con = store.connect(d / "holder.db")
        try:
            kept = [v for (v,) in con.execute("SELECT value FROM meta")]
            dumped = "\n".join(con.iterdump())
        finally:
            con.close()
        assert admin.token_digest(new) in kept and new not in dumped and old not in dumped
        # the running API takes the new token at once, and the old one no more
        with https(d, running.url, old) as stale, https(d, running.url, new) as fresh:
            assert stale.get("/v1/consents", params={"uscc": "x" * 18}).status_code == 401
            assert fresh.get("/v1/consents", params={"uscc": "x" * 18}).status_code == 422
    finally:
        running.stop()
    ops = [r[0] for r in audit_ops(d, "admin_token")]
    assert len(ops) == 2


def test_the_api_refuses_to_start_without_a_token_or_on_plain_http_off_loopback(tmp_path):
    d = tmp_path / "H"
    assert fc("holder", "init", "--dir", d, "--listen", "127.0.0.1:0") == 0
    with pytest.raises(InvalidInput, match="no token.*admin token"):
        admin.start_admin(admin_cfg(d))
    make_token(d)
    with pytest.raises(InvalidInput, match="not a loopback address"):
        admin.start_admin(admin_cfg(d, "0.0.0.0:0", tls=False))
    with pytest.raises(InvalidInput, match="must be host:port"):
        admin.start_admin(admin_cfg(d, "127.0.0.1:http"))
    (d / "tls" / "holder.key").rename(d / "tls" / "holder.key.away")
    with pytest.raises(InvalidInput, match="holder.key is missing"):
        admin.start_admin(admin_cfg(d))
    plain = admin.start_admin(admin_cfg(d, "127.0.0.1:0", tls=False))  # loopback: allowed
    try:
        assert plain.url.startswith("http://127.0.0.1:")
        assert httpx.get(plain.url + "/v1/health", timeout=10).json()["status"] == "ok"
    finally:
        plain.stop()
    con = store.connect(d / "holder.db")
    try:
        ops = [r[0] for r in con.execute("SELECT operation FROM audit_log ORDER BY seq")]
    finally:
        con.close()
    assert ops[-2:] == ["admin_api_start", "admin_api_stop"]


# -- inside `holder serve` ----------------------------------------------------------------------
def admin_url(server: Server, timeout: float = 20.0) -> str:
    """The admin API's URL from the served process's log (it logs where it listens)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.log_text().splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "admin API listening":
                return json.loads(line)["url"]
        time.sleep(0.1)
    raise AssertionError("holder serve did not start the admin API (is start_admin wired into "
                         "fedcredit/holder/service.py _run?):\n" + server.log_text()[-2000:])


def test_holder_serve_runs_the_admin_api_and_refuses_to_start_without_a_token(tmp_path, data):
    d = make_holder(tmp_path / "S", data)
    set_admin(d, "127.0.0.1:0")
    refused = Server(d)
    try:
        with pytest.raises(RuntimeError, match="no token"):
            refused.start()  # exits 2 at once, naming the missing token
    finally:
        refused.kill()
    token = make_token(d)
    s = Server(d)
    try:
        s.start()
        url = admin_url(s)
        u = data["unconsented"][5]
        assert u not in aligned(s, "bank-b", data["bank_ids"])
        with https(d, url, token) as c:
            assert c.post("/v1/consents", json=grant_body(u, "served-1")).status_code == 200
        assert aligned(s, "bank-b", data["bank_ids"]) == {u}
        assert s.stop() == 0
    finally:
        s.kill()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/v1/health", verify=False, timeout=5)
