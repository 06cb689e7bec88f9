"""Hetero LR with several holders (protocol lr_chain): the change of Chebyshev basis each
holder applies, the contraction kernel and the sealed envelopes on tiny inputs; then two and
three holders end to end against one holder with the union of their features, over both
channels, what crosses the bank, and a holder's refusals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedcredit.crypto import generate_keypair, polynomial_contract
from fedcredit.crypto.seal import SealKey
from fedcredit.errors import InvalidInput, ProtocolError
from fedcredit.metrics import auc
from fedcredit.models import HeteroLogisticRegression
from fedcredit.protocol import PassiveParty
from fedcredit.protocol.lr_chain import math as cm
from fedcredit.protocol.registry import MESSAGES as m

from conftest import TEST_KEY_BITS, RecordingChannel, Revocable, test_policy


# -- the arithmetic ---------------------------------------------------------------------------
def _cheb(x, K):
    return np.cos(np.outer(np.arccos(np.clip(x, -1, 1)), np.arange(K + 1)))


def test_change_of_basis_re_expands_each_chebyshev_polynomial_exactly():
    rng = np.random.default_rng(0)
    K, t, rho = 7, rng.uniform(-1, 1, 50), rng.uniform(-1, 1, 50)
    for beta in (0.1, 0.5, 0.93):
        M = cm.change_of_basis(t, beta, K)  # i, k, l
        lhs = _cheb(beta * t + (1 - beta) * rho, K)  # i, k
        rhs = np.einsum("ikl,il->ik", M, _cheb(rho, K))
        assert np.max(np.abs(lhs - rhs)) < 1e-12
        assert np.max(np.abs(M)) <= 2 + 1e-12  # a polynomial bounded by 1 on [-1, 1]
        assert np.all(M[:, np.triu_indices(K + 1, 1)[0], np.triu_indices(K + 1, 1)[1]] == 0)
    last = cm.change_of_basis(t, 1.0, K)
    assert last.shape == (50, K + 1, 1) and np.allclose(last[:, :, 0], _cheb(t, K))


def test_shares_split_the_joint_score_so_the_chain_adds_up():
    radii = [0.5, 1.25, 2.0]
    betas = cm.shares(radii)
    assert betas[-1] == 1.0
    # b_h = radius_h / R, recovered from the betas the chain applies one after the other
    left, got = 1.0, []
    for beta in betas:
        got.append(left * beta)
        left *= 1 - beta
    assert np.allclose(got, np.array(radii) / sum(radii))
    with pytest.raises(InvalidInput):
        cm.shares([1.0])
    with pytest.raises(InvalidInput):
        cm.shares([1.0, 0.0])


def test_a_chain_of_exponents_evaluates_the_joint_polynomial_in_fixed_point():
    rng = np.random.default_rng(1)
    K, b = 6, 40
    c = rng.normal(size=(b, K + 1)) / (1 + np.arange(K + 1)) ** 2
    t1, t2, t3 = rng.uniform(-1, 1, (3, b))
    bs = np.array([0.2, 0.5, 0.3])
    exact = np.einsum("ik,ik->i", c, _cheb(bs[0] * t1 + bs[1] * t2 + bs[2] * t3, K))
    betas = cm.shares(bs)
    v = c[:, :, None]
    for t, beta in zip((t1, t2, t3), betas):  # what the ciphertexts carry, in integers
        E = cm.exponents(t, beta, v.shape[1] - 1)
        v = np.einsum("ik,ikl->il", v[:, :, 0] if v.ndim == 3 else v, E) / 2 ** cm.CHAIN_BITS
        v = v[:, :, None] if beta < 1 else v
    assert np.max(np.abs(v[:, 0] - exact)) < 2e-4


def test_polynomial_contract_weights_ciphertexts_with_signed_exponents():
    pk, sk = generate_keypair(bits=TEST_KEY_BITS, insecure=True)
    rng = np.random.default_rng(2)
    b, K, L, G = 3, 2, 1, 2
    plain = rng.integers(-50, 50, size=(b, G, K + 1))
    E = rng.integers(-7, 8, size=(b, K + 1, L + 1))
    E[0, :, 0] = 0  # an all-zero column: Enc(0)
    data = pk.to_bytes_batch(pk.encrypt([int(v) for v in plain.reshape(-1)]))
    out = polynomial_contract(pk, data, E, G, workers=1)
    got = np.array(sk.decrypt(pk.from_bytes_batch(out))).reshape(b, G, L + 1)
    assert np.array_equal(got, np.einsum("igk,ikl->igl", plain, E))
    with pytest.raises(InvalidInput, match="expected 18 ciphertexts"):
        polynomial_contract(pk, data[:-pk.ciphertext_bytes], E, G, workers=1)


def test_sealed_envelopes_open_only_for_their_pair_and_place():
    a, b, c = SealKey(), SealKey(), SealKey()
    ab, ba = a.pair(b.public), b.pair(a.public)
    assert ab.fingerprint == ba.fingerprint != a.pair(c.public).fingerprint
    blob = ab.seal(b"ciphertexts", b"step 3")
    assert ba.open(blob, b"step 3") == b"ciphertexts" and b"ciphertexts" not in blob
    with pytest.raises(ProtocolError, match="failed authentication"):
        ba.open(blob, b"step 4")  # replayed in another step
    with pytest.raises(ProtocolError, match="failed authentication"):
        c.pair(a.public).open(blob, b"step 3")  # a third holder
    with pytest.raises(ProtocolError, match="failed authentication"):
        ba.open(blob[:-1] + bytes([blob[-1] ^ 1]), b"step 3")
    with pytest.raises(InvalidInput, match="32"):
        a.pair(b"short")
    with pytest.raises(InvalidInput, match="small order|usable"):
        a.pair(bytes(32))


# -- end to end -------------------------------------------------------------------------------
N = 1500


def _data(seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"e{i:05d}" for i in range(N)]
    X = rng.normal(size=(N, 7))
    z = X @ np.array([0.8, -0.5, 0.3, 1.0, -0.9, 0.7, 0.6]) - 1.2
    y = (rng.uniform(size=N) < 1 / (1 + np.exp(-z))).astype(int)
    bank = pd.DataFrame(X[:, :3], index=ids, columns=["b0", "b1", "b2"])
    holder = pd.DataFrame(X[:, 3:], index=ids, columns=["h0", "h1", "h2", "h3"])
    return bank, y, holder


def _lr(**kw):
    base = dict(key_bits=TEST_KEY_BITS, insecure_key=True, verbose=False, n_jobs=2,
                max_iter=2, batch_size=250)
    base.update(kw)
    return HeteroLogisticRegression(**base)


def _party(frame, name, **kw):
    return PassiveParty(frame, name=name, policy=test_policy(), **kw)


def test_two_holders_learn_the_model_of_one_holder_with_their_union(make_channel, tmp_path):
    bank, y, holder = _data()
    union = make_channel(_party(holder, "union"))
    one = _lr().fit(bank, y, holder=union)
    ca = make_channel(_party(holder[["h0", "h1"]], "platform"))
    cb = make_channel(_party(holder[["h2", "h3"]], "utility"))
    two = _lr().fit(bank, y, holders=[ca, cb])
    # the same optimiser on the same sigmoid up to the expansion's error: the same model
    assert np.max(np.abs(two.coef_bank_ - one.coef_bank_)) < 0.02
    assert abs(two.intercept_[0] - one.intercept_[0]) < 0.02
    p1 = one.predict_proba(bank, holder=union)[:, 1]
    p2, cov = two.predict_proba(bank, holders=[ca, cb], return_coverage=True)
    assert np.max(np.abs(p2[:, 1] - p1)) < 0.01 and cov.all()
    assert abs(auc(y, p2[:, 1]) - auc(y, p1)) < 0.002 and auc(y, p1) > 0.8
    assert [h.name for h in two.holders_] == ["platform", "utility"]
    assert two.feature_names_[3:] == ["platform:h0", "platform:h1", "utility:h2", "utility:h3"]
    # by name, and after a round trip through a file
    path = tmp_path / "lr2.json"
    two.save(path)
    back = HeteroLogisticRegression.load(path)
    p3 = back.predict_proba(bank, holders={"utility": cb, "platform": ca})[:, 1]
    assert np.array_equal(p3, p2[:, 1])
    ex = back.explain(bank.iloc[:20], holders=[ca, cb])
    assert list(ex.columns[-3:-1]) == ["holder:platform (all features)",
                                       "holder:utility (all features)"]
    assert np.allclose(ex.sum(axis=1), back.decision_function(bank.iloc[:20], holders=[ca, cb]))
    with pytest.raises(InvalidInput, match="pass holders="):
        back.predict_proba(bank, holder=ca)


def test_three_holders_and_each_audit_names_the_others():
    bank, y, holder = _data(1)
    parts = [_party(holder[["h0"]], "platform"), _party(holder[["h1", "h2"]], "utility"),
             _party(holder[["h3"]], "tax")]
    union = _party(holder, "union")
    one = _lr().fit(bank, y, holder=union)
    three = _lr().fit(bank, y, holders=parts)
    p1 = one.predict_proba(bank, holder=union)[:, 1]
    p3 = three.predict_proba(bank, holders=parts)[:, 1]
    assert np.max(np.abs(p3 - p1)) < 0.01
    for k, p in enumerate(parts):
        ops = [r for r in p.auditor.records if r["operation"] == "lr_chain_setup"]
        assert len(ops) == 1 and f"position={k} holders=3" in ops[0]["detail"]
        others = ",".join(q.name for q in parts if q is not p)
        opened = [r for r in p.auditor.records if r["operation"] == "open_session:lr"]
        assert len(opened) == 1 and opened[0]["detail"].endswith(f"parties={others}")


def test_a_revoked_consent_at_one_holder_removes_only_its_part_of_one_score():
    bank, y, holder = _data(6)
    consent = Revocable()
    a = _party(holder[["h0", "h1"]], "platform")
    b = _party(holder[["h2", "h3"]], "utility", consent=consent)
    model = _lr(max_iter=1).fit(bank.iloc[:1200], y[:1200], holders=[a, b])
    X = bank.iloc[1200:1300]
    before, cov = model.decision_function(X, holders=[a, b], return_coverage=True)
    assert cov.all()
    gone = X.index[7]
    consent.revoked.add(gone)
    after, cov = model.decision_function(X, holders=[a, b], return_coverage=True)
    assert cov.tolist() == [i != gone for i in X.index]
    keep = X.index != gone
    assert np.array_equal(after[keep], before[keep]) and after[~keep] != before[~keep]
    # the utility's part is its encoding of nothing; the platform's part is kept
    us = model._holder_scores([gone], [(None, a), (None, b)])[0]
    blank = holder[["h2", "h3"]].copy()
    blank.loc[gone] = np.nan
    b_blank = _party(blank, "utility", models=b.models)
    assert after[~keep][0] == pytest.approx(
        model.decision_function(X.loc[[gone]], holders=[a, b_blank])[0], abs=1e-9)
    assert us[0][0] == model._holder_scores([gone], [(None, a), (None, b_blank)])[0][0][0]


def test_align_any_trains_on_every_enterprise_some_holder_serves():
    """Two holders of different coverage, one enterprise only the platform knows: align="any"
    trains on the union, each holder on its own rows (gaps elsewhere, in shuffled batches)."""
    bank, y, holder = _data(8)
    rng = np.random.default_rng(3)
    ka, kb = rng.random(N) < 0.7, rng.random(N) < 0.7
    only_a = holder.index[ka & ~kb][0]
    a = _party(holder.loc[ka, ["h0", "h1"]], "platform")
    cb = RecordingChannel(_party(holder.loc[kb, ["h2", "h3"]], "utility"))
    both = _lr(max_iter=3).fit(bank, y, holders=[a, cb])
    anyone = _lr(max_iter=3).fit(bank, y, holders=[a, cb], align="any")
    training = list(cb.sent)  # scoring, below, asks every holder about every id
    p_all = both.predict_proba(bank, holders=[a, cb])[:, 1]
    p_any, cov = anyone.predict_proba(bank, holders=[a, cb], return_coverage=True)
    assert auc(y, p_any[:, 1]) > auc(y, p_all) > 0.75  # about 1,360 rows trained, not 740
    assert cov.tolist() == (ka & kb).tolist()
    # the utility was never told of the enterprise only the platform serves ...
    sent = [msg for msg, _ in training]
    assert not any(only_a.encode() in data for _, data in training)
    # ... but its batches, shuffled, carry gaps where it has no row
    steps = [msg for msg in sent if isinstance(msg, m.LrStep) and msg.unserved]
    assert steps
    audited = [r["enterprises"] for r in cb.passive.auditor.records
               if r["operation"] == "lr_step"]
    for st in steps[:3]:
        gaps = np.frombuffer(st.unserved, "<u4")
        rows = np.frombuffer(st.rows, "<u4")
        assert np.all(np.diff(gaps) > 0) and np.any(np.diff(rows.astype(int)) < 0)
        assert len(rows) in audited  # its audit counts its own rows, not the gaps
    with pytest.raises(InvalidInput, match="every holder serves"):
        from fedcredit.models import Scorecard

        Scorecard().fit(bank, y, holders=[a, cb], align="any")


def test_the_bank_carries_only_sealed_blobs_between_holders():
    bank, y, holder = _data(2)
    a, b = _party(holder[["h0", "h1"]], "platform"), _party(holder[["h2", "h3"]], "utility")
    ca, cb = RecordingChannel(a), RecordingChannel(b)
    _lr(max_iter=1).fit(bank, y, holders=[ca, cb])
    width = 2 * TEST_KEY_BITS // 8
    relays = [msg for ch in (ca, cb) for msg, _ in ch.received if isinstance(msg, m.ChainRelay)]
    assert relays and {(r.source, r.target) for r in relays} == {(0, 1), (1, 0)}
    for r in relays:  # AES-GCM: a nonce and a tag around as many bytes as ciphertexts
        assert len(r.sealed) == 12 + r.count * width + 16
    to_holders = [type(msg).__name__ for ch in (ca, cb) for msg, _ in ch.sent]
    assert "ChainCiphertexts" in to_holders  # the bank's terms: to the first holder only
    assert not any(isinstance(msg, m.ChainCiphertexts) for msg, _ in cb.sent)


def test_a_holder_refuses_a_chain_out_of_order_or_misplaced():
    bank, y, holder = _data(3)
    from fedcredit.protocol import BankSession, InProcessChannel
    from fedcredit.protocol.alignment.bank import align
    from fedcredit.protocol.logistic import bank as lr_steps
    from fedcredit.protocol.lr_chain import bank as chain_steps

    party = _party(holder, "platform")
    _, sk = generate_keypair(bits=TEST_KEY_BITS, insecure=True)
    s = BankSession(InProcessChannel(party), "lr", sk, workers=1)
    align(s, list(holder.index))
    with pytest.raises(ProtocolError):  # no LR state yet
        s.call(m.SealKeyRequest(session_id=s.id), m.SealKeyReply)
    with pytest.raises(InvalidInput, match="training rows must be distinct"):
        lr_steps.lr_start(s, np.zeros(N, np.int64), learning_rate=0.1, decay=0.0, l2=0.0)
    lr_steps.lr_start(s, np.arange(N), learning_rate=0.1, decay=0.0, l2=0.0)
    key = s.call(m.SealKeyRequest(session_id=s.id), m.SealKeyReply).public_key
    other = SealKey().public
    with pytest.raises(InvalidInput, match="own key"):
        s.call(m.ChainSetup(session_id=s.id, position=1, public_keys=key + other),
               m.ChainReady)
    with pytest.raises(InvalidInput, match="32 bytes"):
        s.call(m.ChainSetup(session_id=s.id, position=0, public_keys=key), m.ChainReady)
    s.call(m.ChainSetup(session_id=s.id, position=0, public_keys=key + other), m.ChainReady)
    with pytest.raises(ProtocolError, match="once"):
        s.call(m.ChainSetup(session_id=s.id, position=0, public_keys=key + other),
               m.ChainReady)
    with pytest.raises(InvalidInput, match="batch rows must be distinct"):  # floor padding
        lr_steps.lr_step(s, 0, np.r_[np.arange(150), np.arange(150)], [], False)
    stats = lr_steps.lr_step(s, 0, np.arange(300), [], False)
    with pytest.raises(ProtocolError, match="ChainStep, not LrTerms"):
        lr_steps.lr_terms(s, 0, np.zeros(300), y[:300].astype(float),
                          np.zeros((300, 0), np.int64), stats, 13, 5e-3, 8)
    with pytest.raises(InvalidInput, match="beta"):  # the first of two is not the last
        s.stream([m.ChainStep(session_id=s.id, step=0, role="contract", degree=2, groups=1,
                              slot_bits=[200], slots=[5], beta=1.0,
                              scale_bits=cm.scale_bits(2))], m.ChainGradient)
    with pytest.raises(InvalidInput, match="scale_bits"):
        s.stream([m.ChainStep(session_id=s.id, step=0, role="contract", degree=2, groups=1,
                              slot_bits=[200], slots=[5], beta=0.5, scale_bits=30)],
                 m.ChainGradient)
    assert chain_steps.ChainResult  # the bank's side is importable beside the holder's


# -- the scorecard on top ---------------------------------------------------------------------
def _points(card):
    t = card.points_table_.copy()
    t["Variable"] = t["Variable"].str.replace(r"^(holder|platform|utility):", "", regex=True)
    return t.set_index(["Variable", "Bin"])["Points"]


def test_a_scorecard_with_two_holders_has_the_points_of_one_holder_with_their_union(tmp_path):
    from fedcredit.models import Scorecard

    bank, y, holder = _data(4)
    union = _party(holder, "union")
    a, b = _party(holder[["h0", "h1"]], "platform"), _party(holder[["h2", "h3"]], "utility")
    lr = _lr(max_iter=3)
    one = Scorecard(lr=lr, blind_woe=False).fit(bank, y, holder=union)
    two = Scorecard(lr=lr, blind_woe=False).fit(bank, y, holders=[a, b])
    assert sorted(two.feature_names_[3:]) == ["platform:h0", "platform:h1", "utility:h2",
                                              "utility:h3"]
    assert set(two.points_table_["party"]) == {"bank", "holder"}
    diff = (_points(one) - _points(two)).abs()
    assert diff.notna().all() and diff.max() < 0.5, diff.sort_values().tail()
    s1, s2 = one.score(bank, union), two.score(bank, holders=[a, b])
    assert np.max(np.abs(s1 - s2)) < 1.5
    ex = two.explain(bank.iloc[:10], holders={"utility": b, "platform": a})
    assert {"holder:platform (all features)", "holder:utility (all features)"} <= set(ex.columns)
    assert np.allclose(ex.sum(axis=1), s2[:10])
    path = tmp_path / "card.json"
    two.save(path)
    back = Scorecard.load(path)
    assert np.array_equal(back.score(bank, holders=[a, b]), s2)
    # blinded (the default): another path to the same optimum, the same ranking quality
    blinded = Scorecard(lr=lr).fit(bank, y, holders=[a, b])
    assert abs(auc(y, -blinded.score(bank, holders=[a, b])) - auc(y, -s1)) < 0.005


def test_simulate_lr_with_two_holder_processes_from_the_cli(tmp_path):
    """``fedcredit simulate --model lr --holder-csv A --holder-csv B``: one holder process
    each, over gRPC with mutual TLS; the federated AUC is the centralized one's."""
    import json

    from fedcredit.cli import main as cli

    bank, y, holder = _data(5)
    bank.assign(label=y).rename_axis("uscc").reset_index().to_csv(tmp_path / "b.csv",
                                                                 index=False)
    for name, cols in (("platform", ["h0", "h1"]), ("utility", ["h2", "h3"])):
        holder[cols].rename_axis("uscc").reset_index().to_csv(tmp_path / f"{name}.csv",
                                                              index=False)
    out = tmp_path / "summary.json"
    assert cli(["simulate", "--bank-csv", str(tmp_path / "b.csv"), "--holder-csv",
                str(tmp_path / "platform.csv"), "--holder-csv", str(tmp_path / "utility.csv"),
                "--id-column", "uscc", "--label-column", "label", "--model", "lr",
                "--key-bits", str(TEST_KEY_BITS), "--insecure-key", "--quiet",
                "--json", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["holders"] == ["platform", "utility"] and s["rows_aligned"] == N
    assert abs(s["auc"]["federated"] - s["auc"]["centralized"]) < 0.01
    # plain LR: each holder keeps its own coefficients; the bank lists only its own
    assert set(s["coefficients"]) == {"intercept", "b0", "b1", "b2"}


def test_batches_for_a_holder_of_low_coverage_grow_to_its_floor_or_are_refused():
    from fedcredit.models.holders import HolderSessions, plan_batches

    class _S:
        def __init__(self, name):
            self.holder_name, self.watch = name, None

    n = 1000
    sparse = np.full(n, -1)
    sparse[::10] = np.arange(100)  # serves one enterprise in ten
    group = HolderSessions([_S("platform"), _S("utility")], [None, sparse])
    rows = np.arange(n)
    plan, bs = plan_batches(group, rows, [20, 20], 128, 2, np.random.default_rng(0))
    assert bs == 400  # twice the floor at a 10 % share
    for epoch in plan:
        assert sorted(np.concatenate(epoch).tolist()) == rows.tolist()
        assert all((sparse[b] >= 0).sum() >= 20 for b in epoch)
        assert any(np.any(np.diff(b) < 0) for b in epoch)  # shuffled, not in id order
    full, bs_full = plan_batches(HolderSessions([_S("p")], [None]), rows, [20], 128, 1,
                                 np.random.default_rng(0))
    assert bs_full == 128 and all(np.all(np.diff(b) > 0) for b in full[0])
    with pytest.raises(InvalidInput, match="holds 1 that holder 'utility' serves, below its "
                                           "floor of 20"):
        tiny = np.full(n, -1)
        tiny[5] = 0
        plan_batches(HolderSessions([_S("platform"), _S("utility")], [None, tiny]), rows,
                     [20, 20], 128, 1, np.random.default_rng(0))
