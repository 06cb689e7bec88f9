"""``fedcredit holder serve``: the protocol core wired to the persistent store, over mTLS gRPC.

:class:`HolderParty` is the protocol core (:class:`~fedcredit.protocol.HolderCore`) with the
service's duties added around its steps as middleware, none of the steps re-implemented:

- refused and failed requests are audited too (the core audits the requests it answers);
- per-bank daily caps on sessions and trees, counted from the audit log (so they survive a
  restart);
- a ``sessions`` table: opened, closed, expired, or interrupted by a restart (in-flight
  training state lives in memory and cannot outlive the process; a bank reopens a session);
- a new feature table loaded by ``fedcredit holder load-features`` is picked up at the next
  request (and by a background check), the previous one serving until the swap;
- a reloaded policy and suspended banks (:mod:`fedcredit.holder.live`) likewise: open
  sessions the new state no longer allows are closed and audited.

:func:`serve` runs the server until SIGTERM or SIGINT, then stops gracefully (health
NOT_SERVING, running calls get ``shutdown_grace_seconds``) and returns 0.
"""
from __future__ import annotations

import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator

from ..atomic import write_atomic
from ..errors import FedCreditError, PolicyViolation, ResourceLimit, StoreUnavailable
from ..protocol import HolderCore
from ..protocol import messages as m
from ..protocol.middleware import Next, Request, audit_refusals
from ..protocol.registry import SCORING_REQUESTS
from ..protocol.secureboost.messages import TreeStart
from . import audit, features, live, logs, store, uses
from .admin import start_admin
from .audit import SqliteAuditor
from .config import HolderConfig, load_config
from .consent import SqliteConsent
from .loans import SqliteLoanBook
from .modelstore import SqliteModelStore
from .storewatch import StoreWatch

log = logging.getLogger("fedcredit.holder.service")


class HolderParty(HolderCore):
    """The holder's protocol core with the service's stores and middleware (see the module
    notes); no protocol step is re-implemented or overridden."""

    def __init__(self, cfg: HolderConfig, *, features_frame=None, features_version: int = 0):
        self.cfg = cfg
        self._db = store.connect(cfg.db_path)
        self._db_lock = threading.Lock()
        self._reload = threading.Lock()
        hooks = {name: store.connect(cfg.db_path)
                 for name in ("audit", "consent", "models", "loans", "uses")}
        self._hook_cons = list(hooks.values())
        self._uses_db = hooks["uses"]
        self.store_watch = StoreWatch(cfg.db_path)
        if features_frame is None:
            features_frame, features_version = features.read_current(cfg, self._db)
        super().__init__(features_frame, name=cfg.name, policy=cfg.policy,
                         consent=SqliteConsent(hooks["consent"]),
                         auditor=SqliteAuditor(hooks["audit"], self.store_watch.failed),
                         models=SqliteModelStore(hooks["models"]),
                         loans=SqliteLoanBook(hooks["loans"]),
                         middleware=[self._store_gate, audit_refusals(logs.scrub),
                                     self._live_state, self._fresh_features, self._daily_caps,
                                     self._scoring_cap, self._sessions_table])
        self.features_version = features_version
        self.on_session_end(self._session_ended)
        self._live_lock = threading.Lock()
        self._uses_lock = threading.Lock()
        with self._db_lock:
            self.live = live.LiveState(live.generation(self._db), cfg.policy,
                                       live.suspended_banks(self._db))

    # -- middleware -----------------------------------------------------------------------------
    def _store_gate(self, req: Request, call_next: Next) -> Iterator:
        """While the audit log cannot be written, refuse at once (UNAVAILABLE), before any
        work; a store error met on the way also marks the store down."""
        self.store_watch.check()
        try:
            yield from call_next(req)
        except StoreUnavailable as e:
            self.store_watch.failed(e)
            raise

    def _live_state(self, req: Request, call_next: Next) -> Iterator:
        """A reloaded policy or a suspension applies from this request on; a suspended
        bank is refused (and the refusal audited)."""
        self.apply_live()
        if req.caller.bank in self.live.suspended:
            raise PolicyViolation(f"bank {req.caller.bank!r} is suspended by the holder's "
                                  "operator")
        yield from call_next(req)

    def apply_live(self) -> bool:
        """Apply the store's live state if it changed; True when it did.

        A ``holder.toml`` that no longer loads keeps the running policy (logged), and the
        suspensions still apply."""
        with self._db_lock:
            gen = live.generation(self._db)
        if gen == self.live.generation:
            return False
        with self._live_lock:  # a request waits for a reload under way: none sees the old one
            with self._db_lock:
                gen = live.generation(self._db)
                if gen == self.live.generation:
                    return False
                suspended = live.suspended_banks(self._db)
                try:
                    policy = load_config(self.cfg.dir).policy
                except FedCreditError as e:
                    log.error("policy not reloaded", extra={"fields": {"reason": str(e)}})
                    policy = self.policy
            self.live = live.LiveState(gen, policy, suspended)
            self.policy = self.cfg.policy = policy
            closed = self._close_disallowed()
        log.info("live policy applied", extra={"fields": {
            "generation": gen, "suspended": sorted(suspended), "sessions_closed": closed}})
        return True

    def _close_disallowed(self) -> int:
        closed = 0
        for s in self.open_sessions():
            why = live.disallowed_reason(s, self.live, self.session_columns(s.bank, s.purpose))
            if why:
                self.drop(s, why)
                self.auditor.record(bank=s.bank, purpose=s.purpose, operation="session_closed",
                                    enterprises=0, session=s.id, detail=f"reason={why}")
                closed += 1
        return closed

    def reload_policy(self, source: str) -> None:
        """Check and announce ``holder.toml`` (SIGHUP), then apply it."""
        try:
            with self._db_lock:
                live.request_reload(self._db, self.cfg.dir, source=source)
        except FedCreditError as e:
            log.error("policy not reloaded", extra={"fields": {"reason": str(e)}})
            return
        self.apply_live()

    def _fresh_features(self, req: Request, call_next: Next) -> Iterator:
        """A feature table loaded since the last request is served from this one on."""
        self.refresh_features()
        yield from call_next(req)

    def _daily_caps(self, req: Request, call_next: Next) -> Iterator:
        """Per-bank daily caps on sessions and trees, counted from the audit log (so they
        survive a restart).

        ``max_sessions_per_day`` counts the sessions that run a protocol (alignment,
        training, WOE, LR); scoring and loan-report sessions (``open_session:score``,
        ``open_session:loans``) are counted apart and not capped per day, so online scoring
        works at the defaults: they stay bounded by
        ``max_concurrent_sessions``, ``max_sessions_per_bank`` and idle expiry, and every
        scoring request by ``max_predict_ids``."""
        bank = req.caller.bank
        if isinstance(req.first, m.OpenSession):
            cap = self.policy.max_sessions_per_day
            if cap and req.first.task not in ("score", "loans") and (
                    self._db_count_today(bank, "open_session:", prefix=True)
                    - self._db_count_today(bank, "open_session:score")
                    - self._db_count_today(bank, "open_session:loans")) >= cap:
                raise ResourceLimit(f"bank {bank!r} has opened the {cap} sessions the "
                                    "holder's policy allows per day (UTC); retry tomorrow")
        elif isinstance(req.first, TreeStart):
            cap = self.policy.max_trees_per_day
            if cap and self._db_count_today(bank, "tree_start") >= cap:
                raise ResourceLimit(f"bank {bank!r} has trained the {cap} trees the "
                                    "holder's policy allows per day (UTC); retry tomorrow")
        yield from call_next(req)

    def _scoring_cap(self, req: Request, call_next: Next) -> Iterator:
        """``max_scored_per_day``: distinct enterprises one bank scores per purpose and UTC
        day, kept in the store's ``scored`` table (so a restart does not reset it).

        Counted before the answer, for every id the bank names (known to the holder or
        not: the cap bounds what a bank may ask, so probing unknown ids costs it too); an
        enterprise scored again the same day is not counted twice, so online scoring of a
        portfolio works however often it repeats."""
        cap, msg = self.policy.max_scored_per_day, req.first
        if cap and isinstance(msg, SCORING_REQUESTS):
            ids: list = msg.ids  # type: ignore[attr-defined]  # every scoring request has them
            if len(ids) <= self.policy.max_predict_ids:  # else the core refuses it
                session = self.session(req.caller, msg.session_id)  # type: ignore[attr-defined]
                self._count_scored(req.caller.bank, session.purpose, [str(i) for i in ids], cap)
        yield from call_next(req)

    def _count_scored(self, bank: str, purpose: str, ids: list[str], cap: int) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        with self._db_lock, store.write(self._db):
            seen = {r[0] for chunk in range(0, len(ids), 500) for r in self._db.execute(
                "SELECT uscc FROM scored WHERE day = ? AND bank = ? AND purpose = ? AND uscc IN "
                f"({','.join('?' * len(ids[chunk:chunk + 500]))})",
                (day, bank, purpose, *ids[chunk:chunk + 500]))}
            new = sorted(set(ids) - seen)
            if not new:
                return
            done = self._db.execute("SELECT COUNT(*) FROM scored WHERE day = ? AND bank = ? "
                                    "AND purpose = ?", (day, bank, purpose)).fetchone()[0]
            if done + len(new) > cap:
                raise ResourceLimit(f"bank {bank!r} may score {cap} distinct enterprises per "
                                    f"day (UTC) for {purpose!r}; {done} scored today, this "
                                    f"request adds {len(new)}; retry tomorrow")
            self._db.executemany("INSERT INTO scored (day, bank, purpose, uscc) VALUES "
                                 "(?,?,?,?)", [(day, bank, purpose, u) for u in new])

    def compact_uses(self) -> None:
        """Fold the use record's finished UTC days into segments (one day per call: a day of
        100 sessions of 100k enterprises takes ~3.5 s, holding the write lock ~0.2 s)."""
        with self._uses_lock:
            done = uses.compact(self._uses_db, max_days=1)
        if done["sets"]:
            log.info("use record compacted", extra={"fields": done})

    def prune_scored(self, keep_days: int = 7) -> None:
        """Forget which enterprises were scored more than ``keep_days`` days ago."""
        day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - keep_days * 86400))
        with self._db_lock, store.write(self._db):
            self._db.execute("DELETE FROM scored WHERE day < ?", (day,))

    def _sessions_table(self, req: Request, call_next: Next) -> Iterator:
        """The ``sessions`` table: a row per opened session, its state when it ends."""
        for out in call_next(req):
            if isinstance(out, m.SessionOpened):
                msg = req.first
                self._session_row(out.session_id, req.caller.bank, msg.purpose, msg.task,
                                  msg.model_id)
            yield out

    def _session_ended(self, session, reason: str) -> None:
        self._session_state([session.id], reason)
        if reason == "expired":
            log.info("idle session expired", extra={"fields": {"task": session.task}})

    def _db_count_today(self, bank: str, operation: str, prefix: bool = False) -> int:
        with self._db_lock:
            return audit.count_today(self._db, bank, operation, prefix)

    # -- sessions table -------------------------------------------------------------------------
    def _session_row(self, sid, bank, purpose, task, model_id) -> None:
        with self._db_lock, store.write(self._db):
            self._db.execute("INSERT OR REPLACE INTO sessions (session_id, bank, purpose, task, "
                             "model_id, opened_at, ended_at, state) VALUES (?,?,?,?,?,?,NULL,"
                             "'open')", (sid, bank, purpose, task, model_id, time.time()))

    def _session_state(self, sids, state: str) -> None:
        with self._db_lock, store.write(self._db):
            self._db.executemany("UPDATE sessions SET state = ?, ended_at = ? WHERE "
                                 "session_id = ? AND state = 'open'",
                                 [(state, time.time(), s) for s in sids])

    def interrupt_open_sessions(self) -> int:
        """Mark sessions a previous process left open (their state died with it)."""
        with self._db_lock, store.write(self._db):
            return self._db.execute("UPDATE sessions SET state = 'interrupted', ended_at = ? "
                                    "WHERE state = 'open'", (time.time(),)).rowcount

    # -- features -------------------------------------------------------------------------------
    def refresh_features(self) -> None:
        """Serve a newer feature table if one was loaded; keep the current one on failure."""
        with self._db_lock:
            version = features.current_version(self._db)
        if version == self.features_version or not self._reload.acquire(blocking=False):
            return
        try:
            with self._db_lock:
                frame, version = features.read_current(self.cfg, self._db)
            self.set_features(frame, version=version)
            log.info("feature table loaded", extra={"fields": {
                "version": version, "enterprises": len(frame), "columns": frame.shape[1]}})
        except FedCreditError as e:
            log.error("new feature table not served", extra={"fields": {"reason": str(e)}})
        finally:
            self._reload.release()

    def close(self) -> None:
        for con in [self._db, *self._hook_cons]:
            try:
                con.close()
            except sqlite3.Error:
                pass


def _maintenance(party: HolderParty, done: threading.Event) -> None:
    period = max(1.0, min(30.0, party.policy.session_idle_seconds / 4))
    while not done.wait(period):
        try:
            party.expire_idle()
            party.apply_live()
            party.refresh_features()
            party.prune_scored()
            party.compact_uses()
        except Exception:  # never let housekeeping take the server down
            log.exception("maintenance failed")


def serve(directory, port_file=None) -> int:
    """Run the holder service of ``directory`` until SIGTERM/SIGINT; returns the exit code.

    Everything it writes to stderr is one structured event per line, start-up failures
    included (exit 2 for a refused configuration or store, 1 for anything else).
    """
    done, hup = threading.Event(), threading.Event()
    received: list[int] = []

    def on_signal(signum, _frame):
        received.append(signum)
        done.set()

    # first: a SIGTERM while a large feature table loads still means a clean exit 0
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: hup.set())
    undo = None
    try:
        try:
            cfg = load_config(directory)
        except FedCreditError:
            logs.setup("json", "info")  # the configured format is unknown: the default
            raise
        logs.setup(cfg.log_format, cfg.log_level)
        undo = logs.capture_stderr()
        return _run(cfg, done, hup, received, port_file)
    except FedCreditError as e:
        log.error("holder serve could not start", extra={"fields": {
            "reason": str(e), "error_type": type(e).__name__}})
        return 2
    except Exception:
        log.exception("holder serve failed")
        return 1
    finally:
        if undo is not None:
            undo()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(cfg: HolderConfig, done: threading.Event, hup: threading.Event, received: list[int],
         port_file) -> int:
    """Serve on the configured engine ([engine]: PSI and batch crypto on Dask, or not)."""
    from ..crypto.engine import engine_scope

    with engine_scope(cfg.engine_spec, cfg.engine_workers or None, cfg.tls_dir,
                      cfg.engine_cert) as engine:
        if engine is not None:
            log.info("engine", extra={"fields": {"kind": "dask", "workers": engine.workers,
                                                 "scheduler": cfg.engine_scheduler or
                                                 "LocalCluster"}})
        return _serve(cfg, done, hup, received, port_file)


def _serve(cfg: HolderConfig, done: threading.Event, hup: threading.Event,
           received: list[int], port_file) -> int:
    from ..transport import HolderServer

    party = HolderParty(cfg)
    admin_api = None
    try:
        interrupted = party.interrupt_open_sessions()
        if cfg.admin_listen:  # a refused [admin] stops serve before it answers anyone
            admin_api = start_admin(cfg)
        server = HolderServer(party, cfg.listen, tls_dir=cfg.tls_dir,
                              max_workers=cfg.max_workers,
                              max_calls_per_bank=cfg.max_calls_per_bank,
                              first_message_seconds=cfg.first_message_seconds,
                              idle_stream_seconds=cfg.idle_stream_seconds)
        with party._db_lock:  # recorded before the first request can be answered
            audit.record_operator(party._db, "serve_start",
                                  f"address={server.address} features_version="
                                  f"{party.features_version}")
        server.start()
    except BaseException:
        if admin_api is not None:
            admin_api.stop()
        party.close()
        raise
    party.store_watch.attach(server.set_serving)
    if port_file:
        write_atomic(port_file, str(server.port))
    pol = cfg.policy
    if party.features.shape[0] == 0:
        log.warning("no feature table loaded yet: run `fedcredit holder load-features`")
    log.info("serving", extra={"fields": {
        "address": server.address, "holder": cfg.name, "pid": os.getpid(),
        "features_version": party.features_version, "enterprises": party.features.shape[0],
        "columns": party.features.shape[1],
        "allowed_banks": "*" if pol.allowed_banks is None else list(pol.allowed_banks),
        "allowed_purposes": list(pol.allowed_purposes),
        "interrupted_sessions": interrupted}})
    keeper = threading.Thread(target=_maintenance, args=(party, done), daemon=True,
                              name="holder-maintenance")
    keeper.start()
    try:
        while not done.wait(0.5):
            if hup.is_set():  # SIGHUP: reload holder.toml's policy
                hup.clear()
                party.reload_policy("SIGHUP")
    finally:
        name = signal.Signals(received[0]).name if received else "exit"
        log.info("stopping", extra={"fields": {"signal": name,
                                               "grace_seconds": cfg.shutdown_grace_seconds}})
        party.store_watch.stop()
        if admin_api is not None:
            admin_api.stop(timeout=cfg.shutdown_grace_seconds)
        server.stop(grace=cfg.shutdown_grace_seconds)
        try:
            stopped = party.interrupt_open_sessions()
            with party._db_lock:
                audit.record_operator(party._db, "serve_stop",
                                      f"signal={name} open_sessions={stopped}")
        except StoreUnavailable as e:  # a full disk must not turn a clean stop into a crash
            log.error("stop not recorded", extra={"fields": {"reason": str(e)}})
        party.close()
        log.info("stopped", extra={"fields": {"signal": name}})
    return 0
