"""Attack (leak 1): the bank decodes missing values and sparse holder bins from the exact
(G, H) of the holder's SecureBoost split candidates.

The curious bank keeps what it legitimately holds: its own key pair, the gradients it
encrypted (``TreeStart`` + ``GradientChunk``, which it decrypts with its own key: it made
them), the rows of every node it sent (``LayerRequest``) and the candidate sums it decrypts
(``NodeCandidates``). At the root of every tree it takes all pairwise differences of the
holder's candidates; a difference of two candidates of one feature is the sum of (g, h) over
the rows between their thresholds, and the two missing-value directions at one threshold
differ by exactly the rows with a missing value:

* **missing values**: that difference repeats at every threshold of the feature; following it
  over the trees, each tree refines which gradient classes the missing rows fall in
  (meet-in-the-middle over the classes), until the classes are single enterprises: named;
* **sparse bins**: a small difference is solved as an exact subset sum of at most 3 rows
  (meet-in-the-middle; 4 works too, ~40x slower) over the root's rows in that tree; a unique
  solution names the members of a bin (or of adjacent sparse bins).

Six enterprises lack ``enterprise_age_years`` (planted); the count-valued holder features
have natural bins of 1-4 enterprises, and two correlated features (3- and 6-month electricity
means) nearly nested thresholds. With ``min_bin_samples=0`` (the rule off) a 15-tree model
lets the bank name all six planted enterprises with no wrong claim and isolate 14 sets of
1-3 enterprises (11 enterprises' bin memberships, one set only across the two correlated
features), none wrong; with the rule on (30) every set it can isolate holds 30 rows or more
and both searches come back empty (the per-feature rule alone still left the cross-feature
set: the cross-feature check closes it).
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from conftest import TEST_KEY_BITS, RecordingChannel, test_policy

import fedcredit.models.base as model_base
from fedcredit.binning import BinMapper
from fedcredit.crypto import SlotLayout
from fedcredit.datasets import make_credit_data
from fedcredit.models import SecureBoostClassifier
from fedcredit.protocol import PassiveParty
from fedcredit.protocol.secureboost import messages as m
from fedcredit.protocol.secureboost.math import GradientLayout, SplitCandidates, goes_left
from fedcredit.protocol.wire import rows_from_bytes

ROWS, TREES, MAX_BIN, PLANTED = 900, 15, 16, 6
HOLDER = ["enterprise_age_years", "licences_held", "social_insurance_months_paid",
          "utility_months_in_arrears", "rd_support_received", "court_judgements_as_defendant",
          "tax_arrears", "electricity_kwh_mean_3m", "electricity_kwh_mean_6m"]


def _data():
    bank, holder = make_credit_data(rows=ROWS, seed=11, overlap=1.0)
    bank, holder = bank.set_index("uscc"), holder.set_index("uscc")[HOLDER].copy()
    holder["tax_arrears"] = holder["tax_arrears"].fillna(0.0)
    rng = np.random.default_rng(3)
    planted = rng.choice(len(holder), PLANTED, replace=False)
    holder.iloc[planted, 0] = np.nan  # a dense feature; six enterprises lack it
    y = bank.pop("label").to_numpy()
    return bank, y, holder, set(holder.index[planted])


# -- what the bank holds --------------------------------------------------------------------
def _layout(plain: list[int], slot_bits: int, plaintext_bits: int) -> GradientLayout:
    """The bank's own packing, recovered from its own gradients."""
    for w_h in range(2, slot_bits - 1):
        h, g = SlotLayout((w_h, slot_bits - w_h)).unpack(plain)
        lay = GradientLayout(w_h, slot_bits - w_h)
        if min(h) >= 0 and GradientLayout.for_rows(np.array(g), np.array(h),
                                                   plaintext_bits) == lay:
            return lay
    raise AssertionError("no layout fits the bank's own gradients")


def bank_view(sent, received, sk):
    """Per tree: (g_int, h_int) per aligned row, and the decrypted candidates at the root."""
    pk = sk.public_key
    trees, chunks, starts = {}, {}, {}
    for msg, _ in sent:
        if isinstance(msg, m.TreeStart):
            starts[msg.tree] = msg
            chunks[msg.tree] = []
            cur = msg.tree
        elif isinstance(msg, m.GradientChunk):
            chunks[cur].append(msg.ciphertexts)
    for t, st in starts.items():
        plain = sk.decrypt(pk.from_bytes_batch(b"".join(chunks[t])))
        lay = _layout(plain, st.slot_bits, pk.plaintext_bits)
        h, g = SlotLayout((lay.w_h, lay.w_g)).unpack(plain)
        trees[t] = dict(rows=rows_from_bytes(st.rows), g=np.array(g, np.int64),
                        h=np.array(h, np.int64), layout=lay)
    answers = iter([msg for msg, _ in received if isinstance(msg, m.NodeCandidates)])
    for msg, _ in sent:
        if not isinstance(msg, m.LayerRequest):
            continue
        for task in msg.tasks:
            r = next(answers)
            if task.node_id == 0 and r.count:
                vals = sk.decrypt(pk.from_bytes_batch(r.packed))
                trees[msg.tree]["root"] = trees[msg.tree]["layout"].unpack_candidates(
                    vals, r.slots, r.count)
    return trees


def small_differences(G, H, h_bound):
    i, j = np.triu_indices(len(G), 1)
    dG, dH = G[j] - G[i], H[j] - H[i]
    flip = dH < 0
    dG[flip], dH[flip] = -dG[flip], -dH[flip]
    keep = (dH > 0) & (dH <= h_bound)
    return dG[keep], dH[keep]


# -- attack 1: the rows with a missing value ------------------------------------------------
def _distributions(sub_vals, sub_sizes, n):
    """Ways to put n rows of a class into its subclasses: (counts, G, H)."""
    out = []
    for combo in itertools.combinations_with_replacement(range(len(sub_sizes)), n):
        cnt = np.bincount(combo, minlength=len(sub_sizes))
        if np.all(cnt <= sub_sizes):
            out.append((cnt, int(cnt @ sub_vals[:, 0]), int(cnt @ sub_vals[:, 1])))
    return out


def _refine(hyp, g, h, target, limit=200_000):
    """Every way the hypothesis' class counts split into this tree's (g, h) classes so that
    the sums hit ``target`` exactly; ``None`` when the search would exceed ``limit``."""
    parts = []
    for rows, n in hyp:
        vals, inv = np.unique(np.stack([g[rows], h[rows]], 1), axis=0, return_inverse=True)
        inv = inv.ravel()
        subs = [rows[inv == k] for k in range(len(vals))]
        d = _distributions(vals, np.array([len(s) for s in subs]), n)
        parts.append((subs, d))
    half = len(parts) // 2
    sizes = [len(d) for _, d in parts]
    if np.prod(sizes[:half], dtype=float) > limit or np.prod(sizes[half:], dtype=float) > limit:
        return None

    def products(ps):
        res = {}
        for choice in itertools.product(*[range(len(d)) for _, d in ps]):
            key = (sum(ps[k][1][c][1] for k, c in enumerate(choice)),
                   sum(ps[k][1][c][2] for k, c in enumerate(choice)))
            res.setdefault(key, []).append(choice)
        return res

    left, right = products(parts[:half]), products(parts[half:])
    out = []
    for (lg, lh), lcs in left.items():
        for rc in right.get((target[0] - lg, target[1] - lh), []):
            for lc in lcs:
                new = []
                for (subs, d), c in zip(parts, lc + rc):
                    new += [(s, int(k)) for s, k in zip(subs, d[c][0]) if k]
                out.append(new)
    return out


def name_missing(trees) -> set[int]:
    """Aligned positions the bank names as lacking a value of one holder feature."""
    hyps = None
    for t in sorted(trees):
        tr = trees[t]
        if "root" not in tr:
            continue
        G, H = tr["root"]
        dG, dH = small_differences(G, H, 10 * int(tr["h"].max()))
        if len(dG) == 0:
            continue
        vals, counts = np.unique(np.stack([dG, dH], 1), axis=0, return_counts=True)
        if counts.max() < 3:  # the missing set repeats at every threshold of its feature
            continue
        target = tuple(int(v) for v in vals[np.argmax(counts)])
        if hyps is None:
            hyps = [[(tr["rows"], k)] for k in range(1, 11)]
        new = []
        for hyp in hyps:
            got = _refine(hyp, tr["g"], tr["h"], target)
            new += [hyp] if got is None else got
        hyps = new
        if not hyps:
            return set()
    if not hyps:
        return set()
    sure = [{int(r) for rows, n in hyp if n == len(rows) for r in rows} for hyp in hyps]
    return set.intersection(*sure)


# -- attack 2: members of sparse bins -------------------------------------------------------
def _key(G, H):
    return (np.asarray(G).astype(np.uint64) * np.uint64(1_000_003)
            + np.asarray(H).astype(np.uint64))


def sparse_sets(trees, max_rows=3) -> list[frozenset]:
    """Row sets the bank isolates: unique exact subset sums of at most ``max_rows`` rows."""
    found = set()
    for t in sorted(trees):
        tr = trees[t]
        if "root" not in tr:
            continue
        rows = tr["rows"]
        g, h = tr["g"][rows], tr["h"][rows]
        G, H = tr["root"]
        dG, dH = small_differences(G, H, max_rows * int(h.max()))
        if len(dG) == 0:
            continue
        targets = np.unique(np.stack([dG, dH], 1), axis=0)
        vals, inv = np.unique(np.stack([g, h], 1), axis=0, return_inverse=True)
        inv = inv.ravel()
        size = np.bincount(inv)
        members = [rows[inv == k] for k in range(len(vals))]
        i, j = np.triu_indices(len(vals), 0)
        ok = (i != j) | (size[i] >= 2)
        i, j = i[ok], j[ok]
        pk = _key(vals[i, 0] + vals[j, 0], vals[i, 1] + vals[j, 1])
        order = np.argsort(pk)
        pk, pi, pj = pk[order], i[order], j[order]
        single = _key(vals[:, 0], vals[:, 1])

        def pairs_for(keys, pk=pk):
            return np.searchsorted(pk, keys, "left"), np.searchsorted(pk, keys, "right")

        for tg, th in targets:
            sols = set()
            sols.update((k,) for k in np.flatnonzero(single == _key(tg, th)))
            lo, hi = pairs_for(_key(tg, th)[None])
            sols.update((int(pi[x]), int(pj[x])) for x in range(lo[0], hi[0]))
            lo, hi = pairs_for(_key(tg - vals[:, 0], th - vals[:, 1]))
            for c in np.flatnonzero(hi > lo):
                sols.update(tuple(sorted((int(c), int(pi[x]), int(pj[x]))))
                            for x in range(lo[c], hi[c]))
            if max_rows >= 4:
                lo, hi = pairs_for(_key(tg - vals[pi, 0] - vals[pj, 0],
                                        th - vals[pi, 1] - vals[pj, 1]))
                for p in np.flatnonzero(hi > lo):
                    sols.update(tuple(sorted((int(pi[p]), int(pj[p]), int(pi[x]), int(pj[x]))))
                                for x in range(lo[p], hi[p]))
            exact = []
            for s in sols:  # verify (the key is a hash) and respect class sizes
                cnt = np.bincount(s, minlength=len(vals))
                if np.all(cnt <= size) and int(vals[list(s), 0].sum()) == tg and \
                        int(vals[list(s), 1].sum()) == th:
                    exact.append(cnt)
            if len(exact) == 1 and np.all(exact[0][exact[0] > 0] == size[exact[0] > 0]):
                found.add(frozenset(int(r) for k in np.flatnonzero(exact[0])
                                    for r in members[k]))
    return sorted(found, key=sorted)


def true_small_sets(holder_aligned, max_bin, max_rows=4) -> dict[frozenset, bool]:
    """Ground truth (not the bank's): row sets of at most ``max_rows`` rows that are the
    difference of two nested left sets at the root (candidates, or the node) -> whether only
    candidates of two different features isolate it."""
    mapper = BinMapper(max_bin).fit(holder_aligned)
    bins = mapper.transform(holder_aligned)
    cands = SplitCandidates.for_bins(bins, mapper.n_bins)
    left = np.stack([goes_left(bins[:, f], mapper.n_bins[f], t, ml) for f, t, ml in
                     zip(cands.feature, cands.bin, cands.missing_left)])
    left = np.concatenate([left, np.ones((1, len(bins)), bool)])  # the node itself
    feat = np.concatenate([cands.feature, [-1]])
    size = left.sum(1)
    inter = left.astype(np.int32) @ left.T.astype(np.int32)
    same, cross = set(), set()
    for a, b in zip(*np.nonzero((inter == size[None, :]) & (size[:, None] - size[None, :] > 0)
                                & (size[:, None] - size[None, :] <= max_rows))):
        s = frozenset(np.flatnonzero(left[a] & ~left[b]).tolist())  # b inside a
        (cross if min(feat[a], feat[b]) >= 0 and feat[a] != feat[b] else same).add(s)
    return {s: s not in same for s in same | cross}  # True: only across two features


def run_attack(monkeypatch, min_bin):
    bank, y, holder, planted = _data()
    keys = []
    real = model_base.generate_keypair

    def keeping(*a, **kw):  # the bank keeps its own key pair
        pair = real(*a, **kw)
        keys.append(pair[1])
        return pair

    monkeypatch.setattr(model_base, "generate_keypair", keeping)
    alignments = []
    real_align = model_base.align

    def recording(*a, **kw):  # the bank keeps its alignment (the session's row order)
        alignments.append(real_align(*a, **kw))
        return alignments[-1]

    monkeypatch.setattr(model_base, "align", recording)
    party = PassiveParty(holder, policy=test_policy(min_node_samples=10,
                                                    min_bin_samples=min_bin))
    channel = RecordingChannel(party)
    model = SecureBoostClassifier(n_estimators=TREES, max_depth=3, learning_rate=0.3,
                                  max_bin=MAX_BIN, min_child_samples=10, key_bits=TEST_KEY_BITS,
                                  insecure_key=True, he_scheme="ou", verbose=False, n_jobs=2,
                                  bank_only_trees=0)
    model.fit(bank, y, holder=channel)
    trees = bank_view(channel.sent, channel.received, keys[-1])
    aligned = pd.Index(alignments[-1].ids)  # the session's rows, in the holder's order
    named = {aligned[i] for i in name_missing(trees)}
    sets = sparse_sets(trees)
    truth = true_small_sets(holder.loc[aligned], MAX_BIN)
    right = [s for s in sets if s in truth]
    members = len({r for s in right for r in s})
    return dict(named=len(named & planted), wrong_named=len(named - planted),
                sparse_sets=len(right), sparse_members=members,
                cross_feature_sets=sum(truth[s] for s in right),
                wrong_sets=len(sets) - len(right), n_holder_splits=sum(
                    nd.owner == "holder" for tr in model.trees_ for nd in tr.nodes))


@pytest.mark.parametrize("min_bin", [0, 30])
def test_bank_decodes_missing_and_sparse_bins_only_without_bin_mass(monkeypatch, min_bin):
    res = run_attack(monkeypatch, min_bin)
    print(f"min_bin_samples={min_bin}: {res}")
    assert res["n_holder_splits"] > 0  # the holder's features are used either way
    if min_bin == 0:  # the rule off: the attack succeeds
        assert res["named"] >= PLANTED - 1 and res["wrong_named"] == 0
        assert res["sparse_sets"] >= 10 and res["sparse_members"] >= 8
        assert res["wrong_sets"] == 0
    else:  # the rule on: nothing below 30 rows can be isolated
        assert res["named"] == 0 and res["wrong_named"] == 0
        assert res["sparse_sets"] == 0 and res["sparse_members"] == 0
