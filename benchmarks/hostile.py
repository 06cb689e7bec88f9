#!/usr/bin/env python
"""A hostile bank against a real ``fedcredit holder serve``: the standing figures.

    python benchmarks/hostile.py --frames 2000 --json benchmarks/results/hostile.json

Starts a holder (development certificates, synthetic data, 1024-bit test keys allowed) on
127.0.0.1 and, as the bank ``demo-bank``:

1. **Mutated frames**: for every message type that may open an exchange, a serialized
   envelope is bit-flipped, truncated, extended or replaced by junk and sent as the first
   frame (``--frames`` in all). Counted: the gRPC status of each answer, untyped errors
   (UNKNOWN or INTERNAL), hangs (no answer within the deadline), and whether the holder
   process is still alive and healthy at the end.
2. **Unaudited refusals**: refused calls against the ``refused:`` records the holder's audit
   log gained meanwhile (aggregated records count the calls they stand for).
3. **Memory per MB sent**: the holder's resident memory before and after large hostile
   uploads (an oversized PSI stream, an oversized key), per MB sent.
   Also the largest growth seen while they run (sampled every 50 ms), beside the policy's
   ``max_session_mib``.
4. **Latency under six concurrent banks**: Ping round trips from six threads.
5. **Kills** (``--kills N`` of each, 0 to skip; see ``hostile_kills.py``): SIGKILL at random
   moments of ``holder load-features``, ``holder consent import``, ``holder serve`` under
   training and scoring banks, and ``holder audit export``; after each, partial writes,
   ``holder audit verify``, a restart of ``holder serve`` and leftover ``.tmp`` files.

Writes JSON and a Markdown table next to it. Targets: 0 crashes, 0 hangs, 0 untyped errors,
0 unaudited refusals, memory growth bounded by the policy whatever a bank sends, 0 partial
writes, failed restarts or audit verify failures after kills.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from fedcredit.datasets import write_credit_data  # noqa: E402
from fedcredit.protocol.registry import ENVELOPE_TYPES  # noqa: E402
from fedcredit.transport import serde, tls  # noqa: E402
from fedcredit.transport.generated import fedcredit_pb2 as pb  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile_kills  # noqa: E402

UNTYPED = {"UNKNOWN", "INTERNAL"}


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "fedcredit.cli", *args], check=True,
                   stdout=subprocess.DEVNULL)


def set_policy(path: Path, **values) -> None:
    text = path.read_text()
    for key, value in values.items():
        v = str(value).lower() if isinstance(value, bool) else json.dumps(value)
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {v}", text)
    path.write_text(text)


def start_holder(work: Path) -> tuple[subprocess.Popen, str, Path]:
    d = work / "H"
    cli("holder", "init", "--dir", str(d), "--listen", "127.0.0.1:0")
    set_policy(d / "holder.toml", min_key_bits=1024, allow_insecure_keys=True,
               max_sessions_per_day=0, max_trees_per_day=0, max_psi_points=100_000)
    write_credit_data(work / "data", rows=2000, seed=3, overlap=0.9)
    cli("holder", "load-features", "--dir", str(d), "--csv", str(work / "data" / "holder.csv"),
        "--id-column", "uscc")
    return serve(work, d)


def serve(work: Path, d: Path) -> tuple[subprocess.Popen, str, Path]:
    """``fedcredit holder serve --dir d`` in the background, once it listens."""
    port = d / "port"
    port.unlink(missing_ok=True)
    log_path = work / f"serve-{time.time_ns()}.log"
    proc = subprocess.Popen([sys.executable, "-m", "fedcredit.cli", "holder", "serve", "--dir",
                             str(d), "--port-file", str(port)], stdout=open(log_path, "w"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not port.exists():
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"holder serve did not start; see {log_path}")
        time.sleep(0.1)
    return proc, f"127.0.0.1:{port.read_text().strip()}", d


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def refused_calls(db: Path) -> int:
    """Refusals the audit log stands for (an aggregated record says how many)."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT detail FROM audit_log WHERE operation LIKE 'refused:%'")
        total = 0
        for (detail,) in rows:
            more = re.search(r"\+(\d+) more", detail or "")
            total += 1 + (int(more.group(1)) if more else 0)
        return total
    finally:
        con.close()


def mutate(data: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    b = bytearray(data)
    if kind == 0 and b:  # bit flips
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 1:  # truncation
        return bytes(b[: rng.randrange(len(b) + 1)])
    if kind == 2:  # extension with junk
        return bytes(b) + rng.randbytes(rng.randint(1, 64))
    return rng.randbytes(rng.randint(0, 256))  # junk


def sample(cls, rng: random.Random):
    """A message of ``cls`` with small random field values."""
    import dataclasses
    import typing

    kw = {}
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        if hint is str:
            kw[f.name] = rng.choice(["", "0" * 32, "credit", "x" * 40])
        elif hint is int:
            kw[f.name] = rng.choice([0, 1, -1, 2**31])
        elif hint is bytes:
            kw[f.name] = rng.randbytes(rng.choice([0, 4, 32, 96]))
        elif hint is bool:
            kw[f.name] = rng.random() < 0.5
        elif hint is float:
            kw[f.name] = rng.choice([0.0, 1.0, 1e308])
    return cls(**kw)


def fuzz(address: str, tls_dir: Path, frames: int, seed: int) -> dict:
    rng = random.Random(seed)
    creds = tls.channel_credentials(tls_dir)
    ch = grpc.secure_channel(address, creds, options=tls.channel_options(address))
    call = ch.stream_stream("/fedcredit.v1.PassiveParty/Exchange",
                            request_serializer=lambda fr: fr.SerializeToString(),
                            response_deserializer=pb.Frame.FromString)
    statuses: dict[str, int] = {}
    hangs = 0
    for k in range(frames):
        cls = ENVELOPE_TYPES[k % len(ENVELOPE_TYPES)]
        try:
            data = serde.encode(sample(cls, rng))
        except Exception:  # a sample the encoder itself refuses: send junk instead
            data = b""
        frame = pb.Frame(data=mutate(data, rng), end_of_message=True)
        try:
            for _ in call(iter([frame]), timeout=10):
                pass
            code = "OK"
        except grpc.RpcError as e:
            code = e.code().name
            if code == "DEADLINE_EXCEEDED":
                hangs += 1
        statuses[code] = statuses.get(code, 0) + 1
    ch.close()
    return {"frames": frames, "statuses": statuses, "hangs": hangs,
            "untyped": sum(v for c, v in statuses.items() if c in UNTYPED),
            "refused": sum(v for c, v in statuses.items() if c != "OK")}


def memory_per_mb(address: str, tls_dir: Path, pid: int) -> dict:
    from fedcredit.errors import FedCreditError
    from fedcredit.protocol import BankSession, align
    from fedcredit.protocol.registry import MESSAGES as m
    from fedcredit.transport import connect

    before = rss_mib(pid)
    sent = 0
    peak, done = [before], threading.Event()

    def sample_rss():
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_mib(pid))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    with connect(address, tls_dir=tls_dir) as ch:
        for _ in range(3):  # PSI uploads far beyond max_psi_points
            s = BankSession(ch, "align")
            ids = [f"91{i:016d}" for i in range(300_000)]
            sent += 32 * len(ids)
            try:
                align(s, ids)
            except FedCreditError:
                pass
        n = (1 << 32767) | 1
        key = f'{{"scheme":"ou","n":"{n:x}","g":"3","h":"5","exponent_bits":224}}'.encode()
        for _ in range(20):
            sent += len(key)
            try:
                ch.call(m.OpenSession(purpose="credit", task="train", scheme="ou",
                                      public_key=key))
            except FedCreditError:
                pass
    growth = rss_mib(pid) - before
    done.set()
    sampler.join()
    return {"sent_mb": sent / 2**20, "rss_growth_mib": growth,
            "growth_per_mb_sent": growth / (sent / 2**20),
            "max_rss_growth_mib": max(peak[0], rss_mib(pid)) - before}


def ping_latency(address: str, tls_dir: Path, banks: int = 6, calls: int = 50) -> dict:
    from fedcredit.protocol.registry import MESSAGES as m
    from fedcredit.transport import connect

    times: list[float] = []
    lock = threading.Lock()

    def run():
        with connect(address, tls_dir=tls_dir) as ch:
            for _ in range(calls):
                t = time.perf_counter()
                ch.call(m.Ping())
                with lock:
                    times.append(time.perf_counter() - t)

    threads = [threading.Thread(target=run) for _ in range(banks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times.sort()
    return {"banks": banks, "calls": len(times), "p50_ms": 1000 * statistics.median(times),
            "p95_ms": 1000 * times[int(0.95 * (len(times) - 1))]}


def kill_rows(k: dict | None) -> list[str]:
    if not k:
        return []
    kinds = k["by_kind"]
    per = lambda key: " / ".join(str(v[key]) for v in kinds.values())  # noqa: E731
    a = kinds["load-features"]
    return [f"| kills tried ({' / '.join(kinds)}) | {k['tries']} ({per('tries')}) | |",
            f"| kills that landed mid-write (temp file or store write begun; serve: alive) | "
            f"{per('landed_mid_write')} | |",
            f"| partial writes after kills | {k['partial_writes']} ({per('partial_writes')}) | 0 |",
            f"| serve restarts failed after kills | {k['restarts_failed']} | 0 |",
            f"| audit verify failures after kills | {k['verify_failures']} | 0 |",
            f"| leftover temp files after kills (per kind; still there after the next load "
            f"/ at the end) | {k['leftover_tmp_files']} ({per('tmp_left')}; "
            f"{a['tmp_after_next_load']} / {k['leftover_tmp_at_end']}) | report |"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kills", type=int, default=5,
                    help="SIGKILL tries of each kind in the kills phase (0: skip it)")
    ap.add_argument("--json", default="benchmarks/results/hostile.json")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fedcredit-hostile-") as tmp:
        work = Path(tmp)
        proc, address, d = start_holder(work)
        try:
            tls_dir = d / "tls"
            audited_before = refused_calls(d / "holder.db")
            fz = fuzz(address, tls_dir, a.frames, a.seed)
            alive = proc.poll() is None
        finally:  # a graceful stop writes the refusals still held for aggregation
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        fz["audited_refusals"] = refused_calls(d / "holder.db") - audited_before
        fz["unaudited_refusals"] = max(0, fz["refused"] - fz["audited_refusals"])
        proc, address, d = serve(work, d)
        try:
            mem = memory_per_mb(address, d / "tls", proc.pid)
            found = re.search(r"(?m)^max_session_mib = (\d+)", (d / "holder.toml").read_text())
            mem["max_session_mib"] = int(found.group(1)) if found else None
            lat = ping_latency(address, d / "tls")
            alive = alive and proc.poll() is None
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        kills = hostile_kills.run_kills(work, a.kills, a.seed, set_policy) if a.kills else None
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(),
           "crashes": 0 if alive else 1, "fuzz": fz, "memory": mem, "latency": lat,
           "kills": kills}
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    md = ["# A hostile bank against holder serve", "",
          "| figure | value | target |", "| --- | --- | --- |",
          f"| frames tried | {fz['frames']} | |",
          f"| crashes | {res['crashes']} | 0 |",
          f"| hangs | {fz['hangs']} | 0 |",
          f"| untyped errors (UNKNOWN, INTERNAL) | {fz['untyped']} | 0 |",
          f"| refused calls / audited | {fz['refused']} / {fz['audited_refusals']} | equal |",
          f"| unaudited refusals | {fz['unaudited_refusals']} | 0 |",
          f"| memory growth per MB sent (MiB) | {mem['growth_per_mb_sent']:.3f} "
          f"({mem['sent_mb']:.0f} MB sent) | ~0 |",
          f"| memory growth bounded by policy: max RSS growth in the uploads / max_session_mib "
          f"(MiB) | {mem['max_rss_growth_mib']:.0f} / {mem['max_session_mib']} | below |",
          f"| Ping p50 / p95, 6 banks (ms) | {lat['p50_ms']:.1f} / {lat['p95_ms']:.1f} | |",
          *kill_rows(kills),
          "", "Statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(fz["statuses"].items()))]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
