"""Alignment: ECDH-PSI between the bank's ids and the holder's consented ids.

``messages`` (what crosses the wire), ``bank`` (:func:`~.bank.align`), ``holder`` (its two
steps), ``math`` (the row order both sides agree on). The group arithmetic itself is in
:mod:`fedcredit.psi`.
"""
