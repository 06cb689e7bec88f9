"""Consent as a platform records it: scopes (a bank, or "*" for every institution on the
platform), evidence (method, reference, who recorded it), withdrawal; from the registry and
from the CLI. No server here (tests/test_admin_api.py drives a served holder)."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from fedcredit.cli import main as cli
from fedcredit.datasets import make_credit_data
from fedcredit.errors import InvalidInput
from fedcredit.holder import consent, store
from fedcredit.holder.consent import Grant, SqliteConsent

T0 = pd.Timestamp("2026-06-01", tz="UTC").timestamp()
DAY = 86400.0
FAR = pd.Timestamp("2099-01-01", tz="UTC").timestamp()


def fc(*args) -> int:
    return cli([str(a) for a in args])


@pytest.fixture(scope="module")
def ids():
    _, holder = make_credit_data(rows=40, seed=3, overlap=1.0)
    return holder["uscc"].tolist()


@pytest.fixture
def hdir(tmp_path):
    d = tmp_path / "H"
    assert fc("holder", "init", "--dir", d, "--listen", "127.0.0.1:0", "--bank", "bank-a",
              "--bank", "bank-b", "--purpose", "credit", "--purpose", "marketing") == 0
    return d


@pytest.fixture
def con(hdir):
    c = store.connect(hdir / "holder.db")
    yield c
    c.close()


def put(con, uscc, bank, purpose="credit", granted=T0 - DAY, expires=FAR, now=T0 - DAY):
    with store.write(con):
        consent.apply_grant(con, Grant(uscc, bank, purpose, granted, expires, "written",
                                       "form-1", "clerk"), now, "test")


def withdraw(con, uscc, bank, purpose=None, now=T0 - DAY / 2):
    with store.write(con):
        return consent.apply_withdraw(con, uscc, bank, purpose, now, "test")


# -- scope resolution ------------------------------------------------------------------------
def test_a_bank_row_in_any_state_decides_over_the_platform_row(con, ids):
    a, b, c, d, e, other = ids[:6]
    for u in (a, b, c, d):
        put(con, u, "*")
    put(con, b, "bank-a")
    withdraw(con, b, "bank-a")                              # withdrawn for bank-a
    put(con, c, "bank-a", expires=T0 - 10)                  # expired for bank-a
    put(con, d, "bank-a", granted=T0 + DAY)                 # pending for bank-a
    put(con, e, "bank-a")                                   # bank-a only
    clock = [T0]
    hook = SqliteConsent(con, clock=lambda: clock[0])
    asked = [a, b, c, d, e, other]
    assert hook.allowed("bank-a", "credit", asked).tolist() == [1, 0, 0, 0, 1, 0]
    assert hook.allowed("bank-b", "credit", asked).tolist() == [1, 1, 1, 1, 0, 0]
    assert not hook.allowed("bank-a", "marketing", asked).any()  # per purpose
    assert not hook.allowed("*", "credit", asked).any()          # "*" is no bank
    clock[0] = T0 + DAY + 1                                      # d's own grant starts
    assert hook.allowed("bank-a", "credit", asked).tolist() == [1, 0, 0, 1, 1, 0]


def test_the_cache_ends_at_the_first_expiry_or_start_among_the_deciding_rows(con, ids):
    a, b = ids[:2]
    put(con, a, "*", expires=T0 + 100)
    put(con, b, "*", granted=T0 + 50)
    clock = [T0]
    hook = SqliteConsent(con, clock=lambda: clock[0])
    assert hook.allowed("bank-a", "credit", [a, b]).tolist() == [1, 0]
    clock[0] = T0 + 60
    assert hook.allowed("bank-a", "credit", [a, b]).tolist() == [1, 1]
    clock[0] = T0 + 101
    assert hook.allowed("bank-a", "credit", [a, b]).tolist() == [0, 1]


def test_withdrawing_one_bank_from_a_platform_consent(con, ids):
    a, b = ids[:2]
    put(con, a, "*")
    put(con, a, "*", purpose="marketing")
    hook = SqliteConsent(con, clock=lambda: T0)
    w = withdraw(con, a, "bank-a", "credit")
    assert w.withdrawn == [("bank-a", "credit")] and w.from_platform == w.withdrawn
    assert hook.allowed("bank-a", "credit", [a]).tolist() == [0]
    assert hook.allowed("bank-b", "credit", [a]).tolist() == [1]
    assert hook.allowed("bank-a", "marketing", [a]).tolist() == [1]  # only credit withdrawn
    rows = consent.list_consents(con, uscc=a, now=T0)
    mine = rows[rows["bank"] == "bank-a"].iloc[0]
    assert mine["status"] == "revoked" and mine["scope"] == "bank"
    assert "from the platform-wide consent" in mine["source"] and mine["method"] == "written"
    # a grant dated before the withdrawal cannot undo it; a later one can
    old = {"uscc": a, "bank": "bank-a", "purpose": "credit", "granted_at": "2026-01-01",
           "expires_at": "2099-01-01", "method": "online_real_name", "evidence": "web-7",
           "recorded_by": "portal"}
    g, problems = consent.check_grant(con, old, ("credit", "marketing"), T0)
    assert g is None and [f for f, _ in problems] == ["granted_at"]
    g, problems = consent.check_grant(con, {**old, "granted_at": "2026-06-01T00:00:00Z"},
                                      ("credit", "marketing"), T0)
    assert problems == [] and g is not None
    with store.write(con):
        assert consent.apply_grant(con, g, T0, "test") == "regranted"
    assert hook.allowed("bank-a", "credit", [a]).tolist() == [1]
    # withdrawing the platform-wide consent leaves the bank's own grant, and says so
    put(con, b, "bank-b")
    w = withdraw(con, a, "*", now=T0)
    assert sorted(w.withdrawn) == [("*", "credit"), ("*", "marketing")]
    assert w.still_active == [("bank-a", "credit")]
    assert hook.allowed("bank-a", "credit", [a]).tolist() == [1]
    assert hook.allowed("bank-b", "credit", [a, b]).tolist() == [0, 1]
    with pytest.raises(consent.NoSuchConsent, match="no consent"):
        withdraw(con, b, "bank-a")


def test_allowed_stays_fast_for_100k_ids(con, capsys):
    n = 100_000
    ids = [f"ID{i:08d}" for i in range(n)]
    rows = [(u, "*", "credit", T0 - DAY, FAR, None, T0, "bulk", "written", "f", "c")
            for u in ids]
    rows += [(u, "bank-a", "credit", T0 - DAY, FAR, T0 - 1 if k % 2 else None, T0, "bulk",
              "written", "f", "c") for k, u in enumerate(ids[: n // 2])]
    with store.write(con):
        con.executemany("INSERT INTO consent (uscc, bank, purpose, granted_at, expires_at, "
                        "revoked_at, imported_at, source, method, evidence, recorded_by) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    hook = SqliteConsent(con)
    t = time.perf_counter()
    mask = hook.allowed("bank-a", "credit", ids)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    again = hook.allowed("bank-a", "credit", ids)
    warm = time.perf_counter() - t
    # bank-a's own rows decide for the first half (every other one withdrawn), "*" for the rest
    expected = np.ones(n, dtype=bool)
    expected[1: n // 2: 2] = False
    assert (mask == expected).all() and (again == expected).all()
    with capsys.disabled():
        print(f"\n  allowed() on {n} ids, {len(rows)} consent rows: cold {cold * 1e3:.0f} ms "
              f"(reads the registry), warm {warm * 1e3:.0f} ms")
    assert cold < 1.0 and warm < 0.25


# -- evidence ------------------------------------------------------------------------------------
def frame(ids, **kw) -> pd.DataFrame:
    base = {"uscc": list(ids), "bank": "bank-a", "purpose": "credit",
            "granted_at": "2026-01-01T00:00:00Z", "expires_at": "2099-01-01T00:00:00Z"}
    base.update(kw)
    return pd.DataFrame(base)


def test_files_without_evidence_columns_still_import(hdir, con, ids, tmp_path):
    frame(ids[:3], bank="*").to_csv(tmp_path / "old.csv", index=False)
    assert fc("holder", "consent", "import", "--dir", hdir, "--csv", tmp_path / "old.csv") == 0
    rows = consent.list_consents(con)
    assert len(rows) == 3 and (rows["method"] == "").all() and (rows["scope"] == "platform").all()


def test_evidence_columns_are_validated_per_row(hdir, con, ids, tmp_path, capsys):
    f = frame(ids[:8], method="written", evidence=[f"form-{k}" for k in range(8)],
              recorded_by="clerk-li")
    f.loc[1, "method"] = "verbal"
    f.loc[2, "evidence"] = ""
    f.loc[3, "evidence"] = "x" * 257
    f.loc[4, "recorded_by"] = ""
    f.loc[5, "evidence"] = "form\n5"
    f.loc[6, "method"] = "online_real_name"
    f.loc[7, "bank"] = "bad bank!"
    f.to_csv(tmp_path / "c.csv", index=False)
    assert fc("holder", "consent", "import", "--dir", hdir, "--csv", tmp_path / "c.csv") == 1
    out = capsys.readouterr().out
    for row, reason in ((2, "method 'verbal' is not one of written, online_real_name"),
                        (3, "evidence is empty"), (4, "evidence is longer than 256"),
                        (5, "recorded_by is empty"),
                        (6, "evidence contains a control character"),
                        (8, "bank 'bad bank!' is not a certificate common name")):
        assert f"row {row}: {reason}" in out, (row, out)
    assert con.execute("SELECT COUNT(*) FROM consent").fetchone()[0] == 0
    assert fc("holder", "consent", "import", "--dir", hdir, "--csv", tmp_path / "c.csv",
              "--skip-invalid") == 0
    capsys.readouterr()
    assert fc("holder", "consent", "list", "--dir", hdir) == 0
    listed = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out), dtype=str,
                         keep_default_na=False)
    assert listed.columns.tolist()[:7] == ["uscc", "bank", "purpose", "granted_at",
                                           "expires_at", "revoked_at", "status"]
    assert {"scope", "method", "evidence", "recorded_by"} <= set(listed.columns)
    assert sorted(listed["method"]) == ["online_real_name", "written"]
    assert set(listed["evidence"]) == {"form-0", "form-6"} and set(listed["recorded_by"]) == \
        {"clerk-li"}
    # a file with only some of the evidence columns is refused whole, naming them
    frame(ids[:1], method="written").to_csv(tmp_path / "part.csv", index=False)
    with pytest.raises(InvalidInput, match=r"not \['evidence', 'recorded_by'\]"):
        consent.import_consents(con, tmp_path / "part.csv", ("credit",))


def test_grant_and_withdraw_from_the_cli_with_evidence_and_reason(hdir, con, ids, capsys):
    u = ids[0]
    base = ["holder", "consent", "grant", "--dir", hdir, "--uscc", u, "--bank", "*",
            "--purpose", "credit", "--granted-at", "2026-01-01", "--expires-at", "2099-01-01",
            "--method", "online_real_name", "--recorded-by", "portal-user-9"]
    assert fc(*base, "--evidence", "") == 2
    assert "--evidence: evidence is empty" in capsys.readouterr().err
    assert fc(*base, "--evidence", "record 2026-0001") == 0
    assert "every institution on the platform" in capsys.readouterr().out
    hook = SqliteConsent(con)
    assert hook.allowed("bank-b", "credit", [u]).tolist() == [1]
    assert fc("holder", "consent", "revoke", "--dir", hdir, "--uscc", u, "--bank", "bank-b",
              "--reason", "enterprise asked at the counter", "--recorded-by", "clerk-li") == 0
    assert hook.allowed("bank-b", "credit", [u]).tolist() == [0]
    assert hook.allowed("bank-a", "credit", [u]).tolist() == [1]
    assert fc("holder", "consent", "revoke", "--dir", hdir, "--uscc", u, "--bank", "*") == 0
    assert hook.allowed("bank-a", "credit", [u]).tolist() == [0]
    capsys.readouterr()
    assert fc("holder", "consent", "list", "--dir", hdir, "--bank", "*") == 0
    out = capsys.readouterr().out
    assert "platform,online_real_name,record 2026-0001,portal-user-9" in out and "revoked" in out
    recs = con.execute("SELECT operation, bank, detail FROM audit_log WHERE operation LIKE "
                       "'consent_%' ORDER BY seq").fetchall()
    assert [r[:2] for r in recs] == [("consent_grant", "*"), ("consent_revoke", "bank-b"),
                                     ("consent_revoke", "*")]
    assert "method=online_real_name evidence=record 2026-0001" in recs[0][2]
    assert "from_platform=yes recorded_by=clerk-li reason=enterprise asked" in recs[1][2]
