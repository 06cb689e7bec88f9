"""The holder's protocol core: dispatch, sessions and the hooks every protocol step uses.

Both transports call :meth:`HolderCore.handle` with the caller's identity and an iterator of
request messages; it yields the responses. The core serves the generic messages (ping,
open and close a session) itself and every other message through the handler that its
protocol registered (:mod:`fedcredit.protocol.registry`). Each step checks the session, the
policy and consent, writes an audit record, and only then answers. Cross-cutting duties wrap
the steps as middleware (:mod:`fedcredit.protocol.middleware`). Nothing the holder returns
carries a feature value, a bin edge or a threshold.
"""
from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import (
    InvalidInput,
    PolicyViolation,
    ProtocolError,
    ResourceLimit,
    SessionNotFound,
)
from ..memory import release_freed_memory
from . import messages as m
from .channel import Caller
from .hooks import AllowAll, MemoryAuditor, MemoryLoanBook, MemoryModelStore, StoredModel
from .middleware import Middleware, Request, audit_refusals, compose
from .policy import HolderPolicy
from .registry import KEYED_TASKS, TASKS, holder_handlers
from .session import Session


def _copy_on_write() -> bool:
    """Whether pandas copies shared data on write (always from pandas 3; an option in 2.x):
    then a shallow copy of a million-row table is as safe as a deep one, and free."""
    if int(pd.__version__.split(".")[0]) >= 3:
        return True
    return pd.options.mode.copy_on_write is True


SessionListener = Callable[[Session, str], None]


class HolderCore:
    """The holder's protocol endpoint.

    Parameters
    ----------
    features : pandas.DataFrame
        The holder's feature table, indexed by enterprise id (USCC). Column names are the
        feature names the holder publishes to banks.
    name : str
        The holder's name, shown to banks.
    policy : HolderPolicy, optional
    consent, auditor, models, loans
        See :mod:`fedcredit.protocol.hooks`; in-memory defaults allow everything.
    middleware : sequence of Middleware, optional
        Outermost first; default: :func:`~fedcredit.protocol.middleware.audit_refusals`.
    """

    def __init__(self, features: pd.DataFrame, name: str = "holder",
                 policy: HolderPolicy | None = None, consent=None, auditor=None, models=None,
                 middleware: Sequence[Middleware] | None = None, loans=None):
        self.name = name
        self.policy = policy or HolderPolicy()
        self.consent = consent or AllowAll()
        self.auditor = auditor if auditor is not None else MemoryAuditor()
        self.models = models if models is not None else MemoryModelStore()
        self.loans = loans if loans is not None else MemoryLoanBook()
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._listeners: list[SessionListener] = []
        self.last_timings: dict[str, float] = {}
        #: the feature table's version, sent in SessionOpened: 0 for the first table, one
        #: more per :meth:`set_features` (the holder service sets its store's version)
        self.features_version = 0
        self.set_features(features, version=0)
        self._handlers: dict[type, Callable] = {
            m.Ping: _ping, m.OpenSession: _open_session, m.CloseSession: _close_session,
            **holder_handlers()}
        mws = [audit_refusals()] if middleware is None else list(middleware)
        self._chain = compose(mws, self._dispatch)

    # -- data -----------------------------------------------------------------------------
    def set_features(self, features: pd.DataFrame, version: int | None = None) -> None:
        """Serve ``features`` from the next request on, as ``version`` (default: one more
        than the table it replaces)."""
        if not isinstance(features, pd.DataFrame):
            raise InvalidInput("the holder's features must be a pandas DataFrame")
        idx = features.index.astype(str)
        if idx.has_duplicates:
            raise InvalidInput("the holder's feature table has duplicate enterprise ids")
        features = features.copy(deep=not _copy_on_write())  # a copy the caller cannot change
        features.index = idx
        self.features = features
        self.feature_names = [str(c) for c in features.columns]
        self._known: frozenset | None = None
        self.features_version = self.features_version + 1 if version is None else int(version)
        release_freed_memory()  # the id check's and the table before's pages (~0.1 GB per 1M)

    def known_ids(self) -> frozenset:
        """The holder's ids as a set: membership of 100k ids in microseconds, not seconds."""
        if self._known is None:
            self._known = frozenset(self.features.index.tolist())
        return self._known

    def consented_ids(self, bank: str, purpose: str) -> list[str]:
        ids = self.features.index.tolist()
        mask = self._consent_flags(bank, purpose, ids)
        return ids if mask.all() else [i for i, ok in zip(ids, mask) if ok]

    def consent_mask(self, s: Session, ids: list[str]) -> np.ndarray:
        """Re-checked at every request: a revoked consent takes effect at the next one."""
        return self._consent_flags(s.bank, s.purpose, ids)

    def _consent_flags(self, bank: str, purpose: str, ids: list[str]) -> np.ndarray:
        mask = np.asarray(self.consent.allowed(bank, purpose, ids), dtype=bool)
        if mask.shape != (len(ids),):  # never serve more (or fewer) than was asked about
            raise InvalidInput(f"the consent registry answered {mask.size} flags for "
                               f"{len(ids)} enterprises")
        return mask

    def session_columns(self, bank: str, purpose: str) -> list[str]:
        """The holder columns ``bank`` may use for ``purpose`` now (``policy.columns``)."""
        return self.policy.columns_for(bank, purpose, self.feature_names)

    def require_columns(self, s: Session, columns: Sequence[str], what: str) -> None:
        """Refuse ``what`` when it needs a column the column policy no longer allows."""
        allowed = set(self.session_columns(s.bank, s.purpose))
        barred = [c for c in columns if c not in allowed]
        if barred:
            raise PolicyViolation(
                f"{what} uses holder column(s) {barred} that the holder's column policy no "
                f"longer allows bank {s.bank!r} for purpose {s.purpose!r}; train a new model")

    def stored_model(self, s: Session, trees: Sequence[int] = ()) -> StoredModel:
        """The scoring session's stored model, loaded and parsed once per session (again
        when it lacks a tree asked for: a model still being trained grows)."""
        hit = s.cache.get("model")
        if hit is None or any(int(t) not in hit.trees for t in trees):
            hit = s.cache["model"] = self.models.load(s.model_id)
        return hit

    def aligned_features(self, s: Session) -> pd.DataFrame:
        """The session's columns (fixed when it opened) of its aligned rows."""
        if s.aligned_ids is None:
            raise ProtocolError("this step needs an aligned session (run PSI first)")
        return self.features.reindex(index=s.aligned_ids, columns=s.columns)

    def scoring_rows(self, s: Session, ids: Sequence[str],
                     model: StoredModel) -> tuple[pd.DataFrame, np.ndarray]:
        """The holder's rows of ``model``'s columns for ids a bank asks to score, and which
        of them are served.

        Unknown ids and enterprises without a current consent get missing values: the
        holder's data is not used for them. A model that needs a column the column policy
        has since withdrawn is refused.
        """
        if len(ids) > self.policy.max_predict_ids:
            raise ResourceLimit(f"{len(ids)} ids in one request; the holder answers at most "
                                f"{self.policy.max_predict_ids}")
        self.require_columns(s, model.columns, f"model {model.model_id!r}")
        ids = [str(i) for i in ids]
        rows = self.features.reindex(index=ids, columns=model.columns)
        known = self.known_ids()
        present = np.fromiter((i in known for i in ids), dtype=bool, count=len(ids))
        served = self.consent_mask(s, ids) & present
        if not served.all():
            rows.loc[~served] = np.nan
        return rows, served

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, caller: Caller, requests: Iterator) -> Iterator:
        requests = iter(requests)
        first = next(requests, None)
        if first is None:
            raise ProtocolError("empty request")
        yield from self._chain(Request(self, caller, first, requests))

    def _dispatch(self, req: Request) -> Iterator:
        handler = self._handlers.get(type(req.first))
        if handler is None:
            raise ProtocolError(f"the holder does not serve {type(req.first).__name__} requests")
        allowed = self.policy.allowed_banks
        if allowed is not None and req.caller.bank not in allowed:
            raise PolicyViolation(f"bank {req.caller.bank!r} is not served by this holder")
        self.expire_idle()
        yield from handler(self, req.caller, req.first, req.rest)

    def audit(self, caller: Caller, session: Session | None, operation: str, enterprises: int,
              detail: str = "", ids: Sequence[str] | None = None) -> None:
        """Record one answered request; durable before the answer leaves.

        ``ids``: the enterprises whose data the request used (aligned, trained on, scored),
        kept by the auditor as the per-enterprise use record."""
        self.auditor.record(bank=caller.bank, purpose=session.purpose if session else "",
                            operation=operation, enterprises=int(enterprises),
                            session=session.id if session else "", detail=detail,
                            ids=None if ids is None else [str(i) for i in ids])

    # -- sessions ---------------------------------------------------------------------------
    def session(self, caller: Caller, session_id: str, task: str | None = None) -> Session:
        """The caller's open session ``session_id`` (of ``task``, when given)."""
        s = self.find_session(session_id)
        if s is None or s.bank != caller.bank:
            raise SessionNotFound(
                f"session {session_id[:16]!r} is unknown to the holder (never opened, closed, "
                "expired, or the holder restarted): open a new session")
        if task is not None and s.task != task:
            raise ProtocolError(f"session {s.id[:16]} is a {s.task} session, not a {task} one")
        s.last_used = time.time()
        return s

    def open_sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def find_session(self, session_id: str) -> Session | None:
        with self._lock:
            return self._sessions.get(session_id)

    def on_session_end(self, listener: SessionListener) -> None:
        """Call ``listener(session, reason)`` when a session closes, expires or is dropped."""
        self._listeners.append(listener)

    def drop(self, s: Session, reason: str) -> None:
        """End a session and release its state (reason: closed, expired, refused ...)."""
        with self._lock:
            known = self._sessions.pop(s.id, None) is not None
        watch = getattr(s.state, "watch", None)
        if watch is not None:
            self.last_timings = watch.as_dict()  # for benchmarks' time budgets
        s.replace_state(None)
        if known:
            for listener in self._listeners:
                listener(s, reason)

    def expire_idle(self) -> list[Session]:
        cutoff = time.time() - self.policy.session_idle_seconds
        with self._lock:
            idle = [s for s in self._sessions.values() if s.last_used < cutoff]
        for s in idle:
            self.drop(s, "expired")
        return idle

    def _add_session(self, s: Session) -> None:
        with self._lock:
            if len(self._sessions) >= self.policy.max_concurrent_sessions:
                raise ResourceLimit("the holder serves its maximum number of sessions; retry later")
            mine = sum(1 for o in self._sessions.values() if o.bank == s.bank)
            if mine >= self.policy.max_sessions_per_bank:
                raise ResourceLimit(f"bank {s.bank!r} holds the {mine} open sessions the "
                                    "holder allows one bank; close one or retry later")
            self._sessions[s.id] = s


PassiveParty = HolderCore  # the literature's name for the holder (SecureBoost, FATE)


# -- the generic steps ------------------------------------------------------------------------
#: other holders a session may name, and the longest name
MAX_PARTIES, MAX_PARTY_NAME = 16, 64


def check_parties(parties: Sequence[str]) -> list[str]:
    """The other holders a bank names when it opens a session with several (they go into
    the audit record, so a name is printable, without spaces or commas, and short)."""
    names = [str(p) for p in parties]
    if len(names) > MAX_PARTIES:
        raise InvalidInput(f"a session names {len(names)} other holders; at most {MAX_PARTIES}")
    for p in names:
        if not 0 < len(p) <= MAX_PARTY_NAME or not p.isprintable() or any(
                c in p for c in " ,="):
            raise InvalidInput(f"other holder name {p[:80]!r}: 1-{MAX_PARTY_NAME} printable "
                               "characters without spaces, commas or '='")
    return names


def _ping(core: HolderCore, caller: Caller, msg: m.Ping, rest) -> Iterator:
    yield m.Pong(holder_name=core.name, library_version=__version__)


def _open_session(core: HolderCore, caller: Caller, msg: m.OpenSession, rest) -> Iterator:
    """**Privacy**: the bank learns the holder's name, the published names of the columns
    the column policy lets it use, and the policy values it must respect (node floor, trees
    per session)."""
    pol = core.policy
    if msg.task not in TASKS:
        raise InvalidInput(f"unknown task {msg.task!r}; expected one of {TASKS}")
    if msg.purpose not in pol.allowed_purposes:
        raise PolicyViolation(f"purpose {msg.purpose!r} is not allowed by the holder's policy")
    key: Any = None
    if msg.task in KEYED_TASKS:
        key = pol.accept_key(msg.public_key, msg.scheme)
    elif msg.task == "score":
        stored = core.models.load(msg.model_id)
        if stored.bank != caller.bank:
            raise SessionNotFound(f"the holder knows no model {msg.model_id!r} for this bank")
    columns = core.session_columns(caller.bank, msg.purpose)
    if not columns and msg.task in KEYED_TASKS:
        raise PolicyViolation(f"the holder's column policy allows bank {caller.bank!r} no "
                              f"columns for purpose {msg.purpose!r}")
    parties = check_parties(msg.parties)
    s = Session(secrets.token_hex(16), caller.bank, msg.purpose, msg.task, key,
                model_id=msg.model_id, columns=columns)
    core._add_session(s)
    core.audit(caller, s, f"open_session:{msg.task}", 0,
               f"scheme={msg.scheme} key_bits={key.bits if key else 0}"
               + (f" parties={','.join(parties)}" if parties else ""))
    yield m.SessionOpened(session_id=s.id, holder_name=core.name,
                          feature_names=list(columns),
                          min_node_samples=pol.min_node_samples,
                          max_trees=pol.max_trees_per_session,
                          features_version=int(core.features_version))


def _close_session(core: HolderCore, caller: Caller, msg: m.CloseSession, rest) -> Iterator:
    s = core.session(caller, msg.session_id)
    core.drop(s, "closed")
    core.audit(caller, s, "close_session", 0)
    yield m.Ack(session_id=s.id)
