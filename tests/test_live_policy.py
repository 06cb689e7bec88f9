"""Least data and live policy: ``[policy.columns]``, ``holder policy reload`` / SIGHUP and
``holder bank suspend|resume``, against a real ``fedcredit holder serve`` process (and the
protocol core in-process for the column rule itself)."""
from __future__ import annotations

import signal
import sqlite3
import time

import numpy as np
import pandas as pd
import pytest
from test_holder_service import (  # noqa: F401  (data is a fixture)
    KEY_BITS, Server, audit_rows, data, fc, make_holder, model_kw)

from fedcredit.errors import InvalidInput, PolicyViolation
from fedcredit.models import SecureBoostClassifier
from fedcredit.protocol import BankSession, InProcessChannel, PassiveParty
from fedcredit.protocol.alignment.bank import align
from fedcredit.transport import connect

from conftest import test_policy

pytestmark = pytest.mark.grpc

ALLOWED = ["tax_arrears", "social_insurance_arrears", "utility_arrears_flag",
           "court_judgements_as_defendant", "enterprise_age_years"]


def columns_toml(columns: list[str], bank: str = "demo-bank", purpose: str = "credit") -> str:
    return f'\n[policy.columns."{bank}"]\n{purpose} = {columns!r}\n'.replace("'", '"')


def write_columns(d, columns: list[str] | None) -> None:
    path = d / "holder.toml"
    text = path.read_text().split("\n[policy.columns")[0]
    path.write_text(text + (columns_toml(columns) if columns is not None else ""))


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- the column rule, in-process ------------------------------------------------------------------
def test_policy_columns_pick_the_most_specific_rule():
    pol = test_policy(columns={"demo-bank": {"credit": ["b", "a"]}, "*": ["c"]})
    assert pol.columns_for("demo-bank", "credit", ["a", "b", "c"]) == ["a", "b"]
    assert pol.columns_for("demo-bank", "post_loan", ["a", "b", "c"]) == []
    assert pol.columns_for("other-bank", "credit", ["a", "b", "c"]) == ["c"]
    assert test_policy().columns_for("x", "credit", ["a", "b"]) == ["a", "b"]
    with pytest.raises(InvalidInput, match="policy.columns.demo-bank.credit"):
        test_policy(columns={"demo-bank": {"credit": "a"}})
    with pytest.raises(InvalidInput, match="certificate common name"):
        test_policy(columns={"bad bank": ["a"]})


def test_a_disallowed_column_never_influences_a_tree(data):
    """The same training twice, the barred columns replaced by noise the second time: the
    models are identical, and the bank was offered the allowed columns only."""
    bank, holder = data["bank"], data["holder"]
    X = bank.drop(columns="label").head(1500)
    y = bank.loc[X.index, "label"].to_numpy()
    pol = test_policy(columns={"demo-bank": {"credit": ALLOWED}})
    noisy = holder.copy()
    rng = np.random.default_rng(0)
    for c in holder.columns:
        if c not in ALLOWED and pd.api.types.is_numeric_dtype(holder[c]):
            noisy[c] = rng.permutation(holder[c].to_numpy())
    scores = []
    for table in (holder, noisy):
        ch = InProcessChannel(PassiveParty(table, policy=pol), bank="demo-bank")
        model = SecureBoostClassifier(**model_kw(n_estimators=3, max_depth=3)).fit(X, y, holder=ch)
        assert model.holder_feature_names_ == [c for c in holder.columns if c in ALLOWED]
        scores.append(model.decision_function(X.head(400), holder=ch))
    np.testing.assert_array_equal(scores[0], scores[1])
    with pytest.raises(PolicyViolation, match="no columns"):
        BankSession(InProcessChannel(PassiveParty(holder, policy=pol), bank="other-bank"),
                    "train", _key())


def _key():
    from fedcredit.crypto import generate_keypair

    return generate_keypair(bits=KEY_BITS, insecure=True)[1]


# -- the served holder ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def live_dir(tmp_path_factory, data):
    d = make_holder(tmp_path_factory.mktemp("live") / "H", data)
    write_columns(d, ALLOWED)
    return d


@pytest.fixture(scope="module")
def live_server(live_dir):
    s = Server(live_dir).start()
    try:
        yield s
    finally:
        s.kill()


def _train(server, data, **kw):
    X = data["bank"].drop(columns="label").head(1200)
    y = data["bank"].loc[X.index, "label"].to_numpy()
    with connect(server.address, tls_dir=server.dir / "tls") as ch:
        return SecureBoostClassifier(**model_kw(**kw)).fit(X, y, holder=ch), X


def test_the_served_holder_offers_only_the_allowed_columns(live_server, data):
    model, X = _train(live_server, data, n_estimators=3, max_depth=3)
    assert model.holder_feature_names_ == [c for c in data["holder"].columns if c in ALLOWED]
    used = {k.split(":", 1)[1] for k, v in model.feature_importance("split").items()
            if v > 0 and str(k).startswith("holder:")}
    assert used and used <= set(ALLOWED)


def test_narrowed_columns_refuse_the_old_model_and_close_open_sessions(live_server, data):
    d = live_server.dir
    model, X = _train(live_server, data)
    with connect(live_server.address, tls_dir=d / "tls") as ch:
        before = model.predict_proba(X.head(50), holder=ch)[:, 1]
        training = BankSession(ch, "train", _key())  # an open session under the wide policy
        write_columns(d, ALLOWED[:2])
        assert fc("holder", "policy", "reload", "--dir", d) == 0
        with pytest.raises(PolicyViolation, match=r"enterprise_age_years|utility_arrears_flag"):
            model.predict_proba(X.head(50), holder=ch)
        wait_for(lambda: _assert_closed(d, training.id, "columns_narrowed"))
        # widened again: the same model scores as before, without a restart
        write_columns(d, ALLOWED)
        assert fc("holder", "policy", "reload", "--dir", d) == 0
        after = model.predict_proba(X.head(50), holder=ch)[:, 1]
    np.testing.assert_array_equal(before, after)
    ops = [r[2] for r in audit_rows(d)]
    assert ops.count("policy_reload") >= 2


def _assert_closed(d, session_id: str, reason: str) -> None:
    rows = [r for r in audit_rows(d) if r[2] == "session_closed" and r[4] == session_id]
    assert rows and rows[0][5] == f"reason={reason}", rows


def test_a_policy_file_that_does_not_load_changes_nothing(live_server, capsys):
    d = live_server.dir
    good = (d / "holder.toml").read_text()
    n = len(audit_rows(d))
    (d / "holder.toml").write_text(good.replace("max_trees_per_session = 200",
                                                "max_trees_per_session = -1"))
    try:
        assert fc("holder", "policy", "reload", "--dir", d) == 2
        assert "policy.max_trees_per_session" in capsys.readouterr().err
        raw = sqlite3.connect(d / "holder.db")  # store.connect reads holder.toml too
        try:
            assert raw.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == n
        finally:
            raw.close()
        # SIGHUP with the bad file: logged, the server keeps serving its policy
        live_server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _assert_in_log(live_server, "policy not reloaded"))
        live_server.assert_up(d / "tls")
    finally:
        (d / "holder.toml").write_text(good)


def _assert_in_log(server, text: str) -> None:
    assert text in server.log_text()


def test_sighup_applies_a_new_purpose(live_server, data):
    d = live_server.dir
    ids = data["bank"].index[:200].tolist()
    with connect(live_server.address, tls_dir=d / "tls", purpose="post_loan") as ch:
        with pytest.raises(PolicyViolation, match="post_loan"):
            BankSession(ch, "align")
        text = (d / "holder.toml").read_text()
        (d / "holder.toml").write_text(text.replace('allowed_purposes = ["credit"]',
                                                    'allowed_purposes = ["credit", "post_loan"]'))
        live_server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _assert_sighup_reload(d))
        with BankSession(ch, "align") as s:  # consent is per purpose: nobody consented yet
            assert len(align(s, ids)) == 0


def _assert_sighup_reload(d) -> None:
    assert any(r[2] == "policy_reload" and "source=SIGHUP" in r[5] for r in audit_rows(d))


def test_suspend_refuses_the_next_request_and_resume_serves_again(live_server, data):
    d, tls_dir = live_server.dir, live_server.dir / "tls"
    pid = live_server.proc.pid
    ids = data["bank"].index[:300].tolist()
    with connect(live_server.address, tls_dir=tls_dir) as ch:
        open_one = BankSession(ch, "train", _key())
        assert fc("holder", "bank", "suspend", "--dir", d, "--bank", "demo-bank",
                  "--reason", "audit finding 2026-12") == 0
        assert fc("holder", "bank", "suspend", "--dir", d, "--bank", "demo-bank") == 2
        with pytest.raises(PolicyViolation, match="suspended"):
            BankSession(ch, "align")
        wait_for(lambda: _assert_closed(d, open_one.id, "bank_suspended"))
        assert fc("holder", "bank", "resume", "--dir", d, "--bank", "demo-bank") == 0
        with BankSession(ch, "align") as s:
            assert len(align(s, ids)) > 250
    assert live_server.proc.pid == pid and live_server.proc.poll() is None
    rows = audit_rows(d)
    ops = [r[2] for r in rows]
    assert "bank_suspend" in ops and "bank_resume" in ops
    refused = [r for r in rows if r[0] == "demo-bank" and r[2].startswith("refused")]
    assert any("suspended" in r[5] for r in refused), refused[-3:]
