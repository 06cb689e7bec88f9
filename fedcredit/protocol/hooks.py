"""What the holder's core needs from its surroundings: consent, audit, model storage.

The protocol core runs with the simple in-memory versions here (tests, notebooks). The
holder service (:mod:`fedcredit.holder`) supplies persistent ones: a SQLite consent
registry, a hash-chained audit log, model lookup tables that survive a restart.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..binning import BinMapper
from ..errors import SessionNotFound
from .leafpaths import LeafPaths, holder_paths


class ConsentProvider(Protocol):
    def allowed(self, bank: str, purpose: str, ids: Sequence[str]) -> np.ndarray:
        """Boolean mask: which enterprises currently authorise this bank for this purpose."""


class AllowAll:
    """Consent for everything (tests and notebooks without a registry)."""

    def allowed(self, bank: str, purpose: str, ids: Sequence[str]) -> np.ndarray:
        return np.ones(len(ids), dtype=bool)


class Auditor(Protocol):
    def record(self, *, bank: str, purpose: str, operation: str, enterprises: int,
               session: str, detail: str = "", ids: Sequence[str] | None = None) -> None:
        """Persist one request record, with the enterprises it used (``ids``, when the
        request used any); must be durable before the answer leaves."""


class MemoryAuditor:
    def __init__(self):
        self.records: list[dict] = []
        self._lock = threading.Lock()

    def record(self, *, bank, purpose, operation, enterprises, session, detail="", ids=None):
        with self._lock:
            self.records.append({"bank": bank, "purpose": purpose, "operation": operation,
                                 "enterprises": int(enterprises), "session": session,
                                 "detail": detail, "ids": None if ids is None else list(ids)})


@dataclass
class StoredModel:
    """The holder's half of a trained model: its own bins, its splits, the tree shapes."""

    model_id: str
    bank: str
    purpose: str
    feature_names: list[str]
    mapper: dict  # BinMapper.to_dict() of the holder's features (never leaves the holder)
    #: record id -> (feature, bin, missing goes left)
    splits: dict[int, tuple[int, int, bool]] = field(default_factory=dict)
    trees: dict[int, list[tuple[int, int, int, str, int]]] = field(default_factory=dict)
    #: the holder columns the model reads (checked against the column policy at scoring)
    columns: list[str] = field(default_factory=list)
    #: per feature of ``mapper``, its training rows per bin (missing bin last): the
    #: reference of the characteristic stability index (empty for models stored before)
    bin_counts: list[list[int]] = field(default_factory=list)
    _binner: Any = field(default=None, init=False, repr=False, compare=False)
    _paths: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def bin_mapper(self) -> BinMapper:
        """The holder's binning of a SecureBoost model, parsed once per loaded model."""
        if self._binner is None:
            self._binner = BinMapper.from_dict(self.mapper)
        return self._binner

    def leaf_paths(self, trees: Sequence[int]) -> LeafPaths:
        """The holder's compiled scoring paths of ``trees``, once per loaded model and tree
        set (a few sets stay: scoring asks for all trees, training for one at a time)."""
        key = tuple(int(t) for t in trees)
        hit = self._paths.get(key)
        if hit is None:
            if len(self._paths) >= 8:
                self._paths.clear()
            hit = self._paths[key] = holder_paths(self.trees, self.splits, key)
        return hit

    def to_json(self) -> str:
        return json.dumps({"model_id": self.model_id, "bank": self.bank, "purpose": self.purpose,
                           "feature_names": self.feature_names, "mapper": self.mapper,
                           "splits": {str(k): list(v) for k, v in self.splits.items()},
                           "trees": {str(k): v for k, v in self.trees.items()},
                           "columns": self.columns, "bin_counts": self.bin_counts})

    @classmethod
    def from_json(cls, text: str) -> StoredModel:
        d = json.loads(text)
        # models stored before column policies read the columns they were trained on
        columns = d.get("columns") or model_columns(d["mapper"]) or d["feature_names"]
        return cls(d["model_id"], d["bank"], d["purpose"], d["feature_names"], d["mapper"],
                   {int(k): (int(v[0]), int(v[1]), bool(v[2])) for k, v in d["splits"].items()},
                   {int(k): [tuple(n) for n in v] for k, v in d["trees"].items()},
                   list(columns),
                   [[int(c) for c in counts] for counts in d.get("bin_counts", [])])


def model_columns(mapper: dict) -> list[str]:
    """The source columns a stored model reads, from its binning or preparation (models
    stored before ``columns`` was recorded)."""
    def names(spec):
        return [str(f["name"]) for f in spec.get("features", spec.get("columns", []))]
    if "prep" in mapper:  # hetero LR, standardised
        return names(mapper["prep"])
    if "binning" in mapper:  # hetero LR on WOE: its binning reads every binned column
        return names(mapper["binning"]["mapper"])
    return names(mapper.get("mapper", mapper))  # SecureBoost, or a WOE binning


class ModelStore(Protocol):
    def save(self, model: StoredModel) -> None: ...

    def load(self, model_id: str) -> StoredModel: ...


class MemoryModelStore:
    def __init__(self):
        self._models: dict[str, str] = {}
        self._lock = threading.Lock()

    def save(self, model: StoredModel) -> None:
        with self._lock:
            self._models[model.model_id] = model.to_json()

    def load(self, model_id: str) -> StoredModel:
        with self._lock:
            text = self._models.get(model_id)
        if text is None:
            raise SessionNotFound(f"the holder knows no model {model_id!r}")
        return StoredModel.from_json(text)


class LoanBook(Protocol):
    def record(self, bank: str, loans) -> int:
        """Keep loan outcomes a bank reports (a checked DataFrame); returns rows kept."""


class MemoryLoanBook:
    """Loan reports kept in memory (tests and notebooks)."""

    def __init__(self):
        self.reports: list[tuple[str, object]] = []
        self._lock = threading.Lock()

    def record(self, bank: str, loans) -> int:
        with self._lock:
            self.reports.append((bank, loans))
        return len(loans)
