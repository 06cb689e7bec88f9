"""Private SecureBoost scoring in the style of Fed-EINI: the bank learns one score per
enterprise, not the holder's decisions.

``messages`` (what crosses the wire), ``bank`` (the bank's step), ``holder`` (the holder's
step), ``math`` (the complexity check and the leaf sums both sides share).
"""
