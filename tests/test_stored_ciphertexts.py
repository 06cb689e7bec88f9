"""StoredCiphertexts: a tree's ciphertexts kept as their wire bytes, parsed back on demand."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import TEST_KEY_BITS
from fedcredit.crypto import EncryptedHistogram, generate_keypair
from fedcredit.crypto.sharded import node_histogram
from fedcredit.crypto.stored import StoredCiphertexts
from fedcredit.errors import InvalidInput


@pytest.fixture(scope="module", params=["paillier", "ou"])
def received(request):
    """A key and 50 fresh ciphertexts received in uneven chunks (as a bank may send them)."""
    pk, sk = generate_keypair(request.param, bits=TEST_KEY_BITS, insecure=True)  # INSECURE
    cts = sk.encrypt(list(range(50)), workers=1)
    stored = StoredCiphertexts(pk)
    for a, b in ((0, 7), (7, 7), (7, 30), (30, 31), (31, 50)):
        data = pk.to_bytes_batch(cts[a:b])
        stored.append(data, pk.from_bytes_batch(data))
    return pk, sk, cts, stored


def test_take_gives_back_the_ciphertexts_in_any_order_across_chunks(received):
    pk, sk, cts, stored = received
    assert len(stored) == 50
    for pos in (np.arange(50), np.array([49, 0, 30, 7, 6, 31, 30]), np.array([], dtype=int)):
        got = stored.take(pos)
        assert got.values == [cts.values[i] for i in pos.tolist()]
        assert got.fingerprint == pk.fingerprint and not got.fresh  # not re-sendable as is
    assert sk.decrypt(stored.take(np.array([12, 44]))) == [12, 44]
    with pytest.raises(InvalidInput, match="outside"):
        stored.take(np.array([50]))
    with pytest.raises(InvalidInput, match="outside"):
        stored.take(np.array([-1]))


def test_byte_range_is_the_serialized_slice_across_chunk_boundaries(received):
    pk, _, cts, stored = received
    for a, b in ((0, 50), (5, 33), (7, 7), (30, 31), (49, 50)):
        assert stored.byte_range(a, b) == pk._serialize(cts.values[a:b])
    with pytest.raises(InvalidInput, match="outside"):
        stored.byte_range(10, 51)


def test_bytes_that_are_not_the_parsed_batch_are_refused(received):
    pk, _, cts, _ = received
    data = pk.to_bytes_batch(cts[:3])
    with pytest.raises(InvalidInput, match="not the 2 ciphertexts"):
        StoredCiphertexts(pk).append(data, pk.from_bytes_batch(data[:2 * pk.ciphertext_bytes]))


def test_a_node_histogram_from_stored_ciphertexts_is_the_one_from_the_vector(received):
    pk, _, cts, stored = received
    rng = np.random.default_rng(1)
    bins = rng.integers(0, 3, size=(50, 2)).astype(np.uint8)
    sizes, offsets = np.array([4, 4]), np.array([0, 4])
    pos = np.arange(50)
    rows = np.sort(rng.choice(50, 20, replace=False))
    h = EncryptedHistogram(pk, bins[rows], sizes, offsets)
    h.add(cts[rows])
    assert node_histogram(pk, stored, bins, pos, rows, sizes, offsets).values == \
        h.finish().values


def test_a_node_is_summed_a_parsed_slice_at_a_time(received, monkeypatch):
    """Parsing all of a million-row node's ciphertexts at once would hold them all as mpz."""
    import fedcredit.crypto.sharded as sharded

    pk, _, cts, stored = received
    sizes = []
    real = StoredCiphertexts.take
    monkeypatch.setattr(StoredCiphertexts, "take",
                        lambda self, p: sizes.append(len(p)) or real(self, p))
    monkeypatch.setattr(sharded, "PARSE_ROWS", 16)
    bins = np.zeros((50, 1), dtype=np.uint8)
    rows = np.arange(3, 50)
    h = EncryptedHistogram(pk, bins[rows], np.array([2]), np.array([0]))
    h.add(cts[rows])
    got = node_histogram(pk, stored, bins, np.arange(50), rows, np.array([2]), np.array([0]))
    assert got.values == h.finish().values
    assert sizes == [16, 16, 15]
