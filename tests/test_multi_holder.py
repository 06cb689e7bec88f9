"""One bank, several holders (SecureBoost): lossless against one holder with the union of
their features and against the plaintext reference, over both channels; scoring by list or
by name; persistence; each holder's audit names the others; consent stays each holder's."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import TEST_KEY_BITS, Revocable, test_policy
from reference_boost import grow_reference

from fedcredit.binning import BinMapper
from fedcredit.crypto import FixedPoint
from fedcredit.errors import InvalidInput
from fedcredit.models import SecureBoostClassifier
from fedcredit.models.explain import explained_score
from fedcredit.protocol import BankSession, InProcessChannel, PassiveParty
from fedcredit.protocol.alignment.bank import align_many

SPLIT = 6  # small_credit's 12 holder columns, 6 each: the platform's tax, penalty, court and
#            registration columns, the utility's social insurance, power and age columns; the
#            union table lists the platform's first, as a multi-holder model numbers them


def _columns(holder):
    cols = list(holder.columns)
    return cols[:2] + cols[6:10], cols[2:6] + cols[10:]


def _union(holder):
    a, b = _columns(holder)
    return holder[a + b]


def _model(**kw):
    base = dict(n_estimators=3, max_depth=3, learning_rate=0.3, max_bin=16, min_child_samples=20,
                key_bits=TEST_KEY_BITS, insecure_key=True, verbose=False, n_jobs=2)
    base.update(kw)
    return SecureBoostClassifier(**base)


def _parties(holder, consent_b=None, **policy):
    cols_a, cols_b = _columns(holder)
    a = PassiveParty(holder[cols_a], name="platform", policy=test_policy(**policy))
    b = PassiveParty(holder[cols_b], name="utility", policy=test_policy(**policy),
                     consent=consent_b)
    return a, b


def _union_feature(nd) -> int:
    """A multi-holder node's holder feature as a column of the union table."""
    return nd.feature + (SPLIT if nd.holder == 1 else 0)


@pytest.mark.parametrize("min_bin", [0, 30])
def test_two_holders_grow_the_trees_of_one_holder_with_their_union(small_credit, make_channel,
                                                                     min_bin):
    bank, y, holder = small_credit
    bank, y = bank.iloc[:2500], y[:2500]
    union = PassiveParty(_union(holder), name="union",
                         policy=test_policy(min_bin_samples=min_bin))
    a, b = _parties(holder, min_bin_samples=min_bin)
    one = _model().fit(bank, y, holder=make_channel(union))
    ca, cb = make_channel(a), make_channel(b)
    two = _model().fit(bank, y, holders=[ca, cb])
    owners = {nd.holder for t in two.trees_ for nd in t.nodes if nd.owner == "holder"}
    assert owners == {0, 1}, "both holders must win splits, or the test proves little"
    union_stored = union.models.load(one.model_id_)
    for t1, t2 in zip(one.trees_, two.trees_):
        assert len(t1.nodes) == len(t2.nodes)
        for n1, n2 in zip(t1.nodes, t2.nodes):
            assert (n1.node_id, n1.owner, n1.left, n1.right, n1.count) == \
                (n2.node_id, n2.owner, n2.left, n2.right, n2.count)
            assert n1.value == n2.value and n1.gain == n2.gain
            if n1.owner == "bank":
                assert (n1.feature, n1.bin, n1.missing_left) == (n2.feature, n2.bin,
                                                                 n2.missing_left)
            elif n1.owner == "holder":
                assert n1.feature == _union_feature(n2)
                f, t, ml = union_stored.splits[n1.record_id]
                party = (a, b)[n2.holder].models.load(two.holders_[n2.holder].model_id)
                assert party.splits[n2.record_id] == (f - SPLIT * n2.holder, t, ml)
    assert a.models.load(two.holders_[0].model_id).feature_names == _columns(holder)[0]
    X = bank.iloc[:300]
    p1 = one.predict_proba(X, holder=make_channel(union))[:, 1]
    p2 = two.predict_proba(X, holders=[ca, cb])[:, 1]
    assert np.array_equal(p1, p2)
    assert two.feature_names_[-1] == f"utility:{_columns(holder)[1][-1]}"


def test_two_holders_match_the_plaintext_reference(small_credit):
    """Three parties in the plaintext reference: the bank, and both holders' bins side by
    side (with the minimum bin mass off, a holder's candidates do not depend on the other
    holder's, so the union's bins are the three parties')."""
    bank, y, holder = small_credit
    bank, y = bank.iloc[:2500], y[:2500]
    a, b = _parties(holder, min_bin_samples=0)
    model = _model().fit(bank, y, holders=[a, b])
    aligned = [i for i in bank.index if i in holder.index]
    Xa, ya, Ha = bank.loc[aligned], y[bank.index.get_indexer(aligned)], _union(holder).loc[aligned]
    bank_bins = model.mapper_.transform(Xa).astype(np.int64)
    part_bins = [BinMapper(model.max_bin).fit(Ha.iloc[:, cols])
                 for cols in (slice(0, SPLIT), slice(SPLIT, None))]
    holder_bins = np.hstack([m.transform(Ha.iloc[:, cols]) for m, cols in
                             zip(part_bins, (slice(0, SPLIT), slice(SPLIT, None)))]
                            ).astype(np.int64)
    holder_nb = [int(n) for m in part_bins for n in m.n_bins]
    fp = FixedPoint(model.frac_bits)
    raw = np.full(len(ya), np.log(ya.mean() / (1 - ya.mean())))
    for t, tree in enumerate(model.trees_):
        p = 1 / (1 + np.exp(-raw))
        g, h = p - ya, np.maximum(p * (1 - p), 1e-16)
        ref = grow_reference(bank_bins, model.mapper_.n_bins.tolist(), holder_bins, holder_nb,
                             (holder_bins == np.array(holder_nb)[None, :]).any(axis=0), g, h,
                             fp.encode(g), fp.encode(h), max_depth=3, min_child_samples=20,
                             min_child_weight=model.min_child_weight, reg_lambda=1.0, gamma=0.0,
                             floor=10, scale=fp.scale, learning_rate=0.3,
                             rows=np.arange(len(ya)), bank_only=t < model.bank_only_trees)
        assert [(nd.node_id, nd.owner, nd.count) for nd in tree.nodes] == [
            (rn["id"], rn["owner"], rn["count"]) for rn in ref]
        for nd, rn in zip(tree.nodes, ref):
            if nd.owner == "holder":
                assert _union_feature(nd) == rn["feature"]
            elif nd.owner == "leaf":
                assert abs(nd.value - rn["value"]) <= 1e-6
                raw[rn["rows"]] += rn["value"]


def test_scoring_names_holders_in_order_or_by_name(small_credit, tmp_path):
    bank, y, holder = small_credit
    a, b = _parties(holder)
    model = _model(n_estimators=2).fit(bank.iloc[:2000], y[:2000], holders=[a, b])
    X = bank.iloc[2000:2300]
    p = model.predict_proba(X, holders=[a, b])[:, 1]
    assert np.array_equal(p, model.predict_proba(X, holders={"utility": b, "platform": a})[:, 1])
    with pytest.raises(InvalidInput, match="trained with 2 holders"):
        model.predict_proba(X, holder=a)
    with pytest.raises(InvalidInput, match="lacks 'utility'"):
        model.predict_proba(X, holders={"platform": a})
    with pytest.raises(InvalidInput, match="the holder at this channel is 'utility'"):
        model.predict_proba(X, holders=[b, a])
    with pytest.raises(InvalidInput, match="with one holder"):
        model.set_params(scoring="private").predict_proba(X.iloc[:1], holders=[a, b])
    model.set_params(scoring="auto")  # one enterprise: plain with several holders
    assert model.predict_proba(X.iloc[:1], holders=[a, b])[0, 1] == pytest.approx(p[0], abs=0)
    ex = model.explain(X.iloc[:20], holders=[a, b])
    assert np.allclose(explained_score(ex), model.decision_function(X.iloc[:20], holders=[a, b]),
                       atol=1e-9)
    assert any(c.startswith("utility:") for c in ex.columns)
    path = tmp_path / "model.json"
    model.save(path)
    text = path.read_text()
    loaded = SecureBoostClassifier.load(path)
    assert [(h.name, h.model_id) for h in loaded.holders_] == \
        [(h.name, h.model_id) for h in model.holders_]
    assert np.array_equal(loaded.predict_proba(X, holders=[a, b])[:, 1], p)
    saved = json.loads(text)  # of each holder: its name, model id and published names only
    assert [sorted(h) for h in saved["holders"]] == [["features", "model_id", "name"]] * 2
    for t in saved["trees"]:  # holder splits by record id and holder, never a bin
        for nd in t["nodes"]:
            if nd["owner"] == "holder":
                assert nd["bin"] == -1 and nd["holder"] in (0, 1) and nd["record_id"] > 0


def test_each_holder_audits_the_other_holders(small_credit):
    bank, y, holder = small_credit
    a, b = _parties(holder)
    model = _model(n_estimators=2).fit(bank.iloc[:1500], y[:1500], holders=[a, b])
    model.predict_proba(bank.iloc[:10], holders=[a, b])
    for party, other in ((a, "utility"), (b, "platform")):
        opened = [r for r in party.auditor.records if r["operation"].startswith("open_session")]
        assert [r["operation"] for r in opened] == ["open_session:train", "open_session:score"]
        assert all(r["detail"].endswith(f"parties={other}") for r in opened), opened


def test_a_revoked_consent_at_one_holder_drops_only_that_holders_data(small_credit):
    bank, y, holder = small_credit
    consent = Revocable()
    a, b = _parties(holder, consent_b=consent)
    model = _model(n_estimators=3).fit(bank.iloc[:2000], y[:2000], holders=[a, b])
    X = bank.iloc[2000:2400]
    X = X[X.index.isin(holder.index)]
    before, cov_before = model.predict_proba(X, holders=[a, b], return_coverage=True)
    assert cov_before.all()
    gone = X.index[3]
    consent.revoked.add(gone)
    after, cov_after = model.predict_proba(X, holders=[a, b], return_coverage=True)
    assert cov_after.tolist() == [i != gone for i in X.index]
    others = X.index != gone
    assert np.array_equal(after[others], before[others])
    # the revoked enterprise is scored as if the utility had no data for it, the platform's kept
    blank = holder[_columns(holder)[1]].copy()
    blank.loc[gone] = np.nan
    b_blank = PassiveParty(blank, name="utility", policy=test_policy(), models=b.models)
    expected = model.predict_proba(X.loc[[gone]], holders=[a, b_blank])
    assert after[~others][0, 1] == pytest.approx(expected[0, 1], abs=1e-12)


class EndsAfterPsi:
    """Consent that ends for one enterprise after the first check (PSI), before alignment."""

    def __init__(self, gone: str):
        self.gone, self.calls = gone, 0

    def allowed(self, bank, purpose, ids):
        self.calls += 1
        return np.array([self.calls == 1 or i != self.gone for i in ids], dtype=bool)


def test_alignment_with_holders_that_cover_different_enterprises(small_credit):
    bank, _, holder = small_credit
    ids = bank.index.tolist()
    cols_a, cols_b = _columns(holder)
    a = PassiveParty(holder[cols_a].iloc[::2], name="platform", policy=test_policy())
    both = holder.index[::2]
    gone = str(both[5])
    b = PassiveParty(holder[cols_b], name="utility", policy=test_policy(),
                     consent=EndsAfterPsi(gone))
    sessions = [BankSession(InProcessChannel(p), "align") for p in (a, b)]
    common, local = align_many(sessions, ids)
    expected = sorted(i for i in both if i in set(ids) and i != gone)
    assert common.ids == expected
    assert local[0] is not None  # the platform aligned the withdrawn enterprise too
    assert [sessions[0].alignment.ids[k] for k in local[0]] == expected
    assert local[1] is None and sessions[1].alignment.ids == expected


def test_holders_are_named_once_and_by_their_own_names(small_credit):
    bank, y, holder = small_credit
    a, b = _parties(holder)
    twin = PassiveParty(holder[_columns(holder)[1]], name="platform", policy=test_policy())
    with pytest.raises(InvalidInput, match="two holders call themselves 'platform'"):
        _model().fit(bank.iloc[:500], y[:500], holders=[a, twin])
    with pytest.raises(InvalidInput, match="not both"):
        _model().fit(bank.iloc[:500], y[:500], holder=a, holders=[a, b])
    with pytest.raises(InvalidInput, match=r"holders\['tax'\] is the holder 'platform'"):
        _model().fit(bank.iloc[:500], y[:500], holders={"tax": a, "utility": b})


def test_training_when_one_holder_withdrew_an_enterprise_the_other_aligned(small_credit):
    """The platform keeps a row the utility withdrew: the bank maps its training rows to the
    platform's positions, and the trees are those of holders that never had the row."""
    bank, y, holder = small_credit
    bank, y = bank.iloc[:2500], y[:2500]
    cols_a, cols_b = _columns(holder)
    gone = str(next(i for i in bank.index if i in holder.index))
    a = PassiveParty(holder[cols_a], name="platform", policy=test_policy())
    b = PassiveParty(holder[cols_b], name="utility", policy=test_policy(),
                     consent=EndsAfterPsi(gone))
    model = _model(n_estimators=2).fit(bank, y, holders=[a, b])
    keep = holder.index != gone
    a2 = PassiveParty(holder.loc[keep, cols_a], name="platform", policy=test_policy())
    b2 = PassiveParty(holder.loc[keep, cols_b], name="utility", policy=test_policy())
    clean = _model(n_estimators=2).fit(bank, y, holders=[a2, b2])
    assert model.n_aligned_ == clean.n_aligned_
    for t1, t2 in zip(model.trees_, clean.trees_):
        assert [(n.node_id, n.owner, n.holder, n.feature, n.count, n.value) for n in t1.nodes] \
            == [(n.node_id, n.owner, n.holder, n.feature, n.count, n.value) for n in t2.nodes]


@pytest.mark.grpc
def test_bank_train_and_score_with_two_holders_from_the_cli(small_credit, tls_dir, tmp_path,
                                                            capsys):
    from conftest import GrpcHolder

    from fedcredit.cli import main as cli

    bank, y, holder = small_credit
    table = bank.iloc[:1500].assign(label=y[:1500]).reset_index()
    table.to_csv(tmp_path / "bank.csv", index=False)
    table.drop(columns="label").iloc[:200].to_csv(tmp_path / "new.csv", index=False)
    a, b = _parties(holder)
    servers = [GrpcHolder(a, tls_dir), GrpcHolder(b, tls_dir)]
    try:
        holders = [x for s in servers for x in ("--holder", s.server.address)]
        common = ["--tls-dir", str(tls_dir), "--id-column", "uscc"]
        assert cli(["bank", "train", *holders, *common, "--csv", str(tmp_path / "bank.csv"),
                    "--label-column", "label", "--model-out", str(tmp_path / "m.json"),
                    "--trees", "2", "--depth", "2", "--key-bits", str(TEST_KEY_BITS),
                    "--insecure-key", "--quiet", "--workers", "1"]) == 0
        assert "holders 'platform', 'utility'" in capsys.readouterr().out
        assert cli(["bank", "score", *holders, *common, "--csv", str(tmp_path / "new.csv"),
                    "--model", str(tmp_path / "m.json"), "--out", str(tmp_path / "s.csv")]) == 0
        assert "not covered by every holder" in capsys.readouterr().out
        assert cli(["bank", "align", *holders, *common, "--csv", str(tmp_path / "new.csv"),
                    "--out", str(tmp_path / "a.csv")]) != 0
        assert "bank align takes one --holder, got 2" in capsys.readouterr().err
    finally:
        for s in servers:
            s.stop()
    import pandas as pd

    scores = pd.read_csv(tmp_path / "s.csv", dtype={"uscc": str})
    model = SecureBoostClassifier.load(tmp_path / "m.json")
    new = pd.read_csv(tmp_path / "new.csv", dtype={"uscc": str}).set_index("uscc")
    expected = model.predict_proba(new, holders=[a, b])[:, 1]
    assert np.allclose(scores["score"].to_numpy(), expected, atol=1e-12)
    assert scores["reason_1"].notna().any()


def test_woe_with_two_holders_is_woe_with_the_union(small_credit):
    from fedcredit.models import HeteroWOE, Scorecard

    bank, y, holder = small_credit
    bank, y = bank.iloc[:2000], y[:2000]
    union = PassiveParty(_union(holder), name="union", policy=test_policy())
    a, b = _parties(holder)
    kw = dict(key_bits=TEST_KEY_BITS, insecure_key=True, max_bin=16)
    one = HeteroWOE(**kw).fit(bank, y, holder=union)
    two = HeteroWOE(**kw).fit(bank, y, holders=[a, b])
    cols_a, cols_b = _columns(holder)
    renamed = {f"holder:{c}": f"{'platform' if c in cols_a else 'utility'}:{c}"
               for c in cols_a + cols_b}
    assert set(two.tables_) == {renamed.get(k, k) for k in one.tables_}
    for k, t in one.tables_.items():
        assert t.equals(two.tables_[renamed.get(k, k)]), k
    assert two.party_[f"utility:{cols_b[0]}"] == "holder"
    assert [h.name for h in two.holders_] == ["platform", "utility"]
    with pytest.raises(InvalidInput, match="the WOE binning has 2 holders; this fit names 1"):
        Scorecard(woe=two).fit(bank, y, holder=a)


def test_regressor_and_decision_scorer_with_two_holders(small_credit):
    from fedcredit.decision.scorer import Scorer
    from fedcredit.models import SecureBoostRegressor

    bank, y, holder = small_credit
    union = PassiveParty(_union(holder), name="union", policy=test_policy())
    a, b = _parties(holder)
    amount = bank["deposit_balance"].fillna(0).to_numpy()[:2000] * 0.5 + 1e4
    kw = dict(n_estimators=2, max_depth=3, key_bits=TEST_KEY_BITS, insecure_key=True,
              verbose=False)
    one = SecureBoostRegressor(**kw).fit(bank.iloc[:2000], amount, holder=union)
    two = SecureBoostRegressor(**kw).fit(bank.iloc[:2000], amount, holders=[a, b])
    X = bank.iloc[2000:2100]
    assert np.array_equal(one.predict(X, holder=union), two.predict(X, holders=[a, b]))
    model = _model(n_estimators=3).fit(bank.iloc[:2000], y[:2000], holders=[a, b])
    scorer = Scorer(model, [a, b], reasons=2)
    rows = [{"uscc": u, "features": {k: (None if pd.isna(v) else v) for k, v in r.items()
                                     if not isinstance(v, str)}}
            for u, r in X.iloc[:5].select_dtypes("number").iterrows()]
    decisions = scorer.score(rows)
    expected = model.predict_proba(scorer.frame(rows), holders=[a, b])[:, 1]
    assert [d["probability"] for d in decisions] == pytest.approx(expected, abs=1e-12)
    assert [d["holder_covered"] for d in decisions] == [r["uscc"] in holder.index for r in rows]


def test_three_holders_grow_the_trees_of_one_holder_with_their_union(small_credit):
    bank, y, holder = small_credit
    bank, y = bank.iloc[:2500], y[:2500]
    cols = list(holder.columns)
    groups = [cols[:2] + cols[6:8], cols[2:4] + cols[8:10], cols[4:6] + cols[10:]]
    parties = [PassiveParty(holder[g], name=n, policy=test_policy())
               for g, n in zip(groups, ("platform", "social", "utility"))]
    union = PassiveParty(holder[[c for g in groups for c in g]], name="union",
                         policy=test_policy())
    one = _model().fit(bank, y, holder=union)
    three = _model().fit(bank, y, holders=parties)
    first = np.cumsum([0] + [len(g) for g in groups])
    assert len({nd.holder for t in three.trees_ for nd in t.nodes if nd.owner == "holder"}) >= 2
    for t1, t3 in zip(one.trees_, three.trees_):
        assert [(n.node_id, n.owner, n.count, n.value) for n in t1.nodes] == \
            [(n.node_id, n.owner, n.count, n.value) for n in t3.nodes]
        for n1, n3 in zip(t1.nodes, t3.nodes):
            if n1.owner == "holder":
                assert n1.feature == first[n3.holder] + n3.feature
    X = bank.iloc[:200]
    assert np.array_equal(one.predict_proba(X, holder=union),
                          three.predict_proba(X, holders=parties))
