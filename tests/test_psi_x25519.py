"""ECDH-PSI over X25519, the default group: what differs from ristretto255 (test_psi.py).

The kernels on tiny inputs (blinding commutes, received points are validated and bad ones
named by position), the group carried by the alignment protocol over both channels, and an
older bank (no group on the wire) still served in ristretto255.
"""
from __future__ import annotations

import pytest

from fedcredit.crypto import generate_keypair
from fedcredit.errors import InvalidInput, ProtocolError
from fedcredit.protocol import ActiveSession, PassiveParty
from fedcredit.protocol.alignment import messages as am
from fedcredit.protocol.alignment.bank import align
from fedcredit.psi import (DEFAULT_GROUP, DOMAIN, LEGACY_GROUP, PsiBank, PsiHolder, check_group,
                           hash_prefix, new_salt)
from fedcredit.psi import group, x25519

from conftest import TEST_KEY_BITS, RecordingChannel, test_policy

P = 2**255 - 19


def uscc(i: int, kind: str = "91") -> str:
    return f"{kind}{330100 + i % 97:06d}{i:010d}"


def u_bytes(u: int) -> bytes:
    return u.to_bytes(32, "little")


def test_the_default_group_is_x25519_and_intersects_exactly():
    assert DEFAULT_GROUP == "x25519"
    salt = new_salt()
    bank, holder = PsiBank(salt, workers=1), PsiHolder(salt, [uscc(i) for i in range(60, 200)],
                                                      workers=1)
    assert bank.group == holder.group == "x25519"
    bank_ids = [uscc(i) for i in range(150, -1, -1)]  # the bank's own order
    result = bank.intersect(holder.double_blind(bank.blind(bank_ids)), holder.shuffled_points())
    assert result.ids == [uscc(i) for i in range(150, 59, -1)]
    assert holder.resolve(result.holder_positions) == result.ids


def test_blinding_commutes_and_outputs_canonical_u():
    k1, k2 = x25519.random_scalar(), x25519.random_scalar()
    ids = [uscc(i).encode() for i in range(50)]
    prefix = hash_prefix(new_salt(), "x25519")
    a, bad_a, _ = x25519.blind_chunk(x25519.hash_blind_chunk(ids, prefix, k1), k2)
    b, bad_b, _ = x25519.blind_chunk(x25519.hash_blind_chunk(ids, prefix, k2), k1)
    assert bad_a == bad_b == -1 and a == b and len(a) == 32 * 50
    assert x25519.non_canonical(a) == -1  # every output is a canonical encoding
    assert len({a[i:i + 32] for i in range(0, len(a), 32)}) == 50


def test_each_group_hashes_under_its_own_domain():
    salt = new_salt()
    assert hash_prefix(salt, "x25519").startswith(x25519.DOMAIN)
    assert hash_prefix(salt, "ristretto255").startswith(DOMAIN)
    assert hash_prefix(salt, "x25519")[len(x25519.DOMAIN):] == hash_prefix(salt)[len(DOMAIN):]


SMALL, NONCANONICAL = "is a point of small order", "is not a canonical X25519 u-coordinate"


@pytest.mark.parametrize("point, reason", [
    (u_bytes(0), SMALL),  # u = 0: the point of order 2 (and the identity's image)
    (u_bytes(1), SMALL),  # order 4
    (u_bytes(P - 1), SMALL),  # u = -1: on RFC 7748's list of small-order points
    (u_bytes(P), NONCANONICAL),  # u = p, which would reduce to 0
    (u_bytes(P + 5), NONCANONICAL),
    (u_bytes(9 + 2**255), NONCANONICAL),  # bit 255 set on the base point's u
], ids=["u=0", "u=1", "u=-1", "u=p", "u=p+5", "bit255"])
def test_holder_rejects_a_bad_point_naming_its_position(point, reason):
    holder = PsiHolder(new_salt(), [uscc(1)], workers=1)
    good = PsiBank(new_salt(), workers=1).blind([uscc(2), uscc(3)])
    with pytest.raises(InvalidInput, match=f"bank point 12 {reason}"):
        holder.double_blind(good + point, offset=10)


def test_the_bank_rejects_a_bad_holder_point():
    salt = new_salt()
    bank, holder = PsiBank(salt, workers=1), PsiHolder(salt, [uscc(1), uscc(2)], workers=1)
    doubled = holder.double_blind(bank.blind([uscc(1)]))
    with pytest.raises(InvalidInput, match="holder point 2 is a point of small order"):
        bank.intersect(doubled, holder.shuffled_points() + u_bytes(0))


def test_worker_processes_agree_with_one_process():
    ids = [uscc(i) for i in range(1_100)]  # above MIN_PARALLEL_POINTS: two tasks
    prefix, k = hash_prefix(new_salt(), "x25519"), x25519.random_scalar()
    encoded = [i.encode() for i in ids]
    one = group.hash_and_blind(encoded, prefix, k, 1, "x25519")
    assert group.hash_and_blind(encoded, prefix, k, 2, "x25519") == one
    k2 = x25519.random_scalar()
    assert group.blind_points(one, k2, 2, group="x25519") == \
        group.blind_points(one, k2, 1, group="x25519")


def test_group_names_are_checked():
    assert check_group("") == LEGACY_GROUP == "ristretto255"
    with pytest.raises(InvalidInput, match="PsiBlinded.group 'p256' is not a PSI group"):
        check_group("p256", "PsiBlinded.group")
    with pytest.raises(InvalidInput, match="not a PSI group"):
        PsiBank(new_salt(), group="X25519")


def _session(ids, make=lambda party: RecordingChannel(party)):
    party = PassiveParty(holder_table(ids), policy=test_policy(min_node_samples=1))
    _, sk = generate_keypair("paillier", bits=TEST_KEY_BITS, insecure=True)
    channel = make(party)
    return ActiveSession(channel, "train", sk, workers=1), channel


def holder_table(ids):
    import pandas as pd

    return pd.DataFrame({"x": range(len(ids))}, index=pd.Index(ids, name="id"))


@pytest.mark.parametrize("chosen", ["x25519", "ristretto255"])
def test_alignment_sends_the_group_and_both_sides_use_it(chosen, make_channel):
    holder_ids = [uscc(i) for i in range(40, 120)]
    s, _ = _session(holder_ids, make_channel)
    al = align(s, [uscc(i) for i in range(100)], group=chosen)
    assert al.ids == sorted(uscc(i) for i in range(40, 100))
    s2, ch = _session(holder_ids)
    align(s2, [uscc(i) for i in range(100)], group=chosen)
    first = [msg for msg, _ in ch.sent if isinstance(msg, am.PsiBlinded)]
    assert first[0].group == chosen and all(msg.group == "" for msg in first[1:])


def test_a_bank_that_names_no_group_is_served_in_ristretto255():
    """A bank from before the group was on the wire sends ``group=""``: the holder blinds in
    ristretto255, so the old bank's points (ristretto255 encodings) are accepted and match."""
    s, ch = _session([uscc(i) for i in range(10)])
    salt = s.id.encode()
    old = PsiBank(salt, workers=1, group="ristretto255")
    points = old.blind([uscc(i) for i in range(5, 15)])
    answers = list(ch.exchange([am.PsiBlinded(session_id=s.id, points=points, last=True)]))
    doubled = b"".join(r.points for r in answers if isinstance(r, am.PsiDoubleBlinded))
    theirs = b"".join(r.points for r in answers if isinstance(r, am.PsiHolderSet))
    assert old.intersect(doubled, theirs).ids == [uscc(i) for i in range(5, 10)]


def test_the_group_cannot_change_mid_stream():
    s, ch = _session([uscc(1)])
    bank = PsiBank(s.id.encode(), workers=1)
    pts = bank.blind([uscc(1), uscc(2)])
    msgs = [am.PsiBlinded(session_id=s.id, points=pts[:32], group="x25519"),
            am.PsiBlinded(session_id=s.id, points=pts[32:], last=True, group="ristretto255")]
    with pytest.raises(ProtocolError, match="changes its group"):
        list(ch.exchange(msgs))


def test_the_holder_refuses_an_unknown_group_by_name():
    s, ch = _session([uscc(1)])
    with pytest.raises(InvalidInput, match="PsiBlinded.group 'p256' is not a PSI group"):
        list(ch.exchange([am.PsiBlinded(session_id=s.id, points=u_bytes(9), last=True,
                                        group="p256")]))
