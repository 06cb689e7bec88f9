"""Loan outcomes from banks: the rules, the protocol in process, and a served holder.

The served part drives a real `fedcredit holder serve` process with `fedcredit bank
report-loans`: loans of enterprises without a current consent are refused with a reason,
the others stored and audited, and a second report updates the performance status.
"""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from test_holder_service import Server, audit_rows, data, fc, make_holder, set_policy  # noqa: F401

from fedcredit.errors import InvalidInput, ProtocolError, ResourceLimit
from fedcredit.holder import config, store
from fedcredit.holder.loans import read_loans
from fedcredit.holder.service import HolderParty
from fedcredit.protocol import BankSession, HolderPolicy, InProcessChannel, PassiveParty
from fedcredit.protocol.loans import messages as lm
from fedcredit.protocol.loans.bank import report_loans, report_loans_to
from fedcredit.protocol.loans.math import LOAN_COLUMNS, latest_today, parse_loans
from fedcredit.protocol.registry import KEYED_TASKS, TASKS


def loan_table(ids, n: int, seed: int = 0, prefix: str = "L") -> pd.DataFrame:
    """``n`` loans of enterprises drawn from ``ids``, every status and product mixed."""
    rng = np.random.default_rng(seed)
    start = dt.date(2025, 1, 1)
    return pd.DataFrame({
        "loan_id": [f"{prefix}{i:05d}" for i in range(n)],
        "uscc": rng.choice(np.asarray(ids, dtype=object), n),
        "loan_date": [str(start + dt.timedelta(days=int(d))) for d in rng.integers(0, 300, n)],
        "amount": rng.uniform(1e4, 2e6, n).round(2),
        "product": rng.choice(["税易贷", "tax-loan", "green-credit"], n),
        "credit_type": rng.choice(["credit", "secured"], n, p=[0.6, 0.4]),
        "first_loan": rng.random(n) < 0.3,
        "status": rng.choice(["current", "repaid", "overdue", "default"], n,
                             p=[0.5, 0.3, 0.1, 0.1])})


class SomeConsent:
    """Consent for a fixed set of (bank, uscc)."""

    def __init__(self, pairs):
        self.pairs = set(pairs)

    def allowed(self, bank, purpose, ids):
        return np.array([(bank, i) in self.pairs for i in ids], dtype=bool)


@pytest.fixture(scope="module")
def ids(data):  # noqa: F811
    return data["holder"].index.tolist()


# -- the rules ---------------------------------------------------------------------------------
def test_good_rows_pass_and_text_forms_are_read(ids):
    raw = pd.DataFrame({"loan_id": [" A1 ", "A2"], "uscc": ids[:2],
                        "loan_date": ["2025-01-31", str(latest_today())],
                        "amount": ["1,000.50", "20"], "product": ["p", "q"],
                        "credit_type": ["Credit", "SECURED"], "first_loan": ["yes", "0"],
                        "status": ["Repaid", "default"], "extra": ["x", "y"]})
    frame, reasons = parse_loans(raw)
    assert reasons == {}
    assert list(frame.columns) == list(LOAN_COLUMNS)
    assert frame["loan_id"].tolist() == ["A1", "A2"]
    assert frame["amount"].tolist() == [1000.5, 20.0]
    assert frame["first_loan"].tolist() == [True, False]
    assert frame["credit_type"].tolist() == ["credit", "secured"]
    assert frame["status"].tolist() == ["repaid", "default"]


def test_every_rule_names_its_column(ids):
    tomorrow = str(latest_today() + dt.timedelta(days=1))
    raw = pd.DataFrame({
        "loan_id": ["", "D", "D", "X" * 65, "ok1", "ok2", "ok3"],
        "uscc": [ids[0], ids[1], ids[2], ids[3], ids[4][:-1] + "?", ids[5], ids[6]],
        "loan_date": ["2025-01-01", "2025-02-30", tomorrow, "2025-01-01", "2025-01-01",
                      "2025-01-01", "01/02/2025"],
        "amount": ["1", "abc", "-5", "inf", "1", "0", "1"],
        "product": ["p", "p", "", "p", "p", "p", "p"],
        "credit_type": ["credit", "credit", "credit", "loan", "credit", "credit", "credit"],
        "first_loan": ["true", "true", "maybe", "true", "true", "true", "true"],
        "status": ["current", "current", "current", "current", "late", "current", "current"]})
    _, reasons = parse_loans(raw)
    assert sorted(reasons) == list(range(7))
    assert reasons[0] == "loan_id: missing"
    assert "loan_id: 'D' appears 2 times in this report" in reasons[1]
    assert "loan_date: '2025-02-30' is not an ISO date" in reasons[1]
    assert "amount: 'abc' is not a number" in reasons[1]
    assert f"loan_date: {tomorrow} is in the future" in reasons[2]
    assert "amount: must be a finite number > 0, got -5" in reasons[2]
    assert "product: missing" in reasons[2] and "first_loan: expected true or false" in \
        reasons[2]
    assert "loan_id: longer than 64 characters" in reasons[3]
    assert "amount: must be a finite number > 0, got inf" in reasons[3]
    assert "credit_type: 'loan' is not one of credit, secured" in reasons[3]
    assert "uscc: " in reasons[4] and "not a valid unified social credit code" in reasons[4]
    assert "status: 'late' is not one of current, repaid, overdue, default" in reasons[4]
    assert reasons[5] == "amount: must be a finite number > 0, got 0"
    assert reasons[6].startswith("loan_date: '01/02/2025' is not an ISO date")


def test_a_missing_column_is_named():
    with pytest.raises(InvalidInput, match=r"no column\(s\) \['status'\]"):
        parse_loans(pd.DataFrame({c: [] for c in LOAN_COLUMNS if c != "status"}))


# -- the protocol in process -------------------------------------------------------------------
def test_loans_is_an_unkeyed_task():
    assert "loans" in TASKS and "loans" not in KEYED_TASKS


def test_report_in_process_refuses_unconsented_and_audits(data, ids):  # noqa: F811
    consented = set(ids[:40])
    party = PassiveParty(data["holder"], policy=HolderPolicy(allow_insecure_keys=True),
                         consent=SomeConsent({("demo-bank", i) for i in consented}))
    loans = loan_table(ids[:60], 50, seed=1)
    outcome, holder = report_loans_to(InProcessChannel(party), loans, chunk_rows=7,
                                      rows_per_request=20)
    refused = set(loans.index[~loans["uscc"].isin(consented)])
    assert holder == party.name and outcome.received == 50
    assert outcome.accepted == 50 - len(refused) and set(outcome.refused["row"]) == refused
    assert outcome.refused["loan_id"].tolist() == loans.loc[sorted(refused), "loan_id"].tolist()
    assert all("does not authorise bank 'demo-bank' for purpose 'credit'" in r
               for r in outcome.refused["reason"])
    kept = pd.concat([f for _, f in party.loans.reports])
    assert party.loans.reports[0][0] == "demo-bank"
    assert sorted(kept["loan_id"]) == sorted(loans.loc[~loans.index.isin(refused), "loan_id"])
    recs = [r for r in party.auditor.records if r["operation"] == "loan_report"]
    assert len(recs) == 3  # 50 loans at 20 per request
    assert sum(r["enterprises"] for r in recs) == sum(len(r["ids"]) for r in recs)
    assert set().union(*(r["ids"] for r in recs)) == set(kept["uscc"])
    assert all("uscc" not in r["detail"] and r["ids"] == sorted(set(r["ids"])) for r in recs)


def test_the_holder_checks_rows_itself_and_bounds_a_request(data, ids):  # noqa: F811
    party = PassiveParty(data["holder"], policy=HolderPolicy(max_predict_ids=10))
    ch = InProcessChannel(party)
    good = loan_table(ids, 3, seed=2)
    with BankSession(ch, "loans") as s:
        bad = lm.LoanReport(session_id=s.id, loan_ids=["a", "b", "c"], usccs=[ids[0], "x", ids[1]],
                            loan_dates=["2025-01-01"] * 3, amounts=[1.0, 2.0, float("nan")],
                            products=["p"] * 3, credit_types=["credit", "secured", "credit"],
                            first_loans=[True, False, True], statuses=["repaid", "bogus", "default"])
        r = s.stream([bad], lm.LoanReportResult)
        assert (r.received, r.accepted, list(r.refused_rows)) == (3, 1, [1, 2])
        assert "uscc:" in r.refused_reasons[0] and "status: 'bogus'" in r.refused_reasons[0]
        assert r.refused_reasons[1] == "amount: missing"
        ragged = lm.LoanReport(session_id=s.id, loan_ids=["a"], usccs=[])
        with pytest.raises(InvalidInput, match="lists differ in length"):
            s.stream([ragged], lm.LoanReportResult)
        before = len(party.loans.reports)
        with pytest.raises(ResourceLimit, match="at most 10 per request"):
            report_loans(s, loan_table(ids, 11, seed=3), rows_per_request=11, chunk_rows=4)
        assert len(party.loans.reports) == before  # nothing kept of a refused request
        with pytest.raises(InvalidInput, match="break the report's rules.*nothing was sent"):
            report_loans(s, good.assign(amount=-1.0))
    with BankSession(ch, "align") as s:
        with pytest.raises(ProtocolError, match="not a loans one"):
            report_loans(s, good)
    refusals = [r for r in party.auditor.records if r["operation"] == "refused:LoanReport"]
    assert len(refusals) == 3


def test_the_sqlite_book_keeps_each_bank_apart_and_updates(tmp_path, data, ids):  # noqa: F811
    d = tmp_path / "H"
    assert fc("holder", "init", "--dir", d, "--listen", "127.0.0.1:0", "--bank", "demo-bank",
              "--bank", "other-bank") == 0
    assert fc("holder", "load-features", "--dir", d, "--csv", data["dir"] / "holder.csv") == 0
    consent = pd.DataFrame({"uscc": ids[:30] * 2, "bank": ["demo-bank"] * 30 + ["other-bank"] * 30,
                            "purpose": "credit", "granted_at": "2026-01-01T00:00:00Z",
                            "expires_at": "2099-01-01T00:00:00Z"})
    consent.to_csv(tmp_path / "c.csv", index=False)
    assert fc("holder", "consent", "import", "--dir", d, "--csv", tmp_path / "c.csv") == 0
    party = HolderParty(config.load_config(d))
    try:
        mine = loan_table(ids[:30], 10, seed=4)
        theirs = loan_table(ids[:30], 10, seed=5)  # the same loan ids, another bank
        a, _ = report_loans_to(InProcessChannel(party, bank="demo-bank"), mine)
        b, _ = report_loans_to(InProcessChannel(party, bank="other-bank"), theirs)
        assert (a.accepted, b.accepted) == (10, 10)
        later = mine.assign(status="repaid", amount=mine["amount"] + 1)
        c, _ = report_loans_to(InProcessChannel(party, bank="demo-bank"), later.iloc[:4])
        assert (c.received, c.accepted) == (4, 4)
    finally:
        party.close()
    con = store.connect(d / "holder.db")
    try:
        book = read_loans(con)
    finally:
        con.close()
    assert len(book) == 20 and book.groupby("bank").size().to_dict() == {
        "demo-bank": 10, "other-bank": 10}
    got = book[book.bank == "demo-bank"].set_index("loan_id").loc[mine["loan_id"]]
    assert got["status"].tolist() == ["repaid"] * 4 + mine["status"].tolist()[4:]
    assert np.allclose(got["amount"], later["amount"].tolist()[:4] + mine["amount"].tolist()[4:])
    assert (got["updated_at"].iloc[:4] > got["reported_at"].iloc[:4]).all()
    assert (got["updated_at"].iloc[4:] == got["reported_at"].iloc[4:]).all()
    other = book[book.bank == "other-bank"].set_index("loan_id").loc[theirs["loan_id"]]
    assert other["uscc"].tolist() == theirs["uscc"].tolist()  # untouched by demo-bank
    assert other["status"].tolist() == theirs["status"].tolist()


# -- a served holder ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory, data):  # noqa: F811
    d = make_holder(tmp_path_factory.mktemp("loans") / "H", data)
    s = Server(d).start()
    try:
        yield s
    finally:
        s.kill()


def report(served, csv, *extra) -> int:
    return fc("bank", "report-loans", "--holder", served.address, "--tls-dir",
              served.dir / "tls", "--csv", csv, *extra)


def test_report_loans_through_the_service(served, data, tmp_path, capsys):  # noqa: F811
    holder_ids = data["holder"].index.tolist()
    revoked = holder_ids[:3]
    for uscc in revoked:
        assert fc("holder", "consent", "revoke", "--dir", served.dir, "--uscc", uscc,
                  "--bank", "demo-bank") == 0
    outsider = [i for i in data["bank"].index if i not in set(holder_ids)][:2]
    loans = loan_table(holder_ids[3:200], 120, seed=6)
    loans.loc[:5, "uscc"] = revoked * 2
    loans.loc[6:7, "uscc"] = outsider
    loans.to_csv(tmp_path / "loans.csv", index=False)
    capsys.readouterr()
    rc = report(served, tmp_path / "loans.csv", "--rejects-out", tmp_path / "refused.csv")
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "reported 120 loans" in out and "112 accepted, 8 refused" in out
    refused = pd.read_csv(tmp_path / "refused.csv", dtype=str)
    assert refused["row"].astype(int).tolist() == list(range(1, 9))  # data rows from 1
    assert refused["loan_id"].tolist() == loans["loan_id"].iloc[:8].tolist()
    assert refused["reason"].str.contains("does not authorise bank 'demo-bank'").all()
    # the revoked and the unknown enterprises get the same words
    assert refused["reason"].nunique() == 1

    con = store.connect(served.dir / "holder.db")
    try:
        book = read_loans(con)
    finally:
        con.close()
    kept = loans.iloc[8:]
    assert len(book) == 112 and set(book["bank"]) == {"demo-bank"}
    got = book.set_index("loan_id").loc[kept["loan_id"]]
    assert got["uscc"].tolist() == kept["uscc"].tolist()
    assert np.allclose(got["amount"], kept["amount"])
    assert got["first_loan"].tolist() == kept["first_loan"].tolist()
    assert got["status"].tolist() == kept["status"].tolist()
    recs = [r for r in audit_rows(served.dir) if r[2] == "loan_report"]
    assert len(recs) == 1 and recs[0][3] == kept["uscc"].nunique()
    assert "loans=120 accepted=112 refused=8" in recs[0][5]

    # later: the performance of some loans, reported again
    later = kept.iloc[:10].assign(status="default")
    later.to_csv(tmp_path / "later.csv", index=False)
    assert report(served, tmp_path / "later.csv") == 0
    assert "10 accepted, 0 refused" in capsys.readouterr().out
    con = store.connect(served.dir / "holder.db")
    try:
        book = read_loans(con).set_index("loan_id")
    finally:
        con.close()
    assert len(book) == 112
    assert (book.loc[later["loan_id"], "status"] == "default").all()
    assert (book.loc[later["loan_id"], "updated_at"] > book.loc[later["loan_id"],
                                                                "reported_at"]).all()
    untouched = kept["loan_id"].iloc[10:]
    assert (book.loc[untouched, "updated_at"] == book.loc[untouched, "reported_at"]).all()

    assert fc("holder", "stats", "--dir", served.dir, "--by", "requests", "--json") == 0
    rows = json.loads(capsys.readouterr().out)["requests"]
    mine = next(r for r in rows if r["bank"] == "demo-bank")
    assert mine["protocols"]["loans"] == {"requests": 2, "sessions": 2}
    assert mine["enterprises_loan_reported"] == kept["uscc"].nunique() + later["uscc"].nunique()
    assert fc("holder", "audit", "verify", "--dir", served.dir) == 0


def test_a_bad_file_is_named_row_and_column_and_not_sent(served, data, tmp_path,  # noqa: F811
                                                         capsys):
    loans = loan_table(data["holder"].index[:50], 5, seed=7).astype(object)
    loans.loc[1, "amount"] = "12abc"
    loans.loc[3, "status"] = "written-off"
    loans.to_csv(tmp_path / "bad.csv", index=False)
    before = len(audit_rows(served.dir))
    capsys.readouterr()
    assert report(served, tmp_path / "bad.csv", "--rejects-out", tmp_path / "bad-out.csv") == 1
    out = capsys.readouterr().out
    assert "2 of 5 loans break the rules" in out and "nothing was sent" in out
    assert "row 2 (loan 'L00001'): amount: '12abc' is not a number" in out
    assert "row 4 (loan 'L00003'): status: 'written-off' is not one of" in out
    assert pd.read_csv(tmp_path / "bad-out.csv")["row"].tolist() == [2, 4]
    assert len(audit_rows(served.dir)) == before  # the holder was not called
    pd.DataFrame({"loan_id": ["x"]}).to_csv(tmp_path / "cols.csv", index=False)
    assert report(served, tmp_path / "cols.csv") == 2
    assert "no column(s)" in capsys.readouterr().err
