"""The session core and the registry: the PSI guard, middleware, one table of protocols, and
``holder stats`` counting the work of every protocol."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import TEST_KEY_BITS, test_policy

from fedcredit.crypto import generate_keypair
from fedcredit.errors import InvalidInput, ResourceLimit, SessionNotFound
from fedcredit.models import HeteroLogisticRegression, HeteroWOE
from fedcredit.protocol import BankSession, HolderPolicy, InProcessChannel, PassiveParty, align
from fedcredit.protocol import registry
from fedcredit.protocol.middleware import Request, compose
from fedcredit.protocol.registry import MESSAGES as m


def _ids(n: int) -> list[str]:
    return [f"id{i:05d}" for i in range(n)]


def _holder(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.integers(0, 5, n)}, index=_ids(n))


# -- the PSI guard ------------------------------------------------------------------------------
def test_a_psi_upload_past_the_cap_is_refused_dropped_and_audited(make_channel):
    party = PassiveParty(_holder(), policy=test_policy(max_psi_points=50))
    ch = make_channel(party)
    s = BankSession(ch, "align")
    with pytest.raises(ResourceLimit, match="max_psi_points=50"):
        align(s, _ids(120))  # over gRPC: RESOURCE_EXHAUSTED, re-raised as ResourceLimit
    assert party.find_session(s.id) is None  # the session and its buffer are gone
    with pytest.raises(SessionNotFound):
        ch.call(m.PsiAlign(session_id=s.id, positions=b""))
    refused = [r for r in party.auditor.records if r["operation"] == "refused:PsiBlinded"]
    assert len(refused) == 1 and refused[0]["session"] == s.id
    assert refused[0]["detail"].startswith("ResourceLimit")
    ok = BankSession(ch, "align")  # under the cap all is well
    assert len(align(ok, _ids(40))) == 40


def test_psi_cap_is_a_policy_key_of_holder_toml():
    assert "max_psi_points" in HolderPolicy.keys()
    with pytest.raises(InvalidInput, match="min_key_bits"):
        HolderPolicy(min_key_bits=1024)  # below 2048 only with allow_insecure_keys
    assert HolderPolicy(allow_insecure_keys=True).key_floor == 1024
    assert HolderPolicy().key_floor == 2048
    with pytest.raises(InvalidInput, match="common name"):
        HolderPolicy(allowed_banks=("bad bank",))


# -- middleware -----------------------------------------------------------------------------------
def test_middleware_runs_outermost_first_and_sees_answers():
    seen = []

    def tag(name):
        def mw(req, call_next):
            seen.append(f"{name}>")
            for out in call_next(req):
                seen.append(f"<{name}")
                yield out
        return mw

    def handler(req):
        seen.append("step")
        yield "answer"

    chain = compose([tag("a"), tag("b")], handler)
    assert list(chain(Request(None, None, m.Ping(), iter(())))) == ["answer"]
    assert seen == ["a>", "b>", "step", "<b", "<a"]


def test_a_middleware_can_refuse_before_the_step():
    def refuse(req, call_next):
        if isinstance(req.first, m.OpenSession):
            raise ResourceLimit("closed for maintenance")
        yield from call_next(req)

    party = PassiveParty(_holder(), policy=test_policy(), middleware=[refuse])
    ch = InProcessChannel(party)
    assert ch.call(m.Ping()).holder_name == party.name
    with pytest.raises(ResourceLimit, match="maintenance"):
        BankSession(ch, "align")


# -- one registry ---------------------------------------------------------------------------------
def test_every_message_is_served_or_answered_once_and_tasks_derive_from_the_registry():
    handled = registry.holder_handlers()
    assert len(registry.MESSAGE_TYPES) == len(set(registry.MESSAGE_TYPES))
    names = [p.name for p in registry.PROTOCOLS]
    assert names[:6] == ["alignment", "secureboost", "logistic", "woe", "private_scoring",
                         "loans"]  # appended only: tags are positional
    for p in registry.PROTOCOLS:
        assert set(p.handlers) <= set(p.messages), p.name
        assert p.operations and all(registry.protocol_of_operation(o) == p.name
                                    for o in p.operations)
    assert set(handled) == {t for p in registry.PROTOCOLS for t in p.handlers}
    assert registry.TASKS[:5] == ("align", "train", "lr", "woe", "loans")
    assert registry.TASKS[-1] == "score"
    assert registry.KEYED_TASKS == {"train", "lr", "woe", "correlation"}


def test_audited_operations_all_belong_to_a_protocol(small_credit):
    bank, y, holder = small_credit
    bank, y, holder = bank.iloc[:800], y[:800], holder.iloc[:900]
    party = PassiveParty(holder, policy=test_policy())
    ch = InProcessChannel(party)
    kw = dict(key_bits=TEST_KEY_BITS, insecure_key=True)  # INSECURE keys: tests only
    HeteroLogisticRegression(max_iter=1, verbose=False, **kw).fit(bank, y, holder=ch) \
        .predict_proba(bank.iloc[:50], holder=ch)
    HeteroWOE(**kw).fit(bank, y, holder=ch)
    ops = {r["operation"] for r in party.auditor.records}
    core_ops = {o for o in ops if o.startswith("open_session:") or o == "close_session"}
    unknown = {o for o in ops - core_ops if not registry.protocol_of_operation(o)}
    assert not unknown
    assert {registry.protocol_of_operation(o) for o in ops - core_ops} == {
        "alignment", "logistic", "woe"}


# -- holder stats counts every protocol ---------------------------------------------------------
def test_holder_stats_counts_lr_and_woe_sessions(tmp_path, small_credit):
    from fedcredit.cli import main as cli
    from fedcredit.holder import audit_report, config, store
    from fedcredit.holder.service import HolderParty

    bank, y, holder = small_credit
    bank, y = bank.iloc[:800], y[:800]
    d = tmp_path / "H"
    assert cli(["holder", "init", "--dir", str(d), "--listen", "127.0.0.1:0"]) == 0
    text = (d / "holder.toml").read_text()
    text = text.replace("min_key_bits = 2048", "min_key_bits = 1024")
    text = text.replace("allow_insecure_keys = false", "allow_insecure_keys = true")
    (d / "holder.toml").write_text(text)
    csv = tmp_path / "holder.csv"
    holder.reset_index().rename(columns={"index": "uscc"}).to_csv(csv, index=False)
    assert cli(["holder", "load-features", "--dir", str(d), "--csv", str(csv),
                "--id-column", "uscc"]) == 0
    consents = pd.DataFrame({"uscc": holder.index, "bank": "demo-bank", "purpose": "credit",
                             "granted_at": "2026-01-01T00:00:00Z",
                             "expires_at": "2099-01-01T00:00:00Z"})
    consents.to_csv(tmp_path / "c.csv", index=False)
    assert cli(["holder", "consent", "import", "--dir", str(d), "--csv",
                str(tmp_path / "c.csv")]) == 0
    party = HolderParty(config.load_config(d))
    try:
        ch = InProcessChannel(party, bank="demo-bank")
        kw = dict(key_bits=TEST_KEY_BITS, insecure_key=True)  # INSECURE keys: tests only
        HeteroLogisticRegression(max_iter=1, verbose=False, **kw).fit(bank, y, holder=ch)
        HeteroWOE(**kw).fit(bank, y, holder=ch)
    finally:
        party.close()
    con = store.connect(d / "holder.db")
    try:
        rows = audit_report.stats(con)
    finally:
        con.close()
    mine = next(r for r in rows if r["bank"] == "demo-bank")
    per = mine["protocols"]
    assert per["logistic"]["sessions"] == 1 and per["logistic"]["requests"] >= 3
    assert per["woe"]["sessions"] == 1 and per["woe"]["requests"] >= 1
    assert per["alignment"]["sessions"] == 2 and per["secureboost"]["requests"] == 0
    assert mine["models"] >= 1  # the LR model
    json.dumps(rows)  # what `holder stats --json` prints


def test_a_key_below_the_floor_is_refused_at_open(holder_party):
    _, sk = generate_keypair(bits=TEST_KEY_BITS, insecure=True)
    strict = PassiveParty(holder_party.features, policy=HolderPolicy())
    from fedcredit.errors import InsecureParameters

    with pytest.raises(InsecureParameters, match="2048-bit minimum"):
        BankSession(InProcessChannel(strict), "train", sk)


def test_holder_toml_template_names_every_policy_key_and_loads_back(tmp_path):
    from fedcredit.holder import config

    text = config.render("h", "127.0.0.1:0", "tls", ["demo-bank"])
    policy = text.split("[policy]", 1)[1].split("\n[", 1)[0]
    written = {line.split("=", 1)[0].strip() for line in policy.splitlines()
               if "=" in line and not line.lstrip().startswith("#")}
    assert written | {"columns"} == set(HolderPolicy.keys())
    assert '# [policy.columns."demo-bank"]' in text  # a table: shown, commented out
    (tmp_path / "holder.toml").write_text(text)
    cfg = config.load_config(tmp_path)
    assert cfg.policy == HolderPolicy(allowed_banks=("demo-bank",), min_key_bits=2048)


def test_the_holder_serves_its_table_as_handed_over_whatever_the_caller_changes_later():
    table = _holder(20)
    party = PassiveParty(table, name="h", policy=test_policy())
    before = party.features.copy(deep=True)
    table.iloc[0, 0] = 1e9  # the caller edits its frame in place, a column is replaced
    table["b"] = -1
    table.index = [f"other{i}" for i in range(20)]
    pd.testing.assert_frame_equal(party.features, before)


def test_a_consent_registry_answering_the_wrong_number_of_flags_is_refused():
    class Short:
        def allowed(self, bank, purpose, ids):
            return np.ones(len(ids) - 1, dtype=bool)

    party = PassiveParty(_holder(10), name="h", policy=test_policy(), consent=Short())
    with pytest.raises(InvalidInput, match="9 flags for 10 enterprises"):
        party.consented_ids("bank", "credit")
