"""``fedcredit holder admin ...``: the platform portal's consent API credential."""
from __future__ import annotations


def register(hs) -> None:
    """Add this module's commands to ``fedcredit holder``."""
