"""GOSS (gradient-based one-side sampling): each federated tree encrypts only the rows of
the largest gradients and a scaled sample of the rest; the sums it keeps are unbiased; the
model stays close to the full one and is reproducible."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import TEST_KEY_BITS, RecordingChannel, test_policy

from fedcredit.errors import InvalidInput
from fedcredit.metrics import auc
from fedcredit.models import SecureBoostClassifier
from fedcredit.models.secureboost.boosting import goss_rows
from fedcredit.protocol import PassiveParty
from fedcredit.protocol.secureboost import messages as sb


def test_goss_keeps_the_largest_gradients_and_an_unbiased_sample_of_the_rest():
    rng = np.random.default_rng(0)
    g = rng.normal(size=10_000)
    sel, amp = goss_rows(g, 0.2, 0.1, np.random.default_rng(1))
    assert len(sel) == 3000 and np.all(np.diff(sel) > 0)
    top = np.argsort(-np.abs(g))[:2000]
    assert set(top) <= set(sel.tolist())
    assert set(np.unique(amp)) == {1.0, 8.0} and int((amp == 8.0).sum()) == 1000
    # over many draws the scaled sum is the full one
    h = np.abs(rng.normal(size=10_000))
    est = [float((h[s] * a).sum()) for s, a in (goss_rows(g, 0.2, 0.1,
                                                          np.random.default_rng(k))
                                                for k in range(200))]
    assert abs(np.mean(est) - h.sum()) < 0.01 * h.sum()


def _model(**kw):
    base = dict(n_estimators=4, max_depth=3, learning_rate=0.3, key_bits=TEST_KEY_BITS,
                insecure_key=True, verbose=False, n_jobs=2)
    base.update(kw)
    return SecureBoostClassifier(**base)


def test_goss_encrypts_only_the_sampled_rows_and_stays_close(small_credit):
    bank, y, holder = small_credit
    party = PassiveParty(holder, name="platform", policy=test_policy())
    tr, te = np.arange(3000), np.arange(3000, 4000)
    ch = RecordingChannel(party)
    goss = _model(goss_top_rate=0.3, goss_other_rate=0.2).fit(bank.iloc[tr], y[tr], holder=ch)
    full = _model().fit(bank.iloc[tr], y[tr], holder=party)
    aligned = sum(i in holder.index for i in bank.index[tr])
    starts = [m for m, _ in ch.sent if isinstance(m, sb.TreeStart)]
    assert len(starts) == 3  # tree 0 grows on the bank's features alone
    assert all(len(s.rows) // 4 == round(0.3 * aligned) + round(0.2 * aligned) for s in starts)
    X, yt = bank.iloc[te], y[te]
    a_goss = auc(yt, goss.predict_proba(X, holder=party)[:, 1])
    a_full = auc(yt, full.predict_proba(X, holder=party)[:, 1])
    assert a_goss > a_full - 0.03, (a_goss, a_full)
    again = _model(goss_top_rate=0.3, goss_other_rate=0.2).fit(bank.iloc[tr], y[tr],
                                                              holder=party)
    assert [[(n.node_id, n.owner, n.count) for n in t.nodes] for t in goss.trees_] == \
        [[(n.node_id, n.owner, n.count) for n in t.nodes] for t in again.trees_]


@pytest.mark.parametrize("kw", [dict(goss_top_rate=1.2), dict(goss_top_rate=0.5,
                                                              goss_other_rate=0.6),
                                dict(goss_top_rate=0.2, subsample=0.5)])
def test_goss_settings_are_checked(small_credit, kw):
    bank, y, holder = small_credit
    with pytest.raises(InvalidInput, match="GOSS"):
        _model(**kw).fit(bank, y, holder=PassiveParty(holder, policy=test_policy()))
