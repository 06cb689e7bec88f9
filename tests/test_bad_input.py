"""Bad input from either side gets a clear, typed error — never a hang, a server crash or a
silently wrong model. Over both channels."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedcredit.crypto import generate_keypair
from fedcredit.errors import (InsecureParameters, InvalidCiphertext, InvalidInput,
                              PolicyViolation, ProtocolError, SessionNotFound)
from fedcredit.models import SecureBoostClassifier
from fedcredit.protocol.alignment.bank import align
from fedcredit.protocol.secureboost import bank as sb
from fedcredit.protocol import ActiveSession, PassiveParty
from fedcredit.protocol.registry import MESSAGES as m
from fedcredit.protocol.secureboost.math import GradientLayout
from fedcredit.protocol.wire import rows_to_bytes

from conftest import TEST_KEY_BITS, GrpcHolder, test_policy


def _model(**kw):
    base = dict(n_estimators=1, max_depth=2, key_bits=TEST_KEY_BITS, insecure_key=True,
                verbose=False, n_jobs=1)
    base.update(kw)
    return SecureBoostClassifier(**base)


@pytest.fixture(scope="module")
def keys():
    return generate_keypair("paillier", bits=TEST_KEY_BITS, insecure=True)


def _trained_session(channel, keys, bank_ids, n_rows=None):
    """Open, align and start a tree by hand; returns the session and its layout."""
    pk, sk = keys
    s = ActiveSession(channel, "train", sk, workers=1)
    al = align(s, bank_ids)
    n = len(al) if n_rows is None else n_rows
    rows = np.arange(n)
    sb.boost_start(s, rows, 16, 20)
    g = np.linspace(-1, 1, n)
    g_int, h_int = (g * 2**20).astype(np.int64), np.full(n, 2**18, dtype=np.int64)
    layout = GradientLayout.for_rows(g_int, h_int, pk.plaintext_bits)
    sb.send_gradients(s, 0, rows, layout, g_int, h_int)
    return s, layout


def test_no_shared_ids_is_a_clear_error(small_credit, make_channel, holder_party):
    bank, y, _ = small_credit
    other = bank.copy()
    other.index = [f"nobody-{i}" for i in range(len(other))]
    with pytest.raises(InvalidInput, match="only 0 enterprises are shared"):
        _model().fit(other, y, holder=make_channel(holder_party))


@pytest.mark.parametrize("bad", [np.nan, np.inf, 2.0])
def test_bad_labels(small_credit, holder_party, bad):
    bank, y, _ = small_credit
    yy = y.astype(float).copy()
    yy[7] = bad
    with pytest.raises(InvalidInput, match="row 7|0/1"):
        _model().fit(bank, yy, holder=holder_party)


def test_label_length_mismatch_and_duplicate_ids(small_credit, holder_party):
    bank, y, _ = small_credit
    with pytest.raises(InvalidInput, match="labels for"):
        _model().fit(bank, y[:-1], holder=holder_party)
    dup = pd.concat([bank.iloc[:50], bank.iloc[:1]])
    with pytest.raises(InvalidInput, match="duplicate ids"):
        _model().fit(dup, np.r_[y[:50], y[:1]], holder=holder_party)


def test_constant_features_on_both_sides_train_fine(small_credit, make_channel):
    bank, y, holder = small_credit
    bank = bank.assign(const=1.0)
    holder = holder.assign(const_h=3.0)
    party = PassiveParty(holder, policy=test_policy())
    model = _model(n_estimators=2).fit(bank, y, holder=make_channel(party))
    names = {n for t in model.trees_ for n in [nd.feature for nd in t.nodes if nd.owner == "bank"]}
    assert model.feature_names_bank_.index("const") not in names


def test_short_key_refused_by_the_holder(small_credit, make_channel):
    _, _, holder = small_credit
    party = PassiveParty(holder, policy=test_policy(allow_insecure_keys=False))
    _, sk = generate_keypair("paillier", bits=TEST_KEY_BITS, insecure=True)
    with pytest.raises(InsecureParameters, match="below the holder's 2048-bit minimum"):
        ActiveSession(make_channel(party), "train", sk)


def test_node_below_the_floor_is_refused(small_credit, make_channel, keys):
    bank, _, holder = small_credit
    party = PassiveParty(holder, policy=test_policy(min_node_samples=50))
    s, layout = _trained_session(make_channel(party), keys, bank.index.tolist())
    sb.layer(s, 0, 0, [m.NodeTask(node_id=0)], layout)
    sb.split(s, 0, [])  # nothing chosen: fine
    tiny = m.NodeTask(node_id=1, parent_id=0, rows=rows_to_bytes([1, 2, 3]))
    with pytest.raises(PolicyViolation, match="holds 3 enterprises, below"):
        sb.layer(s, 0, 1, [tiny], layout)
    empty = m.NodeTask(node_id=2, parent_id=0, rows=b"")
    with pytest.raises(PolicyViolation, match="holds 0 enterprises"):
        sb.layer(s, 0, 1, [empty], layout)


def test_malformed_and_out_of_range_ciphertexts(small_credit, make_channel, keys):
    bank, _, holder = small_credit
    party = PassiveParty(holder, policy=test_policy())
    ch = make_channel(party)
    pk, sk = keys
    s = ActiveSession(ch, "train", sk, workers=1)
    al = align(s, bank.index.tolist())
    sb.boost_start(s, np.arange(len(al)), 16, 20)
    width = pk.ciphertext_bytes
    start = m.TreeStart(session_id=s.id, tree=0, slot_bits=60, rows=rows_to_bytes(range(30)),
                        key_fingerprint=pk.fingerprint)
    good = pk.to_bytes_batch(sk.encrypt([1, 2], workers=1))
    for payload, pattern in ((good + bytes(width), r"\[2\] is outside"),
                             (good + int(pk.cipher_modulus).to_bytes(width, "big"), "outside"),
                             (good + int(pk.n).to_bytes(width, "big"), "shares a factor"),
                             (good[:-3], "not a multiple")):
        with pytest.raises(InvalidCiphertext, match=pattern):
            list(ch.exchange([start, m.GradientChunk(offset=0, ciphertexts=payload)]))
    other = generate_keypair("paillier", bits=TEST_KEY_BITS, insecure=True)[0]
    wrong_key = m.TreeStart(session_id=s.id, tree=0, slot_bits=60, rows=rows_to_bytes(range(30)),
                            key_fingerprint=other.fingerprint)
    with pytest.raises(InvalidCiphertext, match="another key"):
        list(ch.exchange([wrong_key]))
    # the holder is still serving this session afterwards
    assert ch.call(m.Ping()).holder_name == party.name


def test_unknown_session_and_out_of_order_messages(holder_party, make_channel, keys):
    ch = make_channel(holder_party)
    with pytest.raises(SessionNotFound, match="unknown to the holder"):
        ch.call(m.BoostStart(session_id="f" * 32, rows=rows_to_bytes([0])))
    s = ActiveSession(ch, "train", keys[1])
    with pytest.raises(ProtocolError, match="aligned session"):
        ch.call(m.BoostStart(session_id=s.id, rows=rows_to_bytes([0])))
    with pytest.raises(ProtocolError, match="BoostStart before"):
        ch.call(m.LayerRequest(session_id=s.id, tree=0, tasks=[m.NodeTask(node_id=0)]))
    with pytest.raises(ProtocolError, match="does not serve"):
        ch.call(m.Ack())


def test_rows_outside_the_alignment_are_refused(small_credit, make_channel, keys):
    bank, _, holder = small_credit
    ch = make_channel(PassiveParty(holder, policy=test_policy()))
    s = ActiveSession(ch, "train", keys[1])
    al = align(s, bank.index.tolist())
    with pytest.raises(InvalidInput, match="beyond the"):
        sb.boost_start(s, np.array([0, len(al) + 5]), 16, 20)


def test_holder_restart_mid_training_is_a_clear_error(small_credit, tls_dir, keys):
    bank, y, holder = small_credit
    first = GrpcHolder(PassiveParty(holder, policy=test_policy()), tls_dir)
    ch = first.channel()
    s, layout = _trained_session(ch, keys, bank.index.tolist())
    first.stop()
    from fedcredit.transport import HolderServer

    port = first.server.port  # a new holder process on the same address: sessions are gone
    again = HolderServer(PassiveParty(holder, policy=test_policy()), f"127.0.0.1:{port}",
                         tls_dir=tls_dir).start()
    try:
        with pytest.raises(SessionNotFound, match="restarted"):
            sb.layer(s, 0, 0, [m.NodeTask(node_id=0)], layout)
    finally:
        again.stop(0)


def test_garbage_frames_do_not_crash_the_server(holder_party, tls_dir):
    import grpc

    from fedcredit.transport.generated import fedcredit_pb2 as pb

    h = GrpcHolder(holder_party, tls_dir)
    try:
        ch = h.channel()
        frames = iter([pb.Frame(data=b"\xff\x00garbage", end_of_message=True)])
        with pytest.raises(grpc.RpcError) as err:
            list(ch._stub.Exchange(frames, timeout=10))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        half = iter([pb.Frame(data=b"\x08", end_of_message=False)])  # stream ends mid-message
        with pytest.raises(grpc.RpcError) as err:
            list(ch._stub.Exchange(half, timeout=10))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert ch.call(m.Ping()).holder_name == holder_party.name
    finally:
        h.stop()


def test_max_trees_per_session(small_credit, make_channel):
    bank, y, holder = small_credit
    party = PassiveParty(holder, policy=test_policy(max_trees_per_session=1))
    with pytest.raises(PolicyViolation, match="at most 1 trees"):
        _model(n_estimators=3).fit(bank, y, holder=make_channel(party))
