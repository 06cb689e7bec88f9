#!/usr/bin/env python
"""The bank's decision service (`fedcredit bank serve`): single-enterprise latency and
throughput over real HTTP, against a real holder gRPC server with mutual TLS.

    python benchmarks/decision_service.py --json benchmarks/results/decision_service.json

Trains one SecureBoost model (default 50 trees, depth 3; 1024-bit training keys: training
speed is not measured here) on synthetic USCC-keyed data, then starts `fedcredit bank serve`
as its own process and sends ``--calls`` sequential single-enterprise ``POST /v1/score``
requests over one kept-alive connection (p50/p95/p99; and the service's own time per
request, holder round trip included, from the answer's ``seconds``), then the same spread over 8
concurrent clients (throughput, and that no request fails). Two runs: the standard path
(plain leaf masks, reasons computed from them) and the private scoring mode (Fed-EINI,
``--scoring private``: no reasons; the scoring key is ``--key-bits``). Writes JSON and,
next to it, a Markdown table (``.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import httpx  # noqa: E402

from fedcredit.datasets import make_credit_data  # noqa: E402
from fedcredit.holder.devca import make_dev_certs  # noqa: E402
from fedcredit.models import SecureBoostClassifier  # noqa: E402
from fedcredit.protocol import HolderPolicy, PassiveParty  # noqa: E402
from fedcredit.transport import HolderServer, connect  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bodies(X) -> list[dict]:
    out = []
    for u, row in X.iterrows():
        feats = {k: (None if isinstance(v, float) and np.isnan(v) else
                     (v.item() if hasattr(v, "item") else v)) for k, v in row.items()}
        out.append({"enterprises": [{"uscc": u, "features": feats}]})
    return out


def start_service(model_path, address, tls, extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-c", "import sys; from fedcredit.cli import main; sys.exit(main())",
           "bank", "serve", "--model", str(model_path), "--holder", address, "--tls-dir",
           str(tls), "--listen", f"127.0.0.1:{port}", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("bank serve did not start: " + proc.stderr.read().decode()[-2000:])
        time.sleep(0.2)


def measure(url: str, reqs: list[dict], calls: int, clients: int) -> dict:
    with httpx.Client(base_url=url, timeout=60) as c:
        for b in reqs[:5]:  # warm: scoring session, key, tables
            c.post("/v1/score", json=b).raise_for_status()
        times, inside = [], []
        for i in range(calls):
            t = time.perf_counter()
            r = c.post("/v1/score", json=reqs[5 + i % (len(reqs) - 5)])
            times.append(time.perf_counter() - t)
            r.raise_for_status()
            inside.append(r.json()["seconds"])
    ms = np.array(times) * 1e3
    scoring = np.array(inside) * 1e3  # the service's own time: holder round trip + bank work

    def client(k: int) -> list[int]:
        with httpx.Client(base_url=url, timeout=60) as c:
            return [c.post("/v1/score", json=reqs[i % len(reqs)]).status_code
                    for i in range(k, calls, clients)]

    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        codes = [s for part in pool.map(client, range(clients)) for s in part]
    wall = time.perf_counter() - t
    return {"calls": calls, "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "scoring_p50_ms": round(float(np.percentile(scoring, 50)), 2),
            "scoring_p95_ms": round(float(np.percentile(scoring, 95)), 2),
            "concurrent_clients": clients,
            "concurrent_per_second": round(len(codes) / wall, 1),
            "concurrent_errors": sum(1 for s in codes if s != 200)}


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--trees", type=int, default=50)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--key-bits", type=int, default=2048, help="private scoring key")
    ap.add_argument("--json", help="write results here (and a .md beside it)")
    a = ap.parse_args(argv)

    bank, holder = make_credit_data(rows=a.rows, seed=3, overlap=0.9)
    bank, holder = bank.set_index("uscc"), holder.set_index("uscc")
    y = bank.pop("label").to_numpy()
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                     "model": {"trees": a.trees, "depth": a.depth, "rows": a.rows}}
    with tempfile.TemporaryDirectory() as tmp:
        tls = Path(tmp) / "tls"
        make_dev_certs(tls)
        party = PassiveParty(holder, policy=HolderPolicy(allow_insecure_keys=True,
                                                         min_key_bits=1024))
        server = HolderServer(party, "127.0.0.1:0", tls_dir=tls)
        server.start()
        try:
            with connect(server.address, tls_dir=tls) as ch:
                model = SecureBoostClassifier(n_estimators=a.trees, max_depth=a.depth,
                                              key_bits=1024, insecure_key=True,
                                              verbose=False).fit(bank, y, holder=ch)
            path = Path(tmp) / "model.json"
            model.save(path)
            reqs = bodies(bank.iloc[:400])
            runs = {"standard (plain leaf masks, 3 reasons)": [],
                    f"private scoring ({a.key_bits}-bit key, no reasons)":
                        ["--scoring", "private", "--reasons", "0", "--key-bits", str(a.key_bits)]}
            for name, extra in runs.items():
                proc, url = start_service(path, server.address, tls, extra)
                try:
                    results[name] = measure(url, reqs, a.calls, a.clients)
                finally:
                    results[name]["sigterm_exit"] = stop(proc)
                print(name, results[name], flush=True)
        finally:
            server.stop(grace=1)
    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        rows = [k for k in results if k not in ("machine", "model")]
        md = ["| path | p50 ms | p95 ms | p99 ms | inside the service p50 / p95 ms | "
              "8 clients, req/s | errors |", "| --- | --- | --- | --- | --- | --- | --- |"]
        md += [f"| {k} | {results[k]['p50_ms']} | {results[k]['p95_ms']} | "
               f"{results[k]['p99_ms']} | {results[k]['scoring_p50_ms']} / "
               f"{results[k]['scoring_p95_ms']} | {results[k]['concurrent_per_second']} | "
               f"{results[k]['concurrent_errors']} |" for k in rows]
        out.with_suffix(".md").write_text(
            f"Decision service, {a.trees} trees depth {a.depth}, one enterprise per request "
            f"over HTTP, holder over gRPC + mTLS on 127.0.0.1 ({os.cpu_count()} CPUs; "
            f"`python benchmarks/decision_service.py`)\n\n" + "\n".join(md) + "\n")
    return results


if __name__ == "__main__":
    main()
