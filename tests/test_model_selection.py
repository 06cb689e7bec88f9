"""``cross_validate``: one alignment, k folds trained in one session (SecureBoost, LR) or
refitted (a scorecard); each fold's model is the model a plain fit on its rows gives; AUC/KS
per fold; over both channels."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.model_selection import KFold

from conftest import TEST_KEY_BITS, RecordingChannel, test_policy
from fedcredit.errors import InvalidInput
from fedcredit.metrics import auc
from fedcredit.model_selection import cross_validate
from fedcredit.models import HeteroLogisticRegression, HeteroWOE, Scorecard, SecureBoostClassifier
from fedcredit.protocol import PassiveParty

KEYS = dict(key_bits=TEST_KEY_BITS, insecure_key=True, n_jobs=1, he_scheme="ou")


def _boost(**kw) -> SecureBoostClassifier:
    base = dict(n_estimators=2, max_depth=3, learning_rate=0.3, max_bin=16, verbose=False, **KEYS)
    base.update(kw)
    return SecureBoostClassifier(**base)


@pytest.fixture(scope="module")
def data(small_credit):
    bank, y, holder = small_credit
    return bank.iloc[:1500], y[:1500], holder


def _sent(channel, name):
    return [msg for msg, _ in channel.sent if type(msg).__name__ == name]


def test_secureboost_folds_share_one_alignment_and_one_session(data):
    bank, y, holder = data
    party = PassiveParty(holder, policy=test_policy())
    channel = RecordingChannel(party)
    res = cross_validate(_boost(), bank, y, holder=channel, cv=3, return_estimator=True)
    assert len(_sent(channel, "PsiAlign")) == 1
    opened = [m.task for m in _sent(channel, "OpenSession")]
    assert opened.count("train") == 1 and opened.count("score") == 3
    assert len(_sent(channel, "BoostStart")) == 3
    assert res["n_aligned"] == int(bank.index.isin(holder.index).sum())
    for key in ("fit_time", "score_time", "test_roc_auc", "test_ks"):
        assert res[key].shape == (3,)
    assert np.all(res["test_roc_auc"] > 0.6) and np.all((res["test_ks"] > 0) & (res["test_ks"] < 1))
    # each fold trains on the others: the three test folds partition the aligned rows
    sizes = [model.n_aligned_ for model in res["estimator"]]
    assert sum(res["n_aligned"] - n for n in sizes) == res["n_aligned"]
    assert len({model.model_id_ for model in res["estimator"]}) == 3


def test_a_fold_equals_a_plain_fit_on_its_rows(data, make_channel):
    bank, y, holder = data
    party = PassiveParty(holder, policy=test_policy())
    channel = make_channel(party)
    aligned = sorted(i for i in bank.index if i in holder.index)
    pos = bank.index.get_indexer(aligned)
    folds = KFold(3, shuffle=True, random_state=4)
    res = cross_validate(_boost(), bank, y, holder=channel, cv=folds, return_estimator=True)
    tr, te = next(folds.split(np.zeros(len(aligned))))
    plain = _boost().fit(bank.iloc[pos[np.sort(tr)]], y[pos[np.sort(tr)]], holder=channel)
    fold = res["estimator"][0]
    assert [t.to_dict() for t in fold.trees_] == [t.to_dict() for t in plain.trees_]
    a = party.models.load(fold.model_id_)
    b = party.models.load(plain.model_id_)
    assert a.splits == b.splits and a.trees == b.trees
    X_te = bank.iloc[pos[np.sort(te)]]
    p = fold.predict_proba(X_te, holder=channel)[:, 1]
    assert res["test_roc_auc"][0] == pytest.approx(auc(y[pos[np.sort(te)]], p))


def test_lr_and_callable_scoring_over_both_channels(data, make_channel):
    bank, y, holder = data
    channel = make_channel(PassiveParty(holder, policy=test_policy()))
    lr = HeteroLogisticRegression(max_iter=1, batch_size=400, verbose=False, **KEYS)

    def mean_pd(y_true, score):
        return float(np.mean(score))

    res = cross_validate(lr, bank, y, holder=channel, cv=2,
                         scoring={"auc": "roc_auc", "mean_pd": mean_pd})
    assert res["test_auc"].shape == (2,) and np.all(res["test_auc"] > 0.6)
    assert np.all((res["test_mean_pd"] > 0) & (res["test_mean_pd"] < 0.5))


def test_a_scorecard_refits_per_fold_on_the_aligned_rows(data):
    bank, y, holder = data
    channel = RecordingChannel(PassiveParty(holder, policy=test_policy()))
    card = Scorecard(woe=HeteroWOE(max_bin=6, **KEYS),
                     lr=HeteroLogisticRegression(max_iter=1, batch_size=400, verbose=False,
                                                 **KEYS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = cross_validate(card, bank, y, holder=channel, cv=2, scoring="ks")
    assert res["test_ks"].shape == (2,) and np.all(res["test_ks"] > 0.1)
    tasks = [m.task for m in _sent(channel, "OpenSession")]
    assert tasks.count("align") == 1 and tasks.count("woe") == 2 and tasks.count("lr") == 2


@pytest.mark.parametrize("kw, match", [
    (dict(cv=1), "cv must be >= 2"),
    (dict(cv="five"), "splitter"),
    (dict(scoring="accuracy"), "unknown scoring"),
    (dict(scoring=[3]), "neither a name nor a callable"),
])
def test_bad_arguments_are_refused(data, kw, match):
    bank, y, holder = data
    with pytest.raises(InvalidInput, match=match):
        cross_validate(_boost(), bank, y, holder=PassiveParty(holder, policy=test_policy()),
                       **kw)


def test_only_federated_scorers_cross_validate(data):
    bank, y, holder = data
    party = PassiveParty(holder, policy=test_policy())
    with pytest.raises(InvalidInput, match="federated estimator that scores"):
        cross_validate(HeteroWOE(**KEYS), bank, y, holder=party)
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(InvalidInput, match="federated estimator"):
        cross_validate(LogisticRegression(), bank, y, holder=party)
