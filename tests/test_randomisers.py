"""Randomisers made ahead of time: the same plaintexts, each randomiser used once, the rest
of a batch made as before, for both schemes."""
from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import TEST_KEY_BITS

from fedcredit.crypto import generate_keypair


def _wait(sk, count, seconds=60.0):
    deadline = time.time() + seconds
    while sk.randomisers_ready() < count and time.time() < deadline:
        time.sleep(0.05)
    return sk.randomisers_ready()


@pytest.mark.parametrize("scheme", ["paillier", "ou"])
def test_stocked_randomisers_encrypt_exactly_and_only_once(scheme):
    pk, sk = generate_keypair(scheme, bits=TEST_KEY_BITS, insecure=True)
    assert sk.stock_randomisers(3000, workers=2)
    assert _wait(sk, 3000) == 3000
    values = [7] * 1500 + list(range(1500))
    data = b"".join(sk.encrypt_bytes_iter(values, chunk=500, workers=2))
    assert sk.randomisers_used == 3000 and sk.randomisers_ready() == 0
    cts = pk.from_bytes_batch(data)
    assert sk.decrypt(cts, workers=1) == values
    assert len(set(cts.values[:1500])) == 1500  # one plaintext, 1500 distinct ciphertexts


@pytest.mark.parametrize("scheme", ["paillier", "ou"])
def test_a_batch_larger_than_the_stock_makes_the_rest_as_before(scheme):
    pk, sk = generate_keypair(scheme, bits=TEST_KEY_BITS, insecure=True)
    sk.stock_randomisers(1000, workers=2)
    _wait(sk, 1000)
    values = [int(v) for v in np.random.default_rng(2).integers(-2**40, 2**40, 3000)]
    data = b"".join(sk.encrypt_bytes_iter(values, chunk=500, workers=2))
    assert sk.randomisers_used == 1000
    assert sk.decrypt(pk.from_bytes_batch(data), workers=1) == values


def test_the_stock_stays_within_its_memory_cap(monkeypatch):
    from fedcredit.crypto import randomisers

    pk, sk = generate_keypair("ou", bits=TEST_KEY_BITS, insecure=True)
    monkeypatch.setattr(randomisers, "MAX_STOCK_BYTES", 700 * sk._randomiser_memory())
    assert sk.stock_randomisers(5000, workers=2)
    assert _wait(sk, 700) == 700
    time.sleep(0.3)  # nothing more is made
    assert sk.randomisers_ready() == 700
    values = list(range(-1000, 1000))
    data = b"".join(sk.encrypt_bytes_iter(values, chunk=350, workers=2))
    assert sk.randomisers_used == 700
    assert sk.decrypt(pk.from_bytes_batch(data), workers=1) == values


def test_secureboost_encrypts_later_trees_with_randomisers_made_meanwhile(small_credit):
    from conftest import test_policy

    from fedcredit.models import SecureBoostClassifier
    from fedcredit.protocol import PassiveParty

    bank, y, holder = small_credit
    party = PassiveParty(holder, name="platform", policy=test_policy())
    model = SecureBoostClassifier(n_estimators=4, max_depth=3, key_bits=TEST_KEY_BITS,
                                  insecure_key=True, verbose=False, n_jobs=2)
    model.fit(bank.iloc[:2500], y[:2500], holder=party)
    assert model.time_budget_["bank_encryptions_precomputed"] > 0
