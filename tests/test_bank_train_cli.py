"""`fedcredit bank train` with the risk team's options, against a real gRPC holder: row weights,
class weights, monotone constraints, cross-validation, the regression objective, ids only."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import GrpcHolder, test_policy
from fedcredit.cli import main as cli
from fedcredit.datasets import make_credit_data
from fedcredit.models import SecureBoostClassifier, SecureBoostRegressor
from fedcredit.protocol import PassiveParty

pytestmark = pytest.mark.grpc


@pytest.fixture(scope="module")
def served(tls_dir, tmp_path_factory):
    bank, holder = make_credit_data(rows=900, seed=13, overlap=0.9)
    d = tmp_path_factory.mktemp("train_cli")
    bank["weight"] = np.where(bank["label"] == 1, 3.0, 1.0)
    bank.to_csv(d / "bank.csv", index=False)
    bank[["uscc", "label"]].to_csv(d / "ids.csv", index=False)
    h = GrpcHolder(PassiveParty(holder.set_index("uscc"), policy=test_policy()), tls_dir)
    yield h, d
    h.stop()


def _train(served, tls_dir, csv: str, out: str, *extra) -> int:
    h, d = served
    return cli(["bank", "train", "--holder", h.server.address, "--tls-dir", str(tls_dir),
                "--csv", str(d / csv), "--id-column", "uscc", "--label-column", "label",
                "--model-out", str(d / out), "--trees", "2", "--depth", "2", "--key-bits",
                "1024", "--insecure-key", "--quiet", "--workers", "1", *extra])


def test_weights_monotone_and_cross_validation_reach_the_model(served, tls_dir, capsys):
    _, d = served
    assert _train(served, tls_dir, "bank.csv", "w.json", "--weight-column", "weight",
                  "--class-weight", "balanced", "--monotone", "past_delinquencies=+1",
                  "--cv", "2") == 0
    out = capsys.readouterr().out
    assert "fold 1/2" in out and "fold 2/2" in out and "roc_auc" in out
    model = SecureBoostClassifier.load(d / "w.json")
    assert model.class_weight == "balanced"
    assert model.monotone_constraints == {"past_delinquencies": 1}
    assert "weight" not in model.feature_names_bank_
    assert _train(served, tls_dir, "bank.csv", "u.json") == 0
    plain = json.loads((d / "u.json").read_text())
    assert plain["params"]["class_weight"] is None


def test_regression_objective_and_ids_only(served, tls_dir):
    _, d = served
    amounts = pd.read_csv(d / "bank.csv", dtype={"uscc": str})
    amounts["label"] = amounts["loan_amount"].fillna(0) * 0.4 + 10_000
    amounts.drop(columns="weight").to_csv(d / "amounts.csv", index=False)
    assert _train(served, tls_dir, "amounts.csv", "r.json", "--objective", "regression") == 0
    assert isinstance(SecureBoostRegressor.load(d / "r.json"), SecureBoostRegressor)
    assert _train(served, tls_dir, "amounts.csv", "x.json", "--objective", "regression",
                  "--class-weight", "balanced") == 2
    assert _train(served, tls_dir, "ids.csv", "ids.json") == 0
    assert SecureBoostClassifier.load(d / "ids.json").feature_names_bank_ == []
    assert _train(served, tls_dir, "bank.csv", "bad.json", "--monotone", "x=2") == 2
