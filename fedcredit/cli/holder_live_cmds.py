"""``fedcredit holder policy reload`` and ``fedcredit holder bank suspend|resume``: changes
the running server applies at the next request, without a restart."""
from __future__ import annotations


def register(hs) -> None:
    """Add this module's commands to ``fedcredit holder``."""
