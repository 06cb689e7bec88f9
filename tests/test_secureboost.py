"""SecureBoost end to end: lossless against a plaintext reference, quality against LightGBM,
over both channels (in-process and gRPC with mutual TLS)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedcredit.binning import BinMapper
from fedcredit.crypto import FixedPoint
from fedcredit.metrics import auc
from fedcredit.models import SecureBoostClassifier
from fedcredit.protocol import PassiveParty

from conftest import TEST_KEY_BITS, stratified_split, test_policy
from reference_boost import grow_reference


def _model(**kw):
    base = dict(n_estimators=3, max_depth=3, learning_rate=0.3, max_bin=16, min_child_samples=20,
                reg_lambda=1.0, key_bits=TEST_KEY_BITS, insecure_key=True, verbose=False, n_jobs=2)
    base.update(kw)
    return SecureBoostClassifier(**base)


def _reference_trees(model, bank, y, holder, floor, min_bin=0):
    """Boost with the independent plaintext reference on the same aligned rows and bins."""
    aligned = [i for i in bank.index if i in holder.index]
    Xa = bank.loc[aligned]
    ya = y[bank.index.get_indexer(aligned)]
    Ha = holder.loc[aligned]
    bank_bins = model.mapper_.transform(Xa).astype(np.int64)
    hm = BinMapper(model.max_bin).fit(Ha)
    holder_bins = hm.transform(Ha).astype(np.int64)
    holder_nb = hm.n_bins.tolist()
    holder_missing = (holder_bins == np.array(holder_nb)[None, :]).any(axis=0)
    fp = FixedPoint(model.frac_bits)
    rate = ya.mean()
    raw = np.full(len(ya), np.log(rate / (1 - rate)))
    rows = np.arange(len(ya))
    trees = []
    for t in range(model.n_estimators):
        p = 1 / (1 + np.exp(-raw))
        g, h = p - ya, np.maximum(p * (1 - p), 1e-16)
        nodes = grow_reference(bank_bins, model.mapper_.n_bins.tolist(), holder_bins, holder_nb,
                               holder_missing, g, h, fp.encode(g), fp.encode(h),
                               max_depth=model.max_depth, min_child_samples=model.min_child_samples,
                               min_child_weight=model.min_child_weight, reg_lambda=model.reg_lambda,
                               gamma=model.gamma, floor=floor, scale=fp.scale,
                               learning_rate=model.learning_rate, rows=rows,
                               bank_only=t < model.bank_only_trees, min_bin=min_bin)
        for nd in nodes:
            if nd["owner"] == "leaf":
                raw[nd["rows"]] += nd["value"]
        trees.append(nodes)
    return trees


@pytest.mark.parametrize("min_bin", [0, 30])
def test_lossless_against_plaintext_reference(small_credit, make_channel, min_bin):
    """Identical trees with the minimum bin mass off and on (the reference mirrors it)."""
    bank, y, holder = small_credit
    bank, y = bank.iloc[:2500], y[:2500]
    party = PassiveParty(holder, policy=test_policy(min_node_samples=10, min_bin_samples=min_bin))
    channel = make_channel(party)
    model = _model(n_estimators=3, max_depth=3).fit(bank, y, holder=channel)
    stored = party.models.load(model.model_id_)
    ref = _reference_trees(model, bank, y, holder, floor=10, min_bin=min_bin)
    assert any(nd.owner == "holder" for t in model.trees_ for nd in t.nodes), \
        "the holder's features never won a split: the test would not exercise the protocol"
    for tree, rtree in zip(model.trees_, ref):
        assert len(tree.nodes) == len(rtree)
        for nd, rn in zip(tree.nodes, rtree):
            assert (nd.node_id, nd.owner, nd.left, nd.right, nd.count) == (
                rn["id"], rn["owner"], rn["left"], rn["right"], rn["count"])
            if nd.owner == "bank":
                assert (nd.feature, nd.bin, nd.missing_left) == (rn["feature"], rn["bin"], rn["ml"])
            elif nd.owner == "holder":
                assert stored.splits[nd.record_id] == (rn["feature"], rn["bin"], rn["ml"])
                assert nd.feature == rn["feature"]
            else:
                assert abs(nd.value - rn["value"]) <= 1e-6


def test_lossless_with_bank_only_trees_and_a_floor_above_min_child_samples(small_credit):
    """The first tree never reaches the holder, and a bank split whose smaller child is below
    the holder's floor (min_child_samples 5 < floor 40) keeps both children from it; the
    trees still match the plaintext reference, which applies the same two rules."""
    from conftest import RecordingChannel

    bank, y, holder = small_credit
    bank, y = bank.iloc[:2500], y[:2500]
    party = PassiveParty(holder, policy=test_policy(min_node_samples=40))
    channel = RecordingChannel(party)
    model = _model(n_estimators=3, max_depth=3, min_child_samples=5, bank_only_trees=1)
    model.fit(bank, y, holder=channel)
    starts = [msg.tree for msg, _ in channel.sent if type(msg).__name__ == "TreeStart"]
    assert starts == [1, 2] and model.tree_ids_ == [-1, 1, 2]
    assert all(nd.owner != "holder" for nd in model.trees_[0].nodes)
    stored = party.models.load(model.model_id_)
    ref = _reference_trees(model, bank, y, holder, floor=40)
    for tree, rtree in zip(model.trees_, ref):
        assert [(nd.node_id, nd.owner, nd.left, nd.right, nd.count) for nd in tree.nodes] == [
            (rn["id"], rn["owner"], rn["left"], rn["right"], rn["count"]) for rn in rtree]
        for nd, rn in zip(tree.nodes, rtree):
            if nd.owner == "holder":
                assert stored.splits[nd.record_id] == (rn["feature"], rn["bin"], rn["ml"])
            elif nd.owner == "leaf":
                assert abs(nd.value - rn["value"]) <= 1e-6
    p = model.predict_proba(bank.iloc[:50], holder=channel)[:, 1]
    assert np.all(np.isfinite(p))


def test_quality_close_to_centralized_lightgbm(default_credit):
    import lightgbm as lgb

    guest, host = default_credit
    X = guest.drop(columns="y")
    y = guest["y"].to_numpy()
    tr, te = stratified_split(y, 0.3, 0)
    party = PassiveParty(host, policy=test_policy(min_node_samples=20))
    model = _model(n_estimators=5, max_depth=3, max_bin=32, reg_lambda=0.1)
    model.fit(X.iloc[tr], y[tr], holder=party)
    p_fed = model.predict_proba(X.iloc[te], holder=party)[:, 1]
    params = dict(n_estimators=5, max_depth=3, num_leaves=8, learning_rate=0.3, max_bin=32,
                  min_child_samples=20, reg_lambda=0.1, verbose=-1)
    joined = X.join(host.add_prefix("h_"))
    cent = lgb.LGBMClassifier(**params).fit(joined.iloc[tr], y[tr])
    bank_only = lgb.LGBMClassifier(**params).fit(X.iloc[tr], y[tr])
    a_fed = auc(y[te], p_fed)
    a_cent = auc(y[te], cent.predict_proba(joined.iloc[te])[:, 1])
    a_bank = auc(y[te], bank_only.predict_proba(X.iloc[te])[:, 1])
    print(f"AUC federated {a_fed:.4f} centralized {a_cent:.4f} bank-only {a_bank:.4f}")
    assert a_fed >= a_cent - 0.005
    assert a_fed >= a_bank + 0.02


def test_predict_save_load_and_importance(small_credit, make_channel, tmp_path):
    bank, y, holder = small_credit
    party = PassiveParty(holder, policy=test_policy())
    channel = make_channel(party)
    model = _model(n_estimators=2).fit(bank, y, holder=channel)
    p1 = model.predict_proba(bank, holder=channel)
    assert p1.shape == (len(bank), 2) and np.allclose(p1.sum(axis=1), 1)
    model.save(tmp_path / "m.json")
    loaded = SecureBoostClassifier.load(tmp_path / "m.json")
    np.testing.assert_allclose(loaded.predict_proba(bank, holder=channel), p1)
    imp = model.feature_importance("split")
    assert imp.sum() == sum(nd.owner != "leaf" for t in model.trees_ for nd in t.nodes)
    assert any(name.startswith("holder:") for name in imp.index)
    # one enterprise at a time gives the same score as the batch
    one = bank.iloc[[5]]
    assert np.isclose(model.predict_proba(one, holder=channel)[0, 1], p1[5, 1])
    # the saved bank half holds no holder threshold: only record ids for holder splits
    text = (tmp_path / "m.json").read_text()
    assert '"owner": "holder"' in text


def test_rows_the_holder_lacks_follow_the_missing_branch(small_credit, holder_party):
    bank, y, holder = small_credit
    model = _model(n_estimators=2).fit(bank, y, holder=holder_party)
    outsider = bank.iloc[:3].copy()
    outsider.index = ["not-at-the-holder-1", "not-at-the-holder-2", "not-at-the-holder-3"]
    p = model.predict_proba(outsider, holder=holder_party)
    assert np.all(np.isfinite(p))


def test_early_stopping_on_a_validation_set(small_credit, holder_party):
    bank, y, _ = small_credit
    tr, te = stratified_split(y, 0.3, 1)
    model = _model(n_estimators=6, learning_rate=1.0, max_depth=3)
    model.fit(bank.iloc[tr], y[tr], holder=holder_party, eval_set=(bank.iloc[te], y[te]),
              early_stopping_rounds=1)
    assert len(model.eval_history_) >= 2
    assert len(model.trees_) == model.best_iteration_ + 1
    assert model.eval_history_[model.best_iteration_] == min(model.eval_history_)


def test_quality_on_synthetic_usccs_without_shared_data(small_credit):
    """Always runs (no shared data needed): federated close to centralized, above bank-only."""
    import lightgbm as lgb

    bank, y, holder = small_credit
    aligned = bank.index.isin(holder.index)
    X, yy = bank[aligned], y[aligned]
    tr, te = stratified_split(yy, 0.3, 0)
    party = PassiveParty(holder, policy=test_policy(min_node_samples=20))
    model = _model(n_estimators=8, max_depth=3, max_bin=32, learning_rate=0.3)
    model.fit(X.iloc[tr], yy[tr], holder=party)
    p_fed = model.predict_proba(X.iloc[te], holder=party)[:, 1]

    def prep(df):
        df = df.copy()
        for c in df.columns:
            if not pd.api.types.is_numeric_dtype(df[c]):
                df[c] = df[c].astype("category")
        return df

    joined = prep(X.join(holder.add_prefix("h_")))
    params = dict(n_estimators=8, max_depth=3, num_leaves=8, learning_rate=0.3, max_bin=32,
                  min_child_samples=20, verbose=-1)
    cent = lgb.LGBMClassifier(**params).fit(joined.iloc[tr], yy[tr])
    bank_only = lgb.LGBMClassifier(**params).fit(prep(X).iloc[tr], yy[tr])
    a_fed = auc(yy[te], p_fed)
    a_cent = auc(yy[te], cent.predict_proba(joined.iloc[te])[:, 1])
    a_bank = auc(yy[te], bank_only.predict_proba(prep(X).iloc[te])[:, 1])
    print(f"synthetic AUC federated {a_fed:.4f} centralized {a_cent:.4f} bank-only {a_bank:.4f}")
    assert a_fed >= a_cent - 0.03
    assert a_fed >= a_bank + 0.01


def _holder_boost(policy, n=60, frac_bits=24):
    from fedcredit.crypto import generate_keypair
    from fedcredit.protocol.secureboost.holder import HolderBoost

    pk, sk = generate_keypair("ou", bits=TEST_KEY_BITS, insecure=True)
    feats = pd.DataFrame({"a": np.arange(n, dtype=float), "b": np.arange(n)[::-1] % 7})
    boost = HolderBoost(feats, np.arange(n), pk, policy, 8, 5, "bank", "credit",
                        frac_bits=frac_bits)
    return boost, pk, sk


def test_holder_refuses_slots_wider_than_honest_gradients_need():
    """A bank hiding identifiers in its gradients' low bits needs wider slots (leak 6)."""
    from fedcredit.errors import InvalidInput
    from fedcredit.protocol.secureboost.math import GradientLayout

    boost, pk, _ = _holder_boost(test_policy())
    rows = np.arange(60)
    cap = GradientLayout.honest_bound(60, 24, pk.plaintext_bits)
    with pytest.raises(InvalidInput, match="slot width"):
        boost.start_tree(0, cap + 1, rows, pk.fingerprint, np.ones(60, bool))
    boost.start_tree(0, cap, rows, pk.fingerprint, np.ones(60, bool))  # honest: accepted
    with pytest.raises(InvalidInput, match="frac_bits"):
        _holder_boost(test_policy(), frac_bits=40)
    boost.close()


def test_holder_refuses_layers_deeper_than_max_tree_depth():
    from fedcredit.errors import PolicyViolation, ProtocolError
    from fedcredit.protocol.secureboost import messages as m

    boost, pk, sk = _holder_boost(test_policy(max_tree_depth=1, min_bin_samples=0))
    rows = np.arange(60)
    g = np.rint((np.linspace(0, 1, 60) - (rows % 3 == 0)) * 2**24).astype(np.int64)
    h = np.full(60, 2**22, dtype=np.int64)
    from fedcredit.protocol.secureboost.math import GradientLayout

    lay = GradientLayout.for_rows(g, h, pk.plaintext_bits)
    boost.start_tree(0, lay.slot_bits, rows, pk.fingerprint, np.ones(60, bool))
    boost.add_gradients(0, pk.to_bytes_batch(sk.encrypt(lay.pack_rows(g, h))))
    boost.finish_gradients()
    with pytest.raises(ProtocolError, match="depth"):  # the holder counts the layers itself
        boost.layer(0, 1, [m.NodeTask(node_id=0)])
    assert boost.layer(0, 0, [m.NodeTask(node_id=0)])[0].count > 0
    with pytest.raises(PolicyViolation, match="max_tree_depth=1"):
        boost.layer(0, 1, [m.NodeTask(node_id=1, parent_id=0, rows=b"")])
    boost.close()
