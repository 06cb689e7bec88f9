"""Pre-credit population scoring: the holder enumerates exactly the enterprises that authorise
this bank for ``pre_credit`` (named or platform-wide), page by page with every page re-reading
consent, scores them as scoring by id would, and audits each page with its ids; the bank
ranks them. Over both transports, then through a served holder (the real consent registry,
the daily scoring cap) and ``fedcredit bank precredit``."""
from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import test_policy
from fedcredit.datasets import make_credit_data
from fedcredit.errors import InvalidInput, PolicyViolation, ResourceLimit
from fedcredit.metrics.grades import grade
from fedcredit.models import HeteroLogisticRegression, SecureBoostClassifier
from fedcredit.models.explain import top_reasons
from fedcredit.models.population import load_model, precredit
from fedcredit.protocol import BankSession, InProcessChannel, PassiveParty
from fedcredit.protocol.population import bank as steps
from fedcredit.protocol.population.math import next_page

KEYS = dict(key_bits=1024, insecure_key=True, n_jobs=1, verbose=False)  # INSECURE: tests only
PURPOSES = ("credit", "pre_credit")


class Consents:
    """(uscc, bank, purpose) rows; bank "*" for every institution; mutable for revocations."""

    def __init__(self, rows):
        self.initial = set(rows)
        self.rows = set(rows)

    def allowed(self, bank, purpose, ids):
        return np.array([(i, bank, purpose) in self.rows or (i, "*", purpose) in self.rows
                         for i in ids], dtype=bool)


@pytest.fixture(scope="module")
def world():
    """A holder of 700 enterprises: 300 authorise demo-bank for pre-credit by name, 150 every
    institution, 100 another bank only, the rest only credit; two models trained for
    pre-credit on the bank's ids and labels alone, one for credit."""
    bank, holder = make_credit_data(rows=700, seed=21, overlap=1.0)
    bank, holder = bank.set_index("uscc"), holder.set_index("uscc")
    y = bank.pop("label")
    ids = sorted(holder.index)
    rows = {(i, "demo-bank", "pre_credit") for i in ids[:300]}
    rows |= {(i, "*", "pre_credit") for i in ids[300:450]}
    rows |= {(i, "other-bank", "pre_credit") for i in ids[450:550]}
    rows |= {(i, "demo-bank", "credit") for i in ids}
    consent = Consents(rows)
    party = PassiveParty(holder, name="platform",
                         policy=test_policy(allowed_purposes=PURPOSES), consent=consent)
    X0 = bank[[]]  # ids and labels only
    pre = InProcessChannel(party, purpose="pre_credit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no bank features: the warm-start warnings
        boost = SecureBoostClassifier(n_estimators=3, max_depth=3, **KEYS).fit(X0, y, pre)
        lr = HeteroLogisticRegression(max_iter=2, **KEYS).fit(X0, y, pre)
        credit = SecureBoostClassifier(n_estimators=2, max_depth=2, **KEYS).fit(
            X0, y, InProcessChannel(party, purpose="credit"))
    return {"party": party, "consent": consent, "boost": boost, "lr": lr, "credit": credit,
            "expected": set(ids[:450]), "bank": bank, "y": y}


@pytest.fixture
def consent(world):
    c = world["consent"]
    c.rows = set(c.initial)
    yield c
    c.rows = set(c.initial)


def test_the_page_rule_covers_sorted_ids_once():
    ids = [f"{i:03d}" for i in range(10)]
    assert next_page(ids, "", 4) == (ids[:4], True)
    assert next_page(ids, "003", 4) == (ids[4:8], True)
    assert next_page(ids, "007", 4) == (ids[8:], False)
    assert next_page(ids, "0035", 2) == (ids[4:6], True)  # after an id that has left
    assert next_page(ids, "009", 4) == ([], False)
    with pytest.raises(InvalidInput, match="at least one id"):
        next_page(ids, "", 0)


@pytest.mark.parametrize("kind", ["boost", "lr"])
def test_exactly_the_consented_population_ranked_as_scoring_by_id(world, consent, make_channel,
                                                                  kind):
    model = world[kind]
    channel = make_channel(world["party"], purpose="pre_credit")
    out = precredit(model, channel, page_size=64)
    assert set(out["id"]) == world["expected"] and len(out) == len(world["expected"])
    assert out.attrs["listed"] == len(out) and out.attrs["withdrawn"] == 0
    assert out["rank"].tolist() == list(range(1, len(out) + 1))
    assert (np.diff(out["score"].to_numpy()) >= 0).all()  # lowest risk first
    assert (out["grade"].to_numpy() == grade(out["score"])).all()
    # the same numbers as scoring the same ids by id
    by_id = model.predict_proba(pd.DataFrame(index=pd.Index(out["id"])), holder=channel)[:, 1]
    np.testing.assert_allclose(out["score"].to_numpy(), by_id, rtol=0, atol=1e-12)
    if kind == "boost":  # and the reasons of explain()
        why = top_reasons(model.explain(pd.DataFrame(index=pd.Index(out["id"])),
                                        holder=channel), 3)
        assert out["reason_1"].tolist() == why["reason_1"].tolist()
        assert out["reason_3"].tolist() == why["reason_3"].tolist()
    top = precredit(model, channel, top=25, reasons=0)
    assert top["id"].tolist() == out["id"].head(25).tolist()
    assert list(top.columns) == ["rank", "id", "score", "grade"]


def test_pages_cover_the_set_once_and_a_revocation_applies_at_the_next_page(world, consent,
                                                                              make_channel):
    channel = make_channel(world["party"], purpose="pre_credit")
    expected = sorted(world["expected"])
    early, later, current = expected[10], expected[400], expected[60]
    seen, covered, after, pages = [], {}, "", 0
    with BankSession(channel, "score", model_id=world["boost"].model_id_,
                     purpose="pre_credit") as session:
        while True:
            ids, more = steps.list_page(session, after, 50)
            if pages == 1:  # after listing page 2: withdraw one of it, one listed, one ahead
                consent.rows -= {(early, "demo-bank", "pre_credit"),
                                 (current, "demo-bank", "pre_credit"),
                                 (later, "*", "pre_credit")}
            page = steps.score_page(session, ids, "secureboost")
            assert page.masks and set(page.masks) == set(world["boost"].tree_ids_) - {-1}
            covered.update(zip(ids, page.covered.tolist()))
            seen += ids
            pages += 1
            after = ids[-1]
            if not more:
                break
    assert len(seen) == len(set(seen))  # no id twice
    assert seen == sorted(seen)
    assert set(seen) == set(expected) - {later}  # gone from the next pages on
    assert covered[early] and not covered[current]  # withdrawn between listing and scoring
    assert sum(covered.values()) == len(seen) - 1


def test_each_page_is_audited_with_its_ids(world, consent):
    party = world["party"]
    party.auditor.records.clear()
    out = precredit(world["boost"], InProcessChannel(party, purpose="pre_credit"),
                    page_size=200, reasons=0)
    listed = [r for r in party.auditor.records if r["operation"] == "population_page"]
    scored = [r for r in party.auditor.records if r["operation"] == "population_score"]
    assert len(listed) == len(scored) == 3  # 450 ids in pages of 200
    assert [len(r["ids"]) for r in scored] == [200, 200, 50]
    assert [r["ids"] for r in listed] == [r["ids"] for r in scored]
    assert sorted(i for r in scored for i in r["ids"]) == sorted(out["id"])
    assert all(r["purpose"] == "pre_credit" and r["bank"] == "demo-bank" for r in scored)


def test_refusals(world, consent):
    party, boost = world["party"], world["boost"]
    pre = InProcessChannel(party, purpose="pre_credit")
    with pytest.raises(PolicyViolation, match="pre_credit only"):  # enumerating credit consents
        precredit(boost, InProcessChannel(party, purpose="credit"), purpose="credit")
    with pytest.raises(PolicyViolation, match="trained for purpose 'credit'"):
        precredit(world["credit"], pre)
    with BankSession(pre, "score", model_id=boost.model_id_, purpose="pre_credit") as s:
        with pytest.raises(InvalidInput, match="not listed in this session"):
            steps.score_page(s, sorted(world["expected"])[:3], "secureboost")
        with pytest.raises(InvalidInput, match="at least one id"):
            s.call(steps.m.PopulationPage(session_id=s.id, limit=0), steps.m.PopulationIds)
    with_features = SecureBoostClassifier(n_estimators=2, max_depth=2, **KEYS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with_features.fit(world["bank"][["loan_amount"]], world["y"], pre)
    with pytest.raises(InvalidInput, match="bank feature"):
        precredit(with_features, pre)
    with pytest.raises(InvalidInput, match="top must be"):
        precredit(boost, pre, top=0)


def test_the_holder_bounds_a_page_and_may_refuse_plain_answers(world, consent):
    holder = world["party"]
    bounded = PassiveParty(holder.features, name="platform", consent=world["consent"],
                           models=holder.models,
                           policy=test_policy(allowed_purposes=PURPOSES, max_predict_ids=30))
    ch = InProcessChannel(bounded, purpose="pre_credit")
    with BankSession(ch, "score", model_id=world["boost"].model_id_, purpose="pre_credit") as s:
        ids, more = steps.list_page(s, "", 100)
        assert len(ids) == 30 and more
    strict = PassiveParty(holder.features, consent=world["consent"], models=holder.models,
                          policy=test_policy(allowed_purposes=PURPOSES,
                                             allow_plain_scoring=False))
    with pytest.raises(PolicyViolation, match="allow_plain_scoring"):
        precredit(world["boost"], InProcessChannel(strict, purpose="pre_credit"))
    out = precredit(world["lr"], InProcessChannel(strict, purpose="pre_credit"), reasons=0)
    assert len(out) == len(world["expected"])  # partial scores are not leaf masks


# -- a served holder: the consent registry, the daily cap, the command -------------------------
def _served_holder(tmp_path, holder, bank_ids, cap):
    from fedcredit.cli import main as cli
    from fedcredit.holder import config
    from fedcredit.holder.service import HolderParty

    d = tmp_path / "H"
    assert cli(["holder", "init", "--dir", str(d), "--listen", "127.0.0.1:0", "--bank",
                "demo-bank", "--bank", "other-bank", "--purpose", "credit", "--purpose",
                "pre_credit"]) == 0
    text = (d / "holder.toml").read_text()
    for old, new in (("min_key_bits = 2048", "min_key_bits = 1024"),
                     ("allow_insecure_keys = false", "allow_insecure_keys = true"),
                     ("min_node_samples = 20", "min_node_samples = 10"),
                     ("max_scored_per_day = 100000", f"max_scored_per_day = {cap}")):
        assert old in text, old
        text = text.replace(old, new)
    (d / "holder.toml").write_text(text)
    holder.rename_axis("uscc").reset_index().to_csv(tmp_path / "h.csv", index=False)
    assert cli(["holder", "load-features", "--dir", str(d), "--csv", str(tmp_path / "h.csv"),
                "--id-column", "uscc"]) == 0
    ids = sorted(holder.index)
    rows = [(u, "demo-bank") for u in bank_ids] + [(u, "demo-bank") for u in ids[:40]]
    rows += [(u, "*") for u in ids[40:90]] + [(u, "other-bank") for u in ids[90:120]]
    frame = pd.DataFrame(sorted(set(rows)), columns=["uscc", "bank"]).assign(
        purpose="pre_credit", granted_at="2026-01-01T00:00:00Z",
        expires_at="2099-01-01T00:00:00Z")
    frame.to_csv(tmp_path / "c.csv", index=False)
    assert cli(["holder", "consent", "import", "--dir", str(d), "--csv",
                str(tmp_path / "c.csv")]) == 0
    assert cli(["holder", "consent", "revoke", "--dir", str(d), "--uscc", ids[5], "--bank",
                "demo-bank", "--purpose", "pre_credit"]) == 0
    expected = (set(bank_ids) | set(ids[:90])) - {ids[5]}
    return HolderParty(config.load_config(d)), d, expected


def _parser():
    from fedcredit.cli import bank_lifecycle_cmds

    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers()
    bank_lifecycle_cmds.register(sub)
    return ap


@pytest.mark.grpc
def test_a_served_holder_and_the_precredit_command(tmp_path, capsys):
    import fedcredit
    from fedcredit.transport import HolderServer

    bank, holder = make_credit_data(rows=400, seed=8, overlap=1.0)
    bank, holder = bank.set_index("uscc"), holder.set_index("uscc")
    y = bank.pop("label")
    train = sorted(bank.index)[200:]  # the bank's own borrowers, consenting by name
    party, d, expected = _served_holder(tmp_path, holder, train, cap=100_000)
    server = HolderServer(party, "127.0.0.1:0", tls_dir=d / "tls").start()
    try:
        ch = fedcredit.connect(server.address, tls_dir=d / "tls", purpose="pre_credit")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = SecureBoostClassifier(n_estimators=2, max_depth=2, **KEYS).fit(
                bank.loc[train, []], y.loc[train], ch)
        model.save(tmp_path / "model.json")
        a = _parser().parse_args([
            "precredit", "--holder", server.address, "--tls-dir", str(d / "tls"), "--model",
            str(tmp_path / "model.json"), "--top", "50", "--out", str(tmp_path / "w.csv"),
            "--page-size", "64"])
        assert a.func(a) == 0
        assert f"listed {len(expected)} enterprises" in capsys.readouterr().out
        w = pd.read_csv(tmp_path / "w.csv", dtype={"id": str})
        assert list(w.columns[:4]) == ["rank", "id", "score", "grade"] and len(w) == 50
        full = precredit(load_model(tmp_path / "model.json"), ch, reasons=0)
        assert set(full["id"]) == expected  # named and platform-wide, not revoked or others'
        assert w["id"].tolist() == full["id"].head(50).tolist()
        ops = [r[0] for r in party._db.execute("SELECT operation FROM audit_log")]
        assert "population_page" in ops and "population_score" in ops
    finally:
        server.stop(0)
        party.close()


def test_population_pages_count_against_the_daily_scoring_cap(tmp_path):
    bank, holder = make_credit_data(rows=300, seed=9, overlap=1.0)
    bank, holder = bank.set_index("uscc"), holder.set_index("uscc")
    y = bank.pop("label")
    train = sorted(bank.index)[150:]
    party, _, expected = _served_holder(tmp_path, holder, train, cap=100)
    try:
        ch = InProcessChannel(party, purpose="pre_credit")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = SecureBoostClassifier(n_estimators=2, max_depth=2, **KEYS).fit(
                bank.loc[train, []], y.loc[train], ch)
        assert len(expected) > 150  # three pages of 50
        with pytest.raises(ResourceLimit, match="may score 100 distinct enterprises"):
            precredit(model, ch, page_size=50)
        n = party._db.execute("SELECT COUNT(*) FROM scored WHERE purpose = 'pre_credit'")
        assert n.fetchone()[0] == 100  # two pages answered, the third refused
    finally:
        party.close()
