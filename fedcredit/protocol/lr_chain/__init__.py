"""Hetero logistic regression with several holders: a chain of sealed contractions.

``messages`` (what crosses the wire), ``bank`` (the bank's steps), ``holder`` (a holder's
place in the chain and its steps), ``math`` (the change of Chebyshev basis each holder
applies, the fixed point). It extends :mod:`fedcredit.protocol.logistic`: the sessions are
LR sessions, ``LrStart``/``LrStep``/``LrFinish`` unchanged.
"""
