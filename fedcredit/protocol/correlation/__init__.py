"""Pearson correlation between the bank's and the holder's features, neither seeing the
other's values: the bank's standardised columns go encrypted, the holder returns encrypted
sums of their products with its own standardised columns.

``messages`` (what crosses the wire), ``bank`` (the bank's step), ``holder`` (the holder's
step), ``math`` (standardisation, the fixed-point layout and the slot bound both check).
"""
