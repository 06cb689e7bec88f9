"""The bank's decision service: a model and one long-lived mTLS channel to the holder behind a
small HTTP JSON API (``fedcredit bank serve``), for the bank's loan-origination system."""
from __future__ import annotations

from .scorer import Scorer, load_model

__all__ = ["Scorer", "load_model"]
