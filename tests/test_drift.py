"""Feature drift (CSI) computed by the holder: the training distribution kept with the model,
bins merged to the privacy floor before anything is sent, a synthetic shift of one holder
feature over the watchlist showing in that feature's CSI and in no other; the feature table
version in SessionOpened. Over both transports."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import test_policy
from fedcredit.datasets import make_credit_data
from fedcredit.errors import InvalidInput, PolicyViolation
from fedcredit.metrics import psi_table
from fedcredit.models import HeteroLogisticRegression, SecureBoostClassifier
from fedcredit.protocol import BankSession, InProcessChannel, PassiveParty, StoredModel
from fedcredit.protocol.drift import math as dm
from fedcredit.protocol.drift.bank import feature_drift

KEYS = dict(key_bits=1024, insecure_key=True, n_jobs=1, verbose=False)  # INSECURE: tests only
SHIFTED = "tax_paid_last_year"
FLOOR = 10


# -- the arithmetic ----------------------------------------------------------------------------
def test_merged_groups_hold_the_floor_on_both_sides():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        e = rng.integers(0, 25, n)
        a = rng.integers(0, 25, n)
        floor = int(rng.integers(1, 40))
        starts = dm.merge_groups(e, a, floor)
        assert starts[0] == 0 and starts == sorted(set(starts))
        ge, ga = dm.grouped(e, starts), dm.grouped(a, starts)
        assert ge.sum() == e.sum() and ga.sum() == a.sum()
        if e.sum() >= floor and a.sum() >= floor:
            assert (ge >= floor).all() and (ga >= floor).all()
        else:
            assert starts == [0]


def test_the_index_is_the_psi_formula():
    rng = np.random.default_rng(1)
    expected = rng.normal(size=2000)
    actual = rng.normal(0.3, 1.2, size=1500)
    table = psi_table(expected, actual, bins=10)
    assert dm.stability_index(table["expected_share"], table["actual_share"]) == \
        pytest.approx(table["psi"].sum(), abs=1e-12)
    assert dm.stability_index([0.5, 0.5], [0.5, 0.5]) == 0.0
    csi, e, a = dm.feature_csi([50, 0, 50], [20, 30, 50], 10)
    assert len(e) == 2 and e.sum() == pytest.approx(1) and csi > 0  # bin 0+1 merged
    assert dm.bin_distribution(np.array([[0, 1], [2, 1], [2, 0]]), [3, 2]) == [[1, 0, 2],
                                                                               [1, 2]]


def test_stored_models_keep_the_distribution_and_old_ones_still_load():
    m = StoredModel("m1", "b", "credit", ["f"], {"mapper": {"features": []}},
                    bin_counts=[[3, 4, 0]])
    assert StoredModel.from_json(m.to_json()).bin_counts == [[3, 4, 0]]
    old = m.to_json().replace(', "bin_counts": [[3, 4, 0]]', "")
    assert "bin_counts" not in old and StoredModel.from_json(old).bin_counts == []


# -- over the wire -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world():
    bank, holder = make_credit_data(rows=500, seed=13, overlap=1.0)
    bank, holder = bank.set_index("uscc"), holder.set_index("uscc")
    y = bank.pop("label")
    party = PassiveParty(holder, name="platform", policy=test_policy(min_node_samples=FLOOR))
    ch = InProcessChannel(party)
    boost = SecureBoostClassifier(n_estimators=2, max_depth=2, **KEYS).fit(bank, y, ch)
    return {"party": party, "holder": holder, "boost": boost, "bank": bank, "y": y,
            "ids": sorted(set(bank.index) & set(holder.index))}


@pytest.fixture
def party(world):
    p = world["party"]
    yield p
    p.set_features(world["holder"])  # the original table back (a new version)


def _drift(channel, model, ids):
    with BankSession(channel, "score", model_id=model.model_id_) as s:
        return feature_drift(s, ids), s.features_version


def test_the_training_distribution_is_stored_with_the_model(world):
    stored = world["party"].models.load(world["boost"].model_id_)
    assert len(stored.bin_counts) == len(stored.feature_names) == world["holder"].shape[1]
    assert all(sum(c) == len(world["ids"]) for c in stored.bin_counts)  # every training row


def test_a_shifted_feature_drifts_and_no_other(world, party, make_channel):
    channel = make_channel(party)
    ids = world["ids"]
    same, v0 = _drift(channel, world["boost"], ids)
    assert same.covered == len(ids)
    assert (same.csi["csi"] == 0).all()  # the training rows, unchanged: no drift at all
    shifted = world["holder"].copy()
    shifted.loc[ids, SHIFTED] = shifted.loc[ids, SHIFTED] * 4  # the watchlist's rows
    party.set_features(shifted)
    drift, v1 = _drift(channel, world["boost"], ids)
    assert v1 == v0 + 1 and drift.features_version == v1  # the holder said its table changed
    csi = drift.csi.set_index("feature")["csi"]
    assert csi[SHIFTED] > 0.25  # a significant shift
    assert (csi.drop(SHIFTED) == 0).all()  # every other feature: the training distribution
    # everything sent respects the floor, and the bank got shares, not values
    for f, grp in drift.bins.groupby("feature"):
        assert (grp["current_share"] * drift.covered >= FLOOR - 1e-6).all(), f
        assert (grp["reference_share"] * len(ids) >= FLOOR - 1e-6).all(), f
        assert grp["current_share"].sum() == pytest.approx(1)
    assert list(drift.bins.columns) == ["feature", "bin", "reference_share", "current_share"]


def test_drift_is_refused_below_the_floor_for_other_models_and_old_ones(world, party):
    ch = InProcessChannel(party)
    model = world["boost"]
    with pytest.raises(PolicyViolation, match="below its min_node_samples"):
        _drift(ch, model, world["ids"][:FLOOR - 1] + ["91350100M000100Y43"])
    with pytest.raises(InvalidInput, match="twice"):
        _drift(ch, model, world["ids"][:20] + world["ids"][:1])
    lr = HeteroLogisticRegression(max_iter=1, **KEYS).fit(world["bank"], world["y"], ch)
    with pytest.raises(InvalidInput, match="not a SecureBoost model"):
        _drift(ch, lr, world["ids"])
    stored = party.models.load(model.model_id_)
    old = StoredModel(stored.model_id + "-old", stored.bank, stored.purpose,
                      stored.feature_names, stored.mapper, stored.splits, stored.trees,
                      stored.columns)
    party.models.save(old)
    with BankSession(ch, "score", model_id=old.model_id) as s:
        with pytest.raises(InvalidInput, match="retrain it"):
            feature_drift(s, world["ids"])


def test_drift_is_audited_with_the_watchlist_it_used(world, party):
    party.auditor.records.clear()
    revoked = world["ids"][3]

    class AllBut:
        def allowed(self, bank, purpose, ids):
            return np.array([i != revoked for i in ids])

    consent, party.consent = party.consent, AllBut()
    try:
        drift, _ = _drift(InProcessChannel(party), world["boost"], world["ids"][:100])
    finally:
        party.consent = consent
    assert drift.covered == 99
    (rec,) = [r for r in party.auditor.records if r["operation"] == "drift_csi"]
    assert rec["enterprises"] == 99 and revoked not in rec["ids"] and len(rec["ids"]) == 99


def test_session_opened_carries_the_feature_version(world):
    p = PassiveParty(pd.DataFrame({"x": [1.0, 2.0]}, index=["a", "b"]))
    ch = InProcessChannel(p)
    assert p.features_version == 0
    with BankSession(ch, "align") as s:
        assert s.features_version == 0
    p.set_features(pd.DataFrame({"x": [3.0]}, index=["a"]))
    p.set_features(pd.DataFrame({"x": [4.0]}, index=["a"]), version=41)
    with BankSession(ch, "align") as s:
        assert s.features_version == 41
