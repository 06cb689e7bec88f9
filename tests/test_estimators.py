"""The four estimators follow scikit-learn's conventions (clone, get_params, set_params) and
share one save/load: a round trip predicts the same, files of earlier versions still load,
and wrong files or unfitted models are clear InvalidInput errors."""
from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from fedcredit.datasets import make_credit_data
from fedcredit.errors import InvalidInput
from fedcredit.models import (
    FederatedEstimator,
    HeteroLogisticRegression,
    HeteroWOE,
    Scorecard,
    SecureBoostClassifier,
)
from fedcredit.protocol import HolderPolicy, InProcessChannel, PassiveParty

LEGACY = Path(__file__).parent / "data" / "legacy"  # written by the code before the base class
#: 1024-bit keys are INSECURE: tests only
KEYS = dict(key_bits=1024, insecure_key=True, n_jobs=1)
KINDS = ["secureboost", "lr", "woe", "scorecard"]


def _unfitted(kind: str) -> FederatedEstimator:
    if kind == "secureboost":
        return SecureBoostClassifier(n_estimators=2, max_depth=2, max_bin=8, verbose=False, **KEYS)
    if kind == "lr":
        return HeteroLogisticRegression(max_iter=1, batch_size=500, verbose=False, **KEYS)
    if kind == "woe":
        return HeteroWOE(max_bin=6, **KEYS)
    return Scorecard(woe=HeteroWOE(max_bin=6, **KEYS), pdo=25,
                     lr=HeteroLogisticRegression(max_iter=1, batch_size=500, verbose=False, **KEYS))


@pytest.fixture(scope="module")
def data():
    bank, holder = make_credit_data(rows=1500, seed=11, overlap=0.9)
    bank, holder = bank.set_index("uscc"), holder.set_index("uscc")
    y = bank.pop("label").to_numpy()
    party = PassiveParty(holder, policy=HolderPolicy(allow_insecure_keys=True,
                                                     min_node_samples=10))
    return bank, y, InProcessChannel(party)


@pytest.fixture(scope="module")
def fitted(data):
    bank, y, channel = data
    out = {k: _unfitted(k).fit(bank, y, channel) for k in ("secureboost", "lr", "woe")}
    woe = out["woe"]
    feats = [k for k in woe.iv_.index if woe.party_[k] == "bank"][:2] + \
        [k for k in woe.iv_.index if woe.party_[k] == "holder"][:2]
    out["scorecard"] = Scorecard(woe=woe, features=feats, pdo=25,
                                 lr=clone(_unfitted("lr"))).fit(bank, y, channel)
    return out


def _scores(est, X, channel) -> np.ndarray:
    if isinstance(est, HeteroWOE):
        return est.transform_bank(X).to_numpy()
    if isinstance(est, Scorecard):
        return est.score(X, channel)
    return est.predict_proba(X, channel)[:, 1]


def _flat(est) -> dict:
    """Deep params with nested estimators as (class, params): comparable by ==."""
    return {k: (type(v).__name__, _flat(v)) if isinstance(v, FederatedEstimator) else v
            for k, v in est.get_params(deep=True).items()}


@pytest.mark.parametrize("kind", KINDS)
def test_clone_is_an_unfitted_copy_with_equal_params(kind, fitted):
    est = fitted[kind]
    copy = clone(est)
    assert type(copy) is type(est) and copy is not est
    assert _flat(copy) == _flat(est)
    assert not hasattr(copy, "model_id_")
    check_is_fitted(est)
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)


@pytest.mark.parametrize("kind", KINDS)
def test_get_params_covers_every_init_argument(kind):
    est = _unfitted(kind)
    args = set(inspect.signature(type(est).__init__).parameters) - {"self"}
    assert set(est.get_params(deep=False)) == args
    for name in args:  # __init__ stores its arguments unchanged
        assert est.get_params()[name] is getattr(est, name)
    if kind == "scorecard":
        deep = est.get_params(deep=True)
        assert deep["woe__max_bin"] == 6 and deep["lr__max_iter"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_set_params_round_trips_and_rejects_unknown_names(kind):
    est = _unfitted(kind)
    name = "woe__max_bin" if kind == "scorecard" else "random_state"
    before = est.get_params()[name]
    assert est.set_params(**{name: 7}) is est and est.get_params()[name] == 7
    est.set_params(**{name: before})
    assert _flat(est) == _flat(_unfitted(kind))
    with pytest.raises(ValueError, match="no_such_param"):
        est.set_params(no_such_param=1)


@pytest.mark.parametrize("kind", KINDS)
def test_fitted_names_are_the_same_everywhere(kind, fitted):
    est = fitted[kind]
    for name in ("model_id_", "holder_name_", "feature_names_bank_", "holder_feature_names_",
                 "alignment_seconds_", "fit_seconds_", "time_budget_"):
        assert hasattr(est, name), name
    assert est.feature_names_ == est.feature_names_bank_ + [
        f"holder:{n}" for n in est.holder_feature_names_]
    assert est.holder_feature_names_ and est.fit_seconds_ > 0


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_predicts_the_same(kind, fitted, data, tmp_path):
    bank, _, channel = data
    est = fitted[kind]
    path = tmp_path / f"{kind}.json"
    est.save(path)
    assert json.loads(path.read_text())["format"] == type(est)._format
    loaded = type(est).load(path)
    assert _flat(loaded) == _flat(est)
    for name in ("model_id_", "holder_name_", "feature_names_"):
        assert getattr(loaded, name) == getattr(est, name), name
    X = bank.iloc[:200]
    np.testing.assert_allclose(_scores(loaded, X, channel), _scores(est, X, channel), rtol=1e-12)
    if kind == "scorecard":
        assert loaded.points_table_.equals(est.points_table_)


def _legacy_dict(est) -> dict:
    """The layout the code before the base class wrote, built by hand from a fitted model."""
    if isinstance(est, SecureBoostClassifier):
        return {"format": "fedcredit.secureboost/1", "params": est.get_params(),
                "base_score": est.base_score_, "mapper": est.mapper_.to_dict(),
                "trees": [t.to_dict() for t in est.trees_], "tree_ids": est.tree_ids_,
                "model_id": est.model_id_, "holder_name": est.holder_name_,
                "holder_features": est.holder_feature_names_}
    if isinstance(est, HeteroLogisticRegression):
        return {"format": "fedcredit.hetero_lr/1", "params": est.get_params(),
                "intercept": float(est.intercept_[0]), "coef_bank": est.coef_bank_.tolist(),
                "coef_holder": est.coef_holder_.tolist(),
                "prep": est.prep_.to_dict() if est.prep_ is not None else None,
                "bank_features": est.feature_names_bank_,
                "holder_features": est.holder_feature_names_, "model_id": est.model_id_,
                "holder_name": est.holder_name_}
    lr = _legacy_dict(est.model_)
    del lr["format"]
    return {"format": "fedcredit.scorecard/1", "base_score": est.base_score,
            "base_odds": est.base_odds, "pdo": est.pdo,
            "points": est.points_table_.to_dict(orient="list"), "lr": lr}


@pytest.mark.parametrize("kind,file", [("secureboost", "secureboost_1.json"),
                                       ("lr", "hetero_lr_1.json"),
                                       ("scorecard", "scorecard_1.json")])
def test_files_of_earlier_versions_load(kind, file, fitted, data, tmp_path):
    bank, _, channel = data
    est = fitted[kind]
    saved = json.loads((LEGACY / file).read_text())
    built = _legacy_dict(est)
    assert set(built) == set(saved)  # the hand-built layout is the one really written
    old = type(est).load(LEGACY / file)  # (its holder is gone: no scoring)
    assert old.model_id_ == saved.get("model_id", saved.get("lr", {}).get("model_id"))
    assert old.holder_feature_names_
    path = tmp_path / file
    path.write_text(json.dumps(built))
    loaded = type(est).load(path)
    X = bank.iloc[:200]
    if kind == "scorecard":  # points only: the bank's binning was never saved
        assert loaded.points_table_.equals(est.points_table_)
        assert loaded.features == est.feature_names_ and loaded.pdo == 25
        with pytest.raises(InvalidInput, match="re-fit"):
            loaded.score(X, channel)
    else:
        np.testing.assert_allclose(_scores(loaded, X, channel), _scores(est, X, channel))


@pytest.mark.parametrize("kind", KINDS)
def test_a_wrong_or_broken_file_is_invalid_input_naming_the_path(kind, fitted, tmp_path):
    other = fitted["woe" if kind != "woe" else "lr"]
    path = tmp_path / "other.json"
    other.save(path)
    cls = type(fitted[kind])
    with pytest.raises(InvalidInput, match=f"{re.escape(str(path))}.*{re.escape(cls._format)}"):
        cls.load(path)
    for text in ("not json", "[1, 2]", json.dumps({"format": cls._format, "params": {}})):
        path.write_text(text)
        with pytest.raises(InvalidInput, match=re.escape(str(path))):
            cls.load(path)
    with pytest.raises(InvalidInput, match=re.escape(str(tmp_path / "missing.json"))):
        cls.load(tmp_path / "missing.json")


@pytest.mark.parametrize("kind", KINDS)
def test_unfitted_predict_and_save_are_clear_errors(kind, data, tmp_path):
    bank, _, channel = data
    est = _unfitted(kind)
    with pytest.raises(InvalidInput, match=f"this {type(est).__name__} is not fitted"):
        _scores(est, bank.iloc[:5], channel)
    with pytest.raises(InvalidInput, match="not fitted"):
        est.save(tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


def test_params_are_validated_in_fit_not_init(data):
    bank, y, channel = data
    est = SecureBoostClassifier(max_depth=99, **KEYS)  # stored as given
    assert est.max_depth == 99
    with pytest.raises(InvalidInput, match="max_depth"):
        est.fit(bank, y, channel)
    with pytest.raises(InvalidInput, match="pdo"):
        Scorecard(pdo=-1).fit(bank, y, channel)


def test_bank_only_trees_never_reach_the_holder_and_score_locally(data):
    bank, y, channel = data
    model = SecureBoostClassifier(n_estimators=3, max_depth=2, max_bin=8, verbose=False,
                                  bank_only_trees=2, **KEYS).fit(bank, y, channel)
    assert model.get_params()["bank_only_trees"] == 2
    assert model.tree_ids_ == [-1, -1, 2]
    assert all(nd.owner != "holder" for t in model.trees_[:2] for nd in t.nodes)
    stored = channel.passive.models.load(model.model_id_)
    assert sorted(stored.trees) == [2]  # the holder holds only the federated tree
    p = model.predict_proba(bank.iloc[:40], channel)[:, 1]
    assert np.all((p > 0) & (p < 1))
    # at most n_estimators - 1: the last tree always uses the holder
    one = SecureBoostClassifier(n_estimators=1, max_depth=2, max_bin=8, verbose=False,
                                bank_only_trees=5, **KEYS).fit(bank, y, channel)
    assert one.tree_ids_ == [0]
    with pytest.raises(InvalidInput, match="bank_only_trees"):
        SecureBoostClassifier(bank_only_trees=-1, **KEYS).fit(bank, y, channel)
