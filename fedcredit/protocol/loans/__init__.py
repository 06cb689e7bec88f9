"""Loan outcomes: a bank reports the loans it granted through the platform, and later
how they performed (repaid, overdue, default).

``messages`` (what crosses the wire), ``bank`` (:func:`~.bank.report_loans`), ``holder``
(its one step: validate, check consent, store, audit), ``math`` (the rules every row obeys,
applied by both sides).
"""
