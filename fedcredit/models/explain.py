"""Reason codes: each feature's share of an enterprise's score, computed by the bank from what
it already holds.

Every estimator's ``explain(X, holder=...)`` returns a DataFrame indexed by enterprise id with
one column per feature (holder features named as the model records them: ``holder:<name>``,
or ``holder:holder feature k`` where the holder hides names) and a :data:`BASE_COLUMN` that is
the same for every row; each row's contributions plus its base are its score, exactly (up to
float rounding). ``explanation.attrs["units"]`` says which score: :data:`LOG_ODDS` (the
log-odds of default, what ``decision_function`` returns) or :data:`POINTS` (a scorecard's
points, more points less risk).

SecureBoost uses Saabas' decomposition: along the enterprise's path in each tree, the feature
split at a node gets ``value(child taken) - value(node)``, where a node's value is the mean
output of the tree over the training rows that reached it (the row-count-weighted mean of the
leaf values below it: each node keeps its row count from training). The differences telescope,
so per tree they sum to ``leaf value - root value``; the base is the initial score plus every
root's value, i.e. the model's mean raw score over its training rows. The bank knows the path
because plain scoring tells it, per tree, which leaves the holder's splits allow, and its own
splits pick one of them; it never learns a holder feature value or threshold.

:func:`top_reasons` turns an explanation into adverse-action reason codes: per enterprise, the
features that push its score most towards default (the largest positive contributions to the
log-odds of default; for points, the most negative).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import InvalidInput

#: the column of an explanation holding the base value (the same for every row)
BASE_COLUMN = "base_value"
#: units of an explanation: contributions to the log-odds of default ...
LOG_ODDS = "log-odds of default"
#: ... or to a scorecard's points (more points, less risk)
POINTS = "points"
_RISK_SIGN = {LOG_ODDS: 1.0, POINTS: -1.0}


def node_values(tree) -> dict[int, float]:
    """Per node id, the tree's mean output over the training rows that reached the node.

    Raises InvalidInput for a tree saved without row counts (nothing to weight by)."""
    by_id = {nd.node_id: nd for nd in tree.nodes}
    mass: dict[int, float] = {}
    total: dict[int, float] = {}
    for nd in reversed(tree.nodes):  # children after parents: reversed, children first
        if nd.owner == "leaf":
            mass[nd.node_id] = float(nd.count)
            total[nd.node_id] = float(nd.count) * float(nd.value)
        else:
            mass[nd.node_id] = mass[nd.left] + mass[nd.right]
            total[nd.node_id] = total[nd.left] + total[nd.right]
    values = {}
    for i, nd in by_id.items():
        if mass[i] <= 0:
            raise InvalidInput("this model's trees carry no training row counts, which reason "
                               "codes weight node values by: refit it to explain its scores")
        values[i] = float(nd.value) if nd.owner == "leaf" else total[i] / mass[i]
    return values


def leaf_contributions(tree, n_bank: int, n_features: int,
                       holder_columns: Sequence[int] | None = None) -> tuple[float, np.ndarray]:
    """(root value, leaves x features): per leaf (in ``tree.leaves`` order), what each
    feature contributes along the path to it; feature k of holder h is column
    ``holder_columns[h] + k`` (default: one holder, from column ``n_bank``).

    Kept on the tree once computed (a fitted tree does not change), so explaining one
    enterprise per call does not walk every path again."""
    first = tuple(holder_columns) if holder_columns is not None else (n_bank,)
    key = (n_bank, n_features, first)
    cached = getattr(tree, "_contributions", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    result = _leaf_contributions(tree, n_bank, n_features, first)
    tree._contributions = (key, result)
    return result


def _leaf_contributions(tree, n_bank: int, n_features: int,
                        first: tuple[int, ...]) -> tuple[float, np.ndarray]:
    values = node_values(tree)
    parent = {}
    for nd in tree.nodes:
        if nd.owner != "leaf":
            parent[nd.left] = parent[nd.right] = nd
    leaves = tree.leaves
    out = np.zeros((len(leaves), n_features))
    for row, leaf in enumerate(leaves):
        child = leaf.node_id
        while child in parent:
            nd = parent[child]
            holder = int(getattr(nd, "holder", 0))
            if nd.owner != "bank" and not 0 <= holder < len(first):
                raise InvalidInput(f"a tree splits on holder {holder}, which the model does "
                                   "not name: the model file is damaged")
            column = nd.feature if nd.owner == "bank" else first[holder] + nd.feature
            if not 0 <= column < n_features:
                raise InvalidInput(f"a tree splits on feature {column}, which the model does "
                                   f"not name ({n_features} features): the model file is damaged")
            out[row, column] += values[child] - values[nd.node_id]
            child = nd.node_id
    root = tree.nodes[0].node_id if tree.nodes else 0
    return values[root], out


def saabas(trees: Sequence, leaf_positions: Sequence[np.ndarray], n_bank: int,
           n_features: int, holder_columns: Sequence[int] | None = None
           ) -> tuple[np.ndarray, float]:
    """(rows x features contributions, sum of root values) over ``trees``, each row's leaf
    per tree given as its position in ``tree.leaves`` (``holder_columns`` as for
    :func:`leaf_contributions`)."""
    if len(trees) != len(leaf_positions):
        raise InvalidInput(f"{len(leaf_positions)} leaf sets for {len(trees)} trees")
    n = len(leaf_positions[0]) if len(leaf_positions) else 0
    contributions = np.zeros((n, n_features))
    roots = 0.0
    for tree, positions in zip(trees, leaf_positions):
        root, per_leaf = leaf_contributions(tree, n_bank, n_features, holder_columns)
        contributions += per_leaf[np.asarray(positions, dtype=np.int64)]
        roots += root
    return contributions, roots


def explanation_frame(contributions: np.ndarray, base: float, names: Sequence[str],
                      index: pd.Index, units: str) -> pd.DataFrame:
    """The DataFrame every ``explain`` returns: one column per feature, then the base."""
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InvalidInput(f"two features of the model are named {dup!r}: an explanation "
                           "needs one column per name")
    if BASE_COLUMN in names:
        raise InvalidInput(f"a feature is named {BASE_COLUMN!r}, the column an explanation "
                           "keeps the base value in: rename it to explain this model")
    if units not in _RISK_SIGN:
        raise InvalidInput(f"units must be one of {', '.join(_RISK_SIGN)}, got {units!r}")
    out = pd.DataFrame(np.asarray(contributions, dtype=np.float64), index=index, columns=names)
    out[BASE_COLUMN] = float(base)
    out.attrs["units"] = units
    return out


def explained_score(explanation: pd.DataFrame) -> np.ndarray:
    """Each row's contributions plus its base: the score the explanation decomposes."""
    _, values, base = _parts(explanation)
    return values.sum(axis=1) + base


def _parts(explanation: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(feature names, rows x features contributions, base per row) of an explanation, in
    one conversion of the frame (dropping a column costs more than one enterprise's
    arithmetic)."""
    is_base = np.asarray(explanation.columns == BASE_COLUMN)
    if not is_base.any():
        raise InvalidInput(f"not an explanation: no {BASE_COLUMN!r} column")
    table = explanation.to_numpy(dtype=np.float64)
    names = np.asarray([str(c) for c in explanation.columns[~is_base]], dtype=object)
    return names, table[:, ~is_base], table[:, np.flatnonzero(is_base)[0]]


def grouped(contributions: np.ndarray, sources: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Columns summed by source feature (a one-hot level or missing indicator into the feature
    it encodes), in first-appearance order."""
    names = list(dict.fromkeys(sources))
    at = {n: k for k, n in enumerate(names)}
    out = np.zeros((contributions.shape[0], len(names)))
    for j, s in enumerate(sources):
        out[:, at[s]] += contributions[:, j]
    return out, names


def prep_sources(prep, names: Sequence[str]) -> list[str]:
    """Per column a bank's :class:`~fedcredit.binning.FeaturePrep` outputs, the feature it
    encodes (``names`` themselves where the bank used its columns as they are)."""
    if prep is None:
        return [str(n) for n in names]
    out = []
    for c in prep.columns:
        width = (2 if c["indicator"] else 1) if c["kind"] == "numeric" else len(c["levels"])
        out += [str(c["name"])] * width
    if len(out) != len(names):
        raise InvalidInput(f"the bank's preprocessing makes {len(out)} columns, the model "
                           f"has {len(names)} bank coefficients: the model file is damaged")
    return out


def holder_column(holder_name: str, holder_features: Sequence[str]) -> str:
    """The one column of a linear model's holder part: the bank receives one partial score
    per enterprise, never per-feature terms (so it is named by the feature only where the
    model uses a single holder feature)."""
    if len(holder_features) == 1:
        return f"holder:{holder_features[0]}"
    return f"holder:{holder_name} (all features)"


def explained_probability(model, explanation: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(probability of default, holder coverage) per row from ``model``'s explanation: the
    explanation sums to the score, so scoring with reasons costs one holder request. A
    scorecard's points are turned back into log-odds; ``model.uncovered`` applies as in
    ``predict_proba``."""
    from .base import sigmoid, with_coverage

    total = explained_score(explanation)
    if explanation.attrs.get("units") == POINTS:  # points = offset - factor x log-odds
        total = (float(model.offset) - total) / float(model.factor)
    raw, covered = with_coverage(model, total, explanation.attrs["holder_covered"], True)
    return sigmoid(raw), covered


def top_reasons(explanation: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """Adverse-action reason codes: per enterprise, the ``k`` features pushing its score most
    towards default.

    Parameters
    ----------
    explanation : pandas.DataFrame
        What an estimator's ``explain`` returned (its ``attrs["units"]`` gives the direction:
        towards default is a positive contribution to the log-odds of default, a negative one
        to points; without it, log-odds).
    k : int
        Reasons per enterprise.

    Returns
    -------
    pandas.DataFrame
        Same index; columns ``reason_1`` .. ``reason_k`` (feature names, strongest first) and
        ``reason_1_contribution`` .. (the feature's contribution in the explanation's units).
        An enterprise with fewer than ``k`` features pushing towards default gets empty names
        and NaN contributions for the rest.
    """
    names, values = reason_arrays(explanation, k)
    out = {}
    for r in range(int(k)):
        out[f"reason_{r + 1}"] = names[:, r]
        out[f"reason_{r + 1}_contribution"] = values[:, r]
    return pd.DataFrame(out, index=explanation.index)  # reason_1, its contribution, ...


def reason_arrays(explanation: pd.DataFrame, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_reasons` as arrays, rows x ``k``: feature names ("" where fewer features
    push towards default) and their contributions (NaN there)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInput(f"k must be a whole number >= 1, got {k!r}")
    units = explanation.attrs.get("units", LOG_ODDS)
    if units not in _RISK_SIGN:
        raise InvalidInput(f"explanation units {units!r} are not one of {', '.join(_RISK_SIGN)}")
    feature_names, values, _ = _parts(explanation)
    n, k = len(values), int(k)
    names = np.full((n, k), "", dtype=object)
    chosen = np.full((n, k), np.nan)
    risk = values * _RISK_SIGN[units]
    order = np.argsort(-risk, axis=1, kind="stable")
    rows = np.arange(n)
    for r in range(min(k, values.shape[1])):
        col = order[:, r]
        hit = risk[rows, col] > 0
        names[hit, r] = feature_names[col[hit]]
        chosen[hit, r] = values[rows[hit], col[hit]]
    return names, chosen
