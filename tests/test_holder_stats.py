"""`fedcredit holder stats`: the platform's tables, checked against pandas on the same data.

A real `fedcredit holder serve` process: the bank aligns (the use record's "served"
enterprises) and reports loans through `fedcredit bank report-loans`, then updates some;
every number of every table is recomputed here with pandas from the loans sent and the
holder's feature table.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_holder_service import Server, data, fc, make_holder  # noqa: F401
from test_loans import loan_table

from fedcredit.holder.stats import FEW_LOANS, group_table

pytestmark = pytest.mark.grpc
KEYS = {"region": "region", "industry": "industry", "type": "enterprise_type", "bank": "bank",
        "product": "product"}


@pytest.fixture(scope="module")
def world(tmp_path_factory, data):  # noqa: F811
    """A served holder after an alignment and two loan reports; the loans as stored."""
    tmp = tmp_path_factory.mktemp("stats")
    d = make_holder(tmp / "H", data)
    server = Server(d).start()
    try:
        tls = d / "tls"
        assert fc("bank", "align", "--holder", server.address, "--tls-dir", tls, "--csv",
                  data["dir"] / "bank.csv", "--out", tmp / "aligned.csv") == 0
        aligned = pd.read_csv(tmp / "aligned.csv", dtype={"uscc": str})["uscc"].tolist()
        holder_only = sorted(set(data["holder"].index) - set(aligned))
        loans = loan_table(aligned[:150] + holder_only[:40], 260, seed=21)
        rare = loan_table(aligned[:3], 2, seed=22, prefix="R").assign(
            product="rare-product", status="default")
        loans = pd.concat([loans, rare], ignore_index=True)
        loans.to_csv(tmp / "loans.csv", index=False)
        assert fc("bank", "report-loans", "--holder", server.address, "--tls-dir", tls,
                  "--csv", tmp / "loans.csv") == 0
        later = loans.iloc[:30].assign(status="repaid")
        later.to_csv(tmp / "later.csv", index=False)
        assert fc("bank", "report-loans", "--holder", server.address, "--tls-dir", tls,
                  "--csv", tmp / "later.csv") == 0
    finally:
        server.kill()
    loans.loc[:29, "status"] = "repaid"
    return {"dir": d, "tmp": tmp, "loans": loans, "aligned": aligned}


def expected_table(loans: pd.DataFrame, holder: pd.DataFrame, name: str) -> pd.DataFrame:
    """The table recomputed from scratch: pandas groupby over the loans sent."""
    key = KEYS[name]
    f = loans.assign(bank="demo-bank")
    f["region"] = f["uscc"].str[2:8]
    f["industry"] = holder["industry"].reindex(f["uscc"]).fillna("unknown").to_numpy()
    f["enterprise_type"] = holder["enterprise_type"].reindex(f["uscc"]).fillna(
        "unknown").to_numpy()
    g = f.groupby(key)
    known = g["status"].agg(lambda s: s.isin(["repaid", "default"]).sum())
    defaults = g["status"].agg(lambda s: (s == "default").sum())
    return pd.DataFrame({
        "borrowers": g["uscc"].nunique(), "loans": g.size(), "amount": g["amount"].sum(),
        "first_loan_share": g["first_loan"].mean(),
        "credit_loan_share": g["credit_type"].agg(lambda s: (s == "credit").mean()),
        "known_outcomes": known, "defaults": defaults,
        "default_rate": (defaults / known).where(known > 0)})


def stats_json(d, *args, capsys) -> dict:
    capsys.readouterr()
    assert fc("holder", "stats", "--dir", d, "--json", *args) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", list(KEYS))
def test_every_table_matches_pandas(world, data, capsys, name):  # noqa: F811
    got = pd.DataFrame(stats_json(world["dir"], capsys=capsys)[name]).set_index(KEYS[name])
    want = expected_table(world["loans"], data["holder"], name)
    got = got[got["loans"] > 0]  # groups with enterprises served but no loan
    assert sorted(got.index) == sorted(want.index)
    got = got.loc[want.index]
    for col in ("borrowers", "loans", "known_outcomes", "defaults"):
        assert got[col].tolist() == want[col].tolist(), col
    for col in ("amount", "first_loan_share", "credit_loan_share", "default_rate"):
        assert np.allclose(got[col].astype(float), want[col].astype(float), equal_nan=True), col
    assert got["few_loans"].tolist() == (want["loans"] < FEW_LOANS).tolist()
    assert got["few_outcomes"].tolist() == (want["known_outcomes"] < FEW_LOANS).tolist()


def test_enterprises_served_come_from_the_use_record(world, capsys):
    pytest.importorskip("fedcredit.holder.uses",
                        reason="only the enterprises_served column needs the use record")
    out = stats_json(world["dir"], capsys=capsys)
    aligned = pd.Series(world["aligned"])
    region = pd.DataFrame(out["region"]).set_index("region")["enterprises_served"]
    want = aligned.str[2:8].value_counts()
    assert region[region > 0].sort_index().to_dict() == want.sort_index().to_dict()
    bank = pd.DataFrame(out["bank"]).set_index("bank")["enterprises_served"]
    assert bank.to_dict() == {"demo-bank": len(aligned)}  # loan reports do not count
    assert "enterprises_served" not in pd.DataFrame(out["product"]).columns


def test_requests_table_counts_the_loan_reports(world, capsys):
    rows = stats_json(world["dir"], capsys=capsys)["requests"]
    mine = next(r for r in rows if r["bank"] == "demo-bank" and r["purpose"] == "credit")
    assert mine["protocols"]["loans"] == {"requests": 2, "sessions": 2}
    assert mine["protocols"]["alignment"]["requests"] == 2 and mine["enterprises_aligned"] > 0


def test_since_counts_loans_granted_from_then_on(world, data, capsys):  # noqa: F811
    out = stats_json(world["dir"], "--since", "2025-06-01", "--by", "bank", capsys=capsys)
    assert set(out) == {"bank", "notes"}
    loans = world["loans"]
    recent = loans[loans["loan_date"] >= "2025-06-01"]
    assert 0 < len(recent) < len(loans)
    assert out["bank"][0]["loans"] == len(recent)
    assert out["bank"][0]["amount"] == pytest.approx(recent["amount"].sum())


def test_csv_plots_and_text(world, capsys):
    csv_dir, png_dir = world["tmp"] / "csv", world["tmp"] / "png"
    out = stats_json(world["dir"], "--csv", csv_dir, "--plots", png_dir, capsys=capsys)
    names = ["region", "industry", "type", "bank", "product", "requests"]
    assert sorted(p.name for p in csv_dir.iterdir()) == sorted(f"{n}.csv" for n in names)
    assert sorted(p.name for p in png_dir.iterdir()) == sorted(f"{n}.png" for n in names)
    for n in names:
        assert (png_dir / f"{n}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        table = pd.read_csv(csv_dir / f"{n}.csv", dtype={"region": str})
        if n != "requests":
            assert len(table) == len(out[n])
            assert table[KEYS[n]].astype(str).tolist() == [str(r[KEYS[n]]) for r in out[n]]
    requests = pd.read_csv(csv_dir / "requests.csv")
    assert int(requests.loc[0, "loans_requests"]) == 2
    capsys.readouterr()
    assert fc("holder", "stats", "--dir", world["dir"], "--by", "product") == 0
    text = capsys.readouterr().out
    rare = next(line for line in text.splitlines() if line.startswith("rare-product"))
    assert rare.count("*") == 4  # amount, both shares, the default rate: from 2 loans
    assert "* from fewer than 5 loans" in text and "known outcome" in text


def test_help_names_the_tables(capsys):
    with pytest.raises(SystemExit):
        fc("holder", "stats", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "region" in text and "characters 3-8" in text and "product" in text


def test_group_table_marks_small_groups_and_unknown_outcomes():
    loans = pd.DataFrame({
        "bank": ["b1"] * 6 + ["b2"], "loan_id": list("abcdefg"),
        "uscc": ["91350100M000000000"] * 7, "loan_date": "2025-01-01",
        "amount": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], "product": "p",
        "credit_type": ["credit"] * 3 + ["secured"] * 4, "first_loan": [True] + [False] * 6,
        "status": ["default", "repaid", "current", "overdue", "current", "current", "current"]})
    served = pd.DataFrame({"bank": ["b1", "b3"], "uscc": ["91350100M000000000"] * 2})
    t = group_table(loans, served, "bank", pd.DataFrame(columns=["industry",
                                                                 "enterprise_type"]))
    t = t.set_index("bank")
    assert t.loc["b1", "loans"] == 6 and not t.loc["b1", "few_loans"]
    assert t.loc["b1", "default_rate"] == 0.5 and t.loc["b1", "few_outcomes"]
    assert t.loc["b2", "few_loans"] and np.isnan(t.loc["b2", "default_rate"])
    assert t.loc["b3", "loans"] == 0 and t.loc["b3", "enterprises_served"] == 1
    assert t.loc["b1", "credit_loan_share"] == 0.5
    assert t.index.tolist() == ["b1", "b2", "b3"]  # most loans first


def test_stats_of_an_empty_holder(tmp_path, capsys):
    d = tmp_path / "H"
    assert fc("holder", "init", "--dir", d, "--listen", "127.0.0.1:0") == 0
    out = stats_json(d, capsys=capsys)
    assert out["requests"] == [] and out["region"] == [] and out["product"] == []
    assert any("no feature table loaded" in n for n in out["notes"])
    assert fc("holder", "stats", "--dir", d, "--plots", tmp_path / "png") == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == 6


def test_grouped_bars_rank_hatch_and_check_their_input():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fedcredit import plots
    from fedcredit.errors import InvalidInput

    t = pd.DataFrame({"g": ["x", "y", "z"], "a": [1.0, 3.0, 2.0], "b": [0.5, np.nan, 0.1]})
    try:
        ax = plots.grouped_bar_chart(t, "g", ["a", "b"], marked={"a": [True, False, False]},
                                     top=2)
        assert [lbl.get_text() for lbl in ax.get_yticklabels()] == ["y", "z"]
        assert list(ax.get_yticks()) == [1, 0]  # the largest on top, x (smallest) not shown
        assert len(ax.patches) == 4 and not any(p.get_hatch() for p in ax.patches)
        ax = plots.grouped_bar_chart(t, "g", ["b"], marked={"b": [True, False, False]},
                                     order_by="a")
        assert [p.get_hatch() for p in ax.patches] == [None, None, "///"]  # x ranks last
        with pytest.raises(InvalidInput, match=r"no column\(s\) \['c'\]"):
            plots.grouped_bar_chart(t, "g", ["c"])
        with pytest.raises(InvalidInput, match="must hold numbers"):
            plots.grouped_bar_chart(t, "g", ["g"])
    finally:
        plt.close("all")
