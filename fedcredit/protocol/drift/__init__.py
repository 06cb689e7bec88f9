"""Post-loan drift: the characteristic stability index (CSI) of each holder feature over a
bank's watchlist, computed by the holder against the model's training distribution.

``messages`` (what crosses the wire), ``bank`` (:func:`~.bank.feature_drift`), ``holder``
(its one step: bin the watchlist's rows, merge bins below the floor, answer CSI and shares),
``math`` (the distributions, the floor-respecting merge and the index, which both sides
share).
"""
