"""Online scoring (issue 16, item 9): one enterprise per call reuses one scoring session per
channel and model, reopened when the holder dropped it, and scoring sessions do not count
toward the holder's ``max_sessions_per_day``, so single-row scoring works at the defaults."""
from __future__ import annotations

import pickle
import threading
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import fedcredit
from fedcredit.datasets import make_credit_data
from fedcredit.errors import ResourceLimit
from fedcredit.models import HeteroLogisticRegression, Scorecard, SecureBoostClassifier
from fedcredit.protocol import ActiveSession, HolderPolicy, InProcessChannel, PassiveParty

#: 1024-bit keys are INSECURE: tests only
KEYS = dict(key_bits=1024, insecure_key=True, n_jobs=1)


def _boost(**kw) -> SecureBoostClassifier:
    return SecureBoostClassifier(**{**dict(n_estimators=3, max_depth=3, max_bin=8,
                                           verbose=False), **KEYS, **kw})


def _party(holder: pd.DataFrame, **policy) -> PassiveParty:
    return PassiveParty(holder, policy=HolderPolicy(allow_insecure_keys=True,
                                                    min_node_samples=10, **policy))


def _ops(party, op: str) -> list[dict]:
    return [r for r in party.auditor.records if r["operation"] == op]


@pytest.fixture(scope="module")
def data():
    bank, holder = make_credit_data(rows=1500, seed=21, overlap=0.9)
    bank, holder = bank.set_index("uscc"), holder.set_index("uscc")
    y = bank.pop("label").to_numpy()
    return bank, y, holder


@pytest.fixture(scope="module")
def boosted(data):
    bank, y, holder = data
    party = _party(holder)
    channel = InProcessChannel(party)
    return _boost().fit(bank, y, channel), party, channel


def test_single_row_calls_share_one_scoring_session_and_match_the_batch(data, boosted):
    bank, _, _ = data
    model, party, channel = boosted
    model.close_scoring()
    before = len(_ops(party, "open_session:score"))
    X = bank.iloc[:200]
    rows = np.vstack([model.predict_proba(X.iloc[[i]], holder=channel) for i in range(200)])
    assert len(_ops(party, "open_session:score")) == before + 1
    assert len(_ops(party, "predict")) >= 200
    np.testing.assert_array_equal(rows, model.predict_proba(X, holder=channel))
    assert len(_ops(party, "open_session:score")) == before + 1  # the batch reused it too


def test_lr_and_scorecard_partial_scores_reuse_their_session(data):
    bank, y, holder = data
    party = _party(holder)
    ch = InProcessChannel(party)
    lr = HeteroLogisticRegression(max_iter=1, batch_size=500, verbose=False, **KEYS)
    lr.fit(bank, y, ch)
    card = Scorecard(lr=clone(lr)).fit(bank, y, ch)
    X = bank.iloc[:40]
    for est, score in ((lr, lambda Z: lr.predict_proba(Z, ch)[:, 1]),
                       (card, lambda Z: card.score(Z, ch))):
        before = len(_ops(party, "open_session:score"))
        one = np.concatenate([score(X.iloc[[i]]) for i in range(len(X))])
        np.testing.assert_allclose(one, score(X), rtol=0, atol=1e-12)
        assert len(_ops(party, "open_session:score")) == before + 1, type(est).__name__
        est.close_scoring()
    # the scorecard's scores are its regression's, as before sessions were reused
    np.testing.assert_allclose(card.decision_function(X, ch),
                               card.model_.decision_function(card.woe_.transform_bank(
                                   X, card.feature_names_bank_), ch), atol=1e-12)
    card.close_scoring()
    assert not party._sessions


def test_a_session_the_holder_dropped_is_reopened_transparently(data, boosted):
    bank, _, _ = data
    model, party, channel = boosted
    X = bank.iloc[:5]
    expected = model.predict_proba(X, holder=channel)
    sid = _ops(party, "open_session:score")[-1]["session"]
    party.drop(party.find_session(sid), "expired")  # as idle expiry does
    n = len(_ops(party, "open_session:score"))
    np.testing.assert_array_equal(model.predict_proba(X, holder=channel), expected)
    assert len(_ops(party, "open_session:score")) == n + 1
    # explicit close: the holder's session ends, the next call opens a new one
    sid = _ops(party, "open_session:score")[-1]["session"]
    model.close_scoring()
    assert party.find_session(sid) is None
    np.testing.assert_array_equal(model.predict_proba(X, holder=channel), expected)
    assert len(_ops(party, "open_session:score")) == n + 2
    model.close_scoring()


def test_idle_expiry_reopens_too(data):
    bank, y, holder = data
    party = _party(holder)
    ch = InProcessChannel(party)
    model = _boost(n_estimators=1, max_depth=2).fit(bank, y, ch)
    X = bank.iloc[:3]
    party.policy.session_idle_seconds = 0.2  # after training: its gaps may be longer
    first = model.predict_proba(X, ch)
    time.sleep(0.3)
    np.testing.assert_array_equal(model.predict_proba(X, ch), first)
    assert len(_ops(party, "open_session:score")) == 2
    assert any(r["operation"] == "refused:PredictRequest" for r in party.auditor.records)


def test_threads_share_the_cached_session(data, boosted):
    bank, _, _ = data
    model, party, channel = boosted
    X = bank.iloc[:40]
    expected = model.predict_proba(X, holder=channel)  # warm: the session is open
    n = len(_ops(party, "open_session:score"))
    out = np.zeros((len(X), 2))
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(k, len(X), 4):
                out[i] = model.predict_proba(X.iloc[[i]], holder=channel)[0]
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    np.testing.assert_array_equal(out, expected)
    assert len(_ops(party, "open_session:score")) == n


def test_the_cache_is_not_a_param_nor_saved_nor_pickled(data, boosted, tmp_path):
    bank, _, _ = data
    model, party, channel = boosted
    X = bank.iloc[:5]
    expected = model.predict_proba(X, holder=channel)
    assert "_scoring_sessions" in vars(model)
    assert not any("session" in k for k in model.get_params(deep=True))
    copy = pickle.loads(pickle.dumps(model))  # a lock would not pickle
    assert "_scoring_sessions" not in vars(copy) and "_scoring_sessions" in vars(model)
    np.testing.assert_array_equal(copy.predict_proba(X, holder=channel), expected)
    assert copy._scoring_sessions is not model._scoring_sessions
    copy.close_scoring()
    assert "_scoring_sessions" not in vars(clone(model))
    model.save(tmp_path / "m.json")
    assert "session" not in (tmp_path / "m.json").read_text().lower()
    loaded = SecureBoostClassifier.load(tmp_path / "m.json")
    np.testing.assert_array_equal(loaded.predict_proba(X, holder=channel), expected)
    loaded.close_scoring()


def test_fit_closes_the_previous_models_sessions_and_slots_are_released(data):
    bank, y, holder = data
    party = _party(holder, max_sessions_per_bank=2)
    ch = InProcessChannel(party)
    X = bank.iloc[:3]
    a = _boost(n_estimators=1, max_depth=2).fit(bank, y, ch)
    a.predict_proba(X, ch)
    sid = _ops(party, "open_session:score")[-1]["session"]
    a.fit(bank, y, ch)  # a refit closes the old model's session first
    assert party.find_session(sid) is None
    a.predict_proba(X, ch)
    b = _boost(n_estimators=1, max_depth=2).fit(bank, y, ch)
    b.predict_proba(X, ch)
    assert len(party._sessions) == 2  # both scoring sessions fill the bank's share
    with pytest.raises(ResourceLimit):  # a session opened by hand is refused...
        ActiveSession(ch, "align")
    # ... a fit releases the cached scoring sessions instead of failing
    _boost(n_estimators=1, max_depth=2).fit(bank, y, ch)
    assert not party._sessions
    np.testing.assert_array_equal(a.predict_proba(X, ch), a.predict_proba(X, ch))
    # channels beyond the cache's size: the least recently used session is closed
    for _ in range(4):
        b.predict_proba(X, InProcessChannel(party))
    assert len(party._sessions) <= 2
    a.close_scoring(), b.close_scoring()
    assert not party._sessions


def test_scoring_releases_idle_sessions_of_other_models_and_collected_ones(data):
    import gc

    bank, y, holder = data
    party = _party(holder, max_sessions_per_bank=2)
    X = bank.iloc[:3]
    a = _boost(n_estimators=1, max_depth=2).fit(bank, y, party)  # a PassiveParty as holder=
    b, c = pickle.loads(pickle.dumps(a)), pickle.loads(pickle.dumps(a))
    expected = a.predict_proba(X, party)
    a.predict_proba(X, party)
    assert len(_ops(party, "open_session:score")) == 1  # keyed by the party: one session
    b.predict_proba(X, party)
    assert len(party._sessions) == 2
    np.testing.assert_array_equal(c.predict_proba(X, party), expected)  # slots released
    assert len(party._sessions) == 1
    c_sid = _ops(party, "open_session:score")[-1]["session"]
    del c
    gc.collect()  # its session is handed over, closed at the next session opened here
    assert party.find_session(c_sid) is not None
    a.predict_proba(X, party)
    assert party.find_session(c_sid) is None and len(party._sessions) == 1
    a.close_scoring(), b.close_scoring()
    assert not party._sessions


def test_served_holder_scores_online_beyond_its_daily_session_cap(tmp_path, data):
    from fedcredit.cli import main as cli
    from fedcredit.holder import config, store
    from fedcredit.holder.service import HolderParty
    from fedcredit.transport import HolderServer

    bank, y, holder = data
    d = tmp_path / "H"
    assert cli(["holder", "init", "--dir", str(d), "--listen", "127.0.0.1:0"]) == 0
    text = (d / "holder.toml").read_text()
    for old, new in (("min_key_bits = 2048", "min_key_bits = 1024"),
                     ("allow_insecure_keys = false", "allow_insecure_keys = true"),
                     ("max_sessions_per_day = 100", "max_sessions_per_day = 3")):
        assert old in text
        text = text.replace(old, new)
    (d / "holder.toml").write_text(text)
    csv = tmp_path / "holder.csv"
    holder.rename_axis("uscc").reset_index().to_csv(csv, index=False)
    assert cli(["holder", "load-features", "--dir", str(d), "--csv", str(csv),
                "--id-column", "uscc"]) == 0
    pd.DataFrame({"uscc": holder.index, "bank": "demo-bank", "purpose": "credit",
                  "granted_at": "2026-01-01T00:00:00Z",
                  "expires_at": "2099-01-01T00:00:00Z"}).to_csv(tmp_path / "c.csv", index=False)
    assert cli(["holder", "consent", "import", "--dir", str(d), "--csv",
                str(tmp_path / "c.csv")]) == 0
    party = HolderParty(config.load_config(d))
    server = HolderServer(party, "127.0.0.1:0", tls_dir=d / "tls").start()
    try:
        h = fedcredit.connect(server.address, tls_dir=d / "tls", purpose="credit")
        model = SecureBoostClassifier(n_estimators=3, max_depth=3, key_bits=1024,
                                      insecure_key=True, verbose=False, n_jobs=1)
        model.fit(bank, y, holder=h)  # the day's first session
        p = [model.predict_proba(bank.iloc[[i]], holder=h) for i in range(50)]
        assert np.isfinite(np.vstack(p)).all()
        # training-type sessions still count: two more reach the cap of 3
        ActiveSession(h, "align").close()
        ActiveSession(h, "align").close()
        with pytest.raises(ResourceLimit, match="per day"):
            ActiveSession(h, "align")
        model.close_scoring()  # a new scoring session is still allowed today
        assert np.isfinite(model.predict_proba(bank.iloc[:5], holder=h)).all()
        model.close_scoring()
        h.close()
    finally:
        server.stop(0)
        party.close()
    con = store.connect(d / "holder.db")
    try:
        ops = dict(con.execute("SELECT operation, COUNT(*) FROM audit_log WHERE bank = "
                               "'demo-bank' GROUP BY operation").fetchall())
    finally:
        con.close()
    assert ops["open_session:score"] == 2 and ops["predict"] == 51
    assert ops["open_session:train"] + ops["open_session:align"] == 3
