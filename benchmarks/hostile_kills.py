"""The kills phase of ``benchmarks/hostile.py``: SIGKILL at random moments, then look for
partial writes. A holder directory of its own (``K``), ``datasets synth --rows 50000`` data;
``--kills N`` tries of each (every other try timed by a trigger instead of a random share of
an uninterrupted run's time):

(a) ``holder load-features`` of the 50 000-row CSV (trigger: 0-250 ms after its temporary
    Parquet file appears); (b) ``holder consent import`` of 50 000 consents for a bank of
    their own, ``kill-<i>`` (trigger: 0-150 ms after the store's WAL is first written);
(c) ``holder serve`` while banks train SecureBoost, score and Ping (audit writes in
    flight), 1-20 s into the workload; (d) ``holder audit export --out`` (trigger: as its
    temporary appears).

After each kill: ``PRAGMA integrity_check``; the current feature file exists with the
SHA-256 and row count the store records, and every ``feature_loads`` row has its
``features_load`` audit record; consent all-or-nothing (the bank has 0 or 50 000 consents,
one ``consent_import`` record exactly when it has them all, the total old or new); an export
is the previous file or complete (JSON lines, seq 1..n of the n records); ``holder audit
verify`` exits 0; ``holder serve`` starts again and answers a Ping. A partial write is any
failed store, feature, consent or export check. ``*.tmp`` files are counted, not failed.
"""
from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

ROWS = 50_000
CMD = [sys.executable, "-m", "fedcredit.cli"]
POLICY = dict(min_key_bits=1024, allow_insecure_keys=True, max_sessions_per_day=0,
              max_trees_per_day=0, max_scored_per_day=0, min_node_samples=10)


def fc(*args, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*CMD, *map(str, args)], capture_output=True, text=True, check=check)


def popen(*args) -> subprocess.Popen:
    return subprocess.Popen([*CMD, *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)


def timed(*args) -> float:
    t = time.monotonic()
    fc(*args)
    return time.monotonic() - t


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Serve:
    """``holder serve --dir d`` as a child; ``kill()`` is a SIGKILL of its pid only."""

    def __init__(self, d: Path, log: Path):
        port = d / "port"
        port.unlink(missing_ok=True)
        self.proc = subprocess.Popen([*CMD, "holder", "serve", "--dir", str(d), "--port-file",
                                      str(port)], stdout=open(log, "w"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not port.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"holder serve did not start (see {log}): "
                                   + log.read_text()[-400:])
            time.sleep(0.05)
        self.address = f"127.0.0.1:{port.read_text().strip()}"

    def kill(self) -> None:  # SIGKILL (a no-op on an exited process)
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def ping(address: str, tls_dir: Path) -> None:
    from fedcredit.protocol.registry import MESSAGES as m
    from fedcredit.transport import connect

    with connect(address, tls_dir=tls_dir, timeout=30) as ch:
        ch.call(m.Ping())


def kill_when(proc: subprocess.Popen, rng: random.Random, *, delay: float | None = None,
              trigger=None, post: tuple[float, float] = (0.0, 0.0), probe=None) -> dict:
    """SIGKILL ``proc`` after ``delay`` s, or ``uniform(*post)`` s after ``trigger()`` is
    first true; ``probe()`` (what the kill lands on) is evaluated just before the kill."""
    t0, fired, due = time.monotonic(), None, delay if trigger is None else float("inf")
    while proc.poll() is None and time.monotonic() - t0 < due:
        if fired is None and trigger is not None and trigger():
            fired = time.monotonic() - t0
            due = fired + rng.uniform(*post)
        time.sleep(0.002)
    landed = probe() if probe else None
    done = proc.poll() is not None
    proc.kill()  # SIGKILL by pid (a no-op once the process has been reaped)
    proc.wait()
    return {"at_s": round(time.monotonic() - t0, 3), "mode": "trigger" if trigger else "delay",
            "finished_before_kill": done, "landed_mid_write": bool(landed) and not done}


def tmp_files(*dirs: Path) -> list[str]:
    return sorted({str(p) for d in dirs for p in d.rglob("*.tmp")})


def new_tmp(folder: Path):
    """A probe: is there a temporary file in ``folder`` that was not there when made?"""
    before = set(folder.glob(".*.tmp"))
    return lambda: any(p not in before for p in folder.glob(".*.tmp"))


def store_state(d: Path) -> dict:
    con = sqlite3.connect(d / "holder.db", timeout=60)
    try:
        q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
        st = {"integrity": q("PRAGMA integrity_check")[0][0],
              "current": (q("SELECT version, file, sha256, rows FROM feature_loads "
                            "ORDER BY version DESC LIMIT 1") or [None])[0],
              "loads": q("SELECT COUNT(*) FROM feature_loads")[0][0],
              "load_records": q("SELECT COUNT(*) FROM audit_log "
                                "WHERE operation = 'features_load'")[0][0],
              "consents": dict(q("SELECT bank, COUNT(*) FROM consent GROUP BY bank")),
              "imports": dict(q("SELECT bank, COUNT(*) FROM audit_log "
                                "WHERE operation = 'consent_import' GROUP BY bank")),
              "audit_records": q("SELECT COUNT(*) FROM audit_log")[0][0],
              "open_sessions": q("SELECT COUNT(*) FROM sessions WHERE state = 'open'")[0][0]}
    finally:
        con.close()
    problems = []
    if st["integrity"] != "ok":
        problems.append(f"integrity_check: {st['integrity']}")
    if st["loads"] != st["load_records"]:
        problems.append(f"{st['loads']} feature loads but {st['load_records']} audit records")
    if st["current"] is None:
        problems.append("no current feature table")
    else:
        import pyarrow.parquet as pq

        version, file, digest, rows = st["current"]
        path = d / "features" / file
        if not path.is_file():
            problems.append(f"current feature file v{version} {file} missing")
        elif sha256(path) != digest:
            problems.append(f"current feature file v{version} {file}: SHA-256 mismatch")
        elif pq.read_metadata(path).num_rows != rows:
            problems.append(f"current feature file v{version}: rows differ from the store")
        st["version"] = version
    st["problems"] = problems
    return st


class Kills:
    def __init__(self, work: Path, seed: int):
        self.work, self.d, self.rng = work, work / "K", random.Random(seed)
        self.data, self.export = work / "kdata", work / "export" / "audit.jsonl"
        self.tries: list[dict] = []
        self.seen_tmp: set[str] = set()
        self.model = None

    # -- set-up ------------------------------------------------------------------------------
    def setup(self, set_policy) -> None:
        d = self.d
        fc("holder", "init", "--dir", d, "--listen", "127.0.0.1:0")
        set_policy(d / "holder.toml", **POLICY)
        fc("datasets", "synth", "--rows", ROWS, "--seed", 5, "--out", self.data)
        self.t_load = timed("holder", "load-features", "--dir", d, "--csv",
                            self.data / "holder.csv", "--id-column", "uscc")
        self.ids = pd.read_csv(self.data / "holder.csv", usecols=["uscc"], dtype=str)["uscc"]
        self.t_consent = timed("holder", "consent", "import", "--dir", d, "--csv",
                               self.consent_csv("demo-bank"))
        self.export.parent.mkdir()
        self.t_export = timed("holder", "audit", "export", "--dir", d, "--out", self.export)

    def consent_csv(self, bank: str) -> Path:
        path = self.data / f"consent-{bank}.csv"
        pd.DataFrame({"uscc": self.ids, "bank": bank, "purpose": "credit",
                      "granted_at": "2026-01-01T00:00:00Z",
                      "expires_at": "2099-01-01T00:00:00Z"}).to_csv(path, index=False)
        return path

    # -- the check after every kill -----------------------------------------------------------
    def after_kill(self, kind: str, landed: dict, expect) -> None:
        st = store_state(self.d)
        problems = st["problems"] + expect(st)
        if landed.get("committed"):  # the kill came after the commit: not mid-write
            landed["landed_mid_write"] = False
        verify = fc("holder", "audit", "verify", "--dir", self.d, check=False)
        tmps = tmp_files(self.d, self.export.parent)
        left = set(tmps) - self.seen_tmp  # temporaries this kill left behind
        self.seen_tmp.update(tmps)
        restart = None
        try:
            s = Serve(self.d, self.work / f"kserve-{time.time_ns()}.log")
            try:
                ping(s.address, self.d / "tls")
                if s.proc.poll() is not None:
                    restart = "serve died after the Ping"
            finally:
                s.stop()
        except Exception as e:  # noqa: BLE001 - any failure to come back is the finding
            restart = f"{type(e).__name__}: {str(e)[:300]}"
        self.tries.append({"kind": kind, **landed, "partial": problems,
                           "verify_ok": verify.returncode == 0,
                           "verify_out": (verify.stdout + verify.stderr)[-300:]
                           if verify.returncode else "",
                           "restart_error": restart, "tmp_left": len(left),
                           "tmp_present": len(tmps),
                           "open_sessions_before_restart": st["open_sessions"],
                           "audit_records": st["audit_records"]})
        tag = "ok" if not problems and verify.returncode == 0 and not restart else "FAIL"
        print(f"  kill {kind} at {landed['at_s']:.2f}s ({landed['mode']}, mid-write "
              f"{landed['landed_mid_write']}, committed {landed.get('committed')}, finished "
              f"{landed['finished_before_kill']}): "
              f"{tag} {problems or ''} tmp left {len(left)}", flush=True)

    # -- (a) load-features --------------------------------------------------------------------
    def loads(self, n: int) -> dict:
        feats = self.d / "features"
        for i in range(n):
            before, has_tmp = store_state(self.d).get("version"), new_tmp(feats)
            proc = popen("holder", "load-features", "--dir", self.d, "--csv",
                         self.data / "holder.csv", "--id-column", "uscc")
            if i % 2:
                landed = kill_when(proc, self.rng, trigger=has_tmp, post=(0, 0.25),
                                   probe=has_tmp)
            else:
                landed = kill_when(proc, self.rng, delay=self.rng.uniform(0.1, 1.0)
                                   * self.t_load, probe=has_tmp)

            def expect(st, before=before, landed=landed):
                landed["committed"] = st.get("version") == (before or 0) + 1
                return [] if st.get("version") in (before, (before or 0) + 1) \
                    else [f"version {before} -> {st.get('version')}"]

            self.after_kill("load-features", landed, expect)
        fc("holder", "load-features", "--dir", self.d, "--csv", self.data / "holder.csv",
           "--id-column", "uscc")
        left = tmp_files(feats)
        return {"tmp_after_next_load": len(left),
                "orphan_tables_after_next_load": len(list(feats.glob("features-*"))) - 1}

    # -- (b) consent import -------------------------------------------------------------------
    def consents(self, n: int) -> dict:
        wal = self.d / "holder.db-wal"

        def stat():
            try:
                s = wal.stat()
                return s.st_size, s.st_mtime_ns
            except FileNotFoundError:
                return None

        for i in range(n):
            bank = f"kill-{i}"
            path = self.consent_csv(bank)
            old, base = sum(store_state(self.d)["consents"].values()), stat()

            def written(base=base):  # the store's first write of this import
                now = stat()
                return bool(now and now[0]) if not base or not base[0] else now != base
            proc = popen("holder", "consent", "import", "--dir", self.d, "--csv", path)
            if i % 2:
                landed = kill_when(proc, self.rng, trigger=written, post=(0, 0.15),
                                   probe=written)
            else:
                landed = kill_when(proc, self.rng, delay=self.rng.uniform(0.1, 1.0)
                                   * self.t_consent, probe=written)

            def expect(st, bank=bank, old=old, landed=landed):
                got, recs = st["consents"].get(bank, 0), st["imports"].get(bank, 0)
                landed["committed"] = got == ROWS
                total = sum(st["consents"].values())
                out = []
                if got not in (0, ROWS) or total not in (old, old + ROWS):
                    out.append(f"{bank}: {got} of {ROWS} consents, total {old} -> {total}")
                if recs != (1 if got == ROWS else 0):
                    out.append(f"{bank}: {got} consents but {recs} consent_import records")
                return out

            self.after_kill("consent import", landed, expect)
        return {}

    # -- (c) serve under load -----------------------------------------------------------------
    def bank_data(self):
        bank = pd.read_csv(self.data / "bank.csv", dtype={"uscc": str}).set_index("uscc")
        bank = bank.sample(3000, random_state=1)
        return bank.drop(columns="label"), bank["label"]

    def fit(self, address: str, X, y):
        from fedcredit.models import SecureBoostClassifier
        from fedcredit.transport import connect

        with connect(address, tls_dir=self.d / "tls", timeout=120) as ch:
            return SecureBoostClassifier(n_estimators=2, max_depth=2, learning_rate=0.3,
                                         key_bits=1024, insecure_key=True, verbose=False,
                                         n_jobs=1).fit(X, y, holder=ch)

    def serves(self, n: int) -> dict:
        from fedcredit.protocol.registry import MESSAGES as m
        from fedcredit.transport import connect

        X, y = self.bank_data()
        s = Serve(self.d, self.work / "kserve-train.log")
        try:
            self.model = self.fit(s.address, X, y)  # scored by the workload below
        except Exception as e:  # noqa: BLE001 - an in-progress change elsewhere, reported
            print(f"  pre-training failed ({type(e).__name__}: {e}); no scoring workload")
        finally:
            s.stop()
        workload = {"ops_before_kill": 0, "errors_before_kill": 0, "first_error": "",
                    "errors_after_kill": {}}
        for i in range(n):
            s = Serve(self.d, self.work / f"kserve-{i}.log")
            stop, killed, lock = threading.Event(), threading.Event(), threading.Lock()

            def loop(step, s=s, stop=stop, killed=killed, lock=lock):
                while not stop.is_set():
                    try:
                        step(s.address)
                        ok, err = True, None
                    except Exception as e:  # noqa: BLE001
                        ok, err = False, e
                    with lock:
                        if not killed.is_set():
                            workload["ops_before_kill" if ok else "errors_before_kill"] += 1
                            if err is not None and not workload["first_error"]:
                                workload["first_error"] = f"{type(err).__name__}: {err}"[:300]
                        elif err is not None:
                            after = workload["errors_after_kill"]
                            after[type(err).__name__] = after.get(type(err).__name__, 0) + 1
                    if not ok:
                        time.sleep(0.2)

            def score(addr):
                with connect(addr, tls_dir=self.d / "tls", timeout=60) as ch:
                    try:
                        for _ in range(5):
                            self.model.predict_proba(X.iloc[:300], holder=ch)
                    finally:
                        self.model.close_scoring()

            def pings(addr):
                with connect(addr, tls_dir=self.d / "tls", timeout=30) as ch:
                    for _ in range(20):
                        ch.call(m.Ping())
                        time.sleep(0.02)

            steps = [lambda a: self.fit(a, X, y), pings] + ([score] if self.model else [])
            threads = [threading.Thread(target=loop, args=(f,), daemon=True) for f in steps]
            for t in threads:
                t.start()
            time.sleep(delay := self.rng.uniform(1.0, 20.0))
            with lock:
                killed.set()
                done = s.proc.poll() is not None
                s.kill()
            stop.set()
            for t in threads:
                t.join(timeout=120)
            self.after_kill("serve", {"at_s": round(delay, 3), "mode": "delay",
                                      "finished_before_kill": done,
                                      "landed_mid_write": not done}, lambda st: [])
        return workload

    # -- (d) audit export ---------------------------------------------------------------------
    def exports(self, n: int) -> dict:
        folder = self.export.parent
        for i in range(n):
            prev = sha256(self.export) if self.export.exists() else None
            has_tmp = new_tmp(folder)
            proc = popen("holder", "audit", "export", "--dir", self.d, "--out", self.export)
            if i % 2:
                landed = kill_when(proc, self.rng, trigger=has_tmp, post=(0, 0.005),
                                   probe=has_tmp)
            else:
                landed = kill_when(proc, self.rng, delay=self.rng.uniform(0.1, 1.0)
                                   * self.t_export, probe=has_tmp)

            def expect(st, prev=prev, landed=landed):
                landed["committed"] = self.export.exists() and sha256(self.export) != prev
                return self.export_ok(prev, st["audit_records"])

            self.after_kill("audit export", landed, expect)
        return {}

    def export_ok(self, prev: str | None, records: int) -> list[str]:
        if not self.export.exists():
            return [] if prev is None else ["the previous export file is gone"]
        if sha256(self.export) == prev:
            return []
        text = self.export.read_text(encoding="utf-8")
        try:
            seqs = [json.loads(line)["seq"] for line in text.splitlines()]
        except (ValueError, KeyError):
            return ["export file: a line is not a JSON record"]
        if not text.endswith("\n") or seqs != list(range(1, records + 1)):
            return [f"export file holds {len(seqs)} records of {records}"]
        return []


def run_kills(work: Path, n: int, seed: int, set_policy) -> dict:
    k = Kills(work, seed)
    t0 = time.monotonic()
    k.setup(set_policy)
    print(f"kills: uninterrupted load {k.t_load:.1f} s, consent import {k.t_consent:.1f} s, "
          f"export {k.t_export:.1f} s", flush=True)
    extra = {"load-features": k.loads(n), "consent import": k.consents(n),
             "serve": k.serves(n), "audit export": k.exports(n)}
    by_kind = {}
    for kind, more in extra.items():
        rows = [t for t in k.tries if t["kind"] == kind]
        by_kind[kind] = {"tries": len(rows),
                         "landed_mid_write": sum(t["landed_mid_write"] for t in rows),
                         "finished_before_kill": sum(t["finished_before_kill"] for t in rows),
                         "committed_before_kill": sum(bool(t.get("committed")) for t in rows),
                         "partial_writes": sum(bool(t["partial"]) for t in rows),
                         "restarts_failed": sum(bool(t["restart_error"]) for t in rows),
                         "verify_failures": sum(not t["verify_ok"] for t in rows),
                         "tmp_left": sum(t["tmp_left"] for t in rows),
                         **more}
    tries = k.tries
    return {"tries": len(tries), "by_kind": by_kind,
            "partial_writes": sum(bool(t["partial"]) for t in tries),
            "restarts_failed": sum(bool(t["restart_error"]) for t in tries),
            "verify_failures": sum(not t["verify_ok"] for t in tries),
            "leftover_tmp_files": len(k.seen_tmp),
            "leftover_tmp_at_end": len(tmp_files(k.d, k.export.parent)),
            "uninterrupted_s": {"load": k.t_load, "consent": k.t_consent,
                                "export": k.t_export},
            "seconds": time.monotonic() - t0, "details": tries}
