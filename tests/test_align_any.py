"""``align="any"``: SecureBoost on the bank's enterprises that at least one holder serves.

Each holder's features are missing for the enterprises it does not serve; nothing of those
enterprises reaches it but one encrypted (g, h) sum per node. The trees are the plaintext
reference's, where each holder's floors count its own rows only; the model scores its
training rows exactly as training placed them; the traffic holds no foreign row.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import TEST_KEY_BITS, RecordingChannel, test_policy
from reference_boost import grow_reference

from fedcredit.binning import BinMapper
from fedcredit.crypto import FixedPoint
from fedcredit.errors import InvalidInput
from fedcredit.crypto import load_public_key
from fedcredit.models import SecureBoostClassifier
from fedcredit.protocol import BankSession, InProcessChannel, PassiveParty
from fedcredit.protocol.messages import OpenSession
from fedcredit.protocol.alignment.bank import align_many
from fedcredit.protocol.secureboost import messages as sb


def _columns(holder):
    cols = list(holder.columns)
    return cols[:2] + cols[6:10], cols[2:6] + cols[10:]


def _coverage(holder, seed=3):
    """The platform serves about 80 % of the holder table, the utility about 65 %,
    independently: many enterprises only one of them knows."""
    rng = np.random.default_rng(seed)
    ids = holder.index
    return ids[rng.random(len(ids)) < 0.8], ids[rng.random(len(ids)) < 0.65]


def _parties(holder, **policy):
    (ca, cb), (ia, ib) = _columns(holder), _coverage(holder)
    a = PassiveParty(holder.loc[ia, ca], name="platform", policy=test_policy(**policy))
    b = PassiveParty(holder.loc[ib, cb], name="utility", policy=test_policy(**policy))
    return a, b


def _model(**kw):
    base = dict(n_estimators=4, max_depth=3, learning_rate=0.3, max_bin=16, min_child_samples=20,
                key_bits=TEST_KEY_BITS, insecure_key=True, verbose=False, n_jobs=2)
    base.update(kw)
    return SecureBoostClassifier(**base)


def test_alignment_on_any_holder_is_the_union_with_gaps(small_credit):
    bank, _, holder = small_credit
    a, b = _parties(holder)
    only_a = next(i for i in a.features.index if i not in b.features.index and i in bank.index)
    sessions = [BankSession(InProcessChannel(p), "align") for p in (a, b)]
    al, local = align_many(sessions, bank.index.tolist(), any_holder=True)
    served = [set(p.features.index) for p in (a, b)]
    expected = sorted(i for i in bank.index if i in served[0] | served[1])
    assert al.ids == expected and only_a in al.ids
    for s, at, own in zip(sessions, local, served):
        assert at is not None and len(at) == len(expected)
        assert s.alignment.ids == sorted(i for i in expected if i in own)  # nothing foreign
        assert [s.alignment.ids[k] if k >= 0 else None for k in at] == \
            [i if i in own else None for i in expected]
    assert local[1][al.ids.index(only_a)] == -1


def _reference_trees(model, bank, y, parties):
    """The plaintext reference on the model's rows: the union sorted by id, each holder's
    bins fitted on the rows it serves and missing elsewhere."""
    served_ids = [set(p.features.index) for p in parties]
    aligned = sorted(i for i in bank.index if i in served_ids[0] | served_ids[1])
    pos = bank.index.get_indexer(aligned)
    Xa, ya = bank.iloc[pos], y[pos]
    served = [np.array([i in s for i in aligned]) for s in served_ids]
    blocks, nbs, missing, holder_of = [], [], [], []
    for k, p in enumerate(parties):
        own = p.features.loc[[i for i in aligned if i in served_ids[k]]]
        mapper = BinMapper(model.max_bin).fit(own)
        nb = mapper.n_bins.astype(np.int64)
        block = np.tile(nb, (len(aligned), 1))
        block[served[k]] = mapper.transform(own)
        blocks.append(block)
        nbs += nb.tolist()
        missing += (block[served[k]] == nb[None, :]).any(axis=0).tolist()
        holder_of += [k] * len(nb)
    holder_bins = np.hstack(blocks).astype(np.int64)
    bank_bins = model.mapper_.transform(Xa).astype(np.int64)
    fp = FixedPoint(model.frac_bits)
    raw = np.full(len(ya), np.log(ya.mean() / (1 - ya.mean())))
    trees = []
    for t in range(model.n_estimators):
        p = 1 / (1 + np.exp(-raw))
        g, h = p - ya, np.maximum(p * (1 - p), 1e-16)
        ref = grow_reference(bank_bins, model.mapper_.n_bins.tolist(), holder_bins, nbs,
                             np.array(missing), g, h, fp.encode(g), fp.encode(h),
                             max_depth=model.max_depth, min_child_samples=20,
                             min_child_weight=model.min_child_weight, reg_lambda=1.0,
                             gamma=0.0, floor=10, scale=fp.scale, learning_rate=0.3,
                             rows=np.arange(len(ya)), bank_only=t < model.bank_only_trees,
                             holder_of=holder_of, served=served)
        for rn in ref:
            if rn["owner"] == "leaf":
                raw[rn["rows"]] += rn["value"]
        trees.append(ref)
    return aligned, raw, trees, len(blocks[0][0])


def test_any_holder_trees_match_the_plaintext_reference(small_credit, make_channel):
    bank, y, holder = small_credit
    bank, y = bank.iloc[:2500], y[:2500]
    a, b = _parties(holder, min_bin_samples=0)
    model = _model().fit(bank, y, holders=[make_channel(a), make_channel(b)], align="any")
    aligned, raw, trees, split = _reference_trees(model, bank, y, (a, b))
    owners = {nd.holder for t in model.trees_ for nd in t.nodes if nd.owner == "holder"}
    assert owners == {0, 1}, "both holders must win splits, or the test proves little"
    for tree, ref in zip(model.trees_, trees):
        assert [(nd.node_id, nd.owner, nd.left, nd.right, nd.count) for nd in tree.nodes] == [
            (rn["id"], rn["owner"], rn["left"], rn["right"], rn["count"]) for rn in ref]
        for nd, rn in zip(tree.nodes, ref):
            if nd.owner == "holder":
                party = (a, b)[nd.holder].models.load(model.holders_[nd.holder].model_id)
                assert party.splits[nd.record_id] == (rn["feature"] - split * nd.holder,
                                                      rn["bin"], rn["ml"])
            elif nd.owner == "leaf":
                assert abs(nd.value - rn["value"]) <= 1e-6
    # scoring puts every training row where training did: rows a holder does not serve go
    # where its splits send missing values
    got = model.decision_function(bank.loc[aligned], holders=[a, b])
    assert np.allclose(got, raw, atol=1e-9)


def test_no_row_a_holder_does_not_serve_reaches_it(small_credit):
    bank, y, holder = small_credit
    bank, y = bank.iloc[:2000], y[:2000]
    a, b = _parties(holder)
    ca, cb = RecordingChannel(a), RecordingChannel(b)
    model = _model(n_estimators=3).fit(bank, y, holders=[ca, cb], align="any")
    for party, ch in ((a, ca), (b, cb)):
        mine = len([i for i in bank.index if i in party.features.index])
        starts = [msg for msg, _ in ch.sent if isinstance(msg, sb.TreeStart)]
        assert starts and all(len(s.rows) // 4 == mine for s in starts)
        assert all(s.rows_total > mine for s in starts)  # the tree is larger; not which rows
        width = _ciphertext_bytes(ch)
        cts = sum(len(msg.ciphertexts) // width for msg, _ in ch.sent
                  if isinstance(msg, sb.GradientChunk))
        assert cts == mine * len(starts)  # gradients of its own rows only
        tasks = [t for msg, _ in ch.sent if isinstance(msg, sb.LayerRequest) for t in msg.tasks]
        assert any(t.unserved for t in tasks), "the others' sums come encrypted, per node"
        assert all(len(t.rows) // 4 <= mine for t in tasks)
    assert model.trees_[1].nodes[0].count > max(len(a.features), len(b.features)) // 2


def _ciphertext_bytes(ch) -> int:
    """The ciphertext width of the session key the channel's OpenSession carried."""
    opened = next(msg for msg, _ in ch.sent if isinstance(msg, OpenSession))
    return load_public_key(opened.public_key).ciphertext_bytes


def test_an_enterprise_only_one_holder_knows_is_trained_on_and_scored(small_credit):
    bank, y, holder = small_credit
    a, b = _parties(holder)
    only_a = [i for i in bank.index if i in a.features.index and i not in b.features.index]
    only_b = [i for i in bank.index if i in b.features.index and i not in a.features.index]
    assert len(only_a) > 100 and len(only_b) > 50
    every = _model(n_estimators=3).fit(bank, y, holders=[a, b])
    anyone = _model(n_estimators=3).fit(bank, y, holders=[a, b], align="any")
    assert anyone.trees_[0].nodes[0].count > every.trees_[0].nodes[0].count + len(only_a)
    X = bank.loc[only_a[:20] + only_b[:20]]
    p, covered = anyone.predict_proba(X, holders=[a, b], return_coverage=True)
    assert not covered.any()  # "covered" means every holder had the enterprise's data
    assert np.all((p[:, 1] > 0) & (p[:, 1] < 1))


def test_align_names_its_two_choices(small_credit):
    from fedcredit.models import HeteroWOE

    bank, y, holder = small_credit
    a, b = _parties(holder)
    with pytest.raises(InvalidInput, match="align='any' is for SecureBoost"):
        HeteroWOE(key_bits=TEST_KEY_BITS, insecure_key=True).fit(bank, y, holders=[a, b],
                                                                 align="any")
    with pytest.raises(InvalidInput, match="align must be"):
        _model().fit(bank, y, holders=[a, b], align="some")


def test_bank_train_with_align_any_from_the_cli(small_credit, tls_dir, tmp_path, capsys):
    from conftest import GrpcHolder

    from fedcredit.cli import main as cli

    bank, y, holder = small_credit
    table = bank.iloc[:1500].assign(label=y[:1500]).reset_index()
    table.to_csv(tmp_path / "bank.csv", index=False)
    a, b = _parties(holder)
    served = {i for p in (a, b) for i in p.features.index}
    union = sum(i in served for i in table["uscc"])
    servers = [GrpcHolder(a, tls_dir), GrpcHolder(b, tls_dir)]
    try:
        holders = [x for s in servers for x in ("--holder", s.server.address)]
        assert cli(["bank", "train", *holders, "--tls-dir", str(tls_dir), "--id-column", "uscc",
                    "--csv", str(tmp_path / "bank.csv"), "--label-column", "label",
                    "--model-out", str(tmp_path / "m.json"), "--trees", "2", "--depth", "2",
                    "--key-bits", str(TEST_KEY_BITS), "--insecure-key", "--quiet",
                    "--workers", "1", "--align", "any"]) == 0
    finally:
        for s in servers:
            s.stop()
    assert f"on {union} aligned enterprises" in capsys.readouterr().out
    model = SecureBoostClassifier.load(tmp_path / "m.json")
    assert model.trees_[1].nodes[0].count == union > sum(i in a.features.index
                                                         for i in table["uscc"])


# -- the holder's side, on tiny inputs ------------------------------------------------------------
def test_the_others_sum_joins_every_missing_bin_and_nothing_else():
    from fedcredit.crypto import generate_keypair
    from fedcredit.crypto.histogram import with_unserved
    from fedcredit.protocol.secureboost.math import feature_layout

    pk, sk = generate_keypair("paillier", bits=TEST_KEY_BITS, insecure=True)
    sizes, offsets = feature_layout(np.array([2, 3]))  # bins 0..1 + missing, 0..2 + missing
    hist = sk.encrypt(list(range(1, 8)))
    extra = pk.to_bytes_batch(sk.encrypt([100]))
    got = sk.decrypt(with_unserved(pk, hist, extra, sizes, offsets, "unserved"))
    assert list(got) == [1, 2, 103, 4, 5, 6, 107]
    assert with_unserved(pk, hist, b"", sizes, offsets, "unserved") is hist
    with pytest.raises(Exception, match="unserved"):
        with_unserved(pk, hist, extra + extra, sizes, offsets, "unserved")


def test_the_holder_sizes_slots_by_the_whole_tree_and_no_further():
    import pandas as pd

    from fedcredit.crypto import generate_keypair
    from fedcredit.protocol.secureboost.holder import HolderBoost
    from fedcredit.protocol.secureboost.math import GradientLayout

    pk, _ = generate_keypair("ou", bits=TEST_KEY_BITS, insecure=True)
    feats = pd.DataFrame({"a": np.arange(60, dtype=float)})
    boost = HolderBoost(feats, np.arange(60), pk, test_policy(), 8, 5, "bank", "credit",
                        frac_bits=24)
    rows, ok = np.arange(60), np.ones(60, bool)
    own = GradientLayout.honest_bound(60, 24, pk.plaintext_bits)
    whole = GradientLayout.honest_bound(60_000, 24, pk.plaintext_bits)
    assert whole > own
    with pytest.raises(InvalidInput, match="slot width"):
        boost.start_tree(0, whole, rows, pk.fingerprint, ok)
    with pytest.raises(InvalidInput, match="cannot hold"):
        boost.start_tree(0, own, rows, pk.fingerprint, ok, rows_total=59)
    boost.start_tree(0, whole, rows, pk.fingerprint, ok, rows_total=60_000)
    boost.close()


def test_the_holder_refuses_a_sum_of_others_rows_it_was_not_told_of():
    """A bank that adds a ciphertext of its choosing to a holder's missing bins (to mark
    which candidates send missing values left) must announce others' rows in TreeStart."""
    import pandas as pd

    from fedcredit.crypto import generate_keypair
    from fedcredit.protocol.secureboost import messages as m
    from fedcredit.protocol.secureboost.holder import HolderBoost
    from fedcredit.protocol.secureboost.math import GradientLayout

    pk, sk = generate_keypair("paillier", bits=TEST_KEY_BITS, insecure=True)
    feats = pd.DataFrame({"a": np.arange(60, dtype=float)})
    rows, ok = np.arange(60), np.ones(60, bool)
    g = np.arange(60, dtype=np.int64) - 30
    h = np.full(60, 4, dtype=np.int64)
    lay = GradientLayout.for_rows(g, h, pk.plaintext_bits)
    extra = pk.to_bytes_batch(sk.encrypt([12345]))
    for total, refused in ((0, True), (60, True), (100, False)):
        boost = HolderBoost(feats, rows, pk, test_policy(min_bin_samples=0), 8, 5, "bank",
                            "credit", frac_bits=24)
        boost.start_tree(0, lay.slot_bits, rows, pk.fingerprint, ok, rows_total=total)
        boost.add_gradients(0, pk.to_bytes_batch(sk.encrypt(lay.pack_rows(g, h))))
        boost.finish_gradients()
        task = m.NodeTask(node_id=0, unserved=extra)
        if refused:
            with pytest.raises(InvalidInput, match="not told of"):
                boost.layer(0, 0, [task])
        else:
            assert boost.layer(0, 0, [task])[0].count > 0
        boost.close()
