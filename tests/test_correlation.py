"""Joint correlation analysis: Pearson against numpy on the mean-imputed joined table, VIF
against its regression definition, one and two holders, what crosses the wire, refusals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import TEST_KEY_BITS, RecordingChannel, test_policy

from fedcredit.errors import InvalidInput, ResourceLimit
from fedcredit.models.correlation import pearson, vif
from fedcredit.protocol import BankSession, InProcessChannel, PassiveParty, align
from fedcredit.protocol.correlation import math as cm
from fedcredit.protocol.correlation import messages as m

KEY = dict(key_bits=TEST_KEY_BITS, insecure_key=True)


def _joined_reference(bank, tables: dict[str, pd.DataFrame], columns) -> np.ndarray:
    ids = sorted(set(bank.index).intersection(*[set(t.index) for t in tables.values()]))
    joined = bank.loc[ids]
    for prefix, t in tables.items():
        joined = joined.join(t.loc[ids].add_prefix(prefix))
    M = joined[columns].apply(lambda s: s.fillna(s.mean())).to_numpy(np.float64)
    return np.corrcoef(M, rowvar=False)


def test_pearson_equals_numpy_on_the_joined_table(small_credit, make_channel):
    bank, _, holder = small_credit
    bank = bank.iloc[:1200]
    party = PassiveParty(holder, policy=test_policy())
    corr = pearson(bank, holder=make_channel(party), **KEY)
    assert corr.attrs["rows"] == sum(i in holder.index for i in bank.index)
    assert "collateral_type" not in corr.columns  # categorical: left out
    assert any(c.startswith("holder:") for c in corr.columns)
    ref = _joined_reference(bank, {"holder:": holder}, list(corr.columns))
    assert np.abs(corr.to_numpy() - ref).max() < 1e-9
    assert np.allclose(corr.to_numpy(), corr.to_numpy().T)


def test_two_holders_and_vif(small_credit):
    bank, _, holder = small_credit
    bank = bank.iloc[:1500]
    cols = list(holder.columns)
    a = PassiveParty(holder[cols[:6]].iloc[::2], name="platform", policy=test_policy())
    b = PassiveParty(holder[cols[6:]], name="utility", policy=test_policy())
    corr = pearson(bank, holders=[a, b], **KEY)
    pa = [c for c in corr.columns if c.startswith("platform:")]
    pb = [c for c in corr.columns if c.startswith("utility:")]
    assert pa and pb and corr.loc[pa, pb].isna().all().all()  # no holder sees another's
    known = [c for c in corr.columns if c not in pb]
    ref = _joined_reference(bank, {"platform:": holder[cols[:6]].iloc[::2],
                                   "utility:": holder[cols[6:]]}, list(corr.columns))
    mask = ~np.isnan(corr.to_numpy())
    assert np.abs(corr.to_numpy()[mask] - ref[mask]).max() < 1e-9
    with pytest.raises(InvalidInput, match="unknown"):
        vif(corr)
    v = vif(corr.loc[known, known])
    # the definition (statsmodels'): 1 / (1 - R^2) of each column's least-squares
    # regression on the others with an intercept
    ids = sorted(set(bank.index) & set(holder.index[::2]))
    J = bank.loc[ids].join(holder.loc[ids, cols[:6]].add_prefix("platform:"))[known]
    M = J.apply(lambda s: s.fillna(s.mean())).to_numpy(np.float64)
    for k in (0, len(known) - 1):
        design = np.c_[np.ones(len(M)), np.delete(M, k, axis=1)]
        beta, *_ = np.linalg.lstsq(design, M[:, k], rcond=None)
        r2 = 1 - np.var(M[:, k] - design @ beta) / np.var(M[:, k])
        assert v.iloc[k] == pytest.approx(1 / (1 - r2), rel=1e-6)


def test_what_crosses_the_wire(small_credit):
    bank, _, holder = small_credit
    bank = bank.iloc[:800]
    party = PassiveParty(holder, policy=test_policy())
    ch = RecordingChannel(party)
    corr = pearson(bank, holder=ch, **KEY)
    starts = [msg for msg, _ in ch.sent if isinstance(msg, m.CorrelationStart)]
    chunks = [msg for msg, _ in ch.sent if isinstance(msg, m.CorrelationChunk)]
    n = corr.attrs["rows"]
    (start,) = starts
    (result,) = [msg for msg, _ in ch.received if isinstance(msg, m.CorrelationResult)]
    assert result.count == n
    q = len(result.feature_names)
    width = len(result.sums) // (q * start.groups)  # bytes of one ciphertext
    # the bank sent one ciphertext per row and group and nothing else of its columns
    assert sum(len(c.ciphertexts) for c in chunks) == n * start.groups * width
    assert len(result.holder_corr) == q * q * 8
    records = [r for r in party.auditor.records if r["operation"] == "correlation"]
    assert len(records) == 1 and records[0]["enterprises"] == n and len(records[0]["ids"]) == n


def test_the_holder_refuses_a_bad_layout_and_few_rows(small_credit):
    from fedcredit.crypto import generate_keypair

    bank, _, holder = small_credit
    party = PassiveParty(holder, policy=test_policy(min_node_samples=50, max_session_mib=1))
    _, sk = generate_keypair("paillier", bits=TEST_KEY_BITS, insecure=True)
    session = BankSession(InProcessChannel(party), "correlation", sk)
    align(session, bank.index[:400].tolist())
    pk = sk.public_key

    def ask(rows, **kw):
        base = dict(session_id=session.id, rows=np.asarray(rows, "<u4").tobytes(),
                    frac_bits=32, slot_bits=cm.slot_bits(len(rows), 32), slots=1, groups=1,
                    key_fingerprint=pk.fingerprint)
        base.update(kw)
        return session.stream([m.CorrelationStart(**base)], m.CorrelationResult)

    with pytest.raises(InvalidInput, match="twice the holder's min_node_samples"):
        ask(range(60))
    with pytest.raises(InvalidInput, match="slot holds"):
        ask(range(200), slot_bits=20)
    with pytest.raises(InvalidInput, match="frac_bits"):
        ask(range(200), frac_bits=4)
    with pytest.raises(ResourceLimit, match="1 MiB session limit"):  # 200 x 30 x 256 bytes
        ask(range(200), groups=30)


def test_slots_round_trip_signed_sums():
    width, offset = cm.slot_bits(100, 20), cm.bias(100, 20)
    vals = [-(offset - 1), 0, 123456789, offset - 1]
    packed = cm.pack_row(vals, width) + cm.pack_row([offset] * 4, width)
    assert cm.unpack_sums(packed, width, 4, offset) == vals


def test_standardized_drops_text_and_constant_columns_and_imputes_the_mean():
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0, 4.0], "c": ["a", "b", "a", "b"],
                          "k": [2, 2, 2, 2], "f": [True, False, True, True]})
    names, z = cm.standardized(frame)
    assert names == ["x", "f"]
    x = np.array([1.0, 8 / 3, 3.0, 4.0])
    assert np.allclose(z[:, 0], (x - x.mean()) / x.std())
    assert np.allclose(z.mean(axis=0), 0) and np.allclose(z.std(axis=0), 1)
    assert cm.variance_inflation(np.eye(3)).tolist() == [1.0, 1.0, 1.0]
