"""Private set intersection: align the bank's and the holder's ids without revealing the rest.

ECDH-PSI over X25519 (OpenSSL, the default) or ristretto255 (libsodium), semi-honest model.
The bank (active party) learns which of its ids the holder offered and how many the holder
offered; the holder (passive party) learns how many ids the bank has and the intersection
ids it is asked to answer for.
The protocol layer moves the messages; this package does each party's computation:

>>> salt = new_salt()                                   # per session, both sides know it
>>> bank = PsiBank(salt, workers=1)
>>> holder = PsiHolder(salt, ["91A", "91B", "91C"], workers=1)
>>> msg1 = bank.blind(["91C", "91X", "91A"])            # bank -> holder
>>> msg2 = holder.double_blind(msg1), holder.shuffled_points()   # holder -> bank
>>> result = bank.intersect(*msg2)
>>> result.ids
['91C', '91A']
>>> msg3 = result.holder_positions_for(sorted(result.ids))       # bank -> holder
>>> holder.resolve(msg3)
['91A', '91C']

Messages are concatenated 32-byte points; :func:`split_points` and :func:`join_points` cut
them into and rebuild them from stream chunks of at most :data:`MAX_CHUNK_POINTS` points.
"""
from ._sodium import POINT_BYTES
from .ecdh import PsiBank, PsiHolder, PsiResult
from .group import (
                    DEFAULT_GROUP,
                    DOMAIN,
                    GROUPS,
                    LEGACY_GROUP,
                    MAX_CHUNK_POINTS,
                    check_group,
                    count_points,
                    hash_prefix,
                    join_points,
                    new_salt,
                    split_points,
)

__all__ = [
    "DEFAULT_GROUP",
    "DOMAIN",
    "GROUPS",
    "LEGACY_GROUP",
    "check_group",
    "MAX_CHUNK_POINTS",
    "POINT_BYTES",
    "PsiBank",
    "PsiHolder",
    "PsiResult",
    "count_points",
    "hash_prefix",
    "join_points",
    "new_salt",
    "split_points",
]
