"""Every homomorphic scheme: keys, encodings, packing and batch kernels as property-based round
trips, run once per scheme of :data:`fedcredit.crypto.SCHEMES`; scheme-specific structure and
refusals (OU's range check, Paillier's phe compatibility) run for their scheme only.

Keys here are 1024-bit and made with ``insecure=True``: INSECURE, for tests only. They are
generated once per scheme for the module.
"""
from __future__ import annotations

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcredit.crypto import (
    SCHEMES,
    CipherVector,
    FixedPoint,
    SlotLayout,
    generate_keypair,
    load_private_key,
    load_public_key,
    ou,
    security_bits,
)
from fedcredit.errors import (
    InsecureParameters,
    InvalidCiphertext,
    InvalidInput,
    PackingOverflow,
    UnsafeReply,
)

KEY_BITS = 1024  # INSECURE, for tests only


def only(scheme: str):
    """Run a test for one scheme only (read by ``pytest_generate_tests`` below)."""
    def mark(fn):
        fn.schemes = (scheme,)
        return fn
    return mark


def pytest_generate_tests(metafunc):
    if "scheme" in metafunc.fixturenames:
        schemes = getattr(metafunc.function, "schemes", SCHEMES)
        metafunc.parametrize("scheme", schemes, indirect=True, scope="module")


_KEYS: dict[tuple[str, int], tuple] = {}


def _keypair(scheme: str, which: int):
    if (scheme, which) not in _KEYS:
        _KEYS[scheme, which] = generate_keypair(scheme, bits=KEY_BITS, insecure=True)
    return _KEYS[scheme, which]


@pytest.fixture(scope="module")
def scheme(request):
    return request.param


@pytest.fixture(scope="module")
def keys(scheme):
    return _keypair(scheme, 0)


@pytest.fixture(scope="module")
def other_keys(scheme):
    return _keypair(scheme, 1)


# within every scheme's plaintext range at 1024 bits (OU: 300 bits, Paillier: 1022)
ints = st.integers(min_value=-(2**250), max_value=2**250)


def test_schemes_are_registered():
    assert set(SCHEMES) >= {"paillier", "ou"}


def test_short_keys_need_the_insecure_flag(scheme):
    with pytest.raises(InsecureParameters):
        generate_keypair(scheme, bits=1024)


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(InvalidInput, match="unknown scheme"):
        generate_keypair("rot13", bits=1024, insecure=True)


def test_key_size_and_identity(keys, scheme):
    pk, sk = keys
    assert pk.scheme == scheme and pk.bits == KEY_BITS
    assert pk.ciphertext_bytes == (int(pk.cipher_modulus).bit_length() + 7) // 8
    assert pk.ciphertext_bytes == {"paillier": 2 * KEY_BITS // 8, "ou": KEY_BITS // 8}[scheme]
    assert len(pk.fingerprint) == 64
    assert pk.fingerprint == load_public_key(pk.to_bytes()).fingerprint


@settings(max_examples=25, deadline=None)
@given(st.lists(ints, min_size=1, max_size=12))
def test_encrypt_decrypt_roundtrip_private_and_public(keys, values):
    pk, sk = keys
    assert sk.decrypt(sk.encrypt(values, workers=1)) == values
    assert sk.decrypt(pk.encrypt(values)) == values
    assert sk.decrypt(pk._wrap(pk.trivial(values))) == values


def test_plaintext_range_edges(keys):
    pk, sk = keys
    edge = 2**pk.plaintext_bits - 1
    assert sk.decrypt(sk.encrypt([edge, -edge, 0], workers=1)) == [edge, -edge, 0]
    assert sk.decrypt(pk.encrypt([edge, -edge])) == [edge, -edge]


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


def test_sum_and_length_checks(keys):
    pk, sk = keys
    assert sk.decrypt(pk.sum(pk.encrypt([3, -5, 9]))) == [7]
    assert sk.decrypt(pk.sum(pk.empty())) == [0]
    with pytest.raises(InvalidInput):
        pk.add(pk.encrypt([1, 2]), pk.encrypt([1]))
    with pytest.raises(InvalidInput):
        pk.add_plain(pk.encrypt([1, 2]), [1])


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(-(2**60), 2**60), min_size=1, max_size=60), st.integers(1, 7),
       st.randoms(use_true_random=False))
def test_grouped_sum_is_the_histogram(keys, values, n_groups, rnd):
    pk, sk = keys
    groups = [rnd.randrange(n_groups) for _ in values]
    got = sk.decrypt(pk.grouped_sum(sk.encrypt(values, workers=1), groups, n_groups))
    want = [sum(v for v, g in zip(values, groups) if g == k) for k in range(n_groups)]
    assert got == want


def test_grouped_sum_refuses_bad_group_ids(keys):
    pk, _ = keys
    c = pk.encrypt([1, 2])
    with pytest.raises(InvalidInput, match="group ids"):
        pk.grouped_sum(c, [0, 3], 3)
    with pytest.raises(InvalidInput, match="group ids for"):
        pk.grouped_sum(c, [0], 3)


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
        SlotLayout.for_sums([2**100] * 12, 2**20, pk.plaintext_bits)
    slot = 100 + 20 + 2  # bits of one slot holding 2**20 terms of up to 2**100
    with pytest.raises(PackingOverflow):  # one slot more than the plaintext holds
        SlotLayout.for_sums([2**100] * (pk.plaintext_bits // slot + 1), 2**20, pk.plaintext_bits)
    layout = SlotLayout((8, 8))
    with pytest.raises(PackingOverflow):
        layout.pack([[200], [1]])
    with pytest.raises(PackingOverflow):  # a decrypted value beyond the layout
        layout.unpack([1 << 20])
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
    with pytest.raises(InvalidInput):
        pk.shift(pk.encrypt([1]), -1)


def test_rerandomize_changes_ciphertexts_not_plaintexts(keys):
    pk, sk = keys
    c = sk.encrypt([5, -6, 7], workers=1)
    r = pk.rerandomize(c)
    assert sk.decrypt(r) == [5, -6, 7]
    assert all(x != y for x, y in zip(c.values, r.values))
    zeros = pk.random_zeros(4)
    assert len(set(zeros)) == 4 and sk.decrypt(pk._wrap(zeros)) == [0] * 4


@only("ou")
def test_ou_rerandomizers_are_full_length_powers_of_h(keys):
    pk, sk = keys
    # zeros are h**R: they stay in <h>, so decryption by t still applies
    zeros = pk._random_zeros_now(3, threads=False)
    assert len(zeros) == 3 and sk.decrypt(pk._wrap(zeros)) == [0] * 3
    assert pk._zero_table.exponent_bits >= pk.zero_exponent_bits


def test_zero_pool_hands_out_valid_zeros(keys):
    pk, sk = keys
    pk.start_zero_pool(capacity=16)
    try:
        assert sk.decrypt(pk._wrap(pk.random_zeros(20))) == [0] * 20
    finally:
        pk.stop_zero_pool()


def test_only_fresh_vectors_may_be_serialized(keys):
    pk, sk = keys
    fresh = sk.encrypt([1, 2, 3], workers=1)
    assert fresh.fresh and pk.encrypt([4]).fresh and pk.empty().fresh
    assert fresh[1:].fresh and fresh[[0, 2]].fresh and fresh[1].fresh
    derived = [pk.add(fresh, fresh), pk.sub(fresh, fresh), pk.neg(fresh), pk.sum(fresh),
               pk.add_plain(fresh, [0, 0, 0]), pk.shift(fresh, 3),
               pk.grouped_sum(fresh, [0, 1, 0], 2), pk.pack([fresh, fresh], 60),
               pk.trivial_vector([1]),
               CipherVector.concat([fresh, pk.neg(fresh)])]
    for d in derived:
        assert not d.fresh
        with pytest.raises(UnsafeReply):
            pk.to_bytes_batch(d)
        assert len(pk.to_bytes_batch(pk.rerandomize(d))) == len(d) * pk.ciphertext_bytes
    assert CipherVector.concat([fresh, pk.rerandomize(pk.neg(fresh))]).fresh
    with pytest.raises(InvalidInput):
        CipherVector.concat([])


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
    with pytest.raises(InvalidCiphertext, match="under key"):
        pk.from_bytes_batch(data, fingerprint=other_keys[0].fingerprint)
    with pytest.raises(InvalidCiphertext, match=r"\[1\] is outside"):
        pk.from_bytes_batch(data[:w] + bytes(w))
    too_big = int(pk.cipher_modulus).to_bytes(w, "big")  # N itself
    with pytest.raises(InvalidCiphertext, match=r"\[0\] is outside"):
        pk.from_bytes_batch(too_big)
    shares_factor = int(sk.p * sk.q).to_bytes(w, "big")  # in range, not a unit
    with pytest.raises(InvalidCiphertext, match=r"\[2\] shares a factor"):
        pk.from_bytes_batch(data[:2 * w] + shares_factor)
    with pytest.raises(InvalidCiphertext, match="outside"):  # decrypting an invalid vector
        sk.decrypt(pk._wrap([gmpy2.mpz(0)]))


def test_mixing_keys_is_refused(keys, other_keys):
    pk, sk = keys
    c2 = other_keys[1].encrypt([1], workers=1)
    with pytest.raises(InvalidCiphertext):
        pk.add(sk.encrypt([1], workers=1), c2)
    with pytest.raises(InvalidCiphertext):
        sk.decrypt(c2)
    with pytest.raises(InvalidCiphertext):
        CipherVector.concat([pk.encrypt([1]), c2])


def test_key_serialization_and_fingerprint(keys, scheme):
    pk, sk = keys
    pk2 = load_public_key(pk.to_bytes())
    assert pk2.fingerprint == pk.fingerprint and pk2.scheme == scheme
    sk2 = load_private_key(sk.to_bytes())
    assert sk2.decrypt(pk2.encrypt([-9, 9])) == [-9, 9]
    assert sk.decrypt(sk2.encrypt([4], workers=1)) == [4]
    assert "fingerprint" in repr(pk) and str(int(pk.n)) not in repr(pk)
    assert str(int(sk.p)) not in repr(sk)
    one = pk.encrypt([1])
    assert str(int(one.values[0])) not in repr(one)  # vectors never print ciphertexts
    with pytest.raises(InvalidInput):
        load_public_key(b"not a key")
    with pytest.raises(InvalidInput):
        load_public_key(f'{{"scheme": "{scheme}", "n": "zz"}}'.encode())
    with pytest.raises(InvalidInput, match="no known scheme"):
        load_private_key(b'{"scheme": "rot13"}')


def test_parallel_workers_agree_with_local(keys):
    pk, sk = keys
    values = list(range(-600, 600))  # above PARALLEL_THRESHOLD: the worker processes run
    assert len(values) >= sk.PARALLEL_THRESHOLD
    sk.warm_up(2)
    c = sk.encrypt(values, workers=2)
    assert sk.decrypt(c, workers=2) == values
    chunks = list(sk.encrypt_bytes_iter(values, chunk=300, workers=2))
    assert len(chunks) == 4
    assert sk.decrypt(pk.from_bytes_batch(b"".join(chunks)), workers=1) == values


# -- Paillier only ----------------------------------------------------------------------------
@only("paillier")
def test_phe_interoperability(keys):
    from phe import EncryptedNumber

    pk, sk = keys
    phe_pk, phe_sk = pk.to_phe(), sk.to_phe()
    c = sk.encrypt([12345], workers=1).values[0]
    assert phe_sk.decrypt(EncryptedNumber(phe_pk, int(c))) == 12345
    assert pk.n == phe_pk.n


@only("paillier")
def test_full_random_obfuscator_mode(scheme):
    pk, sk = generate_keypair(scheme, bits=512, insecure=True, obfuscator="full")
    assert sk.decrypt(sk.encrypt([4, -4], workers=1)) == [4, -4]
    assert sk.decrypt(pk.encrypt([4, -4])) == [4, -4]


# -- Okamoto–Uchiyama only --------------------------------------------------------------------
@only("ou")
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


@only("ou")
def test_key_owner_crt_encryption_is_g_to_the_m_times_h_to_the_r(keys):
    """With randomiser (h**a mod p**2, h**b mod q) the key owner's ciphertext is g**m * h**R
    for the R with R = a - beta*m mod t and R = b - gamma*m mod s (the module docstring)."""
    pk, sk = keys
    p2, q, t, s, n = sk.p * sk.p, sk.q, sk.t, sk.s, pk.n
    exps = [(3, 5), (2**150 + 12345, 2**200 + 7), (0, 0), (t - 1, 1)]
    rand = ([gmpy2.powmod(pk.h, a, p2) for a, _ in exps],
            [gmpy2.powmod(pk.h, b, q) for _, b in exps])
    ms = [7, -(2**200), 0, 2**100 + 1]
    got = sk._encrypt_local(ms, rand)
    want = []
    for m, (a, b) in zip(ms, exps):
        ra, rb = (a - sk.beta * m) % t, (b - sk.gamma * m) % s
        r = ra + t * ((rb - ra) * gmpy2.invert(t, s) % s)  # CRT: R mod t*s
        want.append(gmpy2.powmod(pk.g, m, n) * gmpy2.powmod(pk.h, r, n) % n)
    assert got == want
    assert sk.decrypt(pk._wrap(got), workers=1) == ms


@only("ou")
def test_key_owner_randomisers_lie_in_h_and_survive_serialization(keys):
    _, sk = keys
    a, b = sk._randomisers_local(50)
    assert all(gmpy2.powmod(x, sk.t, sk.p * sk.p) == 1 for x in a)
    assert all(gmpy2.powmod(y, sk.s, sk.q) == 1 for y in b)
    assert len(set(a)) == len(set(b)) == 50
    assert sk._randomisers_from_bytes(sk._randomisers_to_bytes((a, b))) == (a, b)
    with pytest.raises(InvalidInput, match="not a multiple"):
        sk._randomisers_from_bytes(sk._randomisers_to_bytes((a, b))[:-1])


@only("ou")
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


@only("ou")
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


@only("ou")
@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=0, max_value=2**1200))
def test_random_huge_plaintexts_do_not_decrypt(keys, extra):
    pk, sk = keys
    big = pk.n // 3 + extra  # far beyond p; accepted only with probability ~2**-40
    with pytest.raises(InvalidCiphertext, match="outside"):
        sk.decrypt(pk._wrap(pk.trivial([big])))


@only("ou")
def test_parallel_decryption_names_the_refused_ciphertext(keys):
    pk, sk = keys
    c = sk.encrypt(list(range(200)), workers=1)
    bad = pk._wrap(c.values[:100] + [pk.trivial([2**pk.plaintext_bits])[0]] + c.values[:10])
    with pytest.raises(InvalidCiphertext, match=r"ciphertext 100 decrypts outside"):
        sk.decrypt(bad, workers=2)


def test_weighted_sums_are_signed_dot_products_of_the_plaintexts():
    import numpy as np

    from fedcredit.crypto import generate_keypair
    from fedcredit.errors import InvalidInput

    pk, sk = generate_keypair("paillier", bits=1024, insecure=True)
    x = [3, -7, 11, 0, 5, 1 << 70]
    w = np.array([[1, -2, 0], [4, 0, 0], [-3, 5, 0], [9, 9, 0], [2**40, -1, 0], [-1, 1, 0]])
    got = sk.decrypt(pk.weighted_sums(pk.encrypt(x), w))
    assert got == [sum(a * int(b) for a, b in zip(x, w[:, j])) for j in range(3)]
    with pytest.raises(InvalidInput, match="integer matrix"):
        pk.weighted_sums(pk.encrypt(x), w[:3])
    with pytest.raises(InvalidInput, match="2\\*\\*62"):
        pk.weighted_sums(pk.encrypt(x[:1]), np.array([[1 << 62]]))
