"""Post-loan monitoring: a watchlist re-scored on demand or when the holder's feature table
changes; alerts, the grade migration matrix (against a pandas computation), the score PSI,
the holder's CSI (a synthetic shift of one feature shows there and nowhere else); JSON, CSV,
figures and ``fedcredit bank monitor``. Over both transports."""
from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import GrpcHolder, test_policy
from fedcredit.datasets import make_credit_data
from fedcredit.errors import InvalidInput
from fedcredit.metrics import psi
from fedcredit.metrics.grades import GRADES, grade, notch
from fedcredit.models import HeteroLogisticRegression, SecureBoostClassifier
from fedcredit.models.monitor import CSV_FILES, Monitor, check_watchlist, migration_matrix, monitor
from fedcredit.protocol import InProcessChannel, PassiveParty

KEYS = dict(key_bits=1024, insecure_key=True, n_jobs=1, verbose=False)  # INSECURE: tests only
SHIFTED = "tax_paid_last_year"


@pytest.fixture(scope="module")
def world():
    bank, holder = make_credit_data(rows=500, seed=17, overlap=1.0)
    bank, holder = bank.set_index("uscc"), holder.set_index("uscc")
    y = bank.pop("label")
    party = PassiveParty(holder, name="platform", policy=test_policy())
    ch = InProcessChannel(party)
    ids = sorted(set(bank.index) & set(holder.index))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no bank features: the warm-start warnings
        boost = SecureBoostClassifier(n_estimators=3, max_depth=3, **KEYS).fit(bank[[]], y, ch)
    p = boost.predict_proba(pd.DataFrame(index=pd.Index(ids)), holder=ch)[:, 1]
    rng = np.random.default_rng(3)
    # origination scores: the current ones, some much lower (they will have fallen), some
    # just under the threshold
    origination = p.copy()
    low = rng.random(len(ids)) < 0.3
    origination[low] = p[low] / 4
    watchlist = pd.DataFrame({"id": ids, "score": origination})
    return {"party": party, "holder": holder, "boost": boost, "bank": bank, "y": y,
            "ids": ids, "now": p, "watchlist": watchlist}


@pytest.fixture
def party(world):
    p = world["party"]
    yield p
    p.set_features(world["holder"])


# -- the pieces ----------------------------------------------------------------------------------
def test_the_watchlist_is_checked():
    ok = pd.DataFrame({"uscc": ["a", "b"], "score": ["0.1", 0.5], "grade": ["C", "E"]})
    w = check_watchlist(ok)
    assert w.columns.tolist() == ["id", "origination_score", "origination_grade"]
    assert w["origination_grade"].tolist() == ["C", "E"]  # as given, not re-derived
    assert check_watchlist(ok.drop(columns="grade"))["origination_grade"].tolist() == ["D", "E"]
    for bad, match in ((ok.drop(columns="uscc"), "no id column"),
                       (ok.drop(columns="score"), "no 'score' column"),
                       (ok.assign(uscc=["a", "a"]), "row 2: id 'a' appears twice"),
                       (ok.assign(uscc=["a", " "]), "row 2: missing id"),
                       (ok.assign(score=[0.1, 1.5]), "row 2: score"),
                       (ok.assign(score=["x", 0.1]), "row 1: score 'x'"),
                       (ok.assign(grade=["C", "F"]), "row 2: grade 'F'"),
                       (ok.iloc[:0], "empty")):
        with pytest.raises(InvalidInput, match=match):
            check_watchlist(bad)


def test_migration_counts_match_pandas():
    rng = np.random.default_rng(5)
    before = rng.choice(list("ABCDE"), 400, p=[0.1, 0.3, 0.3, 0.2, 0.1])
    after = rng.choice(list("ABCD"), 400)  # no E now: the column is still there
    got = migration_matrix(before, after)
    want = (pd.DataFrame({"b": before, "a": after}).groupby(["b", "a"]).size()
            .unstack(fill_value=0).reindex(index=list(GRADES), columns=list(GRADES),
                                           fill_value=0))
    np.testing.assert_array_equal(got.to_numpy(), want.to_numpy())
    assert got.index.tolist() == list(GRADES) == got.columns.tolist()
    assert got["E"].sum() == 0 and got.to_numpy().sum() == 400


# -- a monitor over the wire ---------------------------------------------------------------------
def test_alerts_migration_psi_and_a_drifted_feature(world, party, make_channel):
    channel = make_channel(party)
    mon = Monitor(world["boost"], world["watchlist"], channel, threshold=0.1)
    report = mon.run()
    s = report.scores
    np.testing.assert_allclose(s["score"], world["now"], atol=1e-12)
    orig = world["watchlist"]["score"].to_numpy()
    down = notch(grade(world["now"])) - notch(grade(orig)) >= 1
    crossed = (orig < 0.1) & (world["now"] >= 0.1)
    assert set(report.alerts["id"]) == set(np.asarray(world["ids"])[down | crossed])
    assert (s.loc[down & crossed, "alert"] == "downgrade+threshold").all()
    assert report.migration.to_numpy().sum() == len(s)
    np.testing.assert_array_equal(
        report.migration.to_numpy(),
        pd.crosstab(pd.Categorical(grade(orig), GRADES), pd.Categorical(grade(world["now"]),
                                                                        GRADES),
                    dropna=False).to_numpy())
    assert report.score_psi == pytest.approx(psi(orig, world["now"]))
    assert (report.csi["csi"] == 0).all()  # the training rows, the training table
    assert mon.check() is None  # the holder's table has not changed
    shifted = world["holder"].copy()
    shifted.loc[world["ids"], SHIFTED] = shifted.loc[world["ids"], SHIFTED] * 4
    party.set_features(shifted)
    again = mon.check()
    assert again is not None and again.features_version == report.features_version + 1
    csi = again.csi.set_index("feature")["csi"]
    assert csi[SHIFTED] > 0.25 and (csi.drop(SHIFTED) == 0).all()  # a significant shift
    assert again.drift.covered == len(world["ids"])


def test_reports_as_json_and_csv(world, party, tmp_path):
    report = monitor(world["boost"], world["watchlist"], InProcessChannel(party))
    d = json.loads(report.to_json())
    assert d["watchlist"] == len(world["ids"]) and d["alerts"] == len(report.alerts)
    assert d["migration"]["A"]["A"] == int(report.migration.loc["A", "A"])
    assert len(d["csi"]) == world["holder"].shape[1] and d["features_version"] >= 0
    written = report.to_csv(tmp_path / "out")
    assert sorted(p.name for p in written) == sorted([*CSV_FILES, "summary.json"])
    alerts = pd.read_csv(tmp_path / "out" / "alerts.csv", dtype={"id": str})
    assert alerts["id"].tolist() == report.alerts["id"].tolist()
    mig = pd.read_csv(tmp_path / "out" / "migration.csv", index_col=0)
    np.testing.assert_array_equal(mig.to_numpy(), report.migration.to_numpy())


def test_lr_models_bank_features_and_bad_settings(world, party):
    ch = InProcessChannel(party)
    lr = HeteroLogisticRegression(max_iter=1, **KEYS).fit(world["bank"], world["y"], ch)
    with pytest.raises(InvalidInput, match="pass X"):
        Monitor(lr, world["watchlist"], ch)
    report = monitor(lr, world["watchlist"], ch, X=world["bank"])
    assert report.csi is None and any("no CSI" in n for n in report.notes)
    assert len(report.scores) == len(world["ids"])
    with pytest.raises(InvalidInput, match="threshold"):
        Monitor(world["boost"], world["watchlist"], ch, threshold=1.5)
    with pytest.raises(InvalidInput, match="notches"):
        Monitor(world["boost"], world["watchlist"], ch, notches=0)


def test_figures(world, party):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fedcredit import plots

    report = monitor(world["boost"], world["watchlist"], InProcessChannel(party))
    try:
        ax = plots.migration_heatmap(report.migration)
        assert len(ax.texts) == 25 and len(ax.images) == 1
        ax = plots.score_drift(report.scores["origination_score"], report.scores["score"])
        assert "PSI" in ax.get_legend().get_texts()[1].get_text()
        with pytest.raises(InvalidInput, match="square"):
            plots.migration_heatmap(report.migration.iloc[:2])
    finally:
        plt.close("all")


# -- the command ---------------------------------------------------------------------------------
@pytest.mark.grpc
def test_the_monitor_command_and_if_changed(world, party, tls_dir, tmp_path, capsys):
    from fedcredit.cli import bank_lifecycle_cmds

    ap = argparse.ArgumentParser()
    bank_lifecycle_cmds.register(ap.add_subparsers())
    world["boost"].save(tmp_path / "model.json")
    world["watchlist"].to_csv(tmp_path / "w.csv", index=False)
    server = GrpcHolder(party, tls_dir)
    try:
        args = ["monitor", "--holder", server.server.address, "--tls-dir", str(tls_dir),
                "--model", str(tmp_path / "model.json"), "--watchlist", str(tmp_path / "w.csv"),
                "--out", str(tmp_path / "m"), "--if-changed", "--figures"]

        def run() -> str:
            a = ap.parse_args(args)
            assert a.func(a) == 0
            return capsys.readouterr().out

        assert f"re-scored {len(world['ids'])} enterprises" in run()
        for name in (*CSV_FILES, "summary.json", "report.json", "migration.png",
                     "score_drift.png"):
            assert (tmp_path / "m" / name).exists(), name
        assert "nothing re-scored" in run()
        shifted = world["holder"].copy()
        shifted.loc[world["ids"], SHIFTED] = shifted.loc[world["ids"], SHIFTED] * 4
        party.set_features(shifted)
        out = run()
        assert "re-scored" in out and f"largest CSI: {SHIFTED}" in out
        summary = json.loads((tmp_path / "m" / "summary.json").read_text())
        assert summary["features_version"] == party.features_version
    finally:
        server.stop()
