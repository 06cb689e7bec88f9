"""Monotone constraints in SecureBoost: on bank and holder features, over both channels the
model is monotone on a grid of each constrained feature, equal to the plaintext reference
with the same constraints, and bad constraints are refused where they are checked."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedcredit.binning import BinMapper
from fedcredit.errors import InvalidInput
from fedcredit.models import SecureBoostClassifier
from fedcredit.models.secureboost.splitting import SplitParams, child_bounds, constrained_gains
from fedcredit.protocol import PassiveParty
from fedcredit.protocol.secureboost.math import SplitCandidates

from conftest import TEST_KEY_BITS, test_policy
from reference_boost import assert_same_trees, boost_reference

KEYS = dict(key_bits=TEST_KEY_BITS, insecure_key=True, n_jobs=1, he_scheme="ou")
#: credit risk rises with delinquencies and judgements, falls with months of social insurance
CONSTRAINTS = {"past_delinquencies": 1, "credit_line_utilisation": 1,
               "holder:court_judgements_as_defendant": 1, "social_insurance_months_paid": -1}
HOLDER_CONSTRAINED = {"court_judgements_as_defendant": 1, "social_insurance_months_paid": -1}
GRID = 12


def _boost(**kw) -> SecureBoostClassifier:
    base = dict(n_estimators=4, max_depth=3, learning_rate=0.3, max_bin=16, verbose=False, **KEYS)
    base.update(kw)
    return SecureBoostClassifier(**base)


@pytest.fixture(scope="module")
def grid_data(small_credit):
    """2000 bank rows; the holder's table also holds, per constrained holder feature, a grid
    of copies of a few enterprises with that feature varied (never aligned in training: the
    bank's table lacks their ids)."""
    bank, y, holder = small_credit
    bank, y = bank.iloc[:2000], y[:2000]
    base_ids = [i for i in bank.index if i in holder.index][:20]
    extra = []
    for name in HOLDER_CONSTRAINED:
        values = np.quantile(holder[name].dropna(), np.linspace(0, 1, GRID))
        for e, uid in enumerate(base_ids):
            for k, v in enumerate(values):
                row = holder.loc[uid].copy()
                row[name] = v
                extra.append(row.rename(f"GRID-{name}-{e}-{k}"))
    grid = pd.DataFrame(extra).astype(holder.dtypes.to_dict())
    return bank, y, pd.concat([holder, grid]), holder, base_ids


def _assert_monotone(scores: np.ndarray, direction: int) -> float:
    """Per row of ``scores`` (enterprise x grid point) monotone in ``direction``; returns the
    largest range seen (0 would mean the feature never moved the score)."""
    steps = np.diff(scores, axis=1) * direction
    assert steps.min() >= -1e-12, f"not monotone: a step of {steps.min():.3g}"
    return float(np.ptp(scores, axis=1).max())


def test_monotone_on_a_grid_over_both_channels(grid_data, make_channel):
    bank, y, holder_all, holder, base_ids = grid_data
    party = PassiveParty(holder_all, policy=test_policy())
    channel = make_channel(party)
    model = _boost(monotone_constraints=CONSTRAINTS).fit(bank, y, holder=channel)
    imp = model.feature_importance("split")
    # bank features: vary the bank's column for fixed enterprises
    some = bank.iloc[:400]
    for name, d in (("past_delinquencies", 1), ("credit_line_utilisation", 1)):
        scores = []
        for v in np.quantile(bank[name].dropna(), np.linspace(0, 1, GRID)):
            X = some.copy()
            X[name] = v
            scores.append(model.decision_function(X, holder=channel))
        moved = _assert_monotone(np.array(scores).T, d)
        assert moved > 0 or imp[name] == 0
    # holder features: the holder's grid enterprises, scored with the base rows' bank data
    for name, d in HOLDER_CONSTRAINED.items():
        ids = [f"GRID-{name}-{e}-{k}" for e in range(len(base_ids)) for k in range(GRID)]
        X = pd.DataFrame([bank.loc[u] for u in base_ids for _ in range(GRID)], index=ids)
        scores = model.decision_function(X, holder=channel).reshape(len(base_ids), GRID)
        moved = _assert_monotone(scores, d)
        assert moved > 0 or imp[f"holder:{name}"] == 0
    assert imp["holder:social_insurance_months_paid"] > 0  # the constraint was exercised


def test_constrained_model_equals_the_plaintext_reference(grid_data, make_channel):
    bank, y, _, holder, _ = grid_data
    party = PassiveParty(holder, policy=test_policy())
    model = _boost(monotone_constraints=CONSTRAINTS).fit(bank, y, holder=make_channel(party))
    bank_mono = [CONSTRAINTS.get(c, 0) for c in model.feature_names_bank_]
    holder_mono = [HOLDER_CONSTRAINED.get(c, 0) for c in model.holder_feature_names_]
    _, trees = boost_reference(model, bank, y, holder, floor=10, min_bin=30,
                               bank_mono=bank_mono, holder_mono=holder_mono)
    assert_same_trees(model, party, trees)
    free = _boost().fit(bank, y, holder=party)
    assert [len(t.nodes) for t in free.trees_] != [len(t.nodes) for t in model.trees_] or any(
        a.gain != b.gain for s, t in zip(free.trees_, model.trees_)
        for a, b in zip(s.nodes, t.nodes))  # the constraints changed the model


def test_monotone_constraints_are_checked(grid_data):
    bank, y, _, holder, _ = grid_data
    party = PassiveParty(holder, policy=test_policy())
    for bad, match in (({"no_such_feature": 1}, "neither a bank feature"),
                       ({"collateral_type": 1}, "categorical"),
                       ({"holder:tax_credit_rating": -1}, "categorical"),
                       ({"past_delinquencies": 2}, "must map feature names"),
                       (["past_delinquencies"], "must map feature names")):
        with pytest.raises(InvalidInput, match=match):
            _boost(monotone_constraints=bad).fit(bank, y, holder=party)
    assert "monotone_constraints" in _boost(monotone_constraints={"x": 1}).get_params()


def test_holder_checks_what_it_is_asked_to_constrain():
    frame = pd.DataFrame({"a": np.arange(40.0), "c": list("xy") * 20})
    mapper = BinMapper(8).fit(frame)
    cands = SplitCandidates.for_bins(mapper.transform(frame), mapper.n_bins)
    d = mapper.candidate_directions(cands, ["a"], [-1])
    a = cands.feature == 0
    assert set(d[a]) == {-1} and set(d[~a]) == {0}
    for feats, dirs, match in ((["b"], [1], "not a feature"), (["c"], [1], "categorical"),
                               (["a", "a"], [1, 1], "twice"), (["a"], [0], "must be"),
                               (["a"], [], "directions")):
        with pytest.raises(InvalidInput, match=match):
            mapper.candidate_directions(cands, feats, dirs)


def test_missing_apart_is_unconstrained_and_thresholds_are():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, np.nan] * 10})
    mapper = BinMapper(8).fit(frame)
    cands = SplitCandidates.for_bins(mapper.transform(frame), mapper.n_bins)
    d = mapper.candidate_directions(cands, ["a"], [1])
    last = mapper.n_bins[0] - 1  # "every non-missing value left, missing right"
    assert (d[cands.bin == last] == 0).all() and (d[cands.bin < last] == 1).all()


def test_gain_under_bounds_and_direction():
    p = SplitParams(reg_lambda=1.0, gamma=0.0, min_child_weight=0.0, scale=1.0)
    GL, HL = np.array([4.0, -4.0]), np.array([4.0, 4.0])
    free, wl, wr = constrained_gains(GL, HL, 0, 10, p, -np.inf, np.inf, np.zeros(2))
    assert (wl < wr)[0] and (wl > wr)[1]  # first: left output lower
    up, _, _ = constrained_gains(GL, HL, 0, 10, p, -np.inf, np.inf, np.array([1, 1]))
    assert up[0] == pytest.approx(free[0]) and up[1] == -np.inf
    down, _, _ = constrained_gains(GL, HL, 0, 10, p, -np.inf, np.inf, np.array([-1, -1]))
    assert down[0] == -np.inf and down[1] == pytest.approx(free[1])
    tight, wl2, wr2 = constrained_gains(GL, HL, 0, 10, p, -0.1, 0.1, np.zeros(2))
    assert np.all(np.abs(np.r_[wl2, wr2]) <= 0.1) and np.all(tight < free)
    (l_lo, l_hi), (r_lo, r_hi) = child_bounds(-1.0, 1.0, 1, -0.4, 0.2)
    assert (l_lo, l_hi, r_lo, r_hi) == (-1.0, pytest.approx(-0.1), pytest.approx(-0.1), 1.0)
    assert child_bounds(-1.0, 1.0, 0, -0.4, 0.2) == ((-1.0, 1.0), (-1.0, 1.0))
