"""The bank's decision service: `fedcredit bank serve` as a process, driven over real HTTP
against a real `fedcredit holder serve` process (mutual TLS between the two)."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from test_holder_service import (  # noqa: F401  (data is a fixture)
    Server, data, fc, fedcredit_cmd, make_holder, model_kw)

from fedcredit.models import SecureBoostClassifier
from fedcredit.transport import connect

pytestmark = pytest.mark.grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def holder(tmp_path_factory, data):
    d = make_holder(tmp_path_factory.mktemp("decide") / "H", data)
    port = free_port()  # fixed, so a restarted holder comes back where the service looks
    text = (d / "holder.toml").read_text().replace('listen = "127.0.0.1:0"',
                                                   f'listen = "127.0.0.1:{port}"')
    (d / "holder.toml").write_text(text)
    s = Server(d).start()
    try:
        yield s
    finally:
        s.kill()


@pytest.fixture(scope="module")
def model_file(holder, data, tmp_path_factory):
    X = data["bank"].drop(columns="label").head(1500)
    y = data["bank"].loc[X.index, "label"].to_numpy()
    with connect(holder.address, tls_dir=holder.dir / "tls") as ch:
        model = SecureBoostClassifier(**model_kw(n_estimators=4, max_depth=3)).fit(X, y, holder=ch)
    path = tmp_path_factory.mktemp("model") / "model.json"
    model.save(path)
    return path, model


class BankService:
    def __init__(self, holder, model_path, log_path):
        self.port = free_port()
        self.log = open(log_path.with_suffix(".out"), "w")
        self.proc = subprocess.Popen(
            fedcredit_cmd() + ["bank", "serve", "--model", str(model_path), "--holder",
                               holder.address, "--tls-dir", str(holder.dir / "tls"),
                               "--listen", f"127.0.0.1:{self.port}", "--max-batch", "50",
                               "--decision-log", str(log_path)],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("bank serve did not start: "
                                   + log_path.with_suffix(".out").read_text()[-2000:])
            time.sleep(0.2)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.log.close()


@pytest.fixture(scope="module")
def service(holder, model_file, tmp_path_factory):
    log = tmp_path_factory.mktemp("decisions") / "decisions.jsonl"
    svc = BankService(holder, model_file[0], log)
    svc.decisions = log
    try:
        yield svc
    finally:
        if svc.proc.poll() is None:
            svc.stop()


def body(frame) -> dict:
    return {"enterprises": [
        {"uscc": u, "features": {k: (None if isinstance(v, float) and np.isnan(v) else v)
                                 for k, v in row.items()}}
        for u, row in frame.iterrows()]}


def test_one_enterprise_gets_probability_grade_coverage_and_reasons(service, holder,
                                                                     model_file, data):
    _, model = model_file
    X = data["bank"].drop(columns="label")
    unknown = next(u for u in X.index if u not in data["holder"].index)
    batch = X.loc[[X.index[0], X.index[1], unknown]]
    r = httpx.post(service.url + "/v1/score", json=body(batch), timeout=30)
    assert r.status_code == 200, r.text
    got = r.json()["decisions"]
    with connect(holder.address, tls_dir=holder.dir / "tls") as ch:
        want = model.predict_proba(batch, holder=ch)[:, 1]
    np.testing.assert_allclose([d["probability"] for d in got], want, atol=1e-12)
    assert [d["holder_covered"] for d in got] == [True, True, False]
    assert all(d["grade"] in "ABCDE" and d["model_id"] == model.model_id_ for d in got)
    assert any(d["reasons"] for d in got)
    assert all(r["contribution"] > 0 for d in got for r in d["reasons"])


def test_requests_are_bounded_and_checked(service, data):
    X = data["bank"].drop(columns="label")
    r = httpx.post(service.url + "/v1/score", json=body(X.head(51)), timeout=30)
    assert r.status_code == 413 and "at most 50" in r.text
    bad = body(X.head(1))
    bad["enterprises"][0]["features"]["no_such_feature"] = 1
    r = httpx.post(service.url + "/v1/score", json=bad, timeout=30)
    assert r.status_code == 422 and "no_such_feature" in r.text
    r = httpx.post(service.url + "/v1/score", json={"rows": []}, timeout=30)
    assert r.status_code == 422 and "enterprises" in r.text
    assert httpx.get(service.url + "/docs", timeout=10).status_code == 200
    assert "/v1/score" in httpx.get(service.url + "/openapi.json", timeout=10).json()["paths"]


def test_eight_concurrent_clients_see_no_error(service, data):
    X = data["bank"].drop(columns="label").iloc[:160]

    def client(k: int) -> list[int]:
        with httpx.Client(base_url=service.url, timeout=30) as c:
            return [c.post("/v1/score", json=body(X.iloc[i:i + 1])).status_code
                    for i in range(k, len(X), 8)]

    with ThreadPoolExecutor(8) as pool:
        codes = [c for part in pool.map(client, range(8)) for c in part]
    assert len(codes) == 160 and set(codes) == {200}


def test_holder_away_is_503_and_the_service_recovers_without_a_restart(service, holder, data):
    X = data["bank"].drop(columns="label").head(1)
    assert httpx.get(service.url + "/v1/ready", timeout=10).status_code == 200
    assert holder.stop() == 0
    r = httpx.post(service.url + "/v1/score", json=body(X), timeout=60)
    assert r.status_code == 503 and r.headers.get("retry-after") == "5", r.text
    assert httpx.get(service.url + "/v1/ready", timeout=30).status_code == 503
    holder.start()
    deadline = time.monotonic() + 60
    while httpx.post(service.url + "/v1/score", json=body(X), timeout=60).status_code != 200:
        assert time.monotonic() < deadline, "the service did not recover"
        time.sleep(0.5)


def test_decision_log_and_graceful_stop(service, data):
    assert service.stop() == 0
    lines = [json.loads(t) for t in service.decisions.read_text().splitlines()]
    assert len(lines) >= 160
    # who asked, model, score: no feature value of either party
    assert all(set(line) == {"ts", "caller", "model_id", "uscc", "probability", "grade",
                             "holder_covered", "seconds"} for line in lines)
    assert {line["caller"] for line in lines} == {"127.0.0.1"}
