"""Reason codes: every estimator's explain() decomposes its score exactly, SecureBoost by
Saabas along each enterprise's path (contributions + base = decision_function), the linear
models by terms; top_reasons ranks by risk; `fedcredit bank score` writes them. Models are
trained once in-process, explained over both channels (in-process and gRPC with mutual TLS)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from fedcredit.cli import main as cli
from fedcredit.errors import InvalidInput, PolicyViolation
from fedcredit.models import HeteroLogisticRegression, HeteroWOE, Scorecard, SecureBoostClassifier
from fedcredit.models.explain import (BASE_COLUMN, LOG_ODDS, POINTS, explained_score,
                                      leaf_contributions, node_values, saabas, top_reasons)
from fedcredit.models.secureboost.tree import Node, Tree
from fedcredit.protocol import PassiveParty

from conftest import TEST_KEY_BITS, GrpcHolder, test_policy

KEYS = dict(key_bits=TEST_KEY_BITS, insecure_key=True)  # INSECURE, tests only


@pytest.fixture(scope="module")
def tables(small_credit):
    bank, y, holder = small_credit
    return bank.iloc[:900], y[:900], bank.iloc[900:960], holder


@pytest.fixture(scope="module")
def boosted(tables):
    bank, y, _, holder = tables
    party = PassiveParty(holder, name="test-holder", policy=test_policy())
    model = SecureBoostClassifier(n_estimators=3, max_depth=3, learning_rate=0.3, max_bin=16,
                                  verbose=False, n_jobs=1, **KEYS).fit(bank, y, holder=party)
    assert any(nd.owner == "holder" for t in model.trees_ for nd in t.nodes)
    return party, model


# -- Saabas on a tree whose numbers are worked out by hand -----------------------------------
def _hand_tree() -> Tree:
    """root: bank feature 0 -> leaf A (30 rows, 0.3) | holder feature 1 -> leaves B (40 rows,
    -0.1) and C (30 rows, 0.2)"""
    return Tree([Node(0, 0, "bank", 1, 2, feature=0, bin=3, count=100),
                 Node(1, 1, "leaf", value=0.3, count=30),
                 Node(2, 1, "holder", 3, 4, feature=1, record_id=7, count=70),
                 Node(3, 2, "leaf", value=-0.1, count=40),
                 Node(4, 2, "leaf", value=0.2, count=30)])


def test_saabas_on_a_hand_built_tree():
    tree = _hand_tree()
    v = node_values(tree)
    assert v[0] == pytest.approx(0.11, abs=1e-15)  # (30*0.3 - 40*0.1 + 30*0.2) / 100
    assert v[2] == pytest.approx(2 / 70, abs=1e-15)
    root, per_leaf = leaf_contributions(tree, n_bank=2, n_features=4)  # holder 1 -> column 3
    assert root == pytest.approx(0.11, abs=1e-15)
    expect = np.array([[0.3 - 0.11, 0, 0, 0],
                       [2 / 70 - 0.11, 0, 0, -0.1 - 2 / 70],
                       [2 / 70 - 0.11, 0, 0, 0.2 - 2 / 70]])
    np.testing.assert_allclose(per_leaf, expect, atol=1e-15)
    contrib, roots = saabas([tree, tree], [np.array([2, 0]), np.array([1, 1])], 2, 4)
    np.testing.assert_allclose(contrib, [expect[2] + expect[1], expect[0] + expect[1]],
                               atol=1e-15)
    np.testing.assert_allclose(contrib.sum(axis=1) + roots, [0.2 - 0.1, 0.3 - 0.1], atol=1e-15)


def test_trees_without_row_counts_refuse_to_explain():
    tree = _hand_tree()
    for nd in tree.nodes:
        nd.count = 0
    with pytest.raises(InvalidInput, match="refit"):
        node_values(tree)
    tree = _hand_tree()
    tree.nodes[2].feature = 5  # a holder feature the model does not name
    with pytest.raises(InvalidInput, match="damaged"):
        leaf_contributions(tree, n_bank=2, n_features=4)


# -- SecureBoost --------------------------------------------------------------------------------
def test_secureboost_contributions_sum_to_the_score(boosted, tables, make_channel, tmp_path):
    party, model = boosted
    bank, _, new, holder = tables
    channel = make_channel(party)
    ex = model.explain(new, holder=channel)
    raw = model.decision_function(new, holder=channel)
    assert list(ex.columns) == model.feature_names_ + [BASE_COLUMN]
    assert list(ex.index) == list(new.index) and ex.attrs["units"] == LOG_ODDS
    assert np.max(np.abs(explained_score(ex) - raw)) <= 1e-9
    assert np.ptp(ex[BASE_COLUMN]) == 0
    feats = ex.drop(columns=BASE_COLUMN)
    active = feats.columns[(feats.abs() > 1e-12).any()]
    assert len(active) >= 2 and any(c.startswith("holder:") for c in active), list(active)
    assert all(c[len("holder:"):] in holder.columns for c in feats.columns
               if c.startswith("holder:"))
    # the base is the model's mean raw score over its training rows (node values are the
    # trees' mean outputs over the rows that reached them)
    trained = bank.loc[bank.index.isin(holder.index)]
    assert len(trained) == model.n_aligned_
    mean_raw = model.decision_function(trained, holder=channel).mean()
    assert ex[BASE_COLUMN].iloc[0] == pytest.approx(mean_raw, abs=1e-9)
    # a saved model explains the same (row counts travel in the file)
    path = tmp_path / "sb.json"
    model.save(path)
    again = SecureBoostClassifier.load(path).explain(new, holder=channel)
    pd.testing.assert_frame_equal(again, ex)


def test_secureboost_explains_only_with_plain_paths(tables):
    """Refused where private scoring keeps the path from the bank; hidden holder names
    stay hidden."""
    bank, y, new, holder = tables
    published = holder.rename(columns={c: f"holder feature {k}"
                                       for k, c in enumerate(holder.columns)})
    party = PassiveParty(published, name="quiet-holder", policy=test_policy())
    model = SecureBoostClassifier(n_estimators=2, max_depth=2, max_bin=16, verbose=False,
                                  n_jobs=1, **KEYS).fit(bank, y, holder=party)
    ex = model.explain(new, holder=party)
    holder_cols = [c for c in ex.columns if c.startswith("holder:")]
    assert holder_cols and all(c.startswith("holder:holder feature ") for c in holder_cols)
    assert not any(h in c for c in ex.columns for h in holder.columns)
    model.set_params(scoring="private")
    with pytest.raises(InvalidInput, match="scoring='private'"):
        model.explain(new, holder=party)
    model.set_params(scoring="auto")
    party.policy = dataclasses.replace(party.policy, allow_plain_scoring=False)
    with pytest.raises(PolicyViolation, match=r"explain\(\) needs the holder's plain leaf"):
        model.explain(new, holder=party)


# -- reason codes ---------------------------------------------------------------------------------
def _frame(rows, units):
    ex = pd.DataFrame(rows, columns=["a", "b", "holder:c"], index=["e1", "e2"])
    ex[BASE_COLUMN] = -2.0
    ex.attrs["units"] = units
    return ex


def test_top_reasons_are_the_features_pushing_towards_default():
    ex = _frame([[0.5, -1.0, 0.7], [-0.2, -0.1, 0.0]], LOG_ODDS)
    r = top_reasons(ex, 2)
    assert list(r.columns) == ["reason_1", "reason_1_contribution", "reason_2",
                               "reason_2_contribution"]
    assert r.loc["e1"].tolist() == ["holder:c", 0.7, "a", 0.5]
    assert r.loc["e2", "reason_1"] == "" and np.isnan(r.loc["e2", "reason_1_contribution"])
    pts = _frame([[-5.0, 3.0, -9.0], [1.0, 2.0, 0.5]], POINTS)  # fewer points: riskier
    r = top_reasons(pts, 4)  # more reasons than features: the rest empty
    assert r.loc["e1", ["reason_1", "reason_2", "reason_3", "reason_4"]].tolist() == [
        "holder:c", "a", "", ""]
    assert r.loc["e1", "reason_1_contribution"] == -9.0
    assert (r.loc["e2", ["reason_1", "reason_2"]] == "").all()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidInput, match="k must be"):
            top_reasons(ex, bad)
    with pytest.raises(InvalidInput, match="not an explanation"):
        top_reasons(ex.drop(columns=BASE_COLUMN), 1)


# -- the linear models --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def linear(tables):
    bank, y, _, holder = tables
    party = PassiveParty(holder, name="test-holder", policy=test_policy())
    lr = HeteroLogisticRegression(max_iter=1, verbose=False, n_jobs=1, **KEYS)
    lr.fit(bank, y, holder=party)
    woe = HeteroWOE(max_bin=10, n_jobs=1, **KEYS).fit(bank, y, holder=party)
    card = Scorecard(woe, lr=HeteroLogisticRegression(max_iter=1, verbose=False, n_jobs=1,
                                                      **KEYS)).fit(bank, y, holder=party)
    assert card.holder_feature_names_ and card.feature_names_bank_
    return party, lr, card


def test_logistic_terms_sum_to_the_score(linear, tables, make_channel):
    party, lr, _ = linear
    bank, _, new, _ = tables
    channel = make_channel(party)
    ex = lr.explain(new, holder=channel)
    assert np.max(np.abs(explained_score(ex) - lr.decision_function(new, holder=channel))) <= 1e-9
    # bank columns are the bank's own features (one-hot levels summed), then one holder part
    assert list(ex.columns) == list(bank.columns) + ["holder:test-holder (all features)",
                                                     BASE_COLUMN]
    assert ex[BASE_COLUMN].iloc[0] == lr.intercept_[0] and np.ptp(ex[BASE_COLUMN]) == 0
    assert (ex.drop(columns=BASE_COLUMN).abs() > 0).any().sum() >= 2


def test_scorecard_points_sum_to_the_score(linear, tables, make_channel):
    party, _, card = linear
    _, _, new, _ = tables
    channel = make_channel(party)
    ex = card.explain(new, holder=channel)
    assert ex.attrs["units"] == POINTS
    assert np.max(np.abs(explained_score(ex) - card.score(new, holder=channel))) <= 1e-9
    assert ex[BASE_COLUMN].iloc[0] == pytest.approx(card.offset - card.factor * card.intercept_)
    # a bank feature's contribution: its bin's points less its share of the base
    table = card.points_table_
    n = table["Variable"].nunique()
    woe = card.woe_.transform_bank(new, card.feature_names_bank_)
    for f in card.feature_names_bank_:
        rows = table[table["Variable"] == f]
        pts = rows.drop_duplicates("WoE").set_index("WoE")["Points"]  # points follow WoE
        share = (card.offset - card.factor * card.intercept_) / n
        expected = pts.reindex(woe[f].to_numpy()).to_numpy() - share
        np.testing.assert_allclose(ex[f].to_numpy(), expected, atol=0.05)
    holder_col = [c for c in ex.columns if c.startswith("holder:")]
    assert len(holder_col) == 1
    reasons = top_reasons(ex, 3)
    first = reasons["reason_1_contribution"].dropna()
    assert len(first) and (first < 0).all()  # reasons for default lose points


# -- the batch score command ----------------------------------------------------------------------
def test_bank_score_writes_reason_codes(boosted, tables, tls_dir, tmp_path):
    party, model = boosted
    _, _, new, _ = tables
    path = tmp_path / "model.json"
    model.save(path)
    csv = tmp_path / "new.csv"
    new.reset_index().to_csv(csv, index=False)
    served = GrpcHolder(party, tls_dir)
    try:
        common = ["bank", "score", "--holder", served.server.address, "--tls-dir",
                  str(tls_dir), "--model", str(path), "--csv", str(csv), "--id-column", "uscc"]
        assert cli(common + ["--out", str(tmp_path / "s.csv"), "--reasons", "2"]) == 0
        assert cli(common + ["--out", str(tmp_path / "plain.csv"), "--reasons", "0"]) == 0
        assert cli(common + ["--out", str(tmp_path / "x.csv"), "--reasons", "-1"]) == 2
        with served.channel() as ch:
            expected = top_reasons(model.explain(new, holder=ch), 2)
    finally:
        served.stop()
    out = pd.read_csv(tmp_path / "s.csv", dtype={"uscc": str}, keep_default_na=False)
    plain = pd.read_csv(tmp_path / "plain.csv", dtype={"uscc": str})
    assert list(plain.columns) == ["uscc", "score", "grade", "holder_covered"]
    assert list(out.columns) == ["uscc", "score", "grade", "holder_covered", "reason_1",
                                 "reason_1_contribution", "reason_2", "reason_2_contribution"]
    assert (out.grade == plain.grade).all() and (out.holder_covered == plain.holder_covered).all()
    assert 0 < out.holder_covered.sum() < len(out)  # the sample holds enterprises it lacks
    assert out.uscc.tolist() == list(new.index)
    np.testing.assert_allclose(out.score, plain.score, atol=1e-12)
    assert out.reason_1.tolist() == expected.reason_1.tolist()
    assert out.reason_2.tolist() == expected.reason_2.tolist()
    got = pd.to_numeric(out.reason_1_contribution.replace("", np.nan))
    np.testing.assert_allclose(got, expected.reason_1_contribution, rtol=1e-12)
    assert (out.reason_1 != "").any()
    assert not (tmp_path / "x.csv").exists()
