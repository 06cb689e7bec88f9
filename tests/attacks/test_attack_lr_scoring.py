"""Leak 5 (hetero LR): the bank decodes each scored enterprise's holder category from exact
partial scores and the holder's coefficients (docs/PRIVACY.md).

The holder's features are quantised to 2^-12, so an exact float64 partial score is
``u = (k w_num + 4096 w_level) / 4096`` with ``k`` an integer: the bank, which received the
coefficients (``LrModel``) and the partial scores (``PartialScores``, recorded off the
channel), tries every level and keeps the one that leaves ``k`` an integer. With the holder's
coefficients kept at home and scores rounded to ``SCORE_RESOLUTION`` nothing is decoded, and
rounding alone (coefficients somehow known) already leaves every level possible.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fedcredit.models import HeteroLogisticRegression
from fedcredit.protocol import PassiveParty
from fedcredit.protocol.logistic import holder as lr_holder
from fedcredit.protocol.logistic import math as lc
from fedcredit.protocol.registry import MESSAGES as m

from conftest import TEST_KEY_BITS, RecordingChannel, test_policy

N, LEVELS = 700, ["agri", "manufacturing", "retail", "services", "tech"]


def _data():
    rng = np.random.default_rng(3)
    ids = [f"e{i:05d}" for i in range(N)]
    level = rng.integers(0, len(LEVELS), N)
    capital = rng.lognormal(4.0, 1.0, N)
    holder = pd.DataFrame({"registered_capital": capital,
                           "enterprise_type": [LEVELS[k] for k in level]}, index=ids)
    income = rng.normal(size=N)
    z = -2.0 + 0.8 * income - 0.5 * np.log(capital) + 0.4 * (level - 2)
    y = (rng.random(N) < 1 / (1 + np.exp(-z))).astype(int)
    bank = pd.DataFrame({"income": income, "tenure": rng.integers(0, 20, N)}, index=ids)
    return bank, y, holder, level


def _fit_and_score(monkeypatch, mitigated: bool):
    bank, y, holder, level = _data()
    if not mitigated:  # today's behaviour: exact scores, coefficients sent to the bank
        monkeypatch.setattr(lr_holder, "REVEAL_STANDARD_COEFFICIENTS", True)
        monkeypatch.setattr(lc, "SCORE_RESOLUTION", 0.0)
    party = PassiveParty(holder, policy=test_policy())
    ch = RecordingChannel(party)
    model = HeteroLogisticRegression(max_iter=1, batch_size=200, key_bits=TEST_KEY_BITS,
                                     insecure_key=True, verbose=False, n_jobs=2)
    model.fit(bank, y, holder=ch)
    model.predict_proba(bank, holder=ch)
    return ch, level, party.models.load(model.model_id_).mapper["coef"]


def _received(ch):
    """What the bank holds: the holder's feature names, coefficients, partial scores."""
    ready = next(msg for msg, _ in ch.received if isinstance(msg, m.LrReady))
    lr_model = next(msg for msg, _ in ch.received if isinstance(msg, m.LrModel))
    u = np.concatenate([np.frombuffer(msg.scores, dtype="<f8")
                        for msg, _ in ch.received if isinstance(msg, m.PartialScores)])
    return list(ready.feature_names), list(lr_model.coefficients), u


def _decode(names, coef, u, resolution=0.0):
    """Per enterprise, the one level leaving the numeric feature's quantum an integer, or -1
    (none, or several, fit: the bank cannot tell)."""
    num = names.index("registered_capital")
    lv = [names.index(f"enterprise_type[level {k}]") for k in range(len(LEVELS))]
    w_num, q = coef[num], 2.0 ** lc.FEATURE_BITS
    tol = 1e-6 + resolution / 2 * q / abs(w_num)  # what the rounding can move k by
    r = (u[:, None] - np.asarray([coef[j] for j in lv])[None, :]) * q / w_num
    ok = np.abs(r - np.rint(r)) <= min(tol, 0.5)
    if tol >= 0.5:
        ok[:] = True  # every level fits within the rounding
    return np.where(ok.sum(axis=1) == 1, ok.argmax(axis=1), -1)


def _best_guess(names, coef, u):
    """Per enterprise, the level leaving k closest to an integer (a guess, never -1)."""
    num = names.index("registered_capital")
    lv = [names.index(f"enterprise_type[level {k}]") for k in range(len(LEVELS))]
    r = (u[:, None] - np.asarray([coef[j] for j in lv])[None, :]) * 2.0 ** lc.FEATURE_BITS \
        / coef[num]
    return np.abs(r - np.rint(r)).argmin(axis=1)


def test_exact_scores_and_coefficients_name_every_enterprises_category(monkeypatch):
    ch, level, _ = _fit_and_score(monkeypatch, mitigated=False)
    names, coef, u = _received(ch)
    assert len(coef) == len(names)
    got = _decode(names, coef, u)
    right = float((got == level).mean())
    # ... and the rounding alone, with the same coefficients, on the same model's scores
    rounded = lc.round_scores(u, 2.0 ** -10)
    blurred = float((_decode(names, coef, rounded, 2.0 ** -10) == level).mean())
    guess = float((_best_guess(names, coef, rounded) == level).mean())
    print(f"\nmitigation off: category decoded for {right:.1%} of {len(u)} enterprises "
          f"(wrong: {float(((got >= 0) & (got != level)).mean()):.1%}); the same scores "
          f"rounded to 2^-10: {blurred:.1%} decoded, best guess right for {guess:.1%} "
          f"(chance {1 / len(LEVELS):.0%})")
    assert right > 0.99 and blurred == 0.0 and guess < 0.3


def test_without_coefficients_and_with_rounded_scores_nothing_is_decoded(monkeypatch):
    ch, level, held = _fit_and_score(monkeypatch, mitigated=True)
    names, coef, u = _received(ch)
    assert coef == []  # the holder kept them: the bank has nothing to solve with
    steps = u / lc.SCORE_RESOLUTION
    assert np.allclose(steps, np.rint(steps), atol=1e-9)  # on the grid
    # stronger than the bank: hand the attack the holder's true coefficients anyway
    got = _decode(names, held, u, lc.SCORE_RESOLUTION)
    right = float((got == level).mean())
    guess = float((_best_guess(names, held, u) == level).mean())
    print(f"\nmitigation on: 0 coefficients received; with the holder's own coefficients "
          f"(|w_num| = {abs(held[names.index('registered_capital')]):.3f}) the rounded scores "
          f"name the category of {right:.1%} of {len(u)} enterprises, best guess right for "
          f"{guess:.1%} (chance {1 / len(LEVELS):.0%})")
    assert right == 0.0 and guess < 0.3
