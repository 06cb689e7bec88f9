"""``SecureBoostRegressor``: squared error on credit-line amounts over the classifier's
protocol; lossless against the plaintext reference (residuals of hundreds of thousands of
yuan scaled into the holder's slot width), weighted, saved and loaded, over both channels."""
from __future__ import annotations

import numpy as np
import pytest

from fedcredit.errors import InvalidInput
from fedcredit.models import SecureBoostRegressor
from fedcredit.model_selection import cross_validate
from fedcredit.protocol import PassiveParty
from fedcredit.protocol.secureboost.math import GradientLayout

from conftest import TEST_KEY_BITS, stratified_split, test_policy
from reference_boost import assert_same_trees, boost_reference, scaled_ints

KEYS = dict(key_bits=TEST_KEY_BITS, insecure_key=True, n_jobs=1, he_scheme="ou")


def _reg(**kw) -> SecureBoostRegressor:
    base = dict(n_estimators=4, max_depth=3, learning_rate=0.5, max_bin=16, verbose=False, **KEYS)
    base.update(kw)
    return SecureBoostRegressor(**base)


@pytest.fixture(scope="module")
def amounts(small_credit):
    """A credit line in yuan that depends on both parties' data."""
    bank, _, holder = small_credit
    bank = bank.iloc[:1500]
    h = holder.reindex(bank.index)
    rng = np.random.default_rng(4)
    line = (200_000 + 30_000 * np.log1p(bank["deposit_balance"].fillna(0).clip(lower=0))
            + 8_000 * h["insured_headcount"].fillna(0).to_numpy()
            - 60_000 * h["court_judgements_as_defendant"].fillna(0).to_numpy()
            + rng.normal(0, 20_000, len(bank)))
    return bank, np.asarray(line, dtype=float), holder


def test_regressor_equals_the_plaintext_reference(amounts, make_channel):
    bank, y, holder = amounts
    party = PassiveParty(holder, policy=test_policy())
    model = _reg().fit(bank, y, holder=make_channel(party))
    base, trees = boost_reference(model, bank, y, holder, floor=10, min_bin=30, regression=True)
    assert model.base_score_ == pytest.approx(base, rel=1e-12)
    assert any(nd.owner == "holder" for t in model.trees_ for nd in t.nodes)
    assert_same_trees(model, party, trees)


def test_residuals_fit_the_holders_slot_cap():
    """Residuals of ~1e6 yuan, scaled by powers of two, need no wider slot than the holder
    allows honest classifier gradients."""
    g = np.random.default_rng(0).normal(0, 4e5, 1000)
    g_int, h_int, sg, sh = scaled_ints(g, np.ones(1000), 24)
    lay = GradientLayout.for_rows(g_int, h_int, 1024)
    assert lay.slot_bits <= GradientLayout.honest_bound(1000, 24, 1024)
    assert np.max(np.abs(g_int / sg - g)) <= 0.5 / sg  # kept to the scaled grid


def test_weighted_regression_and_quality(amounts, small_credit):
    bank, y, holder = amounts
    party = PassiveParty(holder, policy=test_policy())
    sw = np.random.default_rng(1).uniform(0.5, 3.0, len(y))
    model = _reg().fit(bank, y, holder=party, sample_weight=sw)
    _, trees = boost_reference(model, bank, y, holder, floor=10, min_bin=30, regression=True,
                               weights=sw)
    assert_same_trees(model, party, trees)
    tr, te = stratified_split((y > np.median(y)).astype(int), 0.3, 0)
    fit = _reg(n_estimators=8).fit(bank.iloc[tr], y[tr], holder=party)
    pred = fit.predict(bank.iloc[te], holder=party)
    rmse, spread = np.sqrt(np.mean((pred - y[te]) ** 2)), np.std(y[te])
    assert rmse < 0.8 * spread  # better than predicting the mean


def test_save_load_params_and_refusals(amounts, make_channel, tmp_path):
    bank, y, holder = amounts
    channel = make_channel(PassiveParty(holder, policy=test_policy()))
    model = _reg(n_estimators=2).fit(bank, y, holder=channel)
    p = model.predict(bank.iloc[:30], holder=channel)
    model.save(tmp_path / "reg.json")
    again = SecureBoostRegressor.load(tmp_path / "reg.json")
    np.testing.assert_allclose(again.predict(bank.iloc[:30], holder=channel), p)
    assert "class_weight" not in model.get_params() and not hasattr(model, "predict_proba")
    from fedcredit.models import SecureBoostClassifier

    with pytest.raises(InvalidInput, match="not a saved SecureBoostClassifier"):
        SecureBoostClassifier.load(tmp_path / "reg.json")
    with pytest.raises(InvalidInput, match="NaN or infinite"):
        _reg().fit(bank, np.r_[y[:-1], np.inf], holder=channel)
    expl = model.explain(bank.iloc[:5], holder=channel)
    assert expl.attrs["units"] == "prediction"
    np.testing.assert_allclose(expl.sum(axis=1), model.predict(bank.iloc[:5], holder=channel))


def test_regressor_cross_validates_with_r2(amounts):
    bank, y, holder = amounts
    res = cross_validate(_reg(n_estimators=3), bank, y, cv=3,
                         holder=PassiveParty(holder, policy=test_policy()))
    assert set(res) >= {"test_r2", "test_neg_mean_squared_error", "fit_time"}
    assert len(res["test_r2"]) == 3 and np.all(res["test_r2"] > 0)
