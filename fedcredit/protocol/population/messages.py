"""Messages of population scoring: list a page of consented enterprises, then score it.

A page is scored with the answer scoring by id gives (``LeafMasks`` for a SecureBoost
model, ``PartialScores`` for a logistic regression), so a listed enterprise shows the bank
exactly what scoring it by id would.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PopulationPage:
    """The next ``limit`` enterprises (in id order, after ``after``) that authorise this bank
    for the session's purpose now."""

    session_id: str = ""
    after: str = ""  # the last id of the previous page; "" for the first
    limit: int = 0  # ids per page; the holder answers at most its max_predict_ids


@dataclass
class PopulationIds:
    ids: list[str] = field(default_factory=list)  # increasing, each after the request's after
    more: bool = False  # consented enterprises follow the last one


@dataclass
class PopulationScoreRequest:
    """Score ids this session listed (a page, or part of one)."""

    session_id: str = ""
    ids: list[str] = field(default_factory=list)


#: in wire order (field and envelope tags are append-only)
MESSAGE_TYPES: tuple[type, ...] = (PopulationPage, PopulationIds, PopulationScoreRequest)
