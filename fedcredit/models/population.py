"""Pre-credit screening: score every enterprise that authorises this bank for pre-credit,
without the bank naming a single id.

>>> whitelist = precredit(model, holder=channel, top=500)           # doctest: +SKIP
>>> whitelist.head()        # rank, id, score, grade, reason_1, reason_1_contribution ...

``model`` is a :class:`~fedcredit.models.SecureBoostClassifier` or a
:class:`~fedcredit.models.HeteroLogisticRegression` trained for the purpose ``pre_credit`` on
a bank table of ids and labels only (the bank has no features of enterprises it has never
met). The holder lists, page by page, the enterprises whose consent for ``pre_credit``
covers this bank (named, or "all institutions on the platform") and answers each page as
scoring by id would (:mod:`fedcredit.protocol.population`); the bank combines the answers
with its half of the model exactly as ``explain`` does, so every score comes with its
reason codes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InvalidInput
from ..metrics.grades import DEFAULT_CUTS, grade
from ..protocol.population import bank as steps
from ..protocol.population.math import DEFAULT_PAGE, PRE_CREDIT
from ..protocol.session import BankSession
from .base import as_channel, open_session, sigmoid
from .explain import LOG_ODDS, explanation_frame, holder_column, saabas, top_reasons
from .holders import require_one_holder
from .logistic import HeteroLogisticRegression
from .secureboost import SecureBoostClassifier
from .secureboost.estimator import BANK_ONLY

#: the models that can score a population, by the format ``save`` writes
POPULATION_MODELS = (SecureBoostClassifier, HeteroLogisticRegression)
#: columns of the ranked list before the reasons
COLUMNS = ["rank", "id", "score", "grade"]


def load_model(path):
    """A saved SecureBoostClassifier or HeteroLogisticRegression, whichever ``path`` holds."""
    try:
        fmt = json.loads(Path(path).read_text()).get("format")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise InvalidInput(f"cannot read a saved model from {path}: {e}") from None
    for kind in POPULATION_MODELS:
        if fmt in (kind._format, *kind._legacy_formats):
            return kind.load(path)
    names = ", ".join(k.__name__ for k in POPULATION_MODELS)
    raise InvalidInput(f"{path} holds a {fmt!r} model; expected one of {names}")


def _check_model(model) -> str:
    """The answer kind the holder gives for ``model`` ("secureboost" or "hetero_lr")."""
    if not isinstance(model, POPULATION_MODELS):
        names = ", ".join(k.__name__ for k in POPULATION_MODELS)
        raise InvalidInput(f"population scoring takes a fitted {names}, not "
                           f"{type(model).__name__}")
    model._check_fitted()
    require_one_holder(model, "population scoring")
    if len(model.feature_names_bank_):
        raise InvalidInput(
            f"the model uses {len(model.feature_names_bank_)} bank feature(s) "
            f"({', '.join(map(str, model.feature_names_bank_[:3]))} ...), which the bank does "
            "not have for enterprises it has never met: train the pre-credit model on a bank "
            "table of ids and labels only")
    if isinstance(model, SecureBoostClassifier):
        return "secureboost"
    return "hetero_lr"


def _secureboost_page(model, page: steps.ScoredPage, k: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Log-odds and the explanation of one page: the leaf both parties' splits allow, per
    tree (bank-only trees of a model with no bank features are single leaves)."""
    masks = page.masks or {}
    bins = np.zeros((len(page.ids), 0), dtype=np.uint8)  # no bank feature
    leaves = []
    for tree, tid in zip(model.trees_, model.tree_ids_):
        if tid != BANK_ONLY and tid not in masks:
            raise InvalidInput(f"the holder answered no leaf masks for tree {tid}")
        leaves.append(tree.reached_leaves(bins, model.mapper_.n_bins,
                                          None if tid == BANK_ONLY else masks[tid]))
    raw = np.full(len(page.ids), float(model.base_score_))
    for tree, positions in zip(model.trees_, leaves):
        raw += tree.leaf_values()[positions]
    if not k:
        return raw, pd.DataFrame(index=pd.Index(page.ids))
    names = model.feature_names_
    contributions, roots = saabas(model.trees_, leaves, 0, len(names))
    frame = explanation_frame(contributions, model.base_score_ + roots, names,
                              pd.Index(page.ids), LOG_ODDS)
    return raw, top_reasons(frame, k)


def _lr_page(model, page: steps.ScoredPage, k: int) -> tuple[np.ndarray, pd.DataFrame]:
    u = np.asarray(page.partial, dtype=np.float64)
    raw = float(model.intercept_[0]) + u
    if not k:
        return raw, pd.DataFrame(index=pd.Index(page.ids))
    frame = explanation_frame(u[:, None], float(model.intercept_[0]),
                              [holder_column(model.holder_name_, model.holder_feature_names_)],
                              pd.Index(page.ids), LOG_ODDS)
    return raw, top_reasons(frame, k)


def precredit(model, holder, top: int | None = None, *, reasons: int = 3,
              page_size: int = DEFAULT_PAGE, purpose: str = PRE_CREDIT,
              cuts=DEFAULT_CUTS) -> pd.DataFrame:
    """Score the holder's consented population with ``model`` and rank it.

    Parameters
    ----------
    model : SecureBoostClassifier or HeteroLogisticRegression
        Fitted for ``purpose``, with no bank feature.
    holder : Channel or PassiveParty
    top : int, optional
        Keep the ``top`` lowest-risk enterprises (default: all).
    reasons : int
        Reason codes per enterprise (``reason_1`` .. and their contributions to the log-odds
        of default); 0 for none.
    page_size : int
        Ids per page (the holder answers at most its ``max_predict_ids``).
    purpose : str
        The purpose the enterprises authorise (default ``"pre_credit"``).
    cuts : sequence of float
        Grade cuts (:mod:`fedcredit.metrics.grades`).

    Returns
    -------
    pandas.DataFrame
        One row per enterprise the holder scored, lowest probability of default first:
        ``rank`` (from 1), ``id``, ``score`` (probability of default), ``grade``, then the
        reasons. ``attrs``: ``listed`` (enterprises the holder listed), ``withdrawn`` (listed
        but no longer consenting when their page was scored: left out), ``holder_name``,
        ``features_version``, ``model_id``.
    """
    kind = _check_model(model)
    if top is not None and (isinstance(top, bool) or int(top) < 1):
        raise InvalidInput(f"top must be a whole number >= 1, got {top!r}")
    if isinstance(reasons, bool) or int(reasons) < 0:
        raise InvalidInput(f"reasons must be a whole number >= 0, got {reasons!r}")
    grade([0.5], cuts)  # checks the cuts before anything is sent
    channel = as_channel(holder)
    session = open_session(lambda: BankSession(channel, "score", model_id=model.model_id_,
                                               purpose=purpose))
    ids, probs, parts, listed = [], [], [], 0
    try:
        for page in steps.score_population(session, kind, page_size):
            raw, why = (_secureboost_page if kind == "secureboost" else _lr_page)(
                model, page, int(reasons))
            keep = np.asarray(page.covered, dtype=bool)
            listed += len(page.ids)
            ids += [i for i, ok in zip(page.ids, keep) if ok]
            probs.append(sigmoid(raw)[keep])
            parts.append(why[keep])
    finally:
        session.close()
    p = np.concatenate(probs) if probs else np.zeros(0)
    out = pd.DataFrame({"id": ids, "score": p, "grade": grade(p, cuts)})
    if int(reasons):
        why = pd.concat(parts) if parts else top_reasons(
            explanation_frame(np.zeros((0, 1)), 0.0, ["none"], pd.Index([]), LOG_ODDS),
            int(reasons))
        out = pd.concat([out, why.reset_index(drop=True)], axis=1)
    out = out.sort_values(["score", "id"], kind="stable").reset_index(drop=True)
    if top is not None:
        out = out.head(int(top))
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    out.attrs.update(listed=listed, withdrawn=listed - len(ids),
                     holder_name=session.holder_name,
                     features_version=session.features_version, model_id=model.model_id_)
    return out
