"""The encrypted histogram kernel against numpy on tiny inputs, for every scheme.

Keys are 1024-bit and made with ``insecure=True``: INSECURE, for tests only.
"""
from __future__ import annotations

import numpy as np
import pytest

from fedcredit.crypto import (
    SCHEMES,
    CipherVector,
    EncryptedHistogram,
    SlotLayout,
    candidate_sums,
    generate_keypair,
    plan_groups,
)
from fedcredit.errors import InvalidInput, UnsafeReply
from fedcredit.protocol.secureboost.math import SplitCandidates, candidate_left_sums, feature_layout

KEY_BITS = 1024  # INSECURE: tests only


@pytest.fixture(scope="module", params=SCHEMES)
def keys(request):
    return generate_keypair(request.param, bits=KEY_BITS, insecure=True)


def plain_hist(bins: np.ndarray, sizes: np.ndarray, offsets: np.ndarray, values) -> list[int]:
    """np.bincount per (feature, bin) of the plaintexts (exact: |sums| stay below 2**53)."""
    flat = (bins.astype(np.int64) + offsets[None, :]).ravel()
    weights = np.repeat(np.asarray(values, dtype=np.float64), bins.shape[1])
    counts = np.bincount(flat, weights=weights, minlength=int(sizes.sum()))
    return [int(v) for v in np.rint(counts)]


def random_case(rng, rows, n_bins, missing_frac=0.2):
    n_bins = np.asarray(n_bins, dtype=np.int64)
    sizes, offsets = feature_layout(n_bins)
    bins = np.stack([rng.integers(0, nb, rows) for nb in n_bins], axis=1)
    miss = rng.random(bins.shape) < missing_frac
    bins = np.where(miss, n_bins[None, :], bins).astype(np.uint8)
    return bins, sizes, offsets


def histogram(pk, sk, bins, sizes, offsets, values, chunks):
    enc = sk.encrypt([int(v) for v in values], workers=1)
    hist = EncryptedHistogram(pk, bins, sizes, offsets)
    bounds = [0, *chunks, len(values)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        hist.add(enc[lo:hi])
    return hist.finish()


@pytest.mark.parametrize("n_bins, rows, chunks", [
    ([2, 2, 3], 40, [1, 17, 30]),      # few bins: features are summed jointly
    ([9, 12], 25, [10]),               # many bins per feature
    ([1, 4, 2, 3], 30, [0, 5, 5, 29]),  # empty chunks, a one-bin feature
])
def test_encrypted_histogram_equals_bincount(keys, n_bins, rows, chunks):
    pk, sk = keys
    rng = np.random.default_rng(rows)
    bins, sizes, offsets = random_case(rng, rows, n_bins)
    values = rng.integers(-2**40, 2**40, rows)
    got = sk.decrypt(histogram(pk, sk, bins, sizes, offsets, values, chunks))
    want = plain_hist(bins, sizes, offsets, values)
    assert len(got) == int(sizes.sum())
    assert got == want


def test_joint_cells_are_used_and_still_exact(keys):
    pk, sk = keys
    rng = np.random.default_rng(1)
    bins, sizes, offsets = random_case(rng, 50, [2, 2, 2])
    hist = EncryptedHistogram(pk, bins, sizes, offsets)
    assert max(len(g) for g in hist.groups) > 1  # the joint-cell path is exercised
    values = rng.integers(-1000, 1000, 50)
    enc = sk.encrypt([int(v) for v in values], workers=1)
    hist.add(enc[:20])
    hist.add(enc[20:])
    assert sk.decrypt(hist.finish()) == plain_hist(bins, sizes, offsets, values)


def test_empty_bins_hold_zero_and_sibling_is_parent_minus_child(keys):
    pk, sk = keys
    bins = np.array([[0, 1], [0, 1], [2, 1], [0, 0]], dtype=np.uint8)  # f0 bin 1 never used
    sizes, offsets = feature_layout(np.array([3, 2]))  # f0: 3 bins + missing (3)
    values = [5, -7, 11, 2]
    parent = histogram(pk, sk, bins, sizes, offsets, values, [2])
    assert sk.decrypt(parent) == [5 - 7 + 2, 0, 11, 0, 2, 5 - 7 + 11, 0]
    child = histogram(pk, sk, bins[:2], sizes, offsets, values[:2], [])
    sibling = pk.sub(parent, child)
    assert sk.decrypt(sibling) == plain_hist(bins[2:], sizes, offsets, values[2:])


def test_histogram_refuses_too_many_or_too_few_rows(keys):
    pk, sk = keys
    bins = np.zeros((3, 1), dtype=np.uint8)
    sizes, offsets = feature_layout(np.array([1]))
    hist = EncryptedHistogram(pk, bins, sizes, offsets)
    hist.add(sk.encrypt([1, 2], workers=1))
    with pytest.raises(InvalidInput, match="2 of 3 rows"):
        hist.finish()
    with pytest.raises(InvalidInput, match="more ciphertexts"):
        hist.add(sk.encrypt([1, 2], workers=1))


@pytest.mark.parametrize("n_bins, rows", [([2, 2, 2, 2], 60), ([3], 5),
                                          ([20, 2, 5, 2, 3, 2, 2, 2], 40), ([2] * 9, 100)])
def test_plan_groups_is_a_partition_of_the_features(n_bins, rows):
    rng = np.random.default_rng(len(n_bins))
    bins, sizes, _ = random_case(rng, rows, n_bins)
    groups = plan_groups(bins, sizes)
    flat = [f for g in groups for f in g]
    assert sorted(flat) == list(range(len(n_bins)))  # every feature exactly once
    assert all(g and len(g) <= 6 for g in groups)  # non-empty, at most MAX_GROUP
    assert plan_groups(np.zeros((4, 0), dtype=np.uint8), np.zeros(0, dtype=np.int64)) == []


def test_plan_groups_joins_tiny_features_and_keeps_wide_ones_apart():
    # two binary features on 60 rows: 4 joint cells cost far fewer additions than 2 x 58
    rng = np.random.default_rng(0)
    bins, sizes, _ = random_case(rng, 60, [1, 1], missing_frac=0.5)
    assert plan_groups(bins, sizes) == [[0, 1]]
    # two features with one bin per row: joint cells save nothing
    ident = np.stack([np.arange(20), np.arange(20)[::-1]], axis=1).astype(np.uint8)
    groups = plan_groups(ident, np.array([20, 20]))
    assert sorted(map(sorted, groups)) == [[0], [1]]


def test_candidate_sums_equal_candidate_left_sums(keys):
    pk, sk = keys
    rng = np.random.default_rng(7)
    n_bins = np.array([3, 2, 4])
    bins, sizes, offsets = random_case(rng, 30, n_bins)
    values = rng.integers(-10**6, 10**6, 30)
    enc_hist = histogram(pk, sk, bins, sizes, offsets, values, [12])
    cands = SplitCandidates.build(n_bins, np.array([True, False, True]))
    got = candidate_sums(pk, enc_hist, sizes, offsets, cands.feature, cands.bin,
                         cands.missing_left)
    plain = np.array(plain_hist(bins, sizes, offsets, values), dtype=np.int64)
    want = candidate_left_sums(plain, cands, sizes, offsets)
    assert len(got) == len(cands)
    assert sk.decrypt(got) == want.tolist()
    # a subset of the candidates, out of order (as the holder sends them, by position)
    pick = np.array([4, 0, 7])
    sub = candidate_sums(pk, enc_hist, sizes, offsets, cands.feature[pick], cands.bin[pick],
                         cands.missing_left[pick])
    assert sk.decrypt(sub) == want[pick].tolist()


@pytest.mark.parametrize("count, slots", [(7, 3), (6, 3), (1, 4), (5, 1)])
def test_pack_flat_round_trips_and_is_fresh(keys, count, slots):
    pk, sk = keys
    width = 40
    rng = np.random.default_rng(count)
    values = [int(v) for v in rng.integers(-2**38, 2**38, count)]
    derived = pk.add_plain(sk.encrypt(values, workers=1), [0] * count)  # not fresh
    assert not derived.fresh
    packed = pk.pack_flat(derived, width, slots)
    assert packed.fresh and len(packed) == -(-count // slots)
    cols = SlotLayout.repeat(width, slots).unpack(sk.decrypt(packed))
    flat = [cols[j][i] for i in range(len(packed)) for j in range(slots)]
    assert flat[:count] == values and flat[count:] == [0] * (len(flat) - count)
    # it may leave the party, and the receiver gets the same plaintexts
    data = pk.to_bytes_batch(packed)
    assert sk.decrypt(pk.from_bytes_batch(data)) == sk.decrypt(packed)
    assert len(pk.pack_flat(pk.empty(), width, slots)) == 0


def test_to_bytes_batch_refuses_derived_vectors(keys):
    pk, sk = keys
    bins = np.array([[0], [1], [0]], dtype=np.uint8)
    sizes, offsets = feature_layout(np.array([2]))
    hist = histogram(pk, sk, bins, sizes, offsets, [1, 2, 3], [])
    sums = candidate_sums(pk, hist, sizes, offsets, np.array([0]), np.array([0]),
                          np.array([False]))
    for derived in (hist, sums, hist[1:], CipherVector.concat([sums, pk.encrypt([1])])):
        assert not derived.fresh
        with pytest.raises(UnsafeReply, match="re-randomised"):
            pk.to_bytes_batch(derived)
    fresh = pk.rerandomize(hist)
    assert fresh.fresh
    assert sk.decrypt(pk.from_bytes_batch(pk.to_bytes_batch(fresh))) == [4, 2, 0]
    enc = pk.encrypt([9, 8])  # fresh encryptions, and slices of them, may leave as they are
    assert enc.fresh and enc[1:].fresh
    assert sk.decrypt(pk.from_bytes_batch(pk.to_bytes_batch(enc[1:]))) == [8]


def test_packed_gradient_candidates_decode_to_the_plaintext_candidate_sums(keys):
    """The holder's whole per-node path: Enc(g * 2**w_h + h) per row, histogram, candidate
    sums, packing; the bank's unpacking gives the plaintext (G, H) of every candidate."""
    from fedcredit.protocol.secureboost.math import GradientLayout

    pk, sk = keys
    rng = np.random.default_rng(3)
    n_bins = np.array([3, 2])
    bins, sizes, offsets = random_case(rng, 24, n_bins)
    g = rng.integers(-2**24, 2**24, 24)
    h = rng.integers(0, 2**24, 24)
    layout = GradientLayout.for_rows(g, h, pk.plaintext_bits)
    hist = histogram(pk, sk, bins, sizes, offsets, layout.pack_rows(g, h), [8, 16])
    cands = SplitCandidates.for_bins(bins, n_bins)
    sums = candidate_sums(pk, hist, sizes, offsets, cands.feature, cands.bin, cands.missing_left)
    slots = layout.candidates_per_ciphertext(pk.plaintext_bits)
    packed = pk.pack_flat(sums, layout.slot_bits, slots)
    wire = pk.from_bytes_batch(pk.to_bytes_batch(packed))
    G, H = layout.unpack_candidates(sk.decrypt(wire), slots, len(cands))
    want_g, want_h = (candidate_left_sums(np.array(plain_hist(bins, sizes, offsets, w)), cands,
                                          sizes, offsets) for w in (g, h))
    assert G.tolist() == want_g.tolist() and H.tolist() == want_h.tolist()
    assert len(packed) == -(-len(cands) // slots)
