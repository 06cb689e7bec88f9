"""Scoring sessions reused across calls: online scoring, one enterprise per call, costs one
request per call, not a session.

:class:`ScoringSessions` keeps one ``"score"`` session per channel and model id, reopens it
when the holder expired or restarted it, and closes the least recently used beyond
:data:`MAX_CACHED_SESSIONS`; sessions of garbage-collected estimators are closed by the next
session opened here, and a refusal for want of a session slot releases the cached ones.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from ..errors import InvalidInput, ProtocolError, ResourceLimit, SessionNotFound
from ..protocol.channel import Channel, InProcessChannel
from ..protocol.session import BankSession


def as_channel(holder) -> Channel:
    """The channel to the holder: a channel as given, a local holder wrapped in-process.

    Parameters
    ----------
    holder : Channel or HolderCore
        What ``fit`` and ``predict_proba`` accept as ``holder=``.

    Returns
    -------
    Channel
    """
    if isinstance(holder, Channel):
        return holder
    from ..protocol.core import HolderCore

    if isinstance(holder, HolderCore):
        return InProcessChannel(holder)
    raise InvalidInput("holder= must be a channel (fedcredit.connect(...), InProcessChannel) "
                       "or a PassiveParty")


T = TypeVar("T")

#: scoring sessions an estimator keeps open at once (one per channel and model id); the
#: least recently used is closed beyond it
MAX_CACHED_SESSIONS = 2

_registry_lock = threading.Lock()
CACHE_CREATE_LOCK = threading.Lock()
_live_caches: weakref.WeakSet[ScoringSessions] = weakref.WeakSet()
#: sessions of estimators that were garbage-collected: closed by the next session opened
#: here (a finaliser may run anywhere, e.g. inside a lock, so it only hands them over)
_orphans: deque[BankSession] = deque()


def _close_orphans() -> int:
    n = 0
    while True:
        try:
            session = _orphans.popleft()
        except IndexError:
            return n
        session.close()
        n += 1


def _orphan(entries: dict) -> None:
    _orphans.extend(session for _, session in list(entries.values()))


def release_scoring_sessions() -> int:
    """Close every scoring session the estimators of this process keep open.

    Estimators reopen one at their next scoring call. Opening a session calls this once
    when the holder refuses for lack of session slots (a bank's open sessions count against
    ``max_sessions_per_bank``), so cached scoring sessions never lock training out.

    Returns
    -------
    int
        How many sessions were closed.
    """
    with _registry_lock:
        caches = list(_live_caches)
    return _close_orphans() + sum(cache.close() for cache in caches)


def open_session(open_: Callable[[], BankSession]) -> BankSession:
    """``open_()``; when the holder has no session slot left, release the cached scoring
    sessions of this process and try once more."""
    _close_orphans()
    try:
        return open_()
    except ResourceLimit:
        if not release_scoring_sessions():
            raise
        return open_()


class ScoringSessions:
    """Open ``"score"`` sessions of one estimator, by channel (its identity) and model id.

    A scoring call reuses the session of its channel and model; when the holder no longer
    knows it (``SessionNotFound``: expired, closed, holder restarted) it is reopened once and
    the request repeated. At most :data:`MAX_CACHED_SESSIONS` stay open, the least recently
    used closed first. Thread-safe: the lock guards the table only, no request runs under
    it (the holder serialises requests on one session).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: (id(holder), model id) -> (holder, session); holding the holder keeps its id unique
        self._open: OrderedDict[tuple[int, str], tuple[Any, BankSession]] = OrderedDict()
        weakref.finalize(self, _orphan, self._open).atexit = False
        with _registry_lock:
            _live_caches.add(self)

    def run(self, holder, model_id: str, request: Callable[[BankSession], T],
            parties: tuple[str, ...] = ()) -> T:
        """``request(session)`` on the cached scoring session of ``holder`` and ``model_id``
        (``parties``: the model's other holders, named when a session opens)."""
        session = self._session(holder, model_id, parties)
        try:
            return request(session)
        except SessionNotFound:
            self._forget(holder, model_id, session)
        return request(self._session(holder, model_id, parties))

    def close(self) -> int:
        """Close every cached session (best effort); returns how many there were."""
        with self._lock:
            entries = list(self._open.values())
            self._open.clear()
        for _, session in entries:
            session.close()
        return len(entries)

    def _session(self, holder, model_id: str, parties: tuple[str, ...] = ()) -> BankSession:
        key = (id(holder), model_id)
        with self._lock:
            hit = self._open.get(key)
            if hit is not None:
                self._open.move_to_end(key)
                return hit[1]
        channel = as_channel(holder)
        session = open_session(lambda: BankSession(channel, "score", model_id=model_id,
                                                   parties=parties))
        surplus = []
        with self._lock:
            hit = self._open.get(key)
            if hit is not None:  # another thread opened one meanwhile: keep the first
                surplus.append(session)
                session = hit[1]
            else:
                self._open[key] = (holder, session)
                while len(self._open) > MAX_CACHED_SESSIONS:
                    surplus.append(self._open.popitem(last=False)[1][1])
        for s in surplus:
            s.close()
        return session

    def _forget(self, holder, model_id: str, session: BankSession) -> None:
        key = (id(holder), model_id)
        with self._lock:
            hit = self._open.get(key)
            if hit is not None and hit[1] is session:  # not one another thread reopened
                del self._open[key]


#: what an estimator's ``uncovered`` gives an enterprise the holder has no data or consent for
UNCOVERED = ("score", "refuse")


def with_coverage(est, raw: np.ndarray, covered, return_coverage: bool):
    """``raw`` (NaN for uncovered rows when ``est.uncovered == "refuse"``), and the coverage
    flags when asked.

    ``covered`` is None when the holder did not say (older than coverage) or was not asked
    (a model whose trees are all the bank's): then only ``uncovered="score"`` without
    ``return_coverage`` can answer."""
    rule = getattr(est, "uncovered", "score")
    if rule not in UNCOVERED:
        raise InvalidInput(f"uncovered must be one of {', '.join(UNCOVERED)}, got {rule!r}")
    if covered is None:
        if return_coverage or rule == "refuse":
            raise ProtocolError("the holder did not say which enterprises it had data and "
                                "consent for (a holder older than coverage, or a model that "
                                "never asks it): score with uncovered='score' and without "
                                "return_coverage")
        return raw
    covered = np.asarray(covered, dtype=bool)
    if rule == "refuse" and not covered.all():
        raw = np.where(covered, raw, np.nan)
    return (raw, covered) if return_coverage else raw
