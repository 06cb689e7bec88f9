"""SecureBoost: encrypted gradient sums per split candidate, holder splits kept by the holder.

``messages`` (what crosses the wire), ``bank`` (the bank's steps), ``holder`` (the holder's
state and steps), ``math`` (the gradient layout, the split-candidate and row-goes-left rules).
The bank's tree growing is in :mod:`fedcredit.models.secureboost`.
"""
