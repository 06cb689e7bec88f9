"""Scorecard: points per bin equal optbinning's pdo/odds formula for the same coefficients and
WOE; scoring over both channels adds the bank's and the holder's points."""
from __future__ import annotations

import numpy as np

from fedcredit.metrics import auc
from fedcredit.models import HeteroLogisticRegression, HeteroWOE, Scorecard
from fedcredit.protocol import PassiveParty

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
              b0=float(sc.model_.intercept_[0]))
    np.testing.assert_allclose(table["Points"].to_numpy(), ref, atol=1e-9)
    # a score is the sum of the enterprise's points; higher score = lower risk
    s = sc.score(bank, holder=channel)
    assert auc(y, -s) > 0.6
    aligned = [i for i in bank.index if i in holder.index][:20]
    z = sc.decision_function(bank.loc[aligned], channel)
    np.testing.assert_allclose(sc.score(bank.loc[aligned], holder=channel),
                               sc.offset - sc.factor * z)
