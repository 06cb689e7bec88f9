"""Hetero logistic regression: against scikit-learn on the same data, over both channels, and
what crosses the wire (no label or residual to the holder, no per-row holder value to the bank
during training)."""
from __future__ import annotations

import numpy as np

from fedcredit.crypto import load_public_key
from fedcredit.metrics import auc
from fedcredit.models import HeteroLogisticRegression
from fedcredit.binning import FeaturePrep
from fedcredit.protocol.alignment.bank import align
from fedcredit.protocol import InProcessChannel, PassiveParty
from fedcredit.protocol.logistic import math as lc
from fedcredit.protocol.registry import MESSAGES as m

from conftest import TEST_KEY_BITS, RecordingChannel, stratified_split, test_policy


def _lr(**kw):
    base = dict(key_bits=TEST_KEY_BITS, insecure_key=True, verbose=False, n_jobs=2)
    base.update(kw)
    return HeteroLogisticRegression(**base)


def _sklearn_auc(bank, holder, y, tr, te):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    joined = bank.join(holder.add_prefix("h_"))
    sc = StandardScaler().fit(joined.iloc[tr])
    sk = LogisticRegression(C=1.0, max_iter=5000).fit(sc.transform(joined.iloc[tr]), y[tr])
    return auc(y[te], sk.predict_proba(sc.transform(joined.iloc[te]))[:, 1]), sk


def test_auc_within_0005_of_sklearn_on_default_credit(default_credit):
    guest, host = default_credit
    guest = guest.iloc[:3500]
    y = guest["y"].to_numpy()
    bank = guest.drop(columns="y")
    holder = host.loc[bank.index]
    tr, te = stratified_split(y, 0.3, 0)
    party = PassiveParty(holder, policy=test_policy())
    model = _lr(max_iter=4).fit(bank.iloc[tr], y[tr], holder=party)
    a_fed = auc(y[te], model.predict_proba(bank.iloc[te], holder=party)[:, 1])
    a_sk, sk = _sklearn_auc(bank, holder, y, tr, te)
    print(f"AUC federated {a_fed:.4f} scikit-learn {a_sk:.4f}; degrees {set(model.degrees_)}")
    assert abs(a_fed - a_sk) <= 0.005
    assert len(model.coef_[0]) == bank.shape[1] + holder.shape[1]


def test_trains_and_scores_over_both_channels(small_credit, make_channel, tmp_path):
    bank, y, holder = small_credit
    bank, y = bank.iloc[:1200], y[:1200]
    party = PassiveParty(holder, policy=test_policy())
    channel = make_channel(party)
    model = _lr(max_iter=1, batch_size=400).fit(bank, y, holder=channel)
    p = model.predict_proba(bank, holder=channel)
    assert p.shape == (len(bank), 2) and np.allclose(p.sum(axis=1), 1)
    assert auc(y, p[:, 1]) > 0.6
    # the score is the bank's part plus the holder's partial score of the final model, on the
    # holder's rounding grid; the holder's coefficients stayed with the holder
    assert len(model.coef_holder_) == 0 and np.isnan(model.coef_[0, -1])
    w_h = np.asarray(party.models.load(model.model_id_).mapper["coef"])
    aligned = [i for i in bank.index if i in holder.index]
    Xh = FeaturePrep().fit(holder.loc[aligned]).transform(holder.loc[aligned[:50]])
    z = model.decision_function(bank.loc[aligned[:50]], holder=channel)
    u = z - model.bank_score(bank.loc[aligned[:50]])
    np.testing.assert_allclose(u, Xh @ w_h, atol=lc.SCORE_RESOLUTION / 2 + 1e-9)
    np.testing.assert_allclose(u / lc.SCORE_RESOLUTION, np.rint(u / lc.SCORE_RESOLUTION),
                               atol=1e-6)
    model.save(tmp_path / "lr.json")
    loaded = HeteroLogisticRegression.load(tmp_path / "lr.json")
    np.testing.assert_allclose(loaded.predict_proba(bank, holder=channel), p)
    coefs = model.coefficients()
    assert coefs.index[0] == "intercept" and len(coefs) == 1 + len(model.feature_names_bank_)


def test_gradients_match_a_plaintext_computation():
    """One protocol step against the same Chebyshev expansion computed in the clear."""
    from fedcredit.crypto import generate_keypair
    from fedcredit.protocol.logistic import bank as active_lr
    from fedcredit.protocol import ActiveSession
    import pandas as pd

    rng = np.random.default_rng(1)
    n = 200
    ids = [f"id{i}" for i in range(n)]
    holder = pd.DataFrame(rng.normal(size=(n, 3)), index=ids, columns=["h0", "h1", "h2"])
    party = PassiveParty(holder, policy=test_policy())
    _, sk = generate_keypair(bits=TEST_KEY_BITS, insecure=True)
    s = ActiveSession(InProcessChannel(party), "lr", sk, workers=1)
    align(s, ids)
    rows = np.arange(n)
    ready = active_lr.lr_start(s, rows, learning_rate=0.1, decay=0.0, l2=0.0)
    st = party.find_session(s.id).state
    st.opt.w = np.array([0.5, -0.8, 0.3])  # the holder's weights, set for the test
    XA = lc.quantize(rng.normal(size=(n, 2)))
    y = (rng.random(n) < 0.3).astype(float)
    a = XA @ np.array([0.4, -0.2]) - 1.0
    stats = active_lr.lr_step(s, 0, rows, [], False)
    res = active_lr.lr_terms(s, 0, a, y, lc.to_fixed(XA), stats, ready.x_bits, 1e-3, 8)
    u = st.X @ st.opt.w
    t = np.clip((u - stats.center) / stats.radius, -1, 1)
    c = lc.chebyshev_coefficients(a, stats.center, stats.radius)
    K = res.degree
    d = (c[:, :K + 1] * np.cos(np.outer(np.arccos(t), np.arange(K + 1)))).sum(axis=1) - y
    assert abs(res.intercept_grad - d.sum()) < 1e-3
    np.testing.assert_allclose(res.feature_grad, XA.T @ d, atol=2e-3)
    exact = 1 / (1 + np.exp(-(a + u))) - y
    inside = np.abs(u - stats.center) <= stats.radius
    assert np.max(np.abs(d - exact)[inside]) < 2e-3  # the expansion's stated accuracy
    # the holder's gradient: unmask with its stored masks
    g_holder = np.array([int(v) - r for v, r in zip(res.masked, st.masks)]) / 2.0 ** (
        lc.COEF_BITS + lc.CHEB_BITS + lc.FEATURE_BITS)
    np.testing.assert_allclose(g_holder, st.X.T @ d, atol=2e-3)
    # ... while what the bank holds of it is masked far beyond its size
    assert all(abs(int(v)) > 2 ** 60 for v in res.masked)


def test_wire_privacy(small_credit):
    bank, y, holder = small_credit
    bank, y = bank.iloc[:800], y[:800]
    party = PassiveParty(holder, policy=test_policy())
    ch = RecordingChannel(party)
    model = _lr(max_iter=1, batch_size=400).fit(bank, y, holder=ch)
    kinds = {type(msg).__name__ for msg, _ in ch.sent}
    assert {"LrStart", "LrStep", "LrTerms", "LrFinish"} <= kinds
    pk = load_public_key(next(msg for msg, _ in ch.sent if isinstance(msg, m.OpenSession)).public_key)
    blob = b"".join(d for _, d in ch.sent)
    for enc in (y.astype("<i8").tobytes(), y.astype("<f8").tobytes(), y.astype("u1").tobytes(),
                np.packbits(y.astype(bool)).tobytes()):
        assert enc[:64] not in blob  # no label vector in any encoding
    width = pk.ciphertext_bytes
    for msg, _ in ch.sent:
        if isinstance(msg, m.LrTerms):  # every per-row value the holder gets is encrypted
            for i in range(0, len(msg.ciphertexts), width):
                assert int.from_bytes(msg.ciphertexts[i:i + width], "big") % int(pk.n) != 1
        if isinstance(msg, m.LrStep):  # masked gradients: one value per holder feature
            assert len(msg.masked_gradient) in (0, len(model.holder_feature_names_))
    # during training the bank receives no per-row value: only aggregates and ciphertexts
    train = [msg for msg, _ in ch.received if not isinstance(msg, m.PartialScores)]
    for msg in train:
        if isinstance(msg, m.LrStats):
            assert set(vars(msg)) == {"step", "center", "radius", "weight_change"}
        if isinstance(msg, m.LrPartials):
            n_ct = (len(msg.sums) + len(msg.gradients)) // width
            assert n_ct <= 4 + len(model.holder_feature_names_)
    assert not any(isinstance(msg, m.PartialScores) for msg, _ in ch.received)
    ops = [r["operation"] for r in party.auditor.records]
    assert {"lr_start", "lr_step", "lr_partials", "lr_finish"} <= set(ops)


def test_warm_start_is_on_by_default_and_checked(small_credit):
    import pytest

    from fedcredit.errors import InvalidInput

    bank, y, holder = small_credit
    assert HeteroLogisticRegression().warm_start == "bank"  # leak 2 closed by default
    with pytest.raises(InvalidInput, match="warm_start"):
        _lr(warm_start="random").fit(bank.iloc[:200], y[:200],
                                     holder=PassiveParty(holder, policy=test_policy()))
