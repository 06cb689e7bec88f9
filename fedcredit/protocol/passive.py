"""The passive party (the credit-data holder): every protocol step it serves, once.

Both transports call :meth:`PassiveParty.handle` with the caller's identity and an iterator
of request messages; it yields the responses. Each step checks the session, the policy and
consent, writes an audit record, and only then answers. Nothing the holder returns carries a
feature value, a bin edge or a threshold.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from .. import __version__
from ..crypto import load_public_key
from ..errors import (InsecureParameters, InvalidInput, PolicyViolation, ProtocolError,
                      ResourceLimit, SessionNotFound)
from ..psi import PsiHolder, split_points
from . import messages as m
from .channel import Caller
from .hooks import AllowAll, HolderPolicy, MemoryAuditor, MemoryModelStore
from .packing import rows_from_bytes
from .passive_boost import HolderBoost, reachable_leaves

TASKS = ("align", "train", "score", "woe", "lr")


@dataclass
class Session:
    id: str
    bank: str
    purpose: str
    task: str
    public_key: object | None
    model_id: str = ""
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    psi: PsiHolder | None = None
    aligned_ids: list[str] | None = None
    boost: HolderBoost | None = None
    extra: dict = field(default_factory=dict)  # state of other protocols (LR, WOE)
    lock: threading.Lock = field(default_factory=threading.Lock)


class PassiveParty:
    """The holder's protocol endpoint.

    Parameters
    ----------
    features : pandas.DataFrame
        The holder's feature table, indexed by enterprise id (USCC). Column names are the
        feature names the holder publishes to banks.
    name : str
        The holder's name, shown to banks.
    policy, consent, auditor, models
        See :mod:`fedcredit.protocol.hooks`; in-memory defaults allow everything.
    """

    def __init__(self, features: pd.DataFrame, name: str = "holder", policy: HolderPolicy | None = None,
                 consent=None, auditor=None, models=None):
        self.name = name
        self.policy = policy or HolderPolicy()
        self.consent = consent or AllowAll()
        self.auditor = auditor if auditor is not None else MemoryAuditor()
        self.models = models if models is not None else MemoryModelStore()
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.last_timings: dict[str, float] = {}
        self.set_features(features)
        self._handlers: dict[type, Callable] = {
            m.Ping: self._ping,
            m.OpenSession: self._open_session,
            m.CloseSession: self._close_session,
            m.PsiBlinded: self._psi,
            m.PsiAlign: self._psi_align,
            m.BoostStart: self._boost_start,
            m.TreeStart: self._tree_start,
            m.LayerRequest: self._layer,
            m.SplitRequest: self._split,
            m.TreeFinish: self._tree_finish,
            m.ModelFinish: self._model_finish,
            m.PredictRequest: self._predict,
        }
        from .passive_lr import register_lr
        from .passive_woe import register_woe

        register_lr(self)
        register_woe(self)

    # -- data -----------------------------------------------------------------------------
    def set_features(self, features: pd.DataFrame) -> None:
        if not isinstance(features, pd.DataFrame):
            raise InvalidInput("the holder's features must be a pandas DataFrame")
        idx = features.index.astype(str)
        if idx.has_duplicates:
            raise InvalidInput("the holder's feature table has duplicate enterprise ids")
        features = features.copy()
        features.index = idx
        self.features = features
        self.feature_names = [str(c) for c in features.columns]
        self._known = None

    def _known_ids(self) -> frozenset:
        """The holder's ids as a set: membership of 100k ids in microseconds, not seconds."""
        if self._known is None:
            self._known = frozenset(self.features.index.tolist())
        return self._known

    def register(self, message_type: type, handler: Callable) -> None:
        """Add a protocol step (used by other protocols: logistic regression, WOE)."""
        self._handlers[message_type] = handler

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, caller: Caller, requests: Iterator) -> Iterator:
        first = next(requests, None)
        if first is None:
            raise ProtocolError("empty request")
        handler = self._handlers.get(type(first))
        if handler is None:
            raise ProtocolError(f"the holder does not serve {type(first).__name__} requests")
        self._check_bank(caller)
        self._expire_idle()
        yield from handler(caller, first, requests)

    def _check_bank(self, caller: Caller) -> None:
        allowed = self.policy.allowed_banks
        if allowed is not None and caller.bank not in allowed:
            raise PolicyViolation(f"bank {caller.bank!r} is not served by this holder")

    def _audit(self, caller: Caller, session: Session | None, operation: str, enterprises: int,
               detail: str = "") -> None:
        self.auditor.record(bank=caller.bank, purpose=session.purpose if session else "",
                            operation=operation, enterprises=int(enterprises),
                            session=session.id if session else "", detail=detail)

    # -- sessions ---------------------------------------------------------------------------
    def session(self, caller: Caller, session_id: str) -> Session:
        with self._lock:
            s = self._sessions.get(session_id)
        if s is None or s.bank != caller.bank:
            raise SessionNotFound(
                f"session {session_id[:16]!r} is unknown to the holder (never opened, closed, "
                "expired, or the holder restarted): open a new session")
        s.last_used = time.time()
        return s

    def _expire_idle(self) -> None:
        cutoff = time.time() - self.policy.session_idle_seconds
        with self._lock:
            idle = [s for s in self._sessions.values() if s.last_used < cutoff]
        for s in idle:
            self._drop(s)

    def _ping(self, caller, msg, rest):
        yield m.Pong(holder_name=self.name, library_version=__version__)

    def _open_session(self, caller: Caller, msg: m.OpenSession, rest):
        pol = self.policy
        if msg.task not in TASKS:
            raise InvalidInput(f"unknown task {msg.task!r}; expected one of {TASKS}")
        if msg.purpose not in pol.allowed_purposes:
            raise PolicyViolation(f"purpose {msg.purpose!r} is not allowed by the holder's policy")
        key = None
        if msg.task not in ("score", "align"):
            key = load_public_key(msg.public_key)
            if key.scheme != msg.scheme:
                raise InvalidInput(f"the key is a {key.scheme} key, the session says {msg.scheme}")
            if key.bits < pol.min_key_bits and not pol.allow_insecure_keys:
                raise InsecureParameters(f"a {key.bits}-bit key is below the holder's "
                                         f"{pol.min_key_bits}-bit minimum")
        elif msg.task == "score":
            stored = self.models.load(msg.model_id)
            if stored.bank != caller.bank:
                raise SessionNotFound(f"the holder knows no model {msg.model_id!r} for this bank")
        with self._lock:
            if len(self._sessions) >= pol.max_sessions:
                raise ResourceLimit("the holder serves its maximum number of sessions; retry later")
            sid = secrets.token_hex(16)
            s = Session(sid, caller.bank, msg.purpose, msg.task, key, model_id=msg.model_id)
            self._sessions[sid] = s
        self._audit(caller, s, f"open_session:{msg.task}", 0,
                    f"scheme={msg.scheme} key_bits={key.bits if key else 0}")
        yield m.SessionOpened(session_id=sid, holder_name=self.name,
                              feature_names=list(self.feature_names),
                              min_node_samples=pol.min_node_samples, max_trees=pol.max_trees)

    def _drop(self, s: Session) -> None:
        with self._lock:
            self._sessions.pop(s.id, None)
        if s.boost is not None:
            s.boost.close()
            self.last_timings = s.boost.watch.as_dict()  # for benchmarks' time budgets

    def _close_session(self, caller, msg: m.CloseSession, rest):
        s = self.session(caller, msg.session_id)
        self._drop(s)
        self._audit(caller, s, "close_session", 0)
        yield m.Ack(session_id=s.id)

    # -- alignment --------------------------------------------------------------------------
    def consented_ids(self, bank: str, purpose: str) -> list[str]:
        ids = self.features.index.tolist()
        mask = np.asarray(self.consent.allowed(bank, purpose, ids), dtype=bool)
        return [i for i, ok in zip(ids, mask) if ok]

    def _psi(self, caller, first: m.PsiBlinded, rest):
        s = self.session(caller, first.session_id)
        with s.lock:
            offered = self.consented_ids(caller.bank, s.purpose)
            psi = PsiHolder(s.id.encode(), offered)
            chunks = [first.points]
            last = first.last
            for msg in rest:
                if not isinstance(msg, m.PsiBlinded) or msg.session_id != s.id:
                    raise ProtocolError("PSI stream mixes in other messages")
                chunks.append(msg.points)
                last = msg.last
            if not last:
                raise ProtocolError("the bank's PSI stream ended without its last chunk")
            bank_points = b"".join(chunks)
            doubled = psi.double_blind(bank_points)
            shuffled = psi.shuffled_points()
            s.psi = psi
            self._audit(caller, s, "psi", len(offered), f"bank_ids={len(bank_points) // 32}")
        for part in split_points(doubled):
            yield m.PsiDoubleBlinded(points=part)
        for part in split_points(shuffled):
            yield m.PsiHolderSet(points=part, total=len(offered))

    def _psi_align(self, caller, msg: m.PsiAlign, rest):
        s = self.session(caller, msg.session_id)
        with s.lock:
            if s.psi is None:
                raise ProtocolError("alignment needs a PSI exchange first")
            positions = rows_from_bytes(msg.positions, what="PSI positions")
            s.aligned_ids = s.psi.resolve(positions.tolist())
            s.psi = None
            self._audit(caller, s, "align", len(s.aligned_ids))
        yield m.Ack(session_id=s.id, count=len(s.aligned_ids))

    def aligned_features(self, s: Session) -> pd.DataFrame:
        if s.aligned_ids is None:
            raise ProtocolError("this step needs an aligned session (run PSI first)")
        return self.features.reindex(s.aligned_ids)

    def consent_mask(self, s: Session, ids: list[str]) -> np.ndarray:
        """Re-checked at every request: a revoked consent takes effect at the next one."""
        return np.asarray(self.consent.allowed(s.bank, s.purpose, ids), dtype=bool)

    # -- SecureBoost ------------------------------------------------------------------------
    def _train_session(self, caller, session_id: str) -> Session:
        s = self.session(caller, session_id)
        if s.task != "train":
            raise ProtocolError(f"session {s.id[:16]} is a {s.task} session, not a training one")
        return s

    def _boost(self, s: Session) -> HolderBoost:
        if s.boost is None:
            raise ProtocolError("send BoostStart before tree messages")
        return s.boost

    def _boost_start(self, caller, msg: m.BoostStart, rest):
        s = self._train_session(caller, msg.session_id)
        with s.lock:
            feats = self.aligned_features(s)
            rows = rows_from_bytes(msg.rows, len(feats), "training rows")
            if s.boost is not None:
                s.boost.close()
            s.boost = HolderBoost(feats, rows, s.public_key, self.policy, msg.max_bin,
                                  msg.min_child_samples, s.bank, s.purpose)
            self._audit(caller, s, "boost_start", len(rows))
            ready = m.BoostReady(n_features=len(self.feature_names),
                                 n_candidates=s.boost.n_candidates)
        yield ready

    def _tree_start(self, caller, msg: m.TreeStart, rest):
        s = self._train_session(caller, msg.session_id)
        with s.lock:
            boost = self._boost(s)
            feats_ids = s.aligned_ids or []
            rows = rows_from_bytes(msg.rows, len(feats_ids), "tree rows")
            consented = self.consent_mask(s, feats_ids)
            boost.start_tree(msg.tree, msg.slot_bits, rows, msg.key_fingerprint, consented)
            self._audit(caller, s, "tree_start", len(rows), f"tree={msg.tree}")
            for chunk in rest:
                if not isinstance(chunk, m.GradientChunk):
                    raise ProtocolError("a tree's gradient stream mixes in other messages")
                boost.add_gradients(chunk.offset, chunk.ciphertexts)
            count = boost.finish_gradients()
        yield m.Ack(session_id=s.id, count=count)

    def _layer(self, caller, msg: m.LayerRequest, rest):
        s = self._train_session(caller, msg.session_id)
        with s.lock:
            boost = self._boost(s)
            results = boost.layer(msg.tree, msg.tasks)
            self._audit(caller, s, "histograms", sum(boost.node_size(t.node_id) for t in msg.tasks),
                        f"tree={msg.tree} depth={msg.depth} nodes={len(msg.tasks)}")
        yield from results

    def _split(self, caller, msg: m.SplitRequest, rest):
        s = self._train_session(caller, msg.session_id)
        with s.lock:
            boost = self._boost(s)
            outcomes = boost.split(msg.tree, msg.choices)
            self._audit(caller, s, "split", sum(boost.node_size(c.node_id) for c in msg.choices),
                        f"tree={msg.tree} splits={len(msg.choices)}")
        yield m.SplitResult(outcomes=outcomes)

    def _tree_finish(self, caller, msg: m.TreeFinish, rest):
        s = self._train_session(caller, msg.session_id)
        with s.lock:
            boost = self._boost(s)
            boost.finish_tree(msg.tree, msg.nodes)
            self._save_model(s)
            self._audit(caller, s, "tree_finish", 0, f"tree={msg.tree}")
        yield m.Ack(session_id=s.id, count=len(boost.model.trees))

    def _model_finish(self, caller, msg: m.ModelFinish, rest):
        s = self._train_session(caller, msg.session_id)
        with s.lock:
            boost = self._boost(s)
            self._save_model(s)
            self._audit(caller, s, "model_finish", 0, f"model={boost.model.model_id}")
        yield m.ModelSaved(model_id=boost.model.model_id, n_trees=len(boost.model.trees))

    def _save_model(self, s: Session) -> None:
        self.models.save(s.boost.model)

    # -- scoring ----------------------------------------------------------------------------
    def _predict(self, caller, msg: m.PredictRequest, rest):
        s = self.session(caller, msg.session_id)
        with s.lock:
            if s.task == "train":
                model = self._boost(s).model
            elif s.task == "score":
                model = self.models.load(s.model_id)
            else:
                raise ProtocolError(f"a {s.task} session cannot score")
            if len(msg.ids) > self.policy.max_predict_ids:
                raise ResourceLimit(f"{len(msg.ids)} ids in one request; the holder answers at "
                                    f"most {self.policy.max_predict_ids}")
            ids = [str(i) for i in msg.ids]
            rows = self.features.reindex(ids)
            known = self._known_ids()
            present = np.fromiter((i in known for i in ids), dtype=bool, count=len(ids))
            consented = self.consent_mask(s, ids) & present
            rows.loc[~consented] = np.nan  # unknown or not consented: holder data unused
            trees = list(msg.trees) or sorted(model.trees)
            unknown = [t for t in trees if t not in model.trees]
            if unknown:
                raise InvalidInput(f"the model has no tree {unknown[0]}")
            answers = reachable_leaves(model, rows, trees)
            self._audit(caller, s, "predict", int(consented.sum()),
                        f"ids={len(ids)} trees={len(trees)}")
        for tree, (n_leaves, masks) in zip(trees, answers):
            yield m.LeafMasks(tree=tree, n_leaves=n_leaves, masks=masks)

