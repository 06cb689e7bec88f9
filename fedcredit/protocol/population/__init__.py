"""Pre-credit population scoring: the holder enumerates the enterprises that authorise this
bank for the purpose, page by page, and scores them with a stored model.

``messages`` (what crosses the wire), ``bank`` (:func:`~.bank.score_population`), ``holder``
(its two steps: list a page, score a listed page), ``math`` (the page rule and the answer
layout both sides share).
"""
