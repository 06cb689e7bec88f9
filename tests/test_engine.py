"""The Dask engine: a party's batch crypto on a LocalCluster (TLS), the same results as the
local worker processes, a killed worker's tasks re-run, and the holder's [engine] setting."""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from conftest import TEST_KEY_BITS, test_policy

from fedcredit.crypto import generate_keypair
from fedcredit.crypto.engine import DaskEngine, check_engine, engine_scope
from fedcredit.crypto.parallel import current_engine, map_ordered
from fedcredit.errors import InvalidInput

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def engine():
    with DaskEngine(workers=2) as eng:
        yield eng


def test_a_local_cluster_speaks_tls_and_runs_tasks_in_its_own_processes(engine):
    assert engine.client.scheduler.address.startswith("tls://")
    assert engine.workers == 2
    with engine_scope(engine):
        assert current_engine() is engine
        pids = list(map_ordered(_pid, list(range(8)), 2))
    assert current_engine() is None
    assert os.getpid() not in pids and len(set(pids)) >= 1


def _pid(_):
    return os.getpid()


def test_encryption_and_decryption_on_dask_are_exact_and_in_order(engine):
    pk, sk = generate_keypair("paillier", bits=TEST_KEY_BITS, insecure=True)
    values = [int(v) for v in np.random.default_rng(1).integers(-2**40, 2**40, 3000)]
    with engine_scope(engine):
        data = b"".join(sk.encrypt_bytes_iter(values, chunk=256, workers=2))
        back = sk.decrypt(pk.from_bytes_batch(data), workers=2)
    assert back == values
    assert sk.decrypt(pk.from_bytes_batch(data), workers=1) == values  # the same ciphertexts


def test_batches_under_one_key_follow_each_other_on_one_worker():
    """Each batch scatters its key afresh (unhashed): the previous batch's release of the
    same bytes must not take the next batch's copy with it."""
    pk, sk = generate_keypair("paillier", bits=TEST_KEY_BITS, insecure=True)
    values = list(range(3000))
    with DaskEngine(workers=1) as eng, engine_scope(eng):
        for _ in range(3):
            list(sk.encrypt_bytes_iter(values[:2048], chunk=1024, workers=2))
            data = b"".join(sk.encrypt_bytes_iter(values, chunk=1024, workers=2))
            assert sk.decrypt(pk.from_bytes_batch(data), workers=1) == values


def test_a_killed_worker_costs_time_not_the_result():
    pk, sk = generate_keypair("paillier", bits=TEST_KEY_BITS, insecure=True)
    values = list(range(6000))
    with DaskEngine(workers=2) as eng, engine_scope(eng):
        pids = list(eng.client.run(os.getpid).values())
        chunks = sk.encrypt_bytes_iter(values, chunk=200, workers=2)
        first = next(chunks)
        os.kill(pids[0], signal.SIGKILL)  # mid-batch: its tasks are re-run elsewhere
        data = first + b"".join(chunks)
        deadline = time.time() + 60
        while eng.workers < 2 and time.time() < deadline:  # the nanny restarts it
            time.sleep(0.2)
    assert sk.decrypt(pk.from_bytes_batch(data), workers=1) == values


def _sums(pk, sk, n_rows=300, seed=4):
    rng = np.random.default_rng(seed)
    bins = rng.integers(0, 4, size=(n_rows, 3)).astype(np.uint8)
    bins[rng.random(n_rows) < 0.1, 1] = 4  # missing bin of feature 1
    sizes, offsets = np.array([5, 5, 5]), np.array([0, 5, 10])
    values = [int(v) for v in rng.integers(0, 2**30, n_rows)]
    return bins, sizes, offsets, sk.encrypt(values, workers=1)


@pytest.mark.parametrize("group", ["x25519", "ristretto255"])
def test_psi_on_dask_finds_the_intersection_it_finds_locally(engine, group, monkeypatch):
    """Both parties' PSI kernels (hash-and-blind, blind) run as Dask tasks under the engine."""
    from fedcredit.psi import PsiBank, PsiHolder, new_salt

    calls = []
    real = engine.map_ordered
    monkeypatch.setattr(engine, "map_ordered",
                        lambda fn, *a, **k: calls.append(fn.__name__) or real(fn, *a, **k))
    bank_ids = [f"91{i:016d}" for i in range(0, 2400)]
    holder_ids = [f"91{i:016d}" for i in range(1200, 3600)]
    salt = new_salt()
    with engine_scope(engine):
        bank, holder = PsiBank(salt, workers=2, group=group), PsiHolder(salt, holder_ids,
                                                                       workers=2, group=group)
        res = bank.intersect(holder.double_blind(bank.blind(bank_ids)), holder.shuffled_points())
    assert res.ids == bank_ids[1200:]
    assert holder.resolve(res.holder_positions) == res.ids
    assert len(calls) == 4  # the bank's two steps and the holder's two, each on the cluster


def test_sharded_histograms_are_the_local_ones_ciphertext_for_ciphertext(engine):
    from fedcredit.crypto import EncryptedHistogram
    from fedcredit.crypto.sharded import ShardedCiphertexts
    from fedcredit.crypto.stored import StoredCiphertexts

    pk, sk = generate_keypair("paillier", bits=TEST_KEY_BITS, insecure=True)
    bins, sizes, offsets, cts = _sums(pk, sk)
    sharded = ShardedCiphertexts(engine, pk, cts, bins, sizes, offsets, shard_rows=70)
    stored = StoredCiphertexts(pk)  # as the holder keeps them: the wire's bytes, in chunks
    for a in range(0, 300, 128):
        data = pk.to_bytes_batch(cts[a:a + 128])
        stored.append(data, pk.from_bytes_batch(data))
    from_stored = ShardedCiphertexts(engine, pk, stored, bins, sizes, offsets, shard_rows=70)
    assert len(sharded) == len(from_stored) == 5
    for rows in (np.arange(300), np.arange(0, 300, 3), np.array([5, 71, 299])):
        h = EncryptedHistogram(pk, bins[rows], sizes, offsets)
        h.add(cts[rows])
        assert sharded.histogram(rows).values == h.finish().values
        assert from_stored.histogram(rows).values == h.finish().values


def test_a_shard_lost_with_its_worker_is_shipped_again():
    from fedcredit.crypto import EncryptedHistogram
    from fedcredit.crypto.sharded import ShardedCiphertexts

    pk, sk = generate_keypair("paillier", bits=TEST_KEY_BITS, insecure=True)
    bins, sizes, offsets, cts = _sums(pk, sk)
    rows = np.arange(0, 300, 2)
    h = EncryptedHistogram(pk, bins[rows], sizes, offsets)
    h.add(cts[rows])
    with DaskEngine(workers=2) as eng:
        sharded = ShardedCiphertexts(eng, pk, cts, bins, sizes, offsets, shard_rows=100)
        assert sharded.histogram(rows).values == h.finish().values
        for pid in eng.client.run(os.getpid).values():  # every worker: every shard is lost
            os.kill(pid, signal.SIGKILL)
        assert sharded.histogram(rows).values == h.finish().values


def test_secureboost_on_dask_grows_the_trees_it_grows_locally(engine, small_credit,
                                                               monkeypatch):
    from fedcredit.crypto import sharded
    from fedcredit.models import SecureBoostClassifier
    from fedcredit.protocol import PassiveParty

    calls = []
    real = sharded.ShardedCiphertexts.histogram
    monkeypatch.setattr(sharded, "SHARDED_MIN_ROWS", 0)  # every node on the workers
    monkeypatch.setattr(sharded.ShardedCiphertexts, "histogram",
                        lambda self, pos: calls.append(len(pos)) or real(self, pos))

    bank, y, holder = small_credit
    bank, y = bank.iloc[:2000], y[:2000]
    party = PassiveParty(holder, name="platform", policy=test_policy())
    trees = {}
    for spec in ("local", engine):
        model = SecureBoostClassifier(n_estimators=3, max_depth=3, key_bits=TEST_KEY_BITS,
                                      insecure_key=True, verbose=False, n_jobs=2, engine=spec)
        model.fit(bank, y, holder=party)
        trees[str(spec)] = [[(n.node_id, n.owner, n.count, n.feature, n.value, n.gain)
                             for n in t.nodes] for t in model.trees_]
    assert list(trees.values())[0] == list(trees.values())[1]
    assert calls, "the holder's node histograms were summed on the workers"
    assert model.get_params()["engine"] is engine
    assert model._to_dict()["params"]["engine"] == "dask"  # a handle is not saved


def test_engine_settings_are_checked():
    for bad in ("spark", "http://x:1", 3):
        with pytest.raises(InvalidInput, match="engine must be"):
            check_engine(bad)
    with pytest.raises(InvalidInput, match="scheduler"):
        DaskEngine("localhost:8786")
    with pytest.raises(InvalidInput, match="certificates"):
        DaskEngine("tls://127.0.0.1:1")


def test_holder_toml_engine_section(tmp_path):
    from fedcredit.holder import config

    d = tmp_path / "h"
    d.mkdir()
    text = config.render("platform", "127.0.0.1:50051", "tls", None)
    (d / config.CONFIG_NAME).write_text(text)
    cfg = config.load_config(d)
    assert (cfg.engine_kind, cfg.engine_spec, cfg.engine_workers) == ("local", "local", 0)
    (d / config.CONFIG_NAME).write_text(text.replace('kind = "local"', 'kind = "dask"')
                                        .replace("workers = 0", "workers = 3"))
    cfg = config.load_config(d)
    assert (cfg.engine_spec, cfg.engine_workers) == ("dask", 3)
    (d / config.CONFIG_NAME).write_text(text.replace('scheduler = ""',
                                                     'scheduler = "tls://10.0.0.5:8786"'))
    with pytest.raises(InvalidInput, match="engine.scheduler"):
        config.load_config(d)  # a scheduler with kind = "local"
    (d / config.CONFIG_NAME).write_text(text.replace('kind = "local"', 'kind = "ray"'))
    with pytest.raises(InvalidInput, match="engine.kind"):
        config.load_config(d)


def test_simulate_on_dask_gives_the_scores_it_gives_locally(tmp_path, small_credit):
    """``fedcredit simulate --engine dask --workers 2``: the bank and the holder process
    each on their own LocalCluster, the same test scores as ``--engine local``."""
    import pandas as pd

    from fedcredit.cli import main as cli

    bank, y, holder = small_credit
    bank.iloc[:1500].assign(label=y[:1500]).reset_index().to_csv(tmp_path / "b.csv",
                                                                  index=False)
    holder.reset_index().to_csv(tmp_path / "h.csv", index=False)
    scores = {}
    for engine in ("local", "dask"):
        out = tmp_path / f"p_{engine}.csv"
        assert cli(["simulate", "--bank-csv", str(tmp_path / "b.csv"), "--holder-csv",
                    str(tmp_path / "h.csv"), "--id-column", "uscc", "--label-column", "label",
                    "--trees", "2", "--depth", "3", "--bins", "16", "--key-bits",
                    str(TEST_KEY_BITS), "--insecure-key", "--quiet", "--engine", engine,
                    "--workers", "2", "--predictions-out", str(out)]) == 0
        scores[engine] = pd.read_csv(out, dtype={"uscc": str})
    assert scores["local"]["uscc"].tolist() == scores["dask"]["uscc"].tolist()
    assert np.array_equal(scores["local"]["score"], scores["dask"]["score"])


def test_a_worker_killed_mid_tree_leaves_the_trees_exact(small_credit, monkeypatch):
    """The holder's worker dies in the middle of a layer's histograms: its shards are
    shipped again, its sums re-run, and the trees are the local ones."""
    from fedcredit.crypto import sharded
    from fedcredit.models import SecureBoostClassifier
    from fedcredit.protocol import PassiveParty

    bank, y, holder = small_credit
    bank, y = bank.iloc[:2000], y[:2000]
    party = PassiveParty(holder, name="platform", policy=test_policy())

    def fit(spec):
        model = SecureBoostClassifier(n_estimators=3, max_depth=3, key_bits=TEST_KEY_BITS,
                                      insecure_key=True, verbose=False, n_jobs=2, engine=spec)
        model.fit(bank, y, holder=party)
        return [[(n.node_id, n.owner, n.count, n.feature, n.value) for n in t.nodes]
                for t in model.trees_]

    expected = fit("local")
    monkeypatch.setattr(sharded, "SHARDED_MIN_ROWS", 0)
    real, calls = sharded.ShardedCiphertexts.histogram, []

    def dying(self, pos):
        calls.append(len(pos))
        if len(calls) == 3:  # the second layer of the first federated tree
            os.kill(next(iter(self.engine.client.run(os.getpid).values())), signal.SIGKILL)
        return real(self, pos)

    monkeypatch.setattr(sharded.ShardedCiphertexts, "histogram", dying)
    with DaskEngine(workers=2) as eng:
        assert fit(eng) == expected
    assert len(calls) > 3
