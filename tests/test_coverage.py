"""Holder coverage: every scoring answer says, per enterprise, whether the holder had its data
and a current consent — false for an enterprise it does not know, one that never consented
and one whose consent was revoked — over both transports and all three scoring protocols."""
from __future__ import annotations

import numpy as np
import pytest

from fedcredit.datasets import make_credit_data
from fedcredit.models import HeteroLogisticRegression, SecureBoostClassifier
from fedcredit.models.secureboost.private_scoring import private_decision_function
from fedcredit.protocol import BankSession
from fedcredit.protocol.logistic import bank as lr_steps
from fedcredit.protocol.secureboost import bank as sb_steps
from fedcredit.protocol.wire import flags_from_bytes, flags_to_bytes, join_flags

from conftest import test_policy
from fedcredit.protocol import PassiveParty

KEYS = dict(key_bits=1024, insecure_key=True, n_jobs=1, verbose=False)  # INSECURE: tests only


class Registry:
    """Consent: everyone but ``denied`` (mutable, so a test can revoke)."""

    def __init__(self):
        self.denied: set[str] = set()

    def allowed(self, bank, purpose, ids):
        return np.array([i not in self.denied for i in ids], dtype=bool)


@pytest.fixture(scope="module")
def data():
    bank, holder = make_credit_data(rows=900, seed=5, overlap=0.9)
    bank, holder = bank.set_index("uscc"), holder.set_index("uscc")
    y = bank.pop("label").to_numpy()
    return bank, y, holder


def _expected(bank, holder, reg):
    return np.array([u in holder.index and u not in reg.denied for u in bank.index])


def test_flags_round_trip_and_refuse_a_wrong_length():
    flags = np.array([True, False, True, True, False, False, True, False, True])
    assert (flags_from_bytes(flags_to_bytes(flags), 9) == flags).all()
    assert flags_from_bytes(b"", 9) is None
    assert join_flags([flags, None], 18) is None
    with pytest.raises(Exception, match="holder coverage"):
        flags_from_bytes(b"\x00", 9, "holder coverage")


def test_scoring_answers_say_which_enterprises_the_holder_covered(data, make_channel):
    bank, y, holder = data
    reg = Registry()
    party = PassiveParty(holder, policy=test_policy(), consent=reg)
    channel = make_channel(party)
    boost = SecureBoostClassifier(n_estimators=2, max_depth=2, **KEYS).fit(bank, y, channel)
    lr = HeteroLogisticRegression(max_iter=2, **KEYS).fit(bank, y, channel)
    X = bank.iloc[:120]
    unknown = [u for u in X.index if u not in holder.index]
    assert unknown, "the sample needs enterprises the holder does not know"
    never = [u for u in X.index if u in holder.index][:5]
    reg.denied |= set(never)  # withdrawn after training: the next request honours it
    want = _expected(X, holder, reg)
    ids = list(X.index)
    with BankSession(channel, "score", model_id=boost.model_id_) as s:
        masks, covered = sb_steps.leaf_masks_covered(s, ids)
    assert masks and covered is not None and (covered == want).all()
    with BankSession(channel, "score", model_id=lr.model_id_) as s:
        u, covered = lr_steps.partial_scores_covered(s, ids, batch=50)  # three batches
    assert len(u) == len(ids) and (covered == want).all()


def test_estimators_return_coverage_and_refuse_uncovered_on_request(data, make_channel):
    bank, y, holder = data
    reg = Registry()
    party = PassiveParty(holder, policy=test_policy(min_private_path_bits=0), consent=reg)
    channel = make_channel(party)
    model = SecureBoostClassifier(n_estimators=2, max_depth=2, **KEYS).fit(bank, y, channel)
    X = bank.iloc[:60]
    reg.denied |= set([u for u in X.index if u in holder.index][:3])
    want = _expected(X, holder, reg)
    assert (~want).sum() >= 4
    proba, covered = model.predict_proba(X, holder=channel, return_coverage=True)
    assert (covered == want).all() and not np.isnan(proba).any()
    assert (model.explain(X, holder=channel).attrs["holder_covered"] == want).all()
    # private scoring (this tiny model hides too little of the path: the floor is lowered)
    private = private_decision_function(model, X.iloc[:8], channel, min_bits=None,
                                        return_coverage=True)[1]
    assert (private == want[:8]).all()
    model.set_params(scoring="auto", uncovered="refuse")
    refused = model.predict_proba(X, holder=channel)[:, 1]
    assert np.isnan(refused[~want]).all() and not np.isnan(refused[want]).any()
    np.testing.assert_array_equal(refused[want], proba[want, 1])
    with pytest.raises(Exception, match="uncovered must be one of"):
        model.set_params(uncovered="maybe").predict_proba(X, holder=channel)
