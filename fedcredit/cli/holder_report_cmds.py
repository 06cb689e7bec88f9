"""``fedcredit holder report --uscc X``: every use of one enterprise's data."""
from __future__ import annotations


def register(hs) -> None:
    """Add this module's commands to ``fedcredit holder``."""
