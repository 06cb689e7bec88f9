"""``fedcredit bank report-loans``: the bank reports loan outcomes to the holder."""
from __future__ import annotations


def register(bs) -> None:
    """Add this module's commands to ``fedcredit bank``."""
