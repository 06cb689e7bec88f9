"""Hetero logistic regression without an arbiter (and scoring by the holder's partial score).

``messages`` (what crosses the wire), ``bank`` (the bank's steps), ``holder`` (the holder's
state and steps), ``math`` (fixed point, the Chebyshev expansion, the slot layout, Adam).
The protocol is described on :class:`fedcredit.models.HeteroLogisticRegression`.
"""
