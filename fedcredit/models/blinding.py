"""The scorecard's blinding of the WOE values sent to a holder: a secret per-feature affine
map the bank undoes in its coefficients (why and what remains: :mod:`.scorecard`)."""
from __future__ import annotations

import hashlib
import secrets

import numpy as np
import pandas as pd


def blinding(tables: list[pd.DataFrame], on: bool = True, secret: bytes | None = None
             ) -> tuple[float, np.ndarray, np.ndarray]:
    """A secret affine map for the holder features with these WOE tables:
    ``(alpha, scale, offset)`` with ``scale_j = +-alpha`` (random sign per feature, one
    magnitude alpha log-uniform in [1/2, 2]) and an offset that moves the blinded column's
    training mean to a random value in [-1/4, 1/4] (centred columns keep the regression as
    well conditioned as on the WOE itself). One magnitude for all features so that the L2
    penalty can be compensated exactly (see :meth:`Scorecard._fit_aligned`).

    Drawn from ``secret``: bytes only the bank knows (:func:`blinding_secret`: a hash of its
    WOE tables, its labels' aggregates included, which the holder never sees), so the same
    fit gives the same scorecard, and a holder cannot derive the map without the very WOE
    it hides; never from ``random_state`` alone, which the holder could guess. None: the
    OS's randomness. ``on=False``: the identity."""
    k = len(tables)
    if not on:
        return 1.0, np.ones(k), np.zeros(k)
    seed = int.from_bytes(hashlib.sha256(secret).digest(), "big") if secret is not None \
        else secrets.randbits(128)
    rng = np.random.default_rng(seed)
    alpha = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    scale = alpha * rng.choice([-1.0, 1.0], k)
    mean = np.array([np.dot(t["Count"], t["WoE"]) / max(int(t["Count"].sum()), 1)
                     for t in tables])
    return alpha, scale, rng.uniform(-0.25, 0.25, k) - scale * mean


def blinding_secret(woe, features: list[str], random_state) -> bytes:
    """The bank's secret for :func:`blinding`: every WOE table it fitted (bank and holder
    features: default counts per bin), with ``random_state`` to draw another map at will."""
    h = hashlib.sha256(b"fedcredit scorecard blinding\n")
    h.update(repr(random_state).encode())
    for f in sorted(woe.tables_):
        h.update(f.encode() + b"\0")
        h.update(np.ascontiguousarray(woe.tables_[f][["Count", "WoE"]].to_numpy(float)).tobytes())
    for f in features:
        h.update(b"use:" + f.encode())
    return h.digest()
