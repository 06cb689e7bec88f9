"""ECDH-PSI over ristretto255: intersections, ordering, validation of received points, salts.

Both parties run in this process, message by message, the way the protocol layer drives
them. Sizes stay in the hundreds (one libsodium multiplication is ~60 us). The default
group, X25519, has its own file (``test_psi_x25519.py``) for what differs.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcredit.errors import InvalidInput, ProtocolError, ResourceLimit
from fedcredit.psi import (DOMAIN, MAX_CHUNK_POINTS, POINT_BYTES, PsiBank, PsiHolder,
                           count_points, hash_prefix, join_points, new_salt, split_points)
from fedcredit.psi import _sodium, group
from fedcredit.psi.ecdh import PsiResult

R = "ristretto255"  # this file's group


def uscc(i: int, kind: str = "91") -> str:
    return f"{kind}{330100 + i % 97:06d}{i:010d}"


def run_psi(bank_ids, holder_ids, salt=None, holder_salt=None, workers=1):
    """The three steps; returns (bank, holder, result)."""
    salt = salt or new_salt()
    bank = PsiBank(salt, workers=workers, group=R)
    holder = PsiHolder(holder_salt or salt, holder_ids, workers=workers, group=R)
    msg1 = bank.blind(bank_ids)
    result = bank.intersect(holder.double_blind(msg1), holder.shuffled_points())
    return bank, holder, result


def a_point(seed: bytes = b"p") -> bytes:
    return _sodium.from_hash(hashlib.sha512(seed).digest())


# ------------------------------------------------------------------ the intersection


def test_overlapping_sets_intersect_exactly():
    bank_ids = [uscc(i) for i in range(0, 300)]
    holder_ids = [uscc(i) for i in range(200, 450)]
    _, holder, result = run_psi(bank_ids, holder_ids)
    assert result.ids == bank_ids[200:300]  # bank's own order
    assert result.bank_positions == list(range(200, 300))
    assert (result.bank_size, result.holder_size) == (300, 250)
    assert holder.resolve(result.holder_positions) == result.ids


def test_empty_intersection():
    _, holder, result = run_psi([uscc(i) for i in range(50)],
                                [uscc(i, "92") for i in range(60)])
    assert len(result) == 0 and result.ids == [] and result.holder_positions == []
    assert result.holder_positions_for([]) == []
    assert holder.resolve([]) == []


def test_empty_inputs_are_allowed():
    _, holder, result = run_psi([], [uscc(1)])
    assert len(result) == 0 and result.holder_size == 1
    _, holder, result = run_psi([uscc(1)], [])
    assert len(result) == 0 and result.holder_size == 0


def test_identical_sets():
    ids = [uscc(i) for i in range(40)]
    _, holder, result = run_psi(ids, list(reversed(ids)))
    assert result.ids == ids
    assert holder.resolve(result.holder_positions) == ids


def test_unicode_ids_match_exactly():
    shared = ["企业甲-统一社会信用代码", "Ünïcödé GmbH", "🏦 bank-customer", "ñ"]
    bank_ids = shared + ["只在银行"]
    holder_ids = ["只在平台"] + shared[::-1]
    _, holder, result = run_psi(bank_ids, holder_ids)
    assert result.ids == shared
    assert holder.resolve(result.holder_positions) == shared


def test_ids_are_compared_without_unicode_normalisation():
    nfc, nfd = "\u00e9", "e\u0301"  # the same "é", two encodings
    _, _, result = run_psi([nfc], [nfd])
    assert len(result) == 0  # documented: normalise on both sides before calling


@settings(max_examples=15, deadline=None)
@given(st.sets(st.integers(0, 60), max_size=25), st.sets(st.integers(0, 60), max_size=25))
def test_matches_plain_set_intersection(bank_set, holder_set):
    bank_ids = [uscc(i) for i in sorted(bank_set)]
    holder_ids = [uscc(i) for i in sorted(holder_set, reverse=True)]
    _, holder, result = run_psi(bank_ids, holder_ids)
    assert result.ids == [x for x in bank_ids if x in set(holder_ids)]
    assert holder.resolve(result.holder_positions) == result.ids


# ------------------------------------------------------------------ ids in


@pytest.mark.parametrize("make", [
    lambda salt, ids: PsiBank(salt, workers=1, group=R).blind(ids),
    lambda salt, ids: PsiHolder(salt, ids, workers=1, group=R),
], ids=["bank", "holder"])
def test_duplicate_ids_are_rejected_by_position_not_value(make):
    ids = [uscc(1), uscc(2), uscc(3), uscc(2)]
    with pytest.raises(InvalidInput, match=r"ids\[3\] repeats ids\[1\]") as err:
        make(new_salt(), ids)
    assert uscc(2) not in str(err.value)


@pytest.mark.parametrize("ids, message", [
    ([uscc(1), 12345], r"ids\[1\] is a int"),
    ([uscc(1), b"91bytes"], r"ids\[1\] is a bytes"),
    (["", uscc(1)], r"ids\[0\] is an empty string"),
    ([uscc(1), "bad\ud800"], r"ids\[1\] is not valid Unicode"),
    ("91330100MA00000001", "not a single str"),
    (None, "sequence of strings"),
])
def test_malformed_ids_are_rejected(ids, message):
    with pytest.raises(InvalidInput, match=message):
        PsiBank(new_salt(), workers=1, group=R).blind(ids)
    with pytest.raises(InvalidInput, match=message):
        PsiHolder(new_salt(), ids, workers=1, group=R)


def test_ids_may_come_from_a_generator():
    bank_ids = (uscc(i) for i in range(10))
    _, _, result = run_psi(bank_ids, [uscc(3), uscc(5)])
    assert result.ids == [uscc(3), uscc(5)]


@pytest.mark.parametrize("salt", [b"short", "a string salt of enough length", b"x" * 256, None])
def test_bad_salts_are_rejected(salt):
    with pytest.raises(InvalidInput, match="salt"):
        PsiBank(salt, group=R)


def test_bad_workers_are_rejected():
    with pytest.raises(InvalidInput, match="workers"):
        PsiBank(new_salt(), workers="all")


# ------------------------------------------------------------------ order


def test_bank_chooses_the_training_order():
    bank_ids = [uscc(i) for i in range(30)]
    holder_ids = [uscc(i) for i in range(10, 60)]
    _, holder, result = run_psi(bank_ids, holder_ids)
    training = sorted(result.ids, key=lambda x: hashlib.sha256(x.encode()).digest())
    assert holder.resolve(result.holder_positions_for(training)) == training
    subset = training[::3]  # a subset is allowed: the holder learns only those
    assert holder.resolve(result.holder_positions_for(subset)) == subset


def test_training_order_must_use_intersection_ids_once():
    _, _, result = run_psi([uscc(1), uscc(2), uscc(3)], [uscc(1), uscc(2)])
    with pytest.raises(InvalidInput, match=r"ids\[1\] is not in the intersection") as err:
        result.holder_positions_for([uscc(1), uscc(3)])
    assert uscc(3) not in str(err.value)
    with pytest.raises(InvalidInput, match=r"ids\[2\] appears twice"):
        result.holder_positions_for([uscc(1), uscc(2), uscc(1)])
    with pytest.raises(InvalidInput, match="single string"):
        result.holder_positions_for(uscc(1))


def test_holder_order_is_a_secret_shuffle_not_its_input_order():
    ids = [uscc(i) for i in range(200)]
    _, holder, result = run_psi(ids, ids)
    positions = result.holder_positions  # holder position of holder input i
    assert sorted(positions) == list(range(200))  # a permutation...
    assert positions != list(range(200))  # ...that is not the input order
    assert holder.resolve(positions) == ids
    # the points themselves: the same set as blinding in input order, in another order
    in_input_order = group.hash_and_blind(group.encode_ids(ids)[1], holder._prefix,
                                         holder._scalar, group=R)
    shuffled = holder.shuffled_points()
    assert shuffled != in_input_order
    assert set(split32(shuffled)) == set(split32(in_input_order))
    _, _, again = run_psi(ids, ids)
    assert again.holder_positions != positions  # and a new shuffle every session


def split32(data: bytes) -> list[bytes]:
    return [data[i:i + 32] for i in range(0, len(data), 32)]


def test_shuffled_points_are_stable_within_a_session():
    holder = PsiHolder(new_salt(), [uscc(i) for i in range(20)], workers=1, group=R)
    first = holder.shuffled_points()
    assert holder.shuffled_points() == first and count_points(first) == 20


def test_resolve_validates_positions():
    holder = PsiHolder(new_salt(), [uscc(i) for i in range(5)], workers=1, group=R)
    with pytest.raises(ProtocolError, match="shuffled_points"):
        holder.resolve([0])
    holder.shuffled_points()
    with pytest.raises(InvalidInput, match=r"positions\[1\] = 5 is outside 0..4"):
        holder.resolve([0, 5])
    with pytest.raises(InvalidInput, match=r"positions\[0\] = -1 is outside"):
        holder.resolve([-1])
    with pytest.raises(InvalidInput, match=r"positions\[2\] = 3 appears twice"):
        holder.resolve([3, 1, 3])
    with pytest.raises(InvalidInput, match=r"positions\[0\] is a bool"):
        holder.resolve([True])
    with pytest.raises(InvalidInput, match=r"positions\[1\] is a float"):
        holder.resolve([0, 1.0])
    with pytest.raises(InvalidInput, match="sequence of integers"):
        holder.resolve(b"\x00\x01")
    assert len(holder.resolve(np.array([4, 0], dtype=np.int64))) == 2


# ------------------------------------------------------------------ received points


def test_holder_rejects_a_point_cut_short():
    holder = PsiHolder(new_salt(), [uscc(1)], workers=1, group=R)
    with pytest.raises(InvalidInput, match=r"33 bytes .*point 1 is cut short"):
        holder.double_blind(a_point() + b"\x01")


def test_holder_rejects_an_invalid_encoding_naming_its_position():
    holder = PsiHolder(new_salt(), [uscc(1)], workers=1, group=R)
    good = a_point()
    with pytest.raises(InvalidInput, match="bank point 2 is not a valid ristretto255 encoding"):
        holder.double_blind(good + good + b"\xff" * 32 + good)
    negative = bytes([good[0] ^ 1]) + good[1:]  # canonical s is even: flip the low bit
    with pytest.raises(InvalidInput, match="bank point 0 is not a valid"):
        holder.double_blind(negative)  # the other "sign" of s is never canonical
    with pytest.raises(InvalidInput, match="bank point 12 is not a valid"):
        holder.double_blind(b"\xff" * 32, offset=12)  # a later chunk of a stream


def test_holder_rejects_the_identity():
    holder = PsiHolder(new_salt(), [uscc(1)], workers=1, group=R)
    with pytest.raises(InvalidInput, match="bank point 1 is the identity element"):
        holder.double_blind(a_point() + bytes(32))


def test_holder_rejects_non_bytes():
    holder = PsiHolder(new_salt(), [uscc(1)], workers=1, group=R)
    with pytest.raises(InvalidInput, match="must be bytes"):
        holder.double_blind([a_point()])
    with pytest.raises(InvalidInput, match="offset"):
        holder.double_blind(a_point(), offset=-1)


def test_bank_validates_the_holder_answer():
    salt = new_salt()
    bank = PsiBank(salt, workers=1, group=R)
    holder = PsiHolder(salt, [uscc(1), uscc(2)], workers=1, group=R)
    with pytest.raises(ProtocolError, match="blind"):
        bank.intersect(b"", holder.shuffled_points())
    msg2 = holder.double_blind(bank.blind([uscc(1), uscc(3)]))
    points = holder.shuffled_points()
    with pytest.raises(InvalidInput, match="1 double-blinded points for 2 bank ids"):
        bank.intersect(msg2[:32], points)
    with pytest.raises(InvalidInput, match="holder point 1 is the identity"):
        bank.intersect(msg2, points[:32] + bytes(32))
    with pytest.raises(InvalidInput, match="holder point 1 repeats holder point 0"):
        bank.intersect(msg2, points[:32] * 2)
    with pytest.raises(InvalidInput, match="same element"):
        bank.intersect(msg2[:32] * 2, points)
    assert bank.intersect(msg2, points).ids == [uscc(1)]
    # garbage where a double-blinded point should be matches nothing
    assert bank.intersect(b"\xff" * 32 + msg2[32:], points).ids == []


# ------------------------------------------------------------------ salts and unlinkability


def test_different_salts_do_not_match():
    ids = [uscc(i) for i in range(20)]
    _, _, result = run_psi(ids, ids, salt=new_salt(), holder_salt=new_salt())
    assert len(result) == 0


def test_sessions_are_unlinkable():
    ids = [uscc(i) for i in range(10)]
    salt = new_salt()
    same_salt = {PsiBank(salt, workers=1, group=R).blind(ids) for _ in range(2)}
    assert len(same_salt) == 2  # fresh scalar per session


def test_hash_input_is_domain_length_salt_id():
    salt = b"s" * 16
    assert hash_prefix(salt) == DOMAIN + b"\x10" + salt
    assert hash_prefix(b"a" * 17) != hash_prefix(b"a" * 16)  # the length byte separates


def test_repr_shows_counts_only():
    salt = new_salt()
    bank = PsiBank(salt, workers=1, group=R)
    holder = PsiHolder(salt, [uscc(7)], workers=1, group=R)
    result = bank.intersect(holder.double_blind(bank.blind([uscc(7)])),
                            holder.shuffled_points())
    for obj in (bank, holder, result):
        text = repr(obj)
        assert uscc(7) not in text and "scalar" not in text
    assert isinstance(result, PsiResult) and "intersection=1" in repr(result)


@pytest.mark.parametrize("n, workers, sizes", [
    (0, 2, [1]), (500, 2, [500]), (20_000, 1, [20_000]),
    (20_000, 2, [5_000]), (1_000_000, 2, [8_065])])
def test_work_is_split_evenly_over_workers(n, workers, sizes):
    assert [group._task_size(n, workers)] == sizes


def test_scalars_are_random_and_non_zero():
    scalars = {group.random_scalar() for _ in range(50)}
    assert len(scalars) == 50 and all(any(k) for k in scalars)


# ------------------------------------------------------------------ chunks for streaming


def test_split_and_join_round_trip():
    data = b"".join(a_point(bytes([i])) for i in range(10))
    chunks = list(split_points(data, chunk_points=4))
    assert [count_points(c) for c in chunks] == [4, 4, 2]
    assert join_points(chunks) == data
    assert list(split_points(b"")) == [] and join_points([]) == b""
    assert len(list(split_points(data))) == 1  # default: up to 1 MiB per chunk
    assert MAX_CHUNK_POINTS * POINT_BYTES == 1 << 20


def test_split_and_join_validate():
    data = a_point() * 3
    with pytest.raises(InvalidInput, match="cut short"):
        list(split_points(data + b"x"))
    with pytest.raises(InvalidInput, match="chunk_points"):
        list(split_points(data, chunk_points=0))
    with pytest.raises(InvalidInput, match="chunk_points"):
        list(split_points(data, chunk_points=MAX_CHUNK_POINTS + 1))
    with pytest.raises(InvalidInput, match="chunk 1: 31 bytes"):
        join_points([data, data[:31]])
    with pytest.raises(InvalidInput, match="chunk 0 holds 3 points, more than the 2"):
        join_points([data], max_chunk_points=2)
    with pytest.raises(ResourceLimit, match="more than 4 points"):
        join_points([data, data], max_points=4)
    with pytest.raises(InvalidInput, match="must be bytes"):
        join_points(["text"])


def test_streamed_chunks_give_the_same_answer():
    salt = new_salt()
    bank = PsiBank(salt, workers=1, group=R)
    holder = PsiHolder(salt, [uscc(i) for i in range(0, 40, 2)], workers=1, group=R)
    msg1 = bank.blind([uscc(i) for i in range(30)])
    answer, offset = [], 0
    for chunk in split_points(msg1, chunk_points=7):
        answer.append(holder.double_blind(chunk, offset=offset))
        offset += count_points(chunk)
    points = join_points(split_points(holder.shuffled_points(), chunk_points=5))
    result = bank.intersect(join_points(answer), points)
    assert result.ids == [uscc(i) for i in range(0, 30, 2)]


# ------------------------------------------------------------------ worker processes


def test_worker_processes_agree_and_report_global_positions(monkeypatch):
    monkeypatch.setattr(group, "TASK_POINTS", 32)  # many tasks from a small input
    monkeypatch.setattr(group, "MIN_PARALLEL_POINTS", 1)
    bank_ids = [uscc(i) for i in range(150)]
    holder_ids = [uscc(i) for i in range(100, 220)]
    _, holder, result = run_psi(bank_ids, holder_ids, workers=2)
    assert result.ids == bank_ids[100:]
    assert holder.resolve(result.holder_positions) == result.ids
    bad = a_point() * 70 + b"\xff" * 32 + a_point() * 5
    with pytest.raises(InvalidInput, match="bank point 70 is not a valid"):
        holder.double_blind(bad)


# ------------------------------------------------------------------ docs


@pytest.mark.parametrize("fn", [PsiBank.blind, PsiBank.intersect, PsiHolder.double_blind,
                                PsiHolder.shuffled_points, PsiHolder.resolve,
                                PsiResult.holder_positions_for])
def test_every_step_says_what_the_other_party_learns(fn):
    assert "Privacy\n" in fn.__doc__


def test_match_points_pairs_equal_points_in_the_banks_order_and_names_repeats():
    from fedcredit.psi.ecdh import match_points

    rng = np.random.default_rng(5)
    holder = [rng.bytes(32) for _ in range(50)]
    # points that differ only in trailing zero bytes are different points
    holder[3] = b"\x01" + bytes(31)
    holder[4] = b"\x01\x00\x02" + bytes(29)
    bank = [holder[7], rng.bytes(32), holder[3], holder[4], b"\x01" + bytes(30) + b"\x05",
            holder[0]]
    i, j = match_points(b"".join(bank), b"".join(holder))
    assert i.tolist() == [0, 2, 3, 5] and j.tolist() == [7, 3, 4, 0]
    assert [x.tolist() for x in match_points(b"".join(bank), b"")] == [[], []]
    with pytest.raises(InvalidInput, match="holder point 9 repeats holder point 2"):
        match_points(b"".join(bank), b"".join(holder[:9] + [holder[2]] + holder[10:]))
    with pytest.raises(InvalidInput, match="bank id 4 and an earlier one"):
        match_points(b"".join(bank[:4] + [holder[7]]), b"".join(holder))


@given(st.lists(st.integers(0, 40), min_size=0, max_size=30, unique=True),
       st.lists(st.integers(0, 40), min_size=0, max_size=30, unique=True))
@settings(max_examples=60, deadline=None)
def test_match_points_agrees_with_a_dictionary(bank_keys, holder_keys):
    from fedcredit.psi.ecdh import match_points

    point = {k: hashlib.sha256(bytes([k])).digest() for k in range(41)}
    i, j = match_points(b"".join(point[k] for k in bank_keys),
                        b"".join(point[k] for k in holder_keys))
    where = {k: n for n, k in enumerate(holder_keys)}
    want = [(n, where[k]) for n, k in enumerate(bank_keys) if k in where]
    assert list(zip(i.tolist(), j.tolist())) == want
