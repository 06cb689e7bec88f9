"""The decision a bank's loan-origination system asks for: one model, the holder, an answer per
enterprise (probability, points, grade, coverage, top reasons).

:class:`Scorer` is shared by the HTTP service (:mod:`fedcredit.decision.app`) and batch use.
It checks the bank's features against the model before anything is sent to the holder, and
turns the holder being away into :class:`~fedcredit.errors.PeerUnavailable` (HTTP 503).
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InvalidInput, PolicyViolation
from ..metrics.grades import DEFAULT_CUTS, check_cuts, grade, points
from ..models.explain import POINTS, explained_probability, explained_score, reason_arrays

#: models the decision service can answer with (probability-of-default classifiers)
SCORING_FORMATS = ("secureboost", "hetero_lr", "scorecard")


def load_model(path):
    """Any saved classifier of this library, by the format its file names."""
    from ..models import HeteroLogisticRegression, Scorecard, SecureBoostClassifier

    path = Path(path)
    try:
        fmt = str(json.loads(path.read_text(encoding="utf-8")).get("format", ""))
    except (OSError, ValueError, AttributeError) as e:
        raise InvalidInput(f"{path}: not a saved fedcredit model ({e})") from None
    for cls in (SecureBoostClassifier, HeteroLogisticRegression, Scorecard):
        if fmt in (cls._format, *cls._legacy_formats):
            return cls.load(path)
    raise InvalidInput(f"{path}: format {fmt!r} is not a classifier the decision service can "
                       f"score with ({', '.join(SCORING_FORMATS)})")


class Scorer:
    """Score enterprises with ``model`` and the holder behind ``channel``.

    Parameters
    ----------
    model : a fitted classifier of :mod:`fedcredit.models`
    channel : Channel, or a list of them
        Kept open for the scorer's life (the gRPC channel reconnects by itself); a model
        trained with several holders takes one per holder, in training order.
    reasons : int
        Top reasons per enterprise (features pushing towards default), 0 for none.
    cuts : sequence of float
        Grade cuts (see :mod:`fedcredit.metrics.grades`).
    """

    def __init__(self, model, channel, *, reasons: int = 3,
                 cuts: Sequence[float] = DEFAULT_CUTS):
        self.model = model
        self.channels = list(channel) if isinstance(channel, (list, tuple)) else [channel]
        self.holders = {"holder": self.channels[0]} if len(self.channels) == 1 else \
            {"holders": self.channels}
        self.reasons = int(reasons)
        self.cuts = check_cuts(cuts)
        self.features = [str(c) for c in model.feature_names_bank_]
        self.model_id = str(getattr(model, "model_id_", ""))
        self.plain_refused = False

    def frame(self, rows: list[dict]) -> pd.DataFrame:
        """The bank's features of ``rows`` (``{"uscc", "features"}``) as the model's table;
        an unknown feature name is an error naming it, a missing one is a missing value."""
        known = set(self.features)
        ids, values = [], []
        for i, r in enumerate(rows):
            extra = sorted(set(r["features"]) - known)
            if extra:
                raise InvalidInput(f"enterprises[{i}].features: unknown feature(s) {extra[:5]}; "
                                   f"the model uses {self.features[:8]}")
            ids.append(str(r["uscc"]))
            values.append([r["features"].get(f) for f in self.features])
        if len(set(ids)) != len(ids):
            raise InvalidInput("an enterprise appears twice in one request")
        columns = {}
        for j, name in enumerate(self.features):  # numbers as numbers, text stays text
            col = [row[j] for row in values]
            numeric = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                          for v in col)
            columns[name] = np.array([np.nan if v is None else v for v in col],
                                     dtype=np.float64) if numeric else np.array(col, dtype=object)
        return pd.DataFrame(columns, index=pd.Index(ids, name="uscc"))

    def score(self, rows: list[dict]) -> list[dict]:
        X = self.frame(rows)
        prob, pts, covered, reasons = self._predict(X)
        grades = grade(prob, self.cuts)
        out = []
        for k, uscc in enumerate(X.index):
            p = float(prob[k])
            out.append({
                "uscc": uscc,
                "probability": None if math.isnan(p) else p,
                "points": None if math.isnan(p) else round(float(pts[k]), 1),
                "grade": str(grades[k]) or None,
                "holder_covered": bool(covered[k]),
                "reasons": reasons[k] if reasons is not None else [],
                "model_id": self.model_id,
            })
        return out

    def _predict(self, X: pd.DataFrame):
        """(probability, points, holder covered, reasons per row or None) for ``X``: one
        holder request (an explanation sums to the score, so it gives both)."""
        m = self.model
        if self.reasons and hasattr(m, "explain") and getattr(m, "scoring", "") != "private" \
                and not self.plain_refused:
            try:
                ex = m.explain(X, **self.holders)
            except PolicyViolation as e:
                if "plain leaf masks" not in str(e):
                    raise
                self.plain_refused = True  # the holder scores privately only: no reasons
                return self._predict(X)
            prob, covered = explained_probability(m, ex)
            # a scorecard's own points; for other models, points from the probability
            pts = explained_score(ex) if ex.attrs.get("units") == POINTS else points(prob)
            return prob, pts, covered, reason_lists(*reason_arrays(ex, self.reasons))
        proba, covered = m.predict_proba(X, **self.holders, return_coverage=True)
        prob = proba[:, 1]
        return prob, points(prob), np.asarray(covered, dtype=bool), None


def reason_lists(names: np.ndarray, values: np.ndarray) -> list[list[dict]]:
    """:func:`~fedcredit.models.explain.reason_arrays` as one list of reasons per row."""
    return [[{"feature": str(f), "contribution": round(float(v), 6)}
             for f, v in zip(row_names, row_values) if f]
            for row_names, row_values in zip(names, values)]
