"""The first real exchange, over both channels: the bank encrypts a vector, the holder sums it
per bin of its own features, the bank decrypts and the sums match numpy's."""
from __future__ import annotations

from collections import Counter

import numpy as np

from fedcredit.binning import BinMapper
from fedcredit.crypto import generate_keypair
from fedcredit.protocol import ActiveSession, PassiveParty
from fedcredit.protocol import messages as m
from fedcredit.protocol.packing import GradientLayout

from conftest import TEST_KEY_BITS, test_policy


def test_encrypted_grouped_sums_match_numpy(small_credit, make_channel):
    bank, _, holder = small_credit
    party = PassiveParty(holder, policy=test_policy(min_node_samples=1))
    _, sk = generate_keypair("paillier", bits=TEST_KEY_BITS, insecure=True)
    s = ActiveSession(make_channel(party), "train", sk, workers=1)
    al = s.align(bank.index.tolist())
    n = len(al)
    rows = np.arange(n)
    s.boost_start(rows, 8, 1)
    rng = np.random.default_rng(0)
    g_int = rng.integers(-2**20, 2**20, n)
    h_int = rng.integers(0, 2**18, n)
    layout = GradientLayout.for_rows(g_int, h_int, sk.public_key.plaintext_bits)
    assert s.send_gradients(0, rows, layout, g_int, h_int) == n
    stats, derived = s.layer(0, 0, [m.NodeTask(node_id=0)], layout)[0]
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
