"""The operator's side of the holder, without a server process: init, configuration, feature
loads, the consent registry, the audit chain, and the service's policy on top of the protocol
core (caps, idle expiry, refused requests audited, a new feature table picked up live)."""
from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_holder_service import set_policy

from fedcredit.cli import main as cli
from fedcredit.datasets import make_credit_data
from fedcredit.errors import InvalidInput, PolicyViolation, ResourceLimit, SessionNotFound
from fedcredit.holder import audit, config, consent, features, store
from fedcredit.holder.service import HolderParty
from fedcredit.protocol import ActiveSession, InProcessChannel
from fedcredit.protocol.alignment.bank import align
from fedcredit.protocol.registry import MESSAGES as m


def fc(*args) -> int:
    return cli([str(a) for a in args])


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    bank, holder = make_credit_data(rows=1000, seed=4, overlap=0.9)
    d = tmp_path_factory.mktemp("ops-data")
    holder.to_csv(d / "holder.csv", index=False)
    return {"dir": d, "bank": bank.set_index("uscc"), "holder": holder}


@pytest.fixture
def hdir(tmp_path):
    d = tmp_path / "H"
    assert fc("holder", "init", "--dir", d, "--listen", "127.0.0.1:0") == 0
    return d


def consent_frame(ids, **kw) -> pd.DataFrame:
    base = {"uscc": list(ids), "bank": "demo-bank", "purpose": "credit",
            "granted_at": "2026-01-01T00:00:00Z", "expires_at": "2099-01-01T00:00:00Z"}
    base.update(kw)
    return pd.DataFrame(base)


def db(d: Path) -> sqlite3.Connection:
    return store.connect(d / "holder.db")


# -- init and configuration ------------------------------------------------------------------------
def test_init_writes_everything_serve_needs_and_refuses_to_overwrite(hdir, capsys):
    assert (hdir / "holder.toml").is_file() and (hdir / "holder.db").is_file()
    for name in ("ca.pem", "holder.pem", "holder.key", "demo-bank.pem", "bank.key"):
        assert (hdir / "tls" / name).is_file()
    cfg = config.load_config(hdir)
    assert cfg.policy.allowed_banks == ("demo-bank",) and cfg.policy.min_key_bits == 2048
    assert not cfg.policy.allow_insecure_keys
    con = db(hdir)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    assert fc("holder", "init", "--dir", hdir) == 2
    assert "already initialised" in capsys.readouterr().err
    assert fc("holder", "init", "--dir", hdir, "--force", "--bank", "bank-a") == 0
    assert config.load_config(hdir).policy.allowed_banks == ("bank-a",)
    con = db(hdir)
    ops = [r[0] for r in con.execute("SELECT operation FROM audit_log ORDER BY seq")]
    con.close()
    assert ops == ["init", "init"], "a forced init keeps the store and its audit log"


def test_init_with_real_certificates(tmp_path):
    from fedcredit.holder.devca import make_dev_certs

    make_dev_certs(tmp_path / "pki", bank_names=("bank-x",))
    d = tmp_path / "H"
    assert fc("holder", "init", "--dir", d, "--tls-dir", tmp_path / "pki") == 0
    cfg = config.load_config(d)
    assert cfg.tls_dir == (tmp_path / "pki").resolve() and not (d / "tls").exists()
    assert cfg.policy.allowed_banks == ()  # nobody until the operator names banks
    assert fc("holder", "init", "--dir", tmp_path / "H2", "--tls-dir", tmp_path / "nowhere") == 2


@pytest.mark.parametrize("edit, message", [
    (("min_node_samples = 20", "min_node_sample = 20"), "unknown key policy.min_node_sample"),
    (("min_key_bits = 2048", "min_key_bits = 1024"), "allow_insecure_keys = true"),
    (("max_trees_per_session = 200", "max_trees_per_session = -1"), "max_trees_per_session"),
    (('allowed_purposes = ["credit"]', "allowed_purposes = 3"), "allowed_purposes"),
    (("[server]", "[serverz]"), "unknown section"),
])
def test_config_errors_name_the_key(hdir, edit, message):
    path = hdir / "holder.toml"
    path.write_text(path.read_text().replace(*edit))
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[")):
        config.load_config(hdir)


# -- features ----------------------------------------------------------------------------------------
def test_load_features_reports_rejects_and_keeps_the_previous_table(hdir, tables, capsys,
                                                                   tmp_path):
    h = tables["holder"]
    assert fc("holder", "load-features", "--dir", hdir, "--csv", tables["dir"] / "holder.csv",
              "--id-column", "uscc") == 0
    bad = h.head(6).copy()
    bad["uscc"] = bad["uscc"].astype(object)
    bad.loc[bad.index[0], "uscc"] = "91350100M000100Y4X"  # wrong check character
    bad.loc[bad.index[1], "uscc"] = None  # missing
    bad.loc[bad.index[2], "uscc"] = h["uscc"].iloc[10]  # repeats row 11
    bad["registered_capital"] = bad["registered_capital"].astype(object)
    bad.loc[bad.index[3], "registered_capital"] = "lots"
    bad.loc[bad.index[4], "tax_arrears"] = np.inf
    both = pd.concat([h.iloc[6:], bad])
    both.to_csv(tmp_path / "bad.csv", index=False)
    capsys.readouterr()
    rc = fc("holder", "load-features", "--dir", hdir, "--csv", tmp_path / "bad.csv",
            "--id-column", "uscc", "--rejects-out", tmp_path / "rejects.csv")
    out = capsys.readouterr().out
    assert rc == 1 and "rejected 6 of 1000 rows" in out and "load refused" in out
    for reason in ("check character is 'X'", "missing id", "duplicate id",
                   "'lots' is not a number", "infinite value"):
        assert reason in out, reason
    assert len(pd.read_csv(tmp_path / "rejects.csv")) == 6
    cfg = config.load_config(hdir)
    con = db(hdir)
    frame, version = features.read_current(cfg, con)
    assert version == 1 and len(frame) == 1000  # unchanged
    assert fc("holder", "load-features", "--dir", hdir, "--csv", tmp_path / "bad.csv",
              "--id-column", "uscc", "--skip-invalid") == 0
    frame, version = features.read_current(cfg, con)
    assert version == 2 and len(frame) == 1000 - 6  # both copies of the repeated id go
    assert len(list((hdir / "features").glob("*.parquet"))) == 1  # old tables removed
    ops = [r[0] for r in con.execute("SELECT operation FROM audit_log ORDER BY seq")]
    assert ops[-3:] == ["features_load", "features_load_refused", "features_load"]
    con.close()


def test_parquet_loads_kinds_persist_and_tampering_is_caught(hdir, tables, tmp_path):
    h = tables["holder"]
    h.to_parquet(tmp_path / "h.parquet", index=False)
    assert fc("holder", "load-features", "--dir", hdir, "--csv", tmp_path / "h.parquet",
              "--id-column", "uscc") == 0
    cfg = config.load_config(hdir)
    con = db(hdir)
    frame, _ = features.read_current(cfg, con)
    assert frame.index.name == "uscc" and len(frame) == len(h)
    kinds = features.current(con)["schema"]["kinds"]
    assert kinds["tax_credit_rating"] == "categorical" and kinds["tax_arrears"] == "numeric"
    # the next load checks values against the kinds already served
    later = h.copy()
    later["tax_arrears"] = later["tax_arrears"].astype(object)
    later.loc[later.index[:60], "tax_arrears"] = "unknown"
    later.to_csv(tmp_path / "later.csv", index=False)
    assert fc("holder", "load-features", "--dir", hdir, "--csv", tmp_path / "later.csv") == 1
    path = next((hdir / "features").glob("*.parquet"))
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(InvalidInput, match="modified outside"):
        features.read_current(cfg, con)
    con.close()


# -- consent ------------------------------------------------------------------------------------------
def test_consent_import_validates_each_row(hdir, tables, tmp_path, capsys):
    ids = tables["holder"]["uscc"].tolist()
    good = consent_frame(ids[:5])
    bad = pd.DataFrame([
        {"uscc": "123", "bank": "demo-bank", "purpose": "credit",
         "granted_at": "2026-01-01", "expires_at": "2030-01-01"},
        {"uscc": ids[6], "bank": "bad bank!", "purpose": "credit",
         "granted_at": "2026-01-01", "expires_at": "2030-01-01"},
        {"uscc": ids[7], "bank": "demo-bank", "purpose": "marketing",
         "granted_at": "2026-01-01", "expires_at": "2030-01-01"},
        {"uscc": ids[8], "bank": "demo-bank", "purpose": "credit",
         "granted_at": "yesterday", "expires_at": "2030-01-01"},
        {"uscc": ids[9], "bank": "demo-bank", "purpose": "credit",
         "granted_at": "2020-01-01", "expires_at": "2021-01-01"},
        {"uscc": ids[0], "bank": "demo-bank", "purpose": "credit",
         "granted_at": "2026-02-01", "expires_at": "2031-01-01"},
    ])
    pd.concat([good, bad]).to_csv(tmp_path / "c.csv", index=False)
    assert fc("holder", "consent", "import", "--dir", hdir, "--csv", tmp_path / "c.csv") == 1
    out = capsys.readouterr().out
    for reason in ("invalid USCC", "not a certificate common name", "allowed_purposes",
                   "not an ISO-8601 time", "already expired", "duplicate"):
        assert reason in out, reason
    con = db(hdir)
    assert con.execute("SELECT COUNT(*) FROM consent").fetchone()[0] == 0  # nothing applied
    assert fc("holder", "consent", "import", "--dir", hdir, "--csv", tmp_path / "c.csv",
              "--skip-invalid") == 0
    assert con.execute("SELECT COUNT(*) FROM consent").fetchone()[0] == 4  # ids[1:5]
    assert fc("holder", "consent", "revoke", "--dir", hdir, "--uscc", ids[1], "--bank",
              "demo-bank") == 0
    assert fc("holder", "consent", "revoke", "--dir", hdir, "--uscc", ids[40], "--bank",
              "demo-bank") == 2  # no such consent
    # replaying the old grant cannot undo the revocation; a newer grant can
    consent_frame(ids[1:2]).to_csv(tmp_path / "old.csv", index=False)
    assert fc("holder", "consent", "import", "--dir", hdir, "--csv", tmp_path / "old.csv") == 1
    assert "revoked at" in capsys.readouterr().out
    now = pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=1)
    consent_frame(ids[1:2], granted_at=now.isoformat()).to_csv(tmp_path / "new.csv", index=False)
    assert fc("holder", "consent", "import", "--dir", hdir, "--csv", tmp_path / "new.csv") == 0
    capsys.readouterr()
    assert fc("holder", "consent", "list", "--dir", hdir, "--bank", "demo-bank") == 0
    listed = capsys.readouterr().out
    assert listed.splitlines()[0].startswith("uscc,bank,purpose") and ids[2] in listed
    con.close()


def test_registry_sees_other_processes_changes_and_expiry(hdir, tables, tmp_path):
    ids = tables["holder"]["uscc"].tolist()[:50]
    soon = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=1.5)).isoformat()
    frame = consent_frame(ids)
    frame.loc[40:, "expires_at"] = soon
    frame.to_csv(tmp_path / "c.csv", index=False)
    assert fc("holder", "consent", "import", "--dir", hdir, "--csv", tmp_path / "c.csv") == 0
    reader = consent.SqliteConsent(db(hdir))
    mask = reader.allowed("demo-bank", "credit", ids + ["not-there"])
    assert mask[:50].all() and not mask[50]
    assert not reader.allowed("other-bank", "credit", ids).any()
    assert not reader.allowed("demo-bank", "marketing", ids).any()
    writer = db(hdir)  # the operator's command: another connection
    consent.revoke(writer, ids[0], "demo-bank")
    assert not reader.allowed("demo-bank", "credit", ids[:1])[0]
    time.sleep(1.6)
    mask = reader.allowed("demo-bank", "credit", ids)
    assert mask[1:40].all() and not mask[40:].any()


# -- the audit chain ----------------------------------------------------------------------------------
@pytest.fixture
def chain(hdir):
    con = db(hdir)
    auditor = audit.SqliteAuditor(con)
    for k in range(6):
        auditor.record(bank="demo-bank", purpose="credit", operation=f"op{k}", enterprises=k,
                       session="s" * 32, detail=f"tree={k}")
    con.close()
    return hdir


def _tamper(d: Path, sql: str) -> None:
    con = sqlite3.connect(d / "holder.db")
    con.executescript(sql)
    con.commit()
    con.close()


@pytest.mark.parametrize("sql, bad_seq, words", [
    ("UPDATE audit_log SET enterprises = 99 WHERE seq = 3", 3, "edited"),
    ("UPDATE audit_log SET ts = ts || 'x' WHERE rowid = (SELECT MIN(rowid) FROM audit_log)",
     1, "edited"),
    ("UPDATE audit_log SET detail = 'x' WHERE seq = 7", 7, "edited"),
    ("DELETE FROM audit_log WHERE seq = 4", 5, "deleted"),
    ("DELETE FROM audit_log WHERE seq = 7", 7, "deleted from the end"),
    ("UPDATE audit_log SET seq = 1000 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = 3;"
     " UPDATE audit_log SET seq = 3 WHERE seq = 1000", 2, "reordered"),
])
def test_audit_verify_names_the_first_bad_record(chain, sql, bad_seq, words, capsys):
    assert fc("holder", "audit", "verify", "--dir", chain) == 0
    _tamper(chain, sql)
    assert fc("holder", "audit", "verify", "--dir", chain) == 1
    err = capsys.readouterr().err
    assert "TAMPERED" in err and words in err and f"first bad record: seq={bad_seq}" in err


def test_audit_anchor_detects_a_rewritten_history(chain, capsys):
    con = db(chain)
    r = audit.verify(con)
    con.close()
    anchor = f"{r.head_seq}:{r.head_hash}"
    assert fc("holder", "audit", "verify", "--dir", chain, "--anchor", anchor) == 0
    # rewrite the whole chain's plain hashes consistently
    con = sqlite3.connect(chain / "holder.db")
    rows = con.execute("SELECT seq, ts, actor, bank, purpose, operation, enterprises, session, "
                       "detail FROM audit_log ORDER BY seq").fetchall()
    prev = audit.GENESIS
    for row in rows:
        row = list(row)
        if row[5] == "op2":
            row[6] = 1000
        h = audit.record_hash(prev, row)
        con.execute("UPDATE audit_log SET enterprises = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                    (row[6], prev, h, row[0]))
        prev = h
    con.execute("UPDATE chain_head SET hash = ?", (prev,))
    con.commit()
    con.close()
    # the audit key (tls/audit.key) catches it; without the key only the anchor can tell
    assert fc("holder", "audit", "verify", "--dir", chain) == 1
    assert "MAC does not match" in capsys.readouterr().err
    (chain / "tls" / "audit.key").rename(chain / "audit.key.aside")
    assert fc("holder", "audit", "verify", "--dir", chain) == 0
    assert fc("holder", "audit", "verify", "--dir", chain, "--anchor", anchor) == 1
    assert "anchor" in capsys.readouterr().err


def test_audit_export_since_and_csv(chain, capsys):
    capsys.readouterr()
    assert fc("holder", "audit", "export", "--dir", chain, "--format", "csv") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("seq,ts,actor,bank") and len(lines) == 1 + 7
    assert fc("holder", "audit", "export", "--dir", chain, "--since", "2999-01-01") == 0
    assert capsys.readouterr().out == ""
    assert fc("holder", "audit", "export", "--dir", chain, "--since", "last tuesday") == 2


# -- the service's policy around the protocol core ---------------------------------------------------
@pytest.fixture
def party_dir(hdir, tables):
    assert fc("holder", "load-features", "--dir", hdir, "--csv", tables["dir"] / "holder.csv",
              "--id-column", "uscc") == 0
    consent_frame(tables["holder"]["uscc"]).to_csv(hdir / "c.csv", index=False)
    assert fc("holder", "consent", "import", "--dir", hdir, "--csv", hdir / "c.csv") == 0
    return hdir


def _party(d: Path, **policy) -> HolderParty:
    if policy:
        set_policy(d, **policy)
    return HolderParty(config.load_config(d))


def test_concurrent_and_daily_session_caps(party_dir):
    party = _party(party_dir, max_concurrent_sessions=2, max_sessions_per_day=3)
    ch = InProcessChannel(party, bank="demo-bank")
    a, b = ActiveSession(ch, "align"), ActiveSession(ch, "align")
    with pytest.raises(ResourceLimit, match="maximum number of sessions"):
        ActiveSession(ch, "align")
    a.close(), b.close()
    ActiveSession(ch, "align").close()  # the third today
    with pytest.raises(ResourceLimit, match="per day"):
        ActiveSession(ch, "align")
    con = db(party_dir)
    states = dict(con.execute("SELECT state, COUNT(*) FROM sessions GROUP BY state"))
    refused = con.execute("SELECT COUNT(*) FROM audit_log WHERE operation LIKE 'refused:%'"
                          ).fetchone()[0]
    assert states == {"closed": 3} and refused == 2
    con.close()
    party.close()
    # the daily count comes from the audit log: a restarted holder still knows it
    again = _party(party_dir)
    with pytest.raises(ResourceLimit, match="per day"):
        ActiveSession(InProcessChannel(again, bank="demo-bank"), "align")
    again.close()


def test_idle_sessions_expire_and_restarts_mark_open_ones(party_dir):
    party = _party(party_dir, session_idle_seconds=1)
    ch = InProcessChannel(party, bank="demo-bank")
    s = ActiveSession(ch, "align")
    left_open = ActiveSession(ch, "align")
    time.sleep(1.2)
    with pytest.raises(SessionNotFound):
        align(s, ["x"])
    con = db(party_dir)
    assert con.execute("SELECT state FROM sessions WHERE session_id = ?", (s.id,)
                       ).fetchone()[0] == "expired"
    party.close()
    fresh = _party(party_dir, session_idle_seconds=1800)
    other = ActiveSession(InProcessChannel(fresh, bank="demo-bank"), "align")
    assert fresh.interrupt_open_sessions() >= 1  # as `serve` does at start and stop
    states = dict(con.execute("SELECT session_id, state FROM sessions"))
    assert states[other.id] == "interrupted"
    con.close()
    fresh.close()
    del left_open


def test_unlisted_banks_are_refused_and_audited(party_dir):
    party = _party(party_dir)
    with pytest.raises(PolicyViolation, match="not served"):
        InProcessChannel(party, bank="stranger").call(m.Ping())
    con = db(party_dir)
    row = con.execute("SELECT bank, operation, detail FROM audit_log ORDER BY seq DESC LIMIT 1"
                      ).fetchone()
    assert row[:2] == ("stranger", "refused:Ping") and "PolicyViolation" in row[2]
    con.close()
    party.close()


def test_a_new_feature_table_is_served_from_the_next_request(party_dir, tables, tmp_path):
    party = _party(party_dir)
    ch = InProcessChannel(party, bank="demo-bank")
    assert len(ActiveSession(ch, "align").feature_names) == 38
    smaller = tables["holder"][["uscc", "tax_arrears", "tax_credit_rating"]]
    smaller.to_csv(tmp_path / "small.csv", index=False)
    path = party_dir / "holder.toml"
    path.write_text(path.read_text().replace("[features.labels]",
                                             '[features.labels]\ntax_arrears = "tax_owed"'))
    assert fc("holder", "load-features", "--dir", party_dir, "--csv", tmp_path / "small.csv") == 0
    party.cfg = config.load_config(party_dir)  # (labels are read at start in `serve`)
    assert ActiveSession(ch, "align").feature_names == ["tax_owed", "tax_credit_rating"]
    party.close()


def test_holder_directory_copies_stay_verifiable(chain, tmp_path):
    # a backup of the directory (db + WAL) is a complete, verifiable holder
    copy = tmp_path / "backup"
    shutil.copytree(chain, copy)
    assert fc("holder", "audit", "verify", "--dir", copy) == 0


def test_daily_tree_cap(party_dir, tables):
    from fedcredit.models import SecureBoostClassifier

    party = _party(party_dir, max_trees_per_day=1, min_key_bits=1024, allow_insecure_keys=True,
                   min_node_samples=10)
    bank = tables["bank"]
    model = SecureBoostClassifier(n_estimators=2, max_depth=2, key_bits=1024, insecure_key=True,
                                  verbose=False, n_jobs=1, bank_only_trees=0)
    with pytest.raises(ResourceLimit, match="trees the holder's policy allows per day"):
        model.fit(bank.drop(columns="label"), bank["label"],
                  holder=InProcessChannel(party, bank="demo-bank"))
    party.close()


def test_daily_cap_on_distinct_enterprises_scored(party_dir, tables):
    from fedcredit.models import SecureBoostClassifier

    party = _party(party_dir, max_scored_per_day=60, min_key_bits=1024, allow_insecure_keys=True,
                   min_node_samples=10)
    X = tables["bank"].drop(columns="label")
    ch = InProcessChannel(party, bank="demo-bank")
    model = SecureBoostClassifier(n_estimators=2, max_depth=2, key_bits=1024, insecure_key=True,
                                  verbose=False, n_jobs=1, bank_only_trees=0)
    model.fit(X, tables["bank"]["label"], holder=ch)
    first = model.predict_proba(X.iloc[:40], holder=ch)
    again = model.predict_proba(X.iloc[:40], holder=ch)  # the same enterprises: not recounted
    np.testing.assert_array_equal(first, again)
    model.predict_proba(X.iloc[30:60], holder=ch)  # 20 new: 60 in all
    with pytest.raises(ResourceLimit, match="60 distinct enterprises per day"):
        model.predict_proba(X.iloc[55:65], holder=ch)
    model.predict_proba(X.iloc[[5]], holder=ch)  # one already scored still answers
    rows = party._db.execute("SELECT bank, purpose, COUNT(*) FROM scored GROUP BY 1, 2").fetchall()
    assert rows == [("demo-bank", "credit", 60)]
    party.close()


def test_status_and_a_tampered_table_stops_serve_at_start(party_dir, capsys):
    import subprocess

    from test_holder_service import fedcredit_cmd

    assert fc("holder", "status", "--dir", party_dir) == 0
    out = capsys.readouterr().out
    assert "version 1: 1000 enterprises x 38 columns" in out and "'active': 1000" in out
    path = next((party_dir / "features").glob("*.parquet"))
    path.write_bytes(path.read_bytes() + b"\0")
    r = subprocess.run(fedcredit_cmd() + ["holder", "serve", "--dir", str(party_dir)],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "modified outside" in r.stderr
