"""Risk grades and score points from a probability of default.

One mapping shared by the bank's decision service, batch scoring and post-loan monitoring,
so a grade means the same in an approval, a watchlist and a migration matrix.

* **Grades** are bands of the probability of default: ``cuts`` are the upper bounds of every
  grade but the last (``DEFAULT_CUTS``: A below 2 %, B below 5 %, C below 10 %, D below 20 %,
  E from 20 %). A grade "falls a notch" when it moves one band towards E.
* **Points** follow the usual scorecard scaling: ``base`` points at good:bad odds of
  ``base_odds``, and ``pdo`` more points each time the odds double (more points = safer).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import InvalidInput

GRADES = ("A", "B", "C", "D", "E")
DEFAULT_CUTS = (0.02, 0.05, 0.10, 0.20)
#: probabilities are clipped here before taking log-odds (a score of 0 or 1 has none)
_EPS = 1e-12


def check_cuts(cuts: Sequence[float], labels: Sequence[str] = GRADES) -> tuple[float, ...]:
    """``cuts`` strictly increasing inside (0, 1), one fewer than ``labels``."""
    c = tuple(float(v) for v in cuts)
    if len(c) != len(labels) - 1:
        raise InvalidInput(f"{len(labels)} grades need {len(labels) - 1} cuts, got {len(c)}")
    if any(not 0.0 < v < 1.0 for v in c) or any(b <= a for a, b in zip(c, c[1:])):
        raise InvalidInput(f"grade cuts must increase strictly inside (0, 1), got {list(c)}")
    return c


def grade(prob, cuts: Sequence[float] = DEFAULT_CUTS,
          labels: Sequence[str] = GRADES) -> np.ndarray:
    """The grade of each probability of default (``""`` where it is NaN: not scored)."""
    c = check_cuts(cuts, labels)
    p = np.asarray(prob, dtype=float)
    out = np.asarray(labels, dtype=object)[np.searchsorted(c, p, side="right")]
    out[np.isnan(p)] = ""
    return out


def notch(grades, labels: Sequence[str] = GRADES) -> np.ndarray:
    """Each grade's position, 0 for the best (``-1`` for ``""``); a difference of notches
    is how far a grade moved."""
    pos = {g: i for i, g in enumerate(labels)}
    return np.array([pos.get(str(g), -1) for g in np.asarray(grades, dtype=object)],
                    dtype=np.int64)


def points(prob, base: float = 600.0, base_odds: float = 50.0, pdo: float = 20.0) -> np.ndarray:
    """Score points: ``base`` at good:bad odds ``base_odds``, ``pdo`` points per doubling."""
    if pdo <= 0 or base_odds <= 0:
        raise InvalidInput("pdo and base_odds must be positive")
    p = np.clip(np.asarray(prob, dtype=float), _EPS, 1 - _EPS)
    factor = pdo / math.log(2.0)
    return base + factor * (np.log((1 - p) / p) - math.log(base_odds))
