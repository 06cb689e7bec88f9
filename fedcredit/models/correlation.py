"""Joint feature analysis before modelling: Pearson correlations between the bank's and each
holder's features, and variance inflation factors, without either side revealing a value.

>>> corr = pearson(X_bank, holder=channel, key_bits=2048)        # doctest: +SKIP
>>> vif(corr)                                                      # doctest: +SKIP

Each party standardises its own numeric columns over the enterprises both (all) parties
serve, a missing value counting as the column's mean; the result equals ``numpy.corrcoef``
on the mean-imputed joined table (to ~1e-10). What each side learns is in
:mod:`fedcredit.protocol.correlation.holder`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..crypto import generate_keypair
from ..errors import InvalidInput
from ..protocol.alignment.bank import align, align_many
from ..protocol.correlation import bank as steps
from ..protocol.correlation.math import FRAC_BITS, standardized, variance_inflation
from ..protocol.session import BankSession
from .checks import check_xy
from .holders import holder_names, named_channels, open_sessions
from .scoring import as_channel

#: the session task of correlation analysis
TASK = "correlation"


def pearson(X, holder=None, *, holders=None, id_column: str | None = None,
            key_bits: int = 2048, insecure_key: bool = False, he_scheme: str = "paillier",
            n_jobs: int | None = None, frac_bits: int = FRAC_BITS) -> pd.DataFrame:
    """The correlation matrix of the bank's numeric features and every holder's.

    Parameters
    ----------
    X : pandas.DataFrame
        The bank's table, indexed by enterprise id (or ids in ``id_column``); its
        non-numeric and constant columns are left out.
    holder, holders
        One holder, or several (a list, or a mapping of holder name to holder): then the
        rows are the enterprises every holder serves, and holder features are named
        ``<holder name>:<feature>`` (``holder:<feature>`` with one holder).
    key_bits, insecure_key, he_scheme, n_jobs
        The fresh key of the analysis and the crypto workers.
    frac_bits : int
        Fixed-point fraction bits of the z-scores.

    Returns
    -------
    pandas.DataFrame
        Symmetric, features in both axes (the bank's first). Correlations between two
        different holders' features are NaN: no holder sees another's values and the bank
        holds neither. ``attrs["rows"]`` is the number of enterprises.
    """
    X, _ = check_xy(X, None, id_column)
    named = named_channels(holder, holders)
    channels = [as_channel(h) for _, h in named]
    names = holder_names(channels)
    _, sk = generate_keypair(he_scheme, bits=key_bits, insecure=insecure_key)
    sessions: list[BankSession] = []
    try:
        open_sessions(channels, names, TASK, sk, n_jobs, sessions)
        local: list[np.ndarray | None] = [None]
        if len(sessions) == 1:
            al = align(sessions[0], X.index.tolist())
        else:
            al, local = align_many(sessions, X.index.tolist())
        bank_names, zb = standardized(X.iloc[al.bank_positions])
        n = len(al)
        rows = np.arange(n, dtype=np.int64)
        parts = [steps.correlate(s, rows if m is None else m, zb, frac_bits)
                 for s, m in zip(sessions, local)]
    finally:
        for s in sessions:
            s.close()
    prefixes = ["holder:"] if len(names) == 1 else [f"{h}:" for h in names]
    labels = bank_names + [p + f for p, part in zip(prefixes, parts)
                           for f in part.holder_features]
    out = np.full((len(labels), len(labels)), np.nan)
    nb = len(bank_names)
    out[:nb, :nb] = zb.T @ zb / n if n else np.nan
    at = nb
    for part in parts:
        q = len(part.holder_features)
        out[:nb, at:at + q] = part.cross
        out[at:at + q, :nb] = part.cross.T
        out[at:at + q, at:at + q] = part.holder
        at += q
    frame = pd.DataFrame(out, index=labels, columns=labels)
    frame.attrs["rows"] = n
    return frame


def vif(corr: pd.DataFrame) -> pd.Series:
    """Variance inflation factor of each feature of a correlation matrix (from
    :func:`pearson`, or a block of it): ``1 / (1 - R^2)`` of its regression on the others.
    A matrix with unknown entries (two holders' features) is refused, naming a pair: take
    the block of the bank and one holder."""
    c = corr.to_numpy(dtype=np.float64)
    if np.isnan(c).any():
        i, j = np.argwhere(np.isnan(c))[0]
        raise InvalidInput(f"the correlation of {corr.index[i]!r} and {corr.columns[j]!r} is "
                           "unknown (two holders' features): take the block of the bank and "
                           "one holder")
    return pd.Series(variance_inflation(c), index=corr.index, name="vif")
