"""Okamoto–Uchiyama keys and kernels: property-based round trips, structure, refusals.

Keys here are 1024-bit and made with ``insecure=True``: insecure-for-tests, fast to use.
"""
from __future__ import annotations

import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcredit.crypto import (SlotLayout, generate_keypair, load_private_key, load_public_key,
                              security_bits)
from fedcredit.crypto import ou
from fedcredit.errors import (InsecureParameters, InvalidCiphertext, InvalidInput,
                              PackingOverflow)

KEY_BITS = 1024  # insecure, for tests only


@pytest.fixture(scope="module")
def keys():
    return generate_keypair("ou", bits=KEY_BITS, insecure=True)


@pytest.fixture(scope="module")
def other_keys():
    return generate_keypair("ou", bits=KEY_BITS, insecure=True)


ints = st.integers(min_value=-(2**250), max_value=2**250)


def test_short_keys_need_the_insecure_flag():
    with pytest.raises(InsecureParameters):
        generate_keypair("ou", bits=1024)


def test_key_structure(keys):
    pk, sk = keys
    p, q, t, s = sk.p, sk.q, sk.t, sk.s
    kappa = security_bits(KEY_BITS)
    assert pk.n == p * p * q and pk.bits == KEY_BITS
    assert (p - 1) % t == 0 and (q - 1) % s == 0
    assert t.bit_length() == s.bit_length() == ou.order_bits(KEY_BITS)
    assert pk.plaintext_bits == -(-KEY_BITS // 3) - 2 - ou.RANGE_MARGIN_BITS
    assert 2 ** (pk.plaintext_bits + ou.RANGE_MARGIN_BITS) < p // 2  # always decodes
    assert pk.exponent_bits == 2 * kappa and pk.zero_exponent_bits == KEY_BITS + kappa
    p2 = p * p
    # h: order t mod p**2, order s mod q; g: order p*t mod p**2
    assert gmpy2.powmod(pk.h, t, p2) == 1 and pk.h % p != 1
    assert gmpy2.powmod(pk.h, s, q) == 1 and pk.h % q != 1
    assert gmpy2.powmod(pk.g, t, p2) % p == 1 and gmpy2.powmod(pk.g, t, p2) != 1
    assert gmpy2.powmod(pk.g, p * t, p2) == 1 and gmpy2.powmod(pk.g, s, q) == 1


def test_key_owner_crt_encryption_is_g_to_the_m_times_h_to_the_r(keys, monkeypatch):
    pk, sk = keys
    rs = [gmpy2.mpz(3), gmpy2.mpz(2**150 + 12345), gmpy2.mpz(0)]
    monkeypatch.setattr(ou, "_random_exponents", lambda count, nbits: rs[:count])
    ms = [7, -(2**200), 0]
    got = sk.encrypt(ms, workers=1).values
    n = pk.n
    want = [gmpy2.powmod(pk.g, m, n) * gmpy2.powmod(pk.h, r, n) % n for m, r in zip(ms, rs)]
    assert got == want


@settings(max_examples=25, deadline=None)
@given(st.lists(ints, min_size=1, max_size=12))
def test_encrypt_decrypt_roundtrip_private_and_public(keys, values):
    pk, sk = keys
    assert sk.decrypt(sk.encrypt(values, workers=1)) == values
    assert sk.decrypt(pk.encrypt(values)) == values
    assert sk.decrypt(pk._wrap(pk.trivial(values))) == values


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
    total = pk.sum(sk.encrypt(layout.pack(cols), workers=1))
    got = layout.unpack(sk.decrypt(total))
    assert [c[0] for c in got] == [sum(c) for c in cols]


def test_full_capacity_packing_decodes_at_the_extremes(keys):
    pk, sk = keys
    width = 50
    k = SlotLayout.slots_per_plaintext(width, pk.plaintext_bits)
    layout = SlotLayout.repeat(width, k)
    lo, hi = -(2 ** (width - 1)) + 1, 2 ** (width - 1) - 1
    for value in (lo, hi):
        packed = layout.pack([[value]] * k)
        assert layout.unpack(sk.decrypt(sk.encrypt(packed, workers=1))) == [[value]] * k


def test_overflow_is_an_error_never_a_wrap(keys):
    pk, sk = keys
    with pytest.raises(PackingOverflow):
        SlotLayout.for_sums([2**100] * 3, 2**20, pk.plaintext_bits)
    with pytest.raises(PackingOverflow):
        sk.encrypt([2**pk.plaintext_bits], workers=1)
    with pytest.raises(PackingOverflow):
        pk.encrypt([-(2**pk.plaintext_bits)])
    c = pk.encrypt([1, 2])
    with pytest.raises(InvalidInput, match="exceed"):
        pk.pack([c] * 3, pk.plaintext_bits // 2)


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
    # zeros are h**R: they stay in <h>, so decryption by t still applies
    zeros = pk.random_zeros(4)
    assert len(set(zeros)) == 4 and sk.decrypt(pk._wrap(zeros)) == [0] * 4
    assert pk._random_zeros_now(3, threads=False) and pk._zero_table.exponent_bits >= \
        pk.zero_exponent_bits


def test_zero_pool_hands_out_valid_zeros(keys):
    pk, sk = keys
    pk.start_zero_pool(capacity=16)
    try:
        assert sk.decrypt(pk._wrap(pk.random_zeros(20))) == [0] * 20
    finally:
        pk.stop_zero_pool()


def test_serialization_roundtrip_and_validation(keys, other_keys):
    pk, sk = keys
    c = sk.encrypt([1, 2, 3], workers=1)
    data = pk.to_bytes_batch(c)
    assert len(data) == 3 * pk.ciphertext_bytes == 3 * KEY_BITS // 8
    assert sk.decrypt(pk.from_bytes_batch(data, count=3, fingerprint=pk.fingerprint)) == [1, 2, 3]
    w = pk.ciphertext_bytes
    with pytest.raises(InvalidCiphertext, match="multiple"):
        pk.from_bytes_batch(data[:-1])
    with pytest.raises(InvalidCiphertext, match="expected 4"):
        pk.from_bytes_batch(data, count=4)
    with pytest.raises(InvalidCiphertext, match="under key"):
        pk.from_bytes_batch(data, fingerprint=other_keys[0].fingerprint)
    with pytest.raises(InvalidCiphertext, match=r"\[1\] is outside"):
        pk.from_bytes_batch(data[:w] + bytes(w))
    too_big = int(pk.n).to_bytes(w, "big")
    with pytest.raises(InvalidCiphertext, match=r"\[0\] is outside"):
        pk.from_bytes_batch(too_big)
    shares_factor = int(sk.p * sk.q).to_bytes(w, "big")  # in range, not a unit
    with pytest.raises(InvalidCiphertext, match=r"\[2\] shares a factor"):
        pk.from_bytes_batch(data[:2 * w] + shares_factor)


def test_mixing_keys_is_refused(keys, other_keys):
    pk, sk = keys
    with pytest.raises(InvalidCiphertext):
        pk.add(sk.encrypt([1], workers=1), other_keys[1].encrypt([1], workers=1))


def test_key_serialization_and_fingerprint(keys):
    pk, sk = keys
    pk2 = load_public_key(pk.to_bytes())
    assert pk2.fingerprint == pk.fingerprint and pk2.scheme == "ou"
    sk2 = load_private_key(sk.to_bytes())
    assert sk2.decrypt(pk2.encrypt([-9, 9])) == [-9, 9]
    assert sk.decrypt(sk2.encrypt([4], workers=1)) == [4]
    assert "fingerprint" in repr(pk) and str(int(pk.n)) not in repr(pk)
    assert str(int(sk.p)) not in repr(sk)
    with pytest.raises(InvalidInput):
        load_public_key(b'{"scheme": "ou", "n": "zz"}')


def test_malformed_keys_are_refused(keys):
    pk, sk = keys
    n, g, h, eb = pk.n, pk.g, pk.h, pk.exponent_bits
    with pytest.raises(InvalidInput, match="below twice"):
        ou.OUPublicKey(n, g, h, 110)  # HEU's r < 2**110
    with pytest.raises(InvalidInput, match="g is not"):
        ou.OUPublicKey(n, 1 + sk.p * sk.q, h, eb)  # g = 1 mod p*q would give away p*q
    with pytest.raises(InvalidInput, match="h is not"):
        ou.OUPublicKey(n, g, sk.p, eb)
    with pytest.raises(InvalidInput, match="structure"):
        ou.OUPrivateKey(sk.p, sk.q, sk.s, sk.t, h, sk.alpha, sk.beta, sk.gamma, eb)
    with pytest.raises(InvalidInput, match="order"):
        ou.OUPrivateKey(sk.p, sk.q, sk.t, sk.s, g, sk.alpha, sk.beta, sk.gamma, eb)


def test_out_of_range_decryption_is_refused(keys):
    pk, sk = keys
    limit = 2**pk.plaintext_bits
    # g**M for M just outside the range, and for M >= p: the decryption would be M mod p,
    # and gcd(M - (M mod p), n) is p. The index of the culprit is named, never the value.
    for bad in (limit, -limit, limit * 2**30, pk.n // 7, sk.p * 2**20 + 2**(sk.p.bit_length())):
        c = pk._wrap([pk.trivial([1])[0], pk.trivial([bad])[0]])
        with pytest.raises(InvalidCiphertext, match=r"ciphertext 1 decrypts outside") as e:
            sk.decrypt(c)
        assert str(bad) not in str(e.value)
    # a unit outside <g, h> (its mod-p**2 part not in the order-t subgroup) is refused too
    with pytest.raises(InvalidCiphertext, match=r"ciphertext 0 is not an encryption"):
        sk.decrypt(pk._wrap([pk.n - 2]))


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=0, max_value=2**1200))
def test_random_huge_plaintexts_do_not_decrypt(keys, extra):
    pk, sk = keys
    big = pk.n // 3 + extra  # far beyond p; accepted only with probability ~2**-40
    with pytest.raises(InvalidCiphertext, match="outside"):
        sk.decrypt(pk._wrap(pk.trivial([big])))


def test_parallel_workers_agree_with_local(keys):
    pk, sk = keys
    values = list(range(-1500, 1500))
    sk.warm_up(2)
    c = sk.encrypt(values, workers=2)
    assert sk.decrypt(c, workers=2) == values
    chunks = list(sk.encrypt_bytes_iter(values, chunk=700, workers=2))
    assert len(chunks) == 5
    assert sk.decrypt(pk.from_bytes_batch(b"".join(chunks)), workers=1) == values
    bad = pk._wrap(c.values[:100] + [pk.trivial([2**pk.plaintext_bits])[0]] + c.values[:10])
    with pytest.raises(InvalidCiphertext, match=r"ciphertext 100 decrypts outside"):
        sk.decrypt(bad, workers=2)
