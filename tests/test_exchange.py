"""The first real exchange, over both channels: the bank encrypts a vector, the holder sums it
per bin of its own features, the bank decrypts and the sums match numpy's."""
from __future__ import annotations

from collections import Counter

import numpy as np

from fedcredit.binning import BinMapper
from fedcredit.crypto import generate_keypair
from fedcredit.protocol.alignment.bank import align
from fedcredit.protocol.secureboost import bank as sb
from fedcredit.protocol import ActiveSession, PassiveParty
from fedcredit.protocol.registry import MESSAGES as m
from fedcredit.protocol.secureboost.math import GradientLayout

from conftest import TEST_KEY_BITS, test_policy


def test_encrypted_grouped_sums_match_numpy(small_credit, make_channel):
    bank, _, holder = small_credit
    party = PassiveParty(holder, policy=test_policy(min_node_samples=1, min_bin_samples=0))
    _, sk = generate_keypair("paillier", bits=TEST_KEY_BITS, insecure=True)
    s = ActiveSession(make_channel(party), "train", sk, workers=1)
    al = align(s, bank.index.tolist())
    n = len(al)
    rows = np.arange(n)
    sb.boost_start(s, rows, 8, 1)
    rng = np.random.default_rng(0)
    g_int = rng.integers(-2**20, 2**20, n)
    h_int = rng.integers(0, 2**18, n)
    layout = GradientLayout.for_rows(g_int, h_int, sk.public_key.plaintext_bits)
    assert sb.send_gradients(s, 0, rows, layout, g_int, h_int) == n
    stats, derived = sb.layer(s, 0, 0, [m.NodeTask(node_id=0)], layout)[0]
    assert len(derived) == 0
    # numpy on the holder's side of the table: every (feature, threshold, missing side)
    feats = holder.loc[al.ids]
    mapper = BinMapper(8).fit(feats)
    bins = mapper.transform(feats).astype(int)
    expected = Counter()
    for f, nb in enumerate(mapper.n_bins):
        b = bins[:, f]
        miss = b == nb
        for t in range(nb):
            left = (b <= t) & ~miss
            for ml in (False, True):
                sel = left | (miss & ml)
                if ml and not miss.any():
                    continue
                if t == nb - 1 and (ml or not miss.any()):
                    continue
                expected[(int(g_int[sel].sum()), int(h_int[sel].sum()))] += 1
    got = Counter(zip(stats.G.tolist(), stats.H.tolist()))
    assert sum(got.values()) == sum(expected.values()) > 20
    assert got == expected
