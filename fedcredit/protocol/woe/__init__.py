"""Hetero WOE/IV: per-bin event counts of the holder's features without their values.

``messages`` (what crosses the wire), ``bank`` (the bank's steps), ``holder`` (the holder's
state and steps), ``math`` (floor merges, merge maps, final bins).
"""
