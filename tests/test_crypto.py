"""Paillier keys, encodings, packing and batch kernels: property-based round trips.

Keys here are 1024-bit and made with ``insecure=True``: insecure-for-tests, fast to use.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcredit.crypto import (FixedPoint, SlotLayout, generate_keypair, load_private_key,
                              load_public_key)
from fedcredit.errors import (InsecureParameters, InvalidCiphertext, InvalidInput,
                              PackingOverflow)

KEY_BITS = 1024  # insecure, for tests only


@pytest.fixture(scope="module")
def keys():
    return generate_keypair("paillier", bits=KEY_BITS, insecure=True)


@pytest.fixture(scope="module")
def other_keys():
    return generate_keypair("paillier", bits=KEY_BITS, insecure=True)


ints = st.integers(min_value=-(2**300), max_value=2**300)


def test_short_keys_need_the_insecure_flag():
    with pytest.raises(InsecureParameters):
        generate_keypair("paillier", bits=1024)


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(InvalidInput, match="unknown scheme"):
        generate_keypair("rot13", bits=1024, insecure=True)


@settings(max_examples=25, deadline=None)
@given(st.lists(ints, min_size=1, max_size=12))
def test_encrypt_decrypt_roundtrip_private_and_public(keys, values):
    pk, sk = keys
    assert sk.decrypt(sk.encrypt(values, workers=1)) == values
    assert sk.decrypt(pk.encrypt(values)) == values


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(ints, ints), min_size=1, max_size=10))
def test_add_sub_neg(keys, pairs):
    pk, sk = keys
    a = sk.encrypt([x for x, _ in pairs], workers=1)
    b = pk.encrypt([y for _, y in pairs])
    assert sk.decrypt(pk.add(a, b)) == [x + y for x, y in pairs]
    assert sk.decrypt(pk.sub(a, b)) == [x - y for x, y in pairs]
    assert sk.decrypt(pk.neg(a)) == [-x for x, _ in pairs]
    assert sk.decrypt(pk.add_plain(a, [y for _, y in pairs])) == [x + y for x, y in pairs]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(-(2**60), 2**60), min_size=1, max_size=60), st.integers(1, 7),
       st.randoms(use_true_random=False))
def test_grouped_sum_is_the_histogram(keys, values, n_groups, rnd):
    pk, sk = keys
    groups = [rnd.randrange(n_groups) for _ in values]
    got = sk.decrypt(pk.grouped_sum(sk.encrypt(values, workers=1), groups, n_groups))
    want = [sum(v for v, g in zip(values, groups) if g == k) for k in range(n_groups)]
    assert got == want


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=30),
       st.integers(0, 40))
def test_fixed_point_roundtrip(values, frac_bits):
    fp = FixedPoint(frac_bits)
    decoded = fp.decode(fp.encode(values))
    assert np.allclose(decoded, values, atol=2.0 ** -frac_bits, rtol=0)


def test_fixed_point_refuses_nan_and_huge():
    with pytest.raises(InvalidInput, match="NaN"):
        FixedPoint(20).encode([1.0, float("nan")])
    with pytest.raises(PackingOverflow):
        FixedPoint(40).encode([1e10])


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_packing_sums_are_exact_including_negatives(keys, data):
    pk, sk = keys
    n_slots = data.draw(st.integers(1, 5))
    bound = data.draw(st.integers(1, 2**40))
    terms = data.draw(st.integers(1, 20))
    layout = SlotLayout.for_sums([bound] * n_slots, terms, pk.plaintext_bits)
    rows = data.draw(st.lists(st.lists(st.integers(-bound, bound), min_size=n_slots,
                                       max_size=n_slots), min_size=terms, max_size=terms))
    cols = [[r[j] for r in rows] for j in range(n_slots)]
    packed = layout.pack(cols)
    total = pk.sum(sk.encrypt(packed, workers=1))
    got = layout.unpack(sk.decrypt(total))
    assert [c[0] for c in got] == [sum(c) for c in cols]


def test_packing_overflow_is_an_error_never_a_wrap(keys):
    pk, _ = keys
    with pytest.raises(PackingOverflow):
        SlotLayout.for_sums([2**100] * 12, 2**20, pk.plaintext_bits)
    layout = SlotLayout((8, 8))
    with pytest.raises(PackingOverflow):
        layout.pack([[200], [1]])
    with pytest.raises(PackingOverflow):  # a decrypted value beyond the layout
        layout.unpack([1 << 20])


@settings(max_examples=10, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2**50), 2**50), st.integers(0, 2**50)), min_size=1,
                max_size=8))
def test_ciphertext_horner_packing(keys, pairs):
    pk, sk = keys
    width = 53
    cols = [sk.encrypt([p[j] for p in pairs], workers=1) for j in range(2)]
    packed = pk.pack(cols, width)
    got = SlotLayout((width, width)).unpack(sk.decrypt(packed))
    assert got == [[p[0] for p in pairs], [p[1] for p in pairs]]


def test_shift_multiplies_by_a_power_of_two(keys):
    pk, sk = keys
    assert sk.decrypt(pk.shift(pk.encrypt([3, -7]), 100)) == [3 << 100, -7 << 100]


def test_rerandomize_changes_ciphertexts_not_plaintexts(keys):
    pk, sk = keys
    c = sk.encrypt([5, -6, 7], workers=1)
    r = pk.rerandomize(c)
    assert sk.decrypt(r) == [5, -6, 7]
    assert all(x != y for x, y in zip(c.values, r.values))


def test_serialization_roundtrip_and_validation(keys, other_keys):
    pk, sk = keys
    c = sk.encrypt([1, 2, 3], workers=1)
    data = pk.to_bytes_batch(c)
    assert len(data) == 3 * pk.ciphertext_bytes
    assert sk.decrypt(pk.from_bytes_batch(data, count=3, fingerprint=pk.fingerprint)) == [1, 2, 3]
    w = pk.ciphertext_bytes
    with pytest.raises(InvalidCiphertext, match="multiple"):
        pk.from_bytes_batch(data[:-1])
    with pytest.raises(InvalidCiphertext, match="expected 4"):
        pk.from_bytes_batch(data, count=4)
    with pytest.raises(InvalidCiphertext, match="another key|under key"):
        pk.from_bytes_batch(data, fingerprint=other_keys[0].fingerprint)
    zero = bytes(w)
    with pytest.raises(InvalidCiphertext, match=r"\[1\] is outside"):
        pk.from_bytes_batch(data[:w] + zero)
    too_big = int(pk.cipher_modulus).to_bytes(w, "big")
    with pytest.raises(InvalidCiphertext, match="outside"):
        pk.from_bytes_batch(too_big)
    shares_factor = int(pk.n).to_bytes(w, "big")  # n itself: in range, not a unit
    with pytest.raises(InvalidCiphertext, match=r"\[2\] shares a factor"):
        pk.from_bytes_batch(data[:2 * w] + shares_factor)


def test_mixing_keys_is_refused(keys, other_keys):
    pk, sk = keys
    c2 = other_keys[1].encrypt([1], workers=1)
    with pytest.raises(InvalidCiphertext):
        pk.add(sk.encrypt([1], workers=1), c2)


def test_key_serialization_and_fingerprint(keys):
    pk, sk = keys
    pk2 = load_public_key(pk.to_bytes())
    assert pk2.fingerprint == pk.fingerprint
    sk2 = load_private_key(sk.to_bytes())
    assert sk2.decrypt(pk2.encrypt([-9, 9])) == [-9, 9]
    assert "fingerprint" in repr(pk) and str(int(pk.n)) not in repr(pk)
    with pytest.raises(InvalidInput):
        load_public_key(b"not a key")
    with pytest.raises(InvalidInput):
        load_public_key(b'{"scheme": "paillier", "n": "zz"}')


def test_phe_interoperability(keys):
    from phe import EncryptedNumber

    pk, sk = keys
    phe_pk, phe_sk = pk.to_phe(), sk.to_phe()
    c = sk.encrypt([12345], workers=1).values[0]
    assert phe_sk.decrypt(EncryptedNumber(phe_pk, int(c))) == 12345


def test_full_random_obfuscator_mode():
    pk, sk = generate_keypair("paillier", bits=512, insecure=True, obfuscator="full")
    assert sk.decrypt(sk.encrypt([4, -4], workers=1)) == [4, -4]
    assert sk.decrypt(pk.encrypt([4, -4])) == [4, -4]


def test_parallel_workers_agree_with_local(keys):
    pk, sk = keys
    values = list(range(-1500, 1500))
    c = sk.encrypt(values, workers=2)
    assert sk.decrypt(c, workers=2) == values
    chunks = list(sk.encrypt_bytes_iter(values, chunk=700, workers=2))
    assert len(chunks) == 5
    assert sk.decrypt(pk.from_bytes_batch(b"".join(chunks)), workers=1) == values
