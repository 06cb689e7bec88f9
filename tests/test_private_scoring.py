"""Private SecureBoost scoring (Fed-EINI style): same scores as plain scoring, one
re-randomised ciphertext per enterprise, consent, id cap, pinned trees, complexity check
and audit as the holder's plain scoring path."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import GrpcHolder, test_policy

from fedcredit.binning import BinMapper
from fedcredit.datasets import make_credit_data
from fedcredit.errors import InvalidInput, PolicyViolation, ProtocolError, ResourceLimit
from fedcredit.models import SecureBoostClassifier
from fedcredit.models.secureboost.private_scoring import (
    private_decision_function,
    private_path_bits,
    private_predict_proba,
    scoring_key,
)
from fedcredit.protocol import BankSession, InProcessChannel, PassiveParty
from fedcredit.protocol.private_scoring import bank as steps
from fedcredit.protocol.private_scoring import messages as pm
from fedcredit.protocol.private_scoring.math import (
    FRAC_BITS,
    check_complexity,
    open_leaves,
    sum_reachable,
)
from fedcredit.protocol.secureboost.math import reachable_leaves

KEYS = dict(key_bits=1024, insecure_key=True, n_jobs=1, verbose=False)


class Revoked:
    """Consent for all but a given set of enterprises."""

    def __init__(self, out):
        self.out = set(out)

    def allowed(self, bank, purpose, ids):
        return np.array([i not in self.out for i in ids], dtype=bool)


@pytest.fixture(scope="module")
def fitted():
    bank, holder = make_credit_data(rows=1500, seed=21, overlap=0.9)
    bank, holder = bank.set_index("uscc"), holder.set_index("uscc")
    y = bank.pop("label").to_numpy()
    party = PassiveParty(holder, policy=test_policy())
    channel = InProcessChannel(party)
    model = SecureBoostClassifier(n_estimators=20, max_depth=3, max_bin=8, learning_rate=0.3,
                                  scoring="plain", **KEYS).fit(bank, y, channel)
    return bank, holder, party, channel, model


def _bound(model) -> float:
    return len(model.trees_) * 2.0 ** -(FRAC_BITS + 1)


def test_open_leaves_counts_the_worst_bank_path():
    leaf = lambda i: (i, -1, -1, "leaf", -1)  # noqa: E731
    # bank root: left a holder split (2 leaves), right a leaf -> the right path leaves 1
    tree = [(0, 1, 2, "bank", -1), (1, 3, 4, "holder", 1), leaf(2), leaf(3), leaf(4)]
    assert open_leaves(tree) == 1
    tree = [(0, 1, 2, "holder", 1), (1, 3, 4, "bank", -1), (2, 5, 6, "holder", 2),
            leaf(3), leaf(4), leaf(5), leaf(6)]
    assert open_leaves(tree) == 3  # 1 (bank picks one) + 2
    with pytest.raises(PolicyViolation):
        check_complexity([tree] * 10, 32)
    assert check_complexity([tree] * 21, 32) == pytest.approx(21 * np.log2(3))


def test_private_scores_equal_plain_scores(fitted):
    bank, _, party, channel, model = fitted
    X = bank.iloc[:120]  # holder rows and enterprises the holder does not have
    plain = model.decision_function(X, channel)
    private = private_decision_function(model, X, channel)
    np.testing.assert_allclose(private, plain, rtol=0, atol=_bound(model))
    p = private_predict_proba(model, X.iloc[:5], channel)
    np.testing.assert_allclose(p, model.predict_proba(X.iloc[:5], channel), atol=1e-6)
    ops = [r for r in party.auditor.records if r["operation"] == "private_predict"]
    assert ops and ops[-1]["enterprises"] == int(X.iloc[:5].index.isin(party.features.index)
                                                 .sum())


def test_auto_scoring_is_private_online_and_plain_in_bulk(fitted):
    bank, _, party, channel, model = fitted
    X = bank.iloc[300:340]
    plain = model.decision_function(X, channel)
    ops = lambda: [r["operation"] for r in party.auditor.records  # noqa: E731
                   if not r["operation"].startswith("open_session")]
    model.set_params(scoring="auto")
    try:
        before = len(ops())
        one = model.decision_function(X.iloc[[3]], channel)
        assert ops()[before:] == ["private_predict"]
        np.testing.assert_allclose(one, plain[[3]], rtol=0, atol=_bound(model))
        before = len(ops())
        np.testing.assert_array_equal(model.decision_function(X, channel), plain)  # 40 rows
        assert ops()[before:] == ["predict"]
        model.set_params(scoring="loud")
        with pytest.raises(InvalidInput, match="scoring must be one of"):
            model.decision_function(X.iloc[[3]], channel)
    finally:
        model.set_params(scoring="plain")
    y = (np.arange(len(bank)) % 7 == 0).astype(int)
    small = SecureBoostClassifier(n_estimators=3, max_depth=2, max_bin=8, **KEYS).fit(
        bank, y, channel)  # too small to hide the path: auto scores it plainly
    assert private_path_bits(small) < 32
    before = len(ops())
    small.decision_function(X.iloc[[3]], channel)
    assert ops()[before:] == ["predict"]


def test_over_grpc_with_tls_one_enterprise_per_call(fitted, tls_dir):
    bank, _, party, channel, model = fitted
    server = GrpcHolder(party, tls_dir)
    try:
        ch = server.channel()
        X = bank.iloc[200:206]
        one = np.concatenate([private_decision_function(model, X.iloc[[i]], ch)
                              for i in range(len(X))])
        np.testing.assert_allclose(one, model.decision_function(X, channel), rtol=0,
                                   atol=_bound(model))
        model.close_scoring()
    finally:
        server.stop()


def test_revoked_consent_scores_as_missing_like_plain_scoring(fitted):
    bank, holder, party, _, model = fitted
    X = bank[bank.index.isin(holder.index)].iloc[:30]
    revoked = PassiveParty(holder, policy=test_policy(), consent=Revoked(X.index[:10]),
                           models=party.models)
    ch = InProcessChannel(revoked)
    np.testing.assert_allclose(private_decision_function(model, X, ch),
                               model.decision_function(X, ch), rtol=0, atol=_bound(model))
    rec = [r for r in revoked.auditor.records if r["operation"] == "private_predict"]
    assert rec[-1]["enterprises"] == 20
    model.close_scoring()


def test_small_models_are_refused_by_the_bank_and_the_holder(fitted):
    bank, _, party, channel, _ = fitted
    y = (np.arange(len(bank)) % 5 == 0).astype(int)
    small = SecureBoostClassifier(n_estimators=2, max_depth=2, max_bin=8, **KEYS)
    small.fit(bank.iloc[:600], y[:600], channel)
    assert private_path_bits(small) < 32
    with pytest.raises(PolicyViolation, match="too small"):
        private_decision_function(small, bank.iloc[:3], channel)
    with pytest.raises(PolicyViolation, match="bits"):
        private_decision_function(small, bank.iloc[:3], channel, min_bits=None)


def _request(model, session, X, trees=None, **override):
    sk = scoring_key(model)
    bins = model.mapper_.transform(X)
    fed = [(i, t) for i, t in zip(model.tree_ids_, model.trees_) if i >= 0]
    if trees is not None:
        fed = [f for f in fed if f[0] in trees]
    return steps.private_scores(session, sk, X.index.tolist(), [i for i, _ in fed],
                                [t.leaf_values() for _, t in fed],
                                [t.bank_reachable(bins, model.mapper_.n_bins) for _, t in fed],
                                **override)


def test_every_request_sums_every_tree_and_inputs_are_checked(fitted):
    bank, _, party, channel, model = fitted
    fed = [i for i in model.tree_ids_ if i >= 0]
    with BankSession(channel, "score", model_id=model.model_id_) as s:
        _request(model, s, bank.iloc[:2])
    for subset in (fed[1:], fed[:3]):  # differencing one tree; a subset too small to hide
        with BankSession(channel, "score", model_id=model.model_id_) as s:
            with pytest.raises(PolicyViolation, match="sums every tree of the model"):
                _request(model, s, bank.iloc[:2], trees=set(subset))
    pk = scoring_key(model).public_key
    with BankSession(channel, "score", model_id=model.model_id_) as s:
        n_leaves = [len(t.leaves) for i, t in zip(model.tree_ids_, model.trees_) if i >= 0]
        good = dict(session_id=s.id, ids=["a"], trees=fed, n_leaves=n_leaves,
                    scheme=pk.scheme, public_key=pk.to_bytes())
        with pytest.raises(InvalidInput, match="leaf counts"):
            s.call(pm.PrivateScoreRequest(**{**good, "n_leaves": [1] * len(fed)}),
                   pm.PrivateScores)
        with pytest.raises(InvalidInput, match="expected"):
            s.call(pm.PrivateScoreRequest(**good, leaf_values=b"\x01" * pk.ciphertext_bytes),
                   pm.PrivateScores)
        with pytest.raises(InvalidInput, match="twice"):
            s.call(pm.PrivateScoreRequest(**{**good, "trees": fed[:1] * 2}), pm.PrivateScores)
    small = PassiveParty(party.features, policy=test_policy(max_predict_ids=1),
                         models=party.models)
    with BankSession(InProcessChannel(small), "score", model_id=model.model_id_) as s:
        with pytest.raises(ResourceLimit):
            _request(model, s, bank.iloc[:2])


def test_a_training_session_cannot_score_privately(fitted):
    _, _, _, channel, model = fitted
    sk = scoring_key(model)
    with BankSession(channel, "train", sk) as s:
        with pytest.raises(ProtocolError, match="not a score"):
            s.call(pm.PrivateScoreRequest(session_id=s.id), pm.PrivateScores)


def test_replies_are_rerandomised(fitted):
    """The holder's reply is not the plain product of the bank's ciphertexts: the bank
    cannot recognise which of its ciphertexts were multiplied."""
    bank, holder, party, channel, model = fitted
    sk = scoring_key(model)
    pk = sk.public_key
    X = bank[bank.index.isin(holder.index)].iloc[:4]
    seen = {}

    class Tap(InProcessChannel):
        def exchange(self, requests):
            reqs = list(requests)
            for r in reqs:
                if isinstance(r, pm.PrivateScoreRequest):
                    seen["req"] = r
            for out in super().exchange(reqs):
                if isinstance(out, pm.PrivateScores):
                    seen["rep"] = out
                yield out

    model.close_scoring()
    private_decision_function(model, X, Tap(party))
    req, rep = seen["req"], seen["rep"]
    leaves = pk.from_bytes_batch(req.leaf_values)
    stored = party.models.load(model.model_id_)
    mapper = BinMapper.from_dict(stored.mapper)
    bins = mapper.transform(party.features.reindex(X.index))
    cols = []
    for t in req.trees:  # grading only: the leaves the holder's splits allow
        k, packed = reachable_leaves(stored.trees[t], stored.splits, bins, mapper.n_bins)
        bits = np.frombuffer(packed, dtype=np.uint8).reshape(len(X), -1)
        cols.append(np.unpackbits(bits, axis=1)[:, :k].astype(bool))
    product = sum_reachable(pk, leaves, np.concatenate(cols, axis=1))
    reply = pk.from_bytes_batch(rep.scores)
    assert sk.decrypt(product) == sk.decrypt(reply)
    assert not set(product.values) & set(reply.values)
    again = list(channel.exchange([req]))[0]  # the same request, answered afresh
    assert not set(pk.from_bytes_batch(again.scores).values) & set(reply.values)
    model.close_scoring()


def test_a_holder_may_refuse_plain_leaf_masks(fitted):
    bank, _, party, _, model = fitted
    strict = PassiveParty(party.features, policy=test_policy(allow_plain_scoring=False),
                          models=party.models)
    ch = InProcessChannel(strict)
    X = bank.iloc[:3]
    with pytest.raises(PolicyViolation, match="privately only"):
        model.decision_function(X, ch)  # the fixture's model scores plainly
    np.testing.assert_allclose(private_decision_function(model, X, ch),
                               model.decision_function(X, InProcessChannel(party)), rtol=0,
                               atol=_bound(model))
    model.close_scoring()
