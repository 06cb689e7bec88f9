#!/usr/bin/env python
"""The per-enterprise use record at a year's scale: storage, build time, query latency.

    python benchmarks/use_record.py --json benchmarks/results/use_record.json      # full year
    python benchmarks/use_record.py --days 3 --enterprises 200000 --json /tmp/u.json  # quick

Builds a synthetic year in a temporary directory with the holder's real store and use record
code (``fedcredit.holder.store``, ``audit.append``, ``uses.store``, ``uses.compact``,
``uses.report``): ``--enterprises`` USCC-keyed enterprises, ``--days`` days of
``--sessions`` sessions of ``--set-size`` enterprises each (see :func:`draw_day` for how
the sets are drawn), plus ``--online-per-day`` one-enterprise scoring requests. Every day
but the last is compacted after it ends, as the service's maintenance does after midnight;
the last day stays pending (the end of "today": the slowest case for a query). Then
``uses.report`` answers for ``--queries`` random enterprises, and the online recording path
(``SqliteAuditor.record`` with one enterprise, and with a 100k alignment) is timed on the
full store. Writes JSON and, next to it, a Markdown table (``.md``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fedcredit.datasets.uscc import USCC_ALPHABET, uscc_from_parts  # noqa: E402
from fedcredit.holder import audit, store, uses  # noqa: E402
from fedcredit.holder.usecodec import digest  # noqa: E402

YEAR_START = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
KIND_SHARES = {"score": 0.6, "align": 0.3, "train": 0.1}


def make_codes(n: int, rng) -> np.ndarray:
    """``n`` distinct valid USCCs (S18): enterprise (91...), a random division code, and an
    organisation body that spells a distinct serial in the USCC alphabet."""
    prefix = np.empty((n, 8), dtype=np.uint8)
    prefix[:, 0], prefix[:, 1] = ord("9"), ord("1")
    division = rng.integers(110000, 660000, n)
    for k in range(6):
        prefix[:, 7 - k] = ord("0") + (division // 10 ** k) % 10
    chars = np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)
    serial = rng.permutation(n).astype(np.int64) + 31 ** 6
    body = np.empty((n, 8), dtype=np.uint8)
    for k in range(8):
        body[:, 7 - k] = chars[(serial // 31 ** k) % 31]
    return uscc_from_parts(prefix, body).view("S18").ravel()


class Year:
    """The synthetic platform: banks with portfolios, sessions drawn per day."""

    def __init__(self, a, rng):
        self.a, self.rng = a, rng
        n = a.enterprises
        # portfolio sizes log-uniform between 2% and 15% of the enterprises; an enterprise
        # may bank with several banks (portfolios are drawn independently)
        sizes = np.exp(rng.uniform(np.log(0.02 * n), np.log(0.15 * n), a.banks)).astype(int)
        self.portfolios = [np.sort(rng.choice(n, max(s, a.set_size), replace=False))
                           for s in sizes]
        self.weights = sizes / sizes.sum()
        self.cursor = [0] * a.banks  # where each bank's rotating re-scoring has got to

    def draw_day(self):
        """The day's sessions: (bank, kind, [(operation, numbers), ...]).

        score: the next ``set_size`` enterprises of the bank's portfolio (re-scored in
        rotation, so a portfolio is re-scored every few days to weeks); align: 70% from its
        portfolio, 30% random prospects from all enterprises; train: an alignment as for
        align, then "trained on" 80% of the aligned enterprises (two sets)."""
        a, rng = self.a, self.rng
        out = []
        for _ in range(a.sessions):
            b = int(rng.choice(a.banks, p=self.weights))
            kind = str(rng.choice(list(KIND_SHARES), p=list(KIND_SHARES.values())))
            p = self.portfolios[b]
            if kind == "score":
                at = self.cursor[b]
                take = np.take(p, np.arange(at, at + a.set_size), mode="wrap")
                self.cursor[b] = (at + a.set_size) % p.size
                out.append((b, kind, [("predict", _distinct(take))]))
                continue
            own = _sample(rng, p, int(0.7 * a.set_size))
            new = _sample(rng, a.enterprises, a.set_size - own.size)
            aligned = _distinct(np.concatenate([own, new]))
            sets = [("align", aligned)]
            if kind == "train":
                sets.append(("boost_start", np.sort(_sample(rng, aligned,
                                                            int(0.8 * aligned.size)))))
            out.append((b, kind, sets))
        return out

    def online(self):
        b = self.rng.choice(self.a.banks, self.a.online_per_day, p=self.weights)
        return [(int(k), int(self.rng.choice(self.portfolios[k]))) for k in b]


def _distinct(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique hashes since numpy 2.3: 40 ms per 100k here)."""
    s = np.sort(x)
    return s[np.concatenate(([True], s[1:] != s[:-1]))]


def _sample(rng, population, k: int) -> np.ndarray:
    """``k`` distinct draws from ``population`` (an array, or ``range(n)`` as an int)
    without permuting all of it (``Generator.choice`` would, at 10M per draw)."""
    n = population if isinstance(population, int) else population.size
    got = _distinct(rng.integers(0, n, int(k * 1.2) + 16))
    while got.size < k:
        got = _distinct(np.concatenate([got, rng.integers(0, n, k)]))
    got = got[rng.permutation(got.size)[:k]]
    return got if isinstance(population, int) else population[got]


def _at(day: int, seconds: float) -> str:
    t = YEAR_START + dt.timedelta(days=day, seconds=float(seconds))
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _append(con, when: str, **record) -> int:
    """``audit.append`` with the record's time set to the synthetic clock."""
    real = audit.now_iso
    audit.now_iso = lambda: when
    try:
        return audit.append(con, actor="bank", **record)
    finally:
        audit.now_iso = real


def _compactor(db: str, days, done) -> None:
    """The maintenance side, in its own process and connection (the service runs it in its
    maintenance thread while requests are recorded): fold each finished day."""
    con = store.connect(db)
    try:
        while (before := days.get()) is not None:
            t = time.perf_counter()
            uses.compact(con, before=before)
            done.put(time.perf_counter() - t)
    finally:
        con.close()


def build(con, db: Path, a, codes: np.ndarray, rng) -> dict:
    year = Year(a, rng)
    ctx = mp.get_context("spawn")
    days_q, done_q = ctx.Queue(), ctx.Queue()
    worker = ctx.Process(target=_compactor, args=(str(db), days_q, done_q), daemon=True)
    worker.start()
    compact_days: list[float] = []
    t0 = time.perf_counter()
    record_s = 0.0
    n_sets = n_uses = 0
    for day in range(a.days):
        t = time.perf_counter()
        n_sets, n_uses = _record_day(con, year, day, codes, rng, n_sets, n_uses)
        record_s += time.perf_counter() - t
        if day < a.days - 1:  # the last day is "today": left pending
            days_q.put(_at(day + 1, 0)[:10])
            while day - len(compact_days) > 2:  # keep the compactor at most 2 days behind
                compact_days.append(done_q.get())
        if day % 10 == 0 or day == a.days - 1:
            print(f"day {day + 1}/{a.days}: {n_sets} sets, {n_uses} uses, "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    days_q.put(None)
    while len(compact_days) < a.days - 1:
        compact_days.append(done_q.get())
    worker.join(60)
    return {"sets": n_sets, "uses": n_uses, "build_seconds": round(time.perf_counter() - t0, 1),
            "record_seconds": round(record_s, 1),
            "compact_seconds": round(float(np.sum(compact_days)), 1),
            "compact_seconds_per_day_mean": round(float(np.mean(compact_days)), 2)
            if compact_days else 0.0,
            "compact_seconds_per_day_max": round(float(np.max(compact_days)), 2)
            if compact_days else 0.0}


def _record_day(con, year: Year, day: int, codes, rng, n_sets: int, n_uses: int):
    sessions = year.draw_day()
    times = np.sort(rng.uniform(0, 86_000, len(sessions)))
    for (b, kind, sets), sec in zip(sessions, times):
        bank, sid = f"bank-{b:02d}", f"{day:03d}-{rng.integers(1 << 62):016x}"
        model = f"model-{b:02d}-{day:03d}"
        if kind == "score":
            with store.write(con):
                con.execute("INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?)",
                            (sid, bank, "credit", "score", model, 0.0, 0.0, "closed"))
        for k, (op, numbers) in enumerate(sets):
            used = uses.UseSet(numbers, digest(codes[numbers]))
            with store.write(con):  # one transaction per record, as the auditor writes
                seq = _append(con, _at(day, sec + k), bank=bank, purpose="credit",
                              operation=op, enterprises=int(numbers.size), session=sid,
                              detail=uses.tag("", used.digest))
                uses.store(con, seq, used)
            n_sets, n_uses = n_sets + 1, n_uses + int(numbers.size)
        if kind == "train":
            with store.write(con):
                _append(con, _at(day, sec + 60), bank=bank, purpose="credit",
                        operation="model_finish", session=sid, detail=f"model={model}")
    online = year.online()
    secs = np.sort(rng.uniform(0, 86_000, len(online)))
    for start in range(0, len(online), 100):  # grouped per 100 records to build faster
        with store.write(con):
            for (b, number), sec in zip(online[start:start + 100], secs[start:start + 100]):
                used = uses.UseSet(np.array([number]), digest(codes[[number]]))
                seq = _append(con, _at(day, sec), bank=f"bank-{b:02d}", purpose="credit",
                              operation="predict", enterprises=1,
                              session=f"online-{b:02d}-{day:03d}",
                              detail=uses.tag("ids=1", used.digest))
                uses.store(con, seq, used)
    return n_sets + len(online), n_uses + len(online)


def storage(con, db: Path, uses_total: int) -> dict:
    tables = dict(con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"))
    use_tables = {"enterprise_index": ("enterprise_index", "sqlite_autoindex_enterprise_index_1"),
                  "use_sets (pending)": ("use_sets", "use_sets_day"),
                  "use_segments": ("use_segments", "use_segments_day"),
                  "use_postings": ("use_postings",)}
    per = {k: int(sum(tables.get(t, 0) for t in names)) for k, names in use_tables.items()}
    blobs = con.execute("SELECT COALESCE(SUM(length(data)), 0) FROM use_postings").fetchone()[0]
    folded = con.execute("SELECT COALESCE(SUM(uses), 0) FROM use_segments").fetchone()[0]
    files = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    record = sum(per.values())
    return {"files_bytes": files, "use_record_bytes": record, "tables_bytes": per,
            "audit_log_bytes": int(tables.get("audit_log", 0)
                                   + tables.get("audit_log_bank_op_ts", 0)
                                   + tables.get("audit_log_ts", 0)),
            "use_record_bytes_per_use": round(record / max(uses_total, 1), 3),
            "postings_blob_bytes_per_folded_use": round(blobs / max(folded, 1), 3)}


def queries(con, codes: np.ndarray, a, rng) -> dict:
    picks = rng.choice(codes.size, a.queries, replace=False)
    times, found = [], []
    for i in picks.tolist():
        t = time.perf_counter()
        rows = uses.report(con, codes[i].decode())
        times.append(time.perf_counter() - t)
        found.append(len(rows))
    ms = np.array(times) * 1e3
    return {"queries": a.queries, "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "max_ms": round(float(ms.max()), 1),
            "uses_found_mean": round(float(np.mean(found)), 1), "uses_found_max": int(max(found))}


def online_path(con, codes: np.ndarray, a, rng) -> dict:
    """The real recording path (SqliteAuditor.record: numbering, digest, audit record, set,
    one FULL-sync transaction each) on the full store."""
    auditor = audit.SqliteAuditor(con)
    ids = [c.decode() for c in codes[rng.choice(codes.size, 200)]]
    before = con.execute("SELECT COALESCE(SUM(length(ids)), 0) FROM use_sets").fetchone()[0]
    ms = []
    for u in ids:
        t = time.perf_counter()
        auditor.record(bank="bank-00", purpose="credit", operation="predict", enterprises=1,
                       session="bench-online", detail="ids=1", ids=[u])
        ms.append((time.perf_counter() - t) * 1e3)
    blob = (con.execute("SELECT SUM(length(ids)) FROM use_sets").fetchone()[0] - before) / len(ids)
    big = [c.decode() for c in codes[rng.choice(codes.size, min(a.set_size, codes.size),
                                                replace=False)]]
    big_s = []
    for _ in range(3):
        t = time.perf_counter()
        auditor.record(bank="bank-00", purpose="credit", operation="align",
                       enterprises=len(big), session="bench-align", ids=big)
        big_s.append(time.perf_counter() - t)
    return {"one_enterprise_p50_ms": round(float(np.percentile(ms, 50)), 2),
            "one_enterprise_p95_ms": round(float(np.percentile(ms, 95)), 2),
            "one_enterprise_set_blob_bytes": round(blob, 1),
            f"align_{len(big)}_seconds": round(float(np.median(big_s)), 3)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--enterprises", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--sessions", type=int, default=100, help="large sessions per day")
    ap.add_argument("--set-size", type=int, default=100_000)
    ap.add_argument("--banks", type=int, default=20)
    ap.add_argument("--online-per-day", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dir", type=Path, help="build here (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the built store")
    ap.add_argument("--verify", action="store_true",
                    help="also time uses.check (what `holder audit verify` adds) on the store")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/use_record.json"))
    a = ap.parse_args(argv)
    a.set_size = min(a.set_size, a.enterprises // 4)
    rng = np.random.default_rng(a.seed)
    work = Path(tempfile.mkdtemp(prefix="use_record_", dir=a.dir))
    try:
        db = work / "holder.db"
        con = store.connect(db, create=True)
        con.execute("PRAGMA cache_size = -1000000")  # 1 GB: builds the 10M index faster
        con.audit_key = secrets.token_bytes(32)  # a keyed chain, as a served holder's is
        t = time.perf_counter()
        codes = make_codes(a.enterprises, rng)
        order = rng.permutation(a.enterprises)  # numbers uncorrelated with portfolios
        codes = codes[order]
        with store.write(con):
            con.executemany("INSERT INTO enterprise_index (idx, uscc) VALUES (?, ?)",
                            ((i, c.decode()) for i, c in enumerate(codes.tolist())))
        index_s = time.perf_counter() - t
        built = build(con, db, a, codes, rng)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        out = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "sqlite": sqlite3.sqlite_version},
            "scale": {"enterprises": a.enterprises, "days": a.days, "sessions_per_day":
                      a.sessions, "set_size": a.set_size, "banks": a.banks,
                      "online_per_day": a.online_per_day},
            "index_seconds": round(index_s, 1), **built,
            "storage": storage(con, db, built["uses"]),
            "query": queries(con, codes, a, rng),
            "online": online_path(con, codes, a, rng),
        }
        if a.verify:
            t = time.perf_counter()
            problem = uses.check(con)
            out["verify"] = {"seconds": round(time.perf_counter() - t, 1),
                             "problem": problem[0] if problem else ""}
        con.close()
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(out, indent=2) + "\n")
    a.json.with_suffix(".md").write_text(markdown(out))
    print(markdown(out))
    return out


def markdown(r: dict) -> str:
    s, st, q, o = r["scale"], r["storage"], r["query"], r["online"]
    gb = 1e9
    align_key = next(k for k in o if k.startswith("align_"))
    lines = [
        f"# Per-enterprise use record: {s['enterprises']:,} enterprises, {s['days']} days",
        "",
        f"{s['sessions_per_day']} sessions a day of {s['set_size']:,} enterprises "
        f"(60% re-scoring, 30% alignment, 10% training: alignment + trained on) from "
        f"{s['banks']} banks, plus {s['online_per_day']:,} one-enterprise scoring requests a "
        f"day: {r['sets']:,} use sets, {r['uses']:,} uses. {r['machine']['cpus']} CPUs "
        f"(shared), SQLite {r['machine']['sqlite']}, Python {r['machine']['python']}.",
        "",
        "How the sets are drawn: each bank has a portfolio (log-uniform 2-15% of all "
        "enterprises, drawn independently, so enterprises bank with several banks). A "
        "re-scoring session scores the next slice of the bank's portfolio in rotation; an "
        "alignment takes 70% from its portfolio and 30% random prospects; a training session "
        "aligns so, then trains on 80% of the aligned. Banks are chosen in proportion to "
        "their portfolios. Enterprise numbers are a random permutation (uncorrelated with "
        "portfolios: the conservative case for delta coding; the service numbers "
        "enterprises in order of first use).",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| store files (audit log included) | {st['files_bytes'] / gb:.2f} GB |",
        f"| use record (index, segments, postings, pending) | "
        f"{st['use_record_bytes'] / gb:.2f} GB |",
        f"| use record per use | {st['use_record_bytes_per_use']} bytes |",
        f"| postings per folded use (blobs) | {st['postings_blob_bytes_per_folded_use']} "
        "bytes |",
    ]
    for k, v in st["tables_bytes"].items():
        lines.append(f"| &nbsp; {k} | {v / gb:.3f} GB |")
    lines += [
        f"| audit log (table and indexes) | {st['audit_log_bytes'] / gb:.3f} GB |",
        f"| build: recording (one transaction per set) | {r['record_seconds']} s |",
        f"| build: compaction (all days, beside the recording) | {r['compact_seconds']} s "
        f"(per day mean {r['compact_seconds_per_day_mean']} s, max "
        f"{r['compact_seconds_per_day_max']} s) |",
        f"| build, wall clock (the index of {s['enterprises']:,} before it: "
        f"{r['index_seconds']} s) | {r['build_seconds']} s |",
        f"| `uses.report` for one enterprise over all {s['days']} days, {q['queries']} "
        f"random: p50 | {q['p50_ms']} ms |",
        f"| &nbsp; p95 / max | {q['p95_ms']} / {q['max_ms']} ms |",
        f"| &nbsp; uses found per enterprise: mean / max | {q['uses_found_mean']} / "
        f"{q['uses_found_max']} |",
        f"| record one scored enterprise (`SqliteAuditor.record`): p50 / p95 | "
        f"{o['one_enterprise_p50_ms']} / {o['one_enterprise_p95_ms']} ms |",
        f"| &nbsp; its pending set blob | {o['one_enterprise_set_blob_bytes']} bytes |",
        f"| record an alignment of {align_key.split('_')[1]} (numbering against the full "
        f"index) | {o[align_key]} s |",
    ]
    if "verify" in r:
        v = r["verify"]
        lines.append(f"| `uses.check` (every set against its record's digest, as "
                     f"`holder audit verify` runs it) | {v['seconds']} s"
                     f"{' (' + v['problem'] + ')' if v['problem'] else ', all match'} |")
    lines += [
        "",
        "Queries ran with the last day's sets still pending (scanned) and the other days "
        "compacted; the store was in the OS page cache (warm). Online records in the build "
        "were grouped 100 to a transaction (the timed online path above is not).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
