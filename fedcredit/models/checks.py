"""The checks on the bank's own table before anything of it leaves the bank."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InvalidInput


def check_xy(X, y=None, id_column: str | None = None, *, target: str = "binary"):
    """Check the bank's table (and labels) before anything leaves the bank.

    Parameters
    ----------
    X : pandas.DataFrame
        Indexed by enterprise id, or with the ids in column ``id_column``. It may hold no
        feature column at all (ids and labels only: the models train on the holder's
        features alone).
    y : array-like, optional
        One target per row of ``X``: 0/1 labels (1 = default) for ``target="binary"``,
        finite numbers for ``target="continuous"`` (a regressor's amounts).
    id_column : str, optional
    target : {"binary", "continuous"}

    Returns
    -------
    X : pandas.DataFrame
        A copy indexed by the ids as strings.
    y : numpy.ndarray (int64 labels, or float64 targets) or None
    """
    if not isinstance(X, pd.DataFrame):
        raise InvalidInput("X must be a pandas DataFrame indexed by enterprise id")
    if id_column is not None:
        if id_column not in X.columns:
            raise InvalidInput(f"id column {id_column!r} is not in X")
        X = X.set_index(id_column)
    X = X.copy()
    X.index = X.index.astype(str)
    if X.index.has_duplicates:
        dup = X.index[X.index.duplicated()][0]
        raise InvalidInput(f"X has duplicate ids, e.g. row {X.index.get_loc(dup)}")
    if y is None:
        return X, None
    yv = y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else np.asarray(y)
    try:
        yv = np.asarray(yv, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise InvalidInput("y must hold numbers") from None
    if len(yv) != len(X):
        raise InvalidInput(f"y has {len(yv)} labels for {len(X)} rows of X")
    bad = ~np.isfinite(yv)
    if bad.any():
        raise InvalidInput(f"y has {int(bad.sum())} NaN or infinite labels, first at row "
                           f"{int(np.flatnonzero(bad)[0])}")
    if target == "continuous":
        return X, yv
    if not np.isin(yv, (0.0, 1.0)).all():
        raise InvalidInput("y must hold 0/1 labels (1 = default)")
    return X, yv.astype(np.int64)
