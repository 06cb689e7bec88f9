"""A hostile bank against the holder's core: bounded keys, bounded streams and requests,
consent re-checked inside an open LR session, a per-bank share of sessions, typed errors for
malformed values. Over both channels where the transport matters."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import TEST_KEY_BITS, test_policy

from fedcredit.crypto import generate_keypair
from fedcredit.errors import InvalidInput, ResourceLimit
from fedcredit.models import HeteroWOE, SecureBoostClassifier
from fedcredit.protocol import BankSession, InProcessChannel, PassiveParty, align
from fedcredit.protocol.logistic import bank as lr_steps
from fedcredit.protocol.logistic import math as lc
from fedcredit.protocol.registry import MESSAGES as m

INSECURE = dict(key_bits=TEST_KEY_BITS, insecure_key=True)  # 1024-bit keys: tests only


def _holder(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)},
                        index=[f"id{i:05d}" for i in range(n)])


class Revocable:
    """Consent that an operator withdraws for everyone at a chosen moment."""

    def __init__(self):
        self.revoked = False

    def allowed(self, bank, purpose, ids):
        return np.full(len(ids), not self.revoked, dtype=bool)


# -- keys ----------------------------------------------------------------------------------------
def _fake_key(bits: int, exponent_bits: int = 224) -> bytes:
    n = (1 << (bits - 1)) | 1
    return (f'{{"scheme":"ou","n":"{n:x}","g":"3","h":"5",'
            f'"exponent_bits":{exponent_bits}}}').encode()


@pytest.mark.parametrize("key", [_fake_key(16384), _fake_key(2048, exponent_bits=1 << 20)],
                         ids=["16384-bit modulus", "million-bit exponent"])
def test_a_key_above_max_key_bits_is_refused_before_anything_is_built(make_channel, key):
    party = PassiveParty(_holder(), policy=test_policy())
    ch = make_channel(party)
    with pytest.raises(ResourceLimit, match="4096-bit maximum"):
        ch.call(m.OpenSession(purpose="credit", task="train", scheme="ou", public_key=key))
    assert not party._sessions  # nothing was opened for it
    refused = [r for r in party.auditor.records if r["operation"] == "refused:OpenSession"]
    assert len(refused) == 1


def test_a_deeply_nested_key_is_a_typed_error(make_channel):
    ch = make_channel(PassiveParty(_holder(), policy=test_policy()))
    with pytest.raises(InvalidInput, match="not a serialized fedcredit key"):
        ch.call(m.OpenSession(purpose="credit", task="train", scheme="ou",
                              public_key=b"[" * 3000 + b"]" * 3000))


# -- sessions ------------------------------------------------------------------------------------
def test_one_bank_cannot_take_every_session():
    party = PassiveParty(_holder(), policy=test_policy(max_concurrent_sessions=4,
                                                        max_sessions_per_bank=2))
    greedy = InProcessChannel(party, bank="greedy-bank")
    held = [BankSession(greedy, "align") for _ in range(2)]
    with pytest.raises(ResourceLimit, match="one bank"):
        BankSession(greedy, "align")
    other = BankSession(InProcessChannel(party, bank="other-bank"), "align")  # its share
    assert other.id and len(held) == 2


# -- consent between PSI and alignment -----------------------------------------------------------
class RevokedAfterPsi:
    """Consent that ends for some enterprises right after the holder's PSI offer."""

    def __init__(self, gone):
        self.gone, self.calls = set(gone), 0

    def allowed(self, bank, purpose, ids):
        self.calls += 1
        if self.calls == 1:  # the PSI offer
            return np.ones(len(ids), dtype=bool)
        return np.array([i not in self.gone for i in ids], dtype=bool)


def test_consent_ended_between_psi_and_alignment_is_withdrawn(make_channel):
    holder = _holder(200)
    gone = list(holder.index[10:25])
    party = PassiveParty(holder, policy=test_policy(), consent=RevokedAfterPsi(gone))
    bank_ids = list(holder.index[::-1][:195]) + [f"bank-only-{k}" for k in range(20)]
    result = align(BankSession(make_channel(party), "align"), bank_ids)
    expected = [i for i in bank_ids if i in set(holder.index) and i not in set(gone)]
    assert sorted(result.ids) == sorted(expected)  # the withdrawn left out
    assert len(result.bank_positions) == len(result.ids)
    assert [bank_ids[p] for p in result.bank_positions.tolist()] == result.ids
    session = next(iter(party._sessions.values()))
    assert session.aligned_ids == result.ids  # both sides agree on the rows
    rec = [r for r in party.auditor.records if r["operation"] == "align"][-1]
    assert rec["enterprises"] == len(expected) and "withdrawn=15" in rec["detail"]


# -- hetero LR -----------------------------------------------------------------------------------
def _lr_session(party, n):
    _, sk = generate_keypair(bits=TEST_KEY_BITS, insecure=True)
    s = BankSession(InProcessChannel(party), "lr", sk, workers=1)
    align(s, list(party.features.index[:n]))
    return s


def _one_step(s, n_rows, step=0, masked=()):
    rows = np.arange(n_rows)
    stats = lr_steps.lr_step(s, step, rows, list(masked), False)
    a = np.zeros(n_rows)
    y = (np.arange(n_rows) % 3 == 0).astype(float)
    return lr_steps.lr_terms(s, step, a, y, np.zeros((n_rows, 1), dtype=np.int64), stats, 16,
                             5e-3, 8)


def test_consent_withdrawn_inside_an_lr_session_takes_effect_at_the_next_step():
    consent = Revocable()
    party = PassiveParty(_holder(), policy=test_policy(), consent=consent)
    s = _lr_session(party, 200)
    ready = lr_steps.lr_start(s, np.arange(200), learning_rate=0.1, decay=0.0, l2=0.0)
    res = _one_step(s, 200)
    st = party.find_session(s.id).state
    assert not np.allclose(st.Xb, st.X_missing)  # consented: the holder's real values
    consent.revoked = True
    _one_step(s, 200, step=1, masked=res.masked)
    assert np.allclose(st.Xb, st.X_missing[None, :])  # withdrawn: as if the holder had none
    assert ready.n_features == 2


def test_an_lr_coefficient_stream_is_read_lazily_and_stopped_at_its_count():
    party = PassiveParty(_holder(), policy=test_policy())
    s = _lr_session(party, 200)
    pk, sk = s.key
    lr_steps.lr_start(s, np.arange(200), learning_rate=0.1, decay=0.0, l2=0.0)
    lr_steps.lr_step(s, 0, np.arange(200), [], False)
    widths, counts = lc.slot_layout(pk.plaintext_bits, 200, 1 << 40, 8, 16, 0)
    chunk = pk.to_bytes_batch(sk.encrypt([1] * 200 * 2, workers=1))  # all the step needs
    pulled = []

    def flood():
        for k in range(100):  # 99 chunks too many
            pulled.append(k)
            yield m.LrTerms(session_id=s.id, step=0, degree=1, groups=1, slot_bits=widths,
                            slots=counts, offset=k * 400, ciphertexts=chunk)

    with pytest.raises(ResourceLimit, match="coefficient ciphertexts"):
        list(s.channel.exchange(flood()))
    assert len(pulled) == 2  # the first extra chunk is refused, nothing more is read


def test_lr_floats_and_masked_gradients_out_of_range_are_typed_errors():
    party = PassiveParty(_holder(), policy=test_policy())
    s = _lr_session(party, 200)
    with pytest.raises(InvalidInput, match="out of range"):
        lr_steps.lr_start(s, np.arange(200), learning_rate=0.1, decay=float("inf"), l2=0.0)
    lr_steps.lr_start(s, np.arange(200), learning_rate=0.1, decay=0.0, l2=0.0)
    res = _one_step(s, 200)
    huge = ["1" + "0" * 400] * len(res.masked)  # beyond float range once unmasked
    with pytest.raises(InvalidInput, match="decimal integers"):
        lr_steps.lr_step(s, 1, np.arange(200), huge, False)


# -- SecureBoost and WOE requests bounded by the model ----------------------------------------------
@pytest.fixture(scope="module")
def trained(small_credit):
    bank, y, holder = small_credit
    party = PassiveParty(holder, policy=test_policy())
    model = SecureBoostClassifier(n_estimators=1, max_depth=2, verbose=False, **INSECURE)
    model.fit(bank.iloc[:1500], y[:1500], holder=InProcessChannel(party))
    return party, model, bank


def test_a_scoring_request_may_not_repeat_a_tree(trained, make_channel):
    party, model, bank = trained
    ch = make_channel(party)
    s = BankSession(ch, "score", model_id=model.model_id_)
    with pytest.raises(InvalidInput, match="tree twice"):
        list(ch.exchange([m.PredictRequest(session_id=s.id, ids=list(bank.index[:5]),
                                           trees=[0] * 1000)]))


def test_woe_merge_maps_of_a_broken_length_are_a_typed_error(small_credit):
    bank, y, holder = small_credit
    party = PassiveParty(holder, policy=test_policy())
    ch = InProcessChannel(party)
    woe = HeteroWOE(**INSECURE).fit(bank.iloc[:1500], y[:1500], holder=ch)
    _, sk = generate_keypair(bits=TEST_KEY_BITS, insecure=True)
    s = BankSession(ch, "woe", sk, workers=1)
    with pytest.raises(InvalidInput, match="whole number of uint32"):
        ch.call(m.WoeMerge(session_id=s.id, binning_id=woe.model_id_, features=[0],
                           maps=b"\x00\x01\x02"))
