"""Scorecard: points per bin equal optbinning's pdo/odds formula for the same coefficients and
WOE; scoring over both channels adds the bank's and the holder's points; the holder's
blinded WOE (a secret affine map, compensated in the L2 penalty) leaves the optimum, and so
the points, unchanged."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from fedcredit.metrics import auc
from fedcredit.models import HeteroLogisticRegression, HeteroWOE, Scorecard
from fedcredit.models.scorecard import blinding
from fedcredit.protocol import PassiveParty
from fedcredit.protocol.woe.math import final_bins

from conftest import TEST_KEY_BITS, test_policy
from optbinning_ref import run


def test_scorecard_points_and_scores(small_credit, make_channel):
    bank, y, holder = small_credit
    bank, y = bank.iloc[:1500], y[:1500]
    party = PassiveParty(holder, policy=test_policy(min_node_samples=20))
    channel = make_channel(party)
    woe = HeteroWOE(max_bin=8, key_bits=TEST_KEY_BITS, insecure_key=True, n_jobs=2)
    woe.fit(bank, y, holder=channel)
    feats = list(woe.iv_.index[:6])
    assert any(f.startswith("holder:") for f in feats)
    lr = HeteroLogisticRegression(key_bits=TEST_KEY_BITS, insecure_key=True, verbose=False,
                                  n_jobs=2, max_iter=2, batch_size=300)
    sc = Scorecard(woe=woe, features=feats, lr=lr, base_score=600, base_odds=50, pdo=20)
    sc.fit(bank, y, holder=channel)
    table = sc.points_table_
    # holder bins are named by the holder's labels only
    hb = table[table["party"] == "holder"]["Bin"]
    assert set(hb) <= {f"bin {k}" for k in range(50)} | {"missing"}
    # optbinning's pdo_odds formula with the same coefficients and WOE
    coef = table["Coefficient"].to_numpy()
    ref = run("""
from optbinning.scorecard.scorecard import _compute_scorecard_points
out = _compute_scorecard_points(np.array(p["pts"]), [None] * p["n"], "pdo_odds",
                                {"pdo": 20, "odds": 50, "scorecard_points": 600},
                                p["b0"], False).tolist()
""", pts=(coef * table["WoE"].to_numpy()).tolist(), n=len(feats),
              b0=sc.intercept_)
    np.testing.assert_allclose(table["Points"].to_numpy(), ref, atol=1e-9)
    # a score is the sum of the enterprise's points; higher score = lower risk
    s = sc.score(bank, holder=channel)
    assert auc(y, -s) > 0.6
    aligned = [i for i in bank.index if i in holder.index][:20]
    z = sc.decision_function(bank.loc[aligned], channel)
    np.testing.assert_allclose(sc.score(bank.loc[aligned], holder=channel),
                               sc.offset - sc.factor * z)
    # the holder was sent blinded values, not its bins' WOE, yet the score over the channel
    # is the sum of the enterprise's points (to the fixed-point grid of both parties' values:
    # 2^-13 per feature x |weight| x factor, well under 0.05 points)
    assert sc.blind_woe and not np.allclose(np.abs(sc.blind_scale_), 1.0)
    aligned = [i for i in bank.index if i in holder.index][:300]
    np.testing.assert_allclose(sc.score(bank.loc[aligned], holder=channel),
                               _points_sum(sc, bank.loc[aligned], holder.loc[aligned], party),
                               atol=0.05)
    if make_channel.transport != "inprocess":
        return
    # blinding off (once): the same ranking power
    plain = Scorecard(woe=woe, features=feats, lr=lr, blind_woe=False).fit(bank, y, channel)
    assert np.all(plain.blind_scale_ == 1) and np.all(plain.blind_offset_ == 0)
    assert abs(auc(y, -plain.score(bank, holder=channel)) - auc(y, -s)) < 0.01


def _points_sum(sc, bank, holder, party) -> np.ndarray:
    """Each enterprise's points looked up by bin in the points table (the bank's bins from
    its binning, the holder's from the holder's stored binning: test-side knowledge)."""
    t = sc.points_table_
    total = np.zeros(len(bank))
    for f in sc.feature_names_bank_:
        w = sc.woe_.transform_bank(bank, [f])[f].to_numpy()
        rows = t[t["Variable"] == f]
        k = np.abs(w[:, None] - rows["WoE"].to_numpy()[None, :]).argmin(axis=1)
        total += rows["Points"].to_numpy()[k]
    bins = final_bins(party.models.load(sc.woe_.model_id_).mapper, holder)
    for name in sc.holder_feature_names_:
        rows = t[t["Variable"] == f"holder:{name}"]
        total += rows["Points"].to_numpy()[bins[:, list(holder.columns).index(name)]]
    return total


def test_blinding_leaves_the_penalised_optimum_and_the_points_unchanged():
    """The compensation is exact: weights on (alpha x bank WOE, +-alpha x holder WOE + b)
    with C / alpha^2 map back to the coefficients of the plain fit with C; checked with an
    exact solver on WOE-coded data, for the blinding the scorecard draws."""
    rng = np.random.default_rng(4)
    n = 3000
    y = (rng.random(n) < 0.1).astype(int)
    cols, tables = [], []
    for _ in range(6):
        k = int(rng.integers(3, 7))
        b = np.minimum(rng.integers(0, k, n), np.where(y == 1, rng.integers(0, k, n), k))
        ev, cnt = np.bincount(b, weights=y, minlength=k), np.bincount(b, minlength=k)
        w = np.log((cnt - ev) / (n - y.sum())) - np.log(ev / y.sum())
        cols.append(w[b])
        tables.append(pd.DataFrame({"Count": cnt, "WoE": w}))
    X = np.array(cols).T
    factor = 20 / np.log(2)
    for C in (1.0, 0.01):
        ref = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, y)
        for _ in range(5):
            alpha, scale, off = blinding(tables[3:])
            Xb = np.c_[X[:, :3] * alpha, X[:, 3:] * scale + off]
            fit = LogisticRegression(C=C / alpha ** 2, tol=1e-12, max_iter=10_000).fit(Xb, y)
            coef = fit.coef_[0] * np.r_[[alpha] * 3, scale]
            b0 = fit.intercept_[0] + fit.coef_[0][3:] @ off
            # per-bin points differ by factor x |d coef x WoE + d b0 / n_features|
            diff = np.abs((coef - ref.coef_[0]) * X + (b0 - ref.intercept_[0]) / 6) * factor
            assert diff.max() < 1e-3, (C, alpha, diff.max())


def test_the_blinding_is_a_function_of_the_banks_secret_only():
    from fedcredit.models.scorecard import blinding

    tables = [pd.DataFrame({"Count": [30, 50, 20], "WoE": [0.4, -0.1, -0.6]})] * 3
    a = blinding(tables, secret=b"woe tables of this fit")
    b = blinding(tables, secret=b"woe tables of this fit")
    c = blinding(tables, secret=b"woe tables of another fit")
    for x, y in zip(a[1:], b[1:]):
        np.testing.assert_array_equal(x, y)  # the same fit, the same scorecard
    assert a[0] == b[0] and a[0] != c[0]
    assert 0.5 <= a[0] <= 2 and np.allclose(np.abs(a[1]), a[0])
    assert blinding(tables, on=False)[0] == 1.0
    assert blinding(tables)[0] != blinding(tables)[0]  # no secret: fresh randomness
