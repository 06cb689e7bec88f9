"""A bank table of ids and labels only: every model trains on the holder's features alone,
over both channels, and SecureBoost stays lossless against the plaintext reference."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from fedcredit.binning import BinMapper
from fedcredit.metrics import auc
from fedcredit.models import HeteroLogisticRegression, HeteroWOE, Scorecard, SecureBoostClassifier
from fedcredit.protocol import PassiveParty

from conftest import TEST_KEY_BITS, test_policy
from reference_boost import assert_same_trees, boost_reference

KEYS = dict(key_bits=TEST_KEY_BITS, insecure_key=True, n_jobs=1, he_scheme="ou")


@pytest.fixture(scope="module")
def ids_only(small_credit):
    bank, y, holder = small_credit
    ids = bank.iloc[:1500]
    return ids[[]], y[:1500], holder  # an index and labels, no feature column


def test_bin_mapper_fits_a_table_without_feature_columns():
    X = pd.DataFrame(index=["a", "b", "c"])
    m = BinMapper(8).fit(X)
    assert m.feature_names == [] and m.transform(X).shape == (3, 0)
    again = BinMapper.from_dict(m.to_dict())
    assert again.transform(X).shape == (3, 0)


def test_secureboost_on_ids_and_labels_is_lossless(ids_only, make_channel):
    X, y, holder = ids_only
    party = PassiveParty(holder, policy=test_policy())
    channel = make_channel(party)
    model = SecureBoostClassifier(n_estimators=3, max_depth=3, learning_rate=0.3, max_bin=16,
                                  verbose=False, **KEYS)
    with pytest.warns(UserWarning, match="bank_only_trees needs bank features"):
        model.fit(X, y, holder=channel)
    assert model.feature_names_bank_ == [] and model.tree_ids_ == [0, 1, 2]
    assert all(nd.owner in ("holder", "leaf") for t in model.trees_ for nd in t.nodes)
    assert any(nd.owner == "holder" for t in model.trees_ for nd in t.nodes)
    base, trees = boost_reference(model, X, y, holder, floor=10, min_bin=30)
    assert model.base_score_ == base
    assert_same_trees(model, party, trees)
    p = model.predict_proba(X, holder=channel)[:, 1]
    aligned = X.index.isin(holder.index)
    assert auc(y[aligned], p[aligned]) > 0.6


def test_logistic_regression_woe_and_scorecard_on_ids_and_labels(ids_only, make_channel):
    X, y, holder = ids_only
    channel = make_channel(PassiveParty(holder, policy=test_policy()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # warm start without bank features
        lr = HeteroLogisticRegression(max_iter=2, batch_size=500, verbose=False, **KEYS)
        lr.fit(X, y, holder=channel)
    assert lr.feature_names_bank_ == [] and lr.coef_bank_.shape == (0,)
    p = lr.predict_proba(X, holder=channel)[:, 1]
    aligned = X.index.isin(holder.index)
    assert np.all(np.isfinite(p)) and auc(y[aligned], p[aligned]) > 0.6
    woe = HeteroWOE(max_bin=8, **KEYS).fit(X, y, holder=channel)
    assert set(woe.party_) == {"holder"} and woe.iv_.max() > 0.02
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        card = Scorecard(woe=woe, lr=HeteroLogisticRegression(max_iter=2, batch_size=500,
                                                              verbose=False, **KEYS))
        card.fit(X, y, holder=channel)
    assert set(card.points_table_["party"]) == {"holder"}
    points = card.score(X, holder=channel)
    assert np.all(np.isfinite(points)) and auc(y[aligned], -points[aligned]) > 0.6


def test_simulate_with_a_bank_table_of_ids_and_labels(tmp_path, small_credit):
    """``fedcredit simulate`` with a bank CSV of uscc,label: the holder runs as its own gRPC
    process; the bank-only baseline has nothing to learn from (AUC 0.5)."""
    from fedcredit.simulation import SimulationConfig, run

    bank, y, holder = small_credit
    pd.DataFrame({"uscc": bank.index[:1200], "label": y[:1200]}).to_csv(tmp_path / "b.csv",
                                                                         index=False)
    holder.reset_index().to_csv(tmp_path / "h.csv", index=False)
    cfg = SimulationConfig(str(tmp_path / "b.csv"), str(tmp_path / "h.csv"), "uscc", "label",
                           trees=3, depth=3, bins=16, key_bits=TEST_KEY_BITS, insecure_key=True,
                           he_scheme="ou", verbose=False, n_jobs=1,
                           predictions_out=str(tmp_path / "p.csv"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        summary = run(cfg)
    assert summary["auc"]["bank_only"] == 0.5
    assert summary["auc"]["federated"] > 0.6
    assert len(pd.read_csv(tmp_path / "p.csv")) == summary["rows_test"]
