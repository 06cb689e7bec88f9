"""What a protocol's holder steps may use of the core: the interface, not the class.

Steps and middleware are written against :class:`HolderContext`; :class:`~.core.HolderCore`
implements it. So a protocol package depends on this page, never on the core's internals,
and the core depends on the packages only through the registry.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd

from .channel import Caller
from .hooks import Auditor, LoanBook, ModelStore, StoredModel
from .policy import HolderPolicy
from .session import Session


class HolderContext(Protocol):
    policy: HolderPolicy
    models: ModelStore
    auditor: Auditor
    loans: LoanBook
    feature_names: list[str]
    #: the feature table's version (sent in SessionOpened)
    features_version: int

    def session(self, caller: Caller, session_id: str, task: str | None = None) -> Session:
        """The caller's open session (of ``task``, when given), or a clear error."""

    def find_session(self, session_id: str) -> Session | None: ...

    def drop(self, s: Session, reason: str) -> None:
        """End a session and release its state."""

    def audit(self, caller: Caller, session: Session | None, operation: str, enterprises: int,
              detail: str = "", ids: Sequence[str] | None = None) -> None:
        """Record one answered request (and the enterprises it used); durable before the
        answer leaves."""

    def consented_ids(self, bank: str, purpose: str) -> list[str]: ...

    def consent_mask(self, s: Session, ids: list[str]) -> np.ndarray: ...

    def stored_model(self, s: Session, trees: Sequence[int] = ()) -> StoredModel: ...

    def aligned_features(self, s: Session) -> pd.DataFrame: ...

    def require_columns(self, s: Session, columns: Sequence[str], what: str) -> None: ...

    def scoring_rows(self, s: Session, ids: Sequence[str],
                     model: StoredModel) -> tuple[pd.DataFrame, np.ndarray]: ...
