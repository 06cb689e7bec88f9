"""``sample_weight`` and ``class_weight``: weighted SecureBoost equals plaintext weighted
boosting on the same bins, weighted WOE equals weighted counts on the holder's bins, the
weighted LR step equals the plaintext weighted gradient; over both channels."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from fedcredit.binning import BinMapper
from fedcredit.errors import InvalidInput
from fedcredit.models import HeteroLogisticRegression, HeteroWOE, Scorecard, SecureBoostClassifier
from fedcredit.models.weights import row_weights
from fedcredit.models.woe import woe_table
from fedcredit.protocol import PassiveParty
from fedcredit.protocol.woe.math import floor_map

from conftest import TEST_KEY_BITS, test_policy
from reference_boost import assert_same_trees, boost_reference

KEYS = dict(key_bits=TEST_KEY_BITS, insecure_key=True, n_jobs=1, he_scheme="ou")


def _boost(**kw) -> SecureBoostClassifier:
    base = dict(n_estimators=3, max_depth=3, learning_rate=0.3, max_bin=16, verbose=False, **KEYS)
    base.update(kw)
    return SecureBoostClassifier(**base)


@pytest.fixture(scope="module")
def data(small_credit):
    bank, y, holder = small_credit
    return bank.iloc[:1500], y[:1500], holder


def test_weighted_secureboost_equals_plaintext_weighted_boosting(data, make_channel):
    bank, y, holder = data
    party = PassiveParty(holder, policy=test_policy())
    channel = make_channel(party)
    sw = np.random.default_rng(3).uniform(0.2, 6.0, len(y))  # |w g| > 1: scaled slots
    model = _boost().fit(bank, y, holder=channel, sample_weight=sw)
    base, trees = boost_reference(model, bank, y, holder, floor=10, min_bin=30, weights=sw)
    assert model.base_score_ == pytest.approx(base, abs=1e-12)
    assert any(nd.owner == "holder" for t in model.trees_ for nd in t.nodes)
    assert_same_trees(model, party, trees)


def test_class_weight_is_a_per_label_sample_weight(data):
    bank, y, holder = data
    party = PassiveParty(holder, policy=test_policy())
    sw = np.linspace(0.5, 2.0, len(y))
    balanced = _boost(class_weight="balanced").fit(bank, y, holder=party, sample_weight=sw)
    aligned = bank.index.isin(holder.index)
    ya = y[aligned]
    expect = len(ya) / (2 * np.bincount(ya))  # scikit-learn's "balanced", on aligned rows
    w = np.zeros(len(y))
    w[aligned] = expect[ya] * sw[aligned]
    _, trees = boost_reference(balanced, bank, y, holder, floor=10, min_bin=30, weights=w)
    assert_same_trees(balanced, party, trees)
    as_dict = _boost(class_weight={0: 1.0, 1: 8.0}).fit(bank, y, holder=party)
    plain = _boost().fit(bank, y, holder=party)
    assert as_dict.base_score_ > plain.base_score_  # defaulters weigh more: higher prior
    np.testing.assert_array_equal(row_weights(np.array([0, 1, 1]), None, {"0": 2, "1": 3}),
                                  [2.0, 3.0, 3.0])  # JSON's string keys, as saved


def test_unit_weights_change_nothing_and_other_weights_do(data):
    bank, y, holder = data
    party = PassiveParty(holder, policy=test_policy())
    X = bank.iloc[:40]
    plain = _boost().fit(bank, y, holder=party).decision_function(X, holder=party)
    ones = _boost().fit(bank, y, holder=party, sample_weight=np.ones(len(y)))
    np.testing.assert_array_equal(ones.decision_function(X, holder=party), plain)
    heavy = _boost().fit(bank, y, holder=party, sample_weight=np.where(y == 1, 5.0, 1.0))
    assert np.max(np.abs(heavy.decision_function(X, holder=party) - plain)) > 1e-3


@pytest.mark.parametrize("sw, match", [
    (np.ones(10), "one weight per row"),
    (-np.ones(1500), "finite and >= 0: row 0"),
    (np.r_[np.ones(1499), np.nan], "row 1499"),
    (np.zeros(1500), "sums to 0"),
    (["a"] * 1500, "numbers"),
])
def test_bad_sample_weights_are_refused_before_any_key(data, sw, match):
    bank, y, holder = data
    party = PassiveParty(holder, policy=test_policy())
    with pytest.raises(InvalidInput, match=match):
        _boost().fit(bank, y, holder=party, sample_weight=sw)
    assert party.auditor.records == []  # refused before a session was opened


@pytest.mark.parametrize("cw", ["heavy", {2: 1.0}, {1: -1.0}, {1: float("nan")}, [1, 2]])
def test_bad_class_weights_are_refused(data, cw):
    bank, y, holder = data
    with pytest.raises(InvalidInput, match="class_weight"):
        _boost(class_weight=cw).fit(bank, y, holder=PassiveParty(holder, policy=test_policy()))
    with pytest.raises(InvalidInput, match="class_weight"):
        HeteroLogisticRegression(class_weight=cw, **KEYS).fit(
            bank, y, holder=PassiveParty(holder, policy=test_policy()))


def test_a_class_with_no_weight_is_refused(data):
    bank, y, holder = data
    with pytest.raises(InvalidInput, match="zero total sample_weight"):
        _boost().fit(bank, y, holder=PassiveParty(holder, policy=test_policy()),
                     sample_weight=(y == 0).astype(float))


# -- weighted WOE ---------------------------------------------------------------------------
def _holder_prebins(holder_aligned: pd.DataFrame, max_bin: int, floor: int):
    """The holder's WOE prebins, computed the way its step states them."""
    mapper = BinMapper(max_bin).fit(holder_aligned)
    raw = mapper.transform(holder_aligned).astype(np.int64)
    out = []
    for f in range(raw.shape[1]):
        cnt = np.bincount(raw[:, f], minlength=int(mapper.n_bins[f]) + 1)
        pre, size = floor_map(cnt, floor)
        out.append((pre[raw[:, f]], size))
    return out


@pytest.mark.parametrize("integer", [True, False])
def test_weighted_woe_equals_weighted_counts_on_the_holders_bins(data, make_channel, integer):
    bank, y, holder = data
    channel = make_channel(PassiveParty(holder, policy=test_policy()))
    rng = np.random.default_rng(5)
    sw = rng.integers(1, 6, len(y)).astype(float) if integer else rng.uniform(0.1, 3.0, len(y))
    woe = HeteroWOE(max_bin=8, optimal=False, **KEYS).fit(bank, y, holder=channel,
                                                          sample_weight=sw)
    aligned = sorted(i for i in bank.index if i in holder.index)
    pos = bank.index.get_indexer(aligned)
    ya, wa = y[pos], sw[pos]
    tol = 1e-9 if integer else 3e-4  # fractional weights travel at 16 bits
    for (pb, size), name in zip(_holder_prebins(holder.loc[aligned], 8, 10), holder.columns):
        ev = np.bincount(pb, weights=wa * ya, minlength=size)
        tot = np.bincount(pb, weights=wa, minlength=size)
        expect = woe_table(ev, np.bincount(pb, minlength=size), ["x"] * size, tot)
        got = woe.tables_[f"holder:{name}"]
        np.testing.assert_array_equal(got["Count"], expect["Count"])
        np.testing.assert_allclose(got["Event"], expect["Event"], rtol=tol)
        np.testing.assert_allclose(got["WoE"], expect["WoE"], atol=tol * 10)


def test_weighted_woe_of_bank_features_and_the_solver_rule(data):
    bank, y, holder = data
    party = PassiveParty(holder, policy=test_policy())
    sw = np.where(y == 1, 3.0, 1.0)
    woe = HeteroWOE(max_bin=6, optimal=True, **KEYS).fit(bank, y, holder=party,
                                                         sample_weight=sw)
    t = woe.tables_["past_delinquencies"]
    aligned = bank.index.isin(holder.index)
    assert t["Count"].sum() == aligned.sum()  # rows, not weight
    assert t["Event"].sum() == pytest.approx(3.0 * y[aligned].sum())
    # weights by label alone cancel in WOE (shares within each class); others do not
    unweighted = HeteroWOE(max_bin=6, optimal=True, **KEYS).fit(bank, y, holder=party)
    np.testing.assert_allclose(unweighted.iv_.sort_index(), woe.iv_.sort_index(), rtol=1e-9)
    other = HeteroWOE(max_bin=6, optimal=True, **KEYS).fit(
        bank, y, holder=party, sample_weight=np.random.default_rng(0).uniform(0.1, 5, len(y)))
    assert not np.allclose(unweighted.iv_.sort_index(), other.iv_.sort_index())
    with pytest.raises(InvalidInput, match="solver='dp'"):
        HeteroWOE(solver="optbinning", **KEYS).fit(bank, y, holder=party, sample_weight=sw)


# -- weighted hetero LR -----------------------------------------------------------------------
def test_weighted_lr_step_matches_the_plaintext_weighted_gradient():
    from fedcredit.crypto import generate_keypair
    from fedcredit.protocol import ActiveSession, InProcessChannel, align
    from fedcredit.protocol.logistic import bank as active_lr
    from fedcredit.protocol.logistic import math as lc

    rng = np.random.default_rng(2)
    n = 200
    ids = [f"id{i}" for i in range(n)]
    holder = pd.DataFrame(rng.normal(size=(n, 2)), index=ids, columns=["h0", "h1"])
    party = PassiveParty(holder, policy=test_policy())
    _, sk = generate_keypair(bits=TEST_KEY_BITS, insecure=True)
    s = ActiveSession(InProcessChannel(party), "lr", sk, workers=1)
    align(s, ids)
    rows = np.arange(n)
    ready = active_lr.lr_start(s, rows, learning_rate=0.1, decay=0.0, l2=0.0)
    st = party.find_session(s.id).state
    XA = lc.quantize(rng.normal(size=(n, 2)))
    y = (rng.random(n) < 0.3).astype(float)
    w = rng.uniform(0.0, 1.0, n)
    a = XA @ np.array([0.4, -0.2]) - 1.0
    stats = active_lr.lr_step(s, 0, rows, [], False)
    res = active_lr.lr_terms(s, 0, a, y, lc.to_fixed(XA), stats, ready.x_bits, 1e-3, 8,
                             weights=w)
    exact = w * (1 / (1 + np.exp(-(a + st.X @ st.opt.w))) - y)
    assert abs(res.intercept_grad - exact.sum()) < 5e-2
    np.testing.assert_allclose(res.feature_grad, XA.T @ exact, atol=5e-2)


def test_weighted_lr_over_both_channels(data, make_channel):
    bank, y, holder = data
    bank, y = bank.iloc[:800], y[:800]
    channel = make_channel(PassiveParty(holder, policy=test_policy()))

    def lr(**kw):
        return HeteroLogisticRegression(max_iter=1, batch_size=400, verbose=False, **KEYS, **kw)

    X = bank.iloc[:200]
    plain = lr().fit(bank, y, holder=channel)
    ones = lr().fit(bank, y, holder=channel, sample_weight=np.ones(len(y)))
    np.testing.assert_array_equal(ones.coef_bank_, plain.coef_bank_)
    heavy = lr(class_weight={0: 1, 1: 5}).fit(bank, y, holder=channel)
    p_plain = plain.predict_proba(X, holder=channel)[:, 1]
    p_heavy = heavy.predict_proba(X, holder=channel)[:, 1]
    assert p_heavy.mean() > p_plain.mean() + 0.05  # defaulters weigh five times more


def test_weighted_scorecard_runs_end_to_end(data):
    bank, y, holder = data
    party = PassiveParty(holder, policy=test_policy())
    sw = np.where(y == 1, 4.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        card = Scorecard(woe=HeteroWOE(max_bin=6, **KEYS),
                         lr=HeteroLogisticRegression(max_iter=1, batch_size=500, verbose=False,
                                                     **KEYS)).fit(bank, y, holder=party,
                                                                  sample_weight=sw)
    assert np.all(np.isfinite(card.score(bank.iloc[:50], holder=party)))
