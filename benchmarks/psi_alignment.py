#!/usr/bin/env python
"""PSI alignment through the holder *service*: `fedcredit holder serve` as a real process.

    python benchmarks/psi_alignment.py --ids 100000 --json benchmarks/results/psi_alignment_100k.json
    python benchmarks/psi_alignment.py --ids 1000000 --json benchmarks/results/psi_alignment_1m.json

Each PSI group (``--group``, default both) aligns once per size against the same server, the
groups alternating, so their ratio is a same-run figure; the holder's and the bank's peak
memory are reported.

Each party holds ``--ids`` valid USCCs, ``--overlap`` of them shared. The holder directory is
made with the operator's commands (init, load-features, consent import: every holder id
authorised for the bank), the server is started, and the bank aligns over mutual TLS on
localhost with :func:`fedcredit.protocol.align` — the real path: consent lookup in SQLite, the
audit records, protobuf framing, TLS. ``ids/s`` is ids per party over the alignment's
wall-clock seconds (session open to PsiAlign's answer). The operator steps are timed too.
Both processes share this machine's cores. Writes JSON and a Markdown table next to it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fedcredit.datasets.uscc import USCC_ALPHABET, uscc_from_parts  # noqa: E402


def make_ids(n: int, overlap: float, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``n`` bank and ``n`` holder USCCs sharing ``round(overlap * n)``, each shuffled."""
    rng = np.random.default_rng(seed)
    total = 2 * n - round(overlap * n)
    alphabet = np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)
    prefix = np.frombuffer(b"91350100", dtype=np.uint8)[None, :].repeat(total, axis=0)
    # distinct organisation bodies: serial numbers written in the USCC alphabet
    serial = np.arange(total, dtype=np.int64) + 10_000_000
    body = np.empty((total, 8), dtype=np.uint8)
    for k in range(7, -1, -1):
        body[:, k] = alphabet[serial % 31]
        serial //= 31
    codes = uscc_from_parts(prefix, body).view("S18").ravel().astype(str)
    shared = round(overlap * n)
    bank = codes[:n].copy()
    holder = np.concatenate([codes[:shared], codes[n:]])
    rng.shuffle(bank)
    rng.shuffle(holder)
    return bank, holder, shared


def fc(*args) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fedcredit.cli", *map(str, args)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def peak_rss_mib(pid: int | str = "self") -> float:
    """A process's peak resident memory (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(n: int, overlap: float, seed: int, work: Path, groups: list[str]) -> dict:
    from fedcredit.protocol import BankSession, align
    from fedcredit.transport import connect

    bank_ids, holder_ids, shared = make_ids(n, overlap, seed)
    d = work / "holder"
    steps = {}
    steps["init_s"] = fc("holder", "init", "--dir", d, "--listen", "127.0.0.1:0")
    cfg = d / "holder.toml"
    cfg.write_text(re.sub(r"(?m)^max_predict_ids = .*$", "max_predict_ids = 10000000",
                          cfg.read_text()))
    feats = pd.DataFrame({"uscc": holder_ids,
                          "x": np.random.default_rng(seed).normal(size=len(holder_ids))})
    feats.to_csv(work / "features.csv", index=False)
    pd.DataFrame({"uscc": holder_ids, "bank": "demo-bank", "purpose": "credit",
                  "granted_at": "2026-01-01T00:00:00Z", "expires_at": "2099-01-01T00:00:00Z"}
                 ).to_csv(work / "consent.csv", index=False)
    steps["load_features_s"] = fc("holder", "load-features", "--dir", d, "--csv",
                                  work / "features.csv", "--id-column", "uscc")
    steps["consent_import_s"] = fc("holder", "consent", "import", "--dir", d, "--csv",
                                   work / "consent.csv")
    port = d / "port"
    log = open(work / "serve.log", "w")
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "fedcredit.cli", "holder", "serve", "--dir",
                             str(d), "--port-file", str(port)], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        while not port.exists():
            if proc.poll() is not None or time.perf_counter() - t > 600:
                raise SystemExit("holder serve did not start; see " + str(work / "serve.log"))
            time.sleep(0.05)
        steps["serve_start_s"] = time.perf_counter() - t
        address = f"127.0.0.1:{port.read_text().strip()}"
        seconds = {}
        with connect(address, tls_dir=d / "tls") as ch:
            ids = bank_ids.tolist()
            for g in groups:
                t = time.perf_counter()
                s = BankSession(ch, "align")
                al = align(s, ids, group=g)
                seconds[g] = time.perf_counter() - t
                s.close()
                if len(al) != shared:
                    raise SystemExit(f"wrong intersection: {len(al)}, expected {shared}")
        holder_peak = peak_rss_mib(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return {"ids_per_party": n, "overlap": overlap, "intersection": len(al),
            "align_seconds": seconds, "ids_per_s": {g: n / v for g, v in seconds.items()},
            "holder_peak_mib": holder_peak, "bank_peak_mib": peak_rss_mib(),
            "operator_steps": steps}


def markdown(rows: list[dict], machine: dict) -> str:
    lines = ["# PSI alignment through `fedcredit holder serve` (mTLS, localhost)", "",
             f"{machine['cores']} cores shared by both processes; python {machine['python']}; "
             f"load average {machine['load_average_1min_before']:.2f} before, "
             f"{machine['load_average_1min_after']:.2f} after (other work slows every step)",
             "", "| ids per party | shared | group | align s | ids/s | holder peak MiB | "
             "bank peak MiB | load-features s | consent import s | serve start s |",
             "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        s = r["operator_steps"]
        for g, sec in r["align_seconds"].items():
            lines.append(f"| {r['ids_per_party']:,} | {r['intersection']:,} | {g} | "
                         f"{sec:.1f} | {r['ids_per_s'][g]:,.0f} | {r['holder_peak_mib']:,.0f} | "
                         f"{r['bank_peak_mib']:,.0f} | {s['load_features_s']:.1f} | "
                         f"{s['consent_import_s']:.1f} | {s['serve_start_s']:.1f} |")
    lines.append("")
    lines.append("Peak memory is each process's over the whole run (every group and size "
                 "so far, the bank's including the id generation).")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ids", type=int, nargs="+", default=[100_000])
    ap.add_argument("--overlap", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--group", nargs="+", default=["x25519", "ristretto255"],
                    choices=["x25519", "ristretto255"], help="PSI groups, alternating")
    ap.add_argument("--json", help="write results here (and a .md next to it)")
    a = ap.parse_args(argv)
    a.group = list(dict.fromkeys(a.group))  # one timing per group
    machine = {"cores": os.cpu_count(), "python": platform.python_version(),
               "platform": platform.platform()}
    rows = []
    machine["load_average_1min_before"] = os.getloadavg()[0]
    for n in a.ids:
        with tempfile.TemporaryDirectory(prefix="fedcredit-psi-svc-") as tmp:
            r = run(n, a.overlap, a.seed, Path(tmp), a.group)
        for g, sec in r["align_seconds"].items():
            print(f"{n:>10,} ids per party, {g}: aligned {r['intersection']:,} in {sec:.1f} s "
                  f"= {r['ids_per_s'][g]:,.0f} ids/s", flush=True)
        print(f"  operator: {json.dumps({k: round(v, 1) for k, v in r['operator_steps'].items()})}"
              f"; peak MiB holder {r['holder_peak_mib']:,.0f}, bank {r['bank_peak_mib']:,.0f}",
              flush=True)
        rows.append(r)
    machine["load_average_1min_after"] = os.getloadavg()[0]
    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": machine, "runs": rows}, indent=2) + "\n")
        out.with_suffix(".md").write_text(markdown(rows, machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
