"""What crosses the wire: every message the holder receives and sends is recorded (as the
bytes the gRPC transport would frame) and inspected."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from fedcredit.crypto import load_public_key
from fedcredit.models import SecureBoostClassifier
from fedcredit.protocol import PassiveParty
from fedcredit.protocol.registry import MESSAGES as m

from conftest import TEST_KEY_BITS, RecordingChannel, test_policy


@pytest.fixture(scope="module")
def recorded(small_credit):
    bank, y, holder = small_credit
    bank, y = bank.iloc[:3000], y[:3000]
    party = PassiveParty(holder, policy=test_policy(min_node_samples=10))
    ch = RecordingChannel(party)
    model = SecureBoostClassifier(n_estimators=2, max_depth=3, learning_rate=0.3, max_bin=16,
                                  key_bits=TEST_KEY_BITS, insecure_key=True, verbose=False)
    model.fit(bank, y, holder=ch)
    model.predict_proba(bank.iloc[:200], holder=ch)
    return ch, party, model, bank, y, holder


def _floats_in(blob: bytes, values) -> list[float]:
    """Values whose float64 encoding occurs in the blob. Only distinctive encodings are
    searched: a round number like 2.0 is seven zero bytes and 0x40, which any bit mask of
    rows can contain by chance (the message-type checks cover those values)."""
    out = []
    for v in values:
        enc = struct.pack("<d", v)
        if sum(b != 0 for b in enc) < 5:
            continue
        if enc in blob or enc[::-1] in blob:
            out.append(v)
    return out


def test_holder_never_receives_a_label_or_a_plaintext_gradient(recorded):
    ch, party, model, bank, y, holder = recorded
    kinds = {type(msg).__name__ for msg, _ in ch.sent}
    assert {"OpenSession", "PsiBlinded", "TreeStart", "GradientChunk", "LayerRequest"} <= kinds
    for msg, _ in ch.sent:  # no float field exists in anything the bank sends
        for name, value in vars(msg).items():
            assert not isinstance(value, float), f"{type(msg).__name__}.{name} is a float"
    # gradients arrive as ciphertexts that are not trivial encodings (c = 1 + m*n has c mod n = 1)
    pk = load_public_key(next(msg for msg, _ in ch.sent if isinstance(msg, m.OpenSession)).public_key)
    width = pk.ciphertext_bytes
    chunks = [msg.ciphertexts for msg, _ in ch.sent if isinstance(msg, m.GradientChunk)]
    assert chunks
    for data in chunks:
        for i in range(0, len(data), width):
            c = int.from_bytes(data[i:i + width], "big")
            assert c % int(pk.n) != 1
    # the label vector appears nowhere, in any encoding
    blob = b"".join(d for _, d in ch.sent)
    for enc in (y.astype("<i8").tobytes(), y.astype("<u4").tobytes(), y.astype("u1").tobytes(),
                np.packbits(y.astype(bool)).tobytes()):
        assert enc[:64] not in blob


def test_bank_never_receives_a_holder_value_or_threshold(recorded):
    ch, party, model, bank, y, holder = recorded
    blob = b"".join(d for _, d in ch.received)
    stored = party.models.load(model.model_id_)
    thresholds = []
    for f in stored.mapper["features"]:
        thresholds.extend(f["upper"])
    assert thresholds
    leaked = _floats_in(blob, sorted(set(thresholds)))
    assert not leaked, f"thresholds on the wire: {leaked[:5]}"
    numeric = holder.select_dtypes("number")
    values = np.unique(numeric.to_numpy(dtype=float).ravel())
    values = values[np.isfinite(values) & (values != 0)][:2000]
    assert not _floats_in(blob, values.tolist())
    for msg, _ in ch.received:
        for name, value in vars(msg).items():
            assert not isinstance(value, float), f"{type(msg).__name__}.{name} is a float"
        if isinstance(msg, m.SplitResult):  # a holder split tells record id, feature, partition
            for o in msg.outcomes:  # the missing side only where asked (align="any")
                assert set(vars(o)) == {"node_id", "record_id", "feature", "left_rows",
                                        "unserved_left"}
                assert o.unserved_left is False


def test_returned_ciphertexts_are_rerandomised():
    from fedcredit.crypto import generate_keypair

    pk, sk = generate_keypair("paillier", bits=TEST_KEY_BITS, insecure=True)
    cols = [sk.encrypt([1, 2, 3], workers=1), sk.encrypt([4, 5, 6], workers=1)]
    plain_pack = pk.pack(cols, 40)
    again = pk.rerandomize(plain_pack)
    assert sk.decrypt(again) == sk.decrypt(plain_pack)
    assert not set(again.values) & set(plain_pack.values)
    # and nothing derived can leave un-re-randomised: the encoder refuses it
    from fedcredit.errors import UnsafeReply

    with pytest.raises(UnsafeReply):
        pk.to_bytes_batch(plain_pack)
    assert pk.to_bytes_batch(again)


def test_audit_log_holds_every_request(recorded):
    ch, party, model, *_ = recorded
    ops = [r["operation"] for r in party.auditor.records]
    assert ops[0] == "open_session:train"
    for needed in ("psi", "align", "boost_start", "tree_start", "histograms", "tree_finish",
                   "model_finish", "open_session:score", "predict"):
        assert needed in ops
    assert all(r["bank"] == "demo-bank" for r in party.auditor.records)
    assert sum(isinstance(msg, (m.OpenSession, m.PsiBlinded, m.PsiAlign, m.BoostStart,
                                m.TreeStart, m.LayerRequest, m.SplitRequest, m.TreeFinish,
                                m.ModelFinish, m.PredictRequest, m.CloseSession))
               for msg, _ in ch.sent) == len(ops)
