"""`fedcredit holder report --uscc X` after a bank trained and scored through a real
`fedcredit holder serve` process: the enterprise sees who used its data, for what, with
which model and when; an enterprise the bank never used sees none."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from test_holder_service import Server, data, fc, make_holder, model_kw  # noqa: F401

from fedcredit.holder import store, uses
from fedcredit.models import SecureBoostClassifier
from fedcredit.transport import connect

pytestmark = pytest.mark.grpc


@pytest.fixture(scope="module")
def served(tmp_path_factory, data):  # noqa: F811
    """A holder the bank trained a model on and scored 40 enterprises with."""
    d = make_holder(tmp_path_factory.mktemp("report") / "H", data)
    bank = data["bank"]
    X, y = bank.drop(columns="label"), bank["label"]
    s = Server(d).start()
    try:
        with connect(s.address, tls_dir=d / "tls") as ch:
            model = SecureBoostClassifier(**model_kw()).fit(X, y, holder=ch)
            scored = [u for u in X.index if u in data["holder"].index][:40]
            model.predict_proba(X.loc[scored], holder=ch)
        yield {"dir": d, "server": s, "model": model, "scored": scored,
               "unused": [u for u in data["holder"].index if u not in bank.index]}
    finally:
        s.kill()


def _report(capsys, d, *args) -> tuple[int, str, str]:
    code = fc("holder", "report", "--dir", d, *args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_report_lists_the_aligned_trained_and_scored_uses(served, capsys):
    d, u, model_id = served["dir"], served["scored"][0], served["model"].model_id_
    code, out, _ = _report(capsys, d, "--uscc", u, "--json")
    assert code == 0
    rows = json.loads(out)
    assert {r["kind"] for r in rows} >= {"aligned", "trained on", "scored"}
    assert all(r["bank"] == "demo-bank" and r["purpose"] == "credit" for r in rows)
    by_kind = {r["kind"]: r for r in rows}
    assert by_kind["aligned"]["model"] == by_kind["trained on"]["model"] == model_id
    scored = [r for r in rows if r["operation"] == "predict" and r["model"] == model_id]
    assert scored, rows
    assert by_kind["aligned"]["operation"] == "align"
    assert by_kind["trained on"]["operation"] == "boost_start"
    times = [dt.datetime.fromisoformat(r["time"].replace("Z", "+00:00")) for r in rows]
    assert times == sorted(times)
    assert dt.datetime.now(dt.timezone.utc) - times[0] < dt.timedelta(hours=1)

    code, out, _ = _report(capsys, d, "--uscc", u)
    assert code == 0 and f"uses of {u}'s data" in out
    lines = out.splitlines()
    assert lines[1].split() == ["time", "(UTC)", "bank", "purpose", "what", "model"]
    assert any("aligned" in ln and model_id in ln for ln in lines)
    assert any("trained on" in ln for ln in lines) and any("scored" in ln for ln in lines)
    assert times[0].strftime("%Y-%m-%d %H:%M:%S") in out


def test_an_enterprise_the_bank_never_used_has_no_uses(served, capsys):
    code, out, _ = _report(capsys, served["dir"], "--uscc", served["unused"][0])
    assert code == 0 and out.strip() == f"no recorded use of {served['unused'][0]}'s data"
    code, out, _ = _report(capsys, served["dir"], "--uscc", served["unused"][0], "--json")
    assert code == 0 and json.loads(out) == []


def test_since_and_until_bound_the_report(served, capsys):
    u = served["scored"][0]
    code, out, _ = _report(capsys, served["dir"], "--uscc", u, "--since", "1h", "--json")
    assert code == 0 and json.loads(out)
    code, out, _ = _report(capsys, served["dir"], "--uscc", u, "--until", "2020-01-01")
    assert code == 0 and "no recorded use" in out and "until 2020-01-01" in out
    code, _, err = _report(capsys, served["dir"], "--uscc", u, "--since", "yesterday")
    assert code == 2 and "not a time: 'yesterday'" in err


def test_a_malformed_code_is_an_error_naming_it(served, capsys):
    bad = served["scored"][0][:17] + ("0" if served["scored"][0][17] != "0" else "1")
    code, out, err = _report(capsys, served["dir"], "--uscc", bad)
    assert code == 2 and not out
    assert f"--uscc {bad!r}" in err and "check character" in err
    code, _, err = _report(capsys, served["dir"], "--uscc", "91350100")
    assert code == 2 and "length 8" in err


def test_the_served_use_record_verifies_and_survives_compaction(served, capsys):
    d, u = served["dir"], served["scored"][0]
    assert fc("holder", "audit", "verify", "--dir", d) == 0
    assert "audit log intact" in capsys.readouterr().out
    before = _report(capsys, d, "--uscc", u, "--json")[1]
    con = store.connect(d / "holder.db")
    try:
        assert uses.compact(con, before="2999-01-01")["sets"] >= 3
        assert con.execute("SELECT COUNT(*) FROM use_sets").fetchone()[0] == 0
    finally:
        con.close()
    assert _report(capsys, d, "--uscc", u, "--json")[1] == before
    assert fc("holder", "audit", "verify", "--dir", d) == 0
    capsys.readouterr()
