"""Leak 5 (SecureBoost half): plain scoring's leaf masks show the bank the holder's decision
at every holder node an enterprise could reach, not only on its path.

The attack is the bank's, with what it legitimately holds: its trees (its own splits, the
holder nodes' positions, every leaf value), its bins, its key, and the holder's answers.
From a leaf mask it reads, at each holder node, which subtree the mask keeps; the holder's
own stored model is used only to grade the claims. Mitigation: private scoring
(Fed-EINI style, :mod:`fedcredit.protocol.private_scoring`) returns one ciphertext per
enterprise; its complexity check (``min_private_path_bits``) refuses models whose score
alone would give the path away — shown with the check off, where the bank decodes the
path from the score by enumeration.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import RecordingChannel, test_policy

from fedcredit.binning import BinMapper
from fedcredit.datasets import make_credit_data
from fedcredit.errors import PolicyViolation
from fedcredit.models import SecureBoostClassifier
from fedcredit.models.secureboost.private_scoring import (
    private_decision_function,
    private_path_bits,
    scoring_key,
)
from fedcredit.protocol import PassiveParty
from fedcredit.protocol.private_scoring import messages as pm
from fedcredit.protocol.private_scoring.math import FRAC_BITS
from fedcredit.protocol.secureboost import bank as sb_bank
from fedcredit.protocol.secureboost import messages as sb_messages
from fedcredit.protocol.secureboost.math import goes_left

KEYS = dict(key_bits=1024, insecure_key=True, n_jobs=1, verbose=False)
N_SCORED = 150
#: the bank's enumeration budget per enterprise (combinations of leaves over trees)
ENUM_CAP = 1 << 16


@pytest.fixture(scope="module")
def world():
    bank, holder = make_credit_data(rows=1500, seed=21, overlap=0.9)
    bank, holder = bank.set_index("uscc"), holder.set_index("uscc")
    y = bank.pop("label").to_numpy()
    party = PassiveParty(holder, policy=test_policy())
    channel = RecordingChannel(party)
    big = SecureBoostClassifier(n_estimators=20, max_depth=3, max_bin=8, learning_rate=0.3,
                                **KEYS).fit(bank, y, channel)
    small = SecureBoostClassifier(n_estimators=3, max_depth=3, max_bin=8, learning_rate=0.3,
                                  **KEYS).fit(bank, y, channel)
    return bank, holder, party, channel, big, small


# -- what the bank knows of its own trees -----------------------------------------------------
def _leaf_paths(tree):
    """leaf index -> [(holder node id, goes left)] on the path to it (the bank's tree)."""
    by_id = {n.node_id: n for n in tree.nodes}
    leaves = [n.node_id for n in tree.leaves]
    parent = {}
    for n in tree.nodes:
        if n.owner != "leaf":
            parent[n.left], parent[n.right] = (n.node_id, True), (n.node_id, False)
    out = []
    for lid in leaves:
        path, cur = [], lid
        while cur in parent:
            p, left = parent[cur]
            if by_id[p].owner == "holder":
                path.append((p, left))
            cur = p
        out.append(path)
    return out


def _subtree_leaves(tree):
    """node id -> set of leaf indices below it."""
    index = {n.node_id: i for i, n in enumerate(tree.leaves)}
    below: dict[int, set] = {}
    for n in reversed(tree.nodes):
        below[n.node_id] = {index[n.node_id]} if n.owner == "leaf" else \
            below[n.left] | below[n.right]
    return below


def _truth(party, model, X):
    """Grading only: the holder's decision (goes left) at each holder node, per tree."""
    stored = party.models.load(model.model_id_)
    mapper = BinMapper.from_dict(stored.mapper)
    bins = mapper.transform(party.features.reindex(X.index.astype(str)))
    out = []
    for tree in model.trees_:
        d = {}
        for n in tree.nodes:
            if n.owner == "holder":
                f, t, ml = stored.splits[n.record_id]
                d[n.node_id] = goes_left(bins[:, f], mapper.n_bins[f], t, ml)
        out.append(d)
    return out


def _needed(model, X, truth):
    """Per enterprise: the holder nodes on its actual path (what scoring must use)."""
    bins = model.mapper_.transform(X)
    need = [[] for _ in range(len(X))]
    for tree, dec in zip(model.trees_, truth):
        reach = tree.bank_reachable(bins, model.mapper_.n_bins)
        paths = _leaf_paths(tree)
        for i in range(len(X)):
            for leaf in np.flatnonzero(reach[i]):
                if all(dec[nid][i] == left for nid, left in paths[leaf]):
                    need[i].extend((id(tree), nid) for nid, _ in paths[leaf])
    return need


# -- the attacks --------------------------------------------------------------------------------
def decode_masks(model, masks):
    """From leaf masks: per enterprise, {(tree, node): goes left} at every holder node whose
    one subtree the mask keeps and the other it drops."""
    n = next(iter(masks.values())).shape[0]
    claims = [dict() for _ in range(n)]
    for tree, tid in zip(model.trees_, model.tree_ids_):
        if tid < 0:
            continue
        below = _subtree_leaves(tree)
        mk = masks[tid]
        for nd in tree.nodes:
            if nd.owner != "holder":
                continue
            left = mk[:, sorted(below[nd.left])].any(axis=1)
            right = mk[:, sorted(below[nd.right])].any(axis=1)
            for i in np.flatnonzero(left ^ right):
                claims[i][(id(tree), nd.node_id)] = bool(left[i])
    return claims


def decode_score(model, X, raw):
    """From the decrypted raw score only: enumerate every combination of leaves the bank's
    splits leave open (up to ENUM_CAP per enterprise), keep those whose fixed-point sum is
    the score, and claim the holder decisions all of them agree on."""
    bins = model.mapper_.transform(X)
    fed = [(t, tid) for t, tid in zip(model.trees_, model.tree_ids_) if tid >= 0]
    scale = 2 ** FRAC_BITS
    local = np.zeros(len(X))
    for t, tid in zip(model.trees_, model.tree_ids_):
        if tid < 0:
            local += t.leaf_values()[np.argmax(t.bank_reachable(bins, model.mapper_.n_bins), 1)]
    target = np.rint((raw - model.base_score_ - local) * scale).astype(np.int64)
    reach = [t.bank_reachable(bins, model.mapper_.n_bins) for t, _ in fed]
    q = [np.rint(t.leaf_values() * scale).astype(np.int64) for t, _ in fed]
    paths = [_leaf_paths(t) for t, _ in fed]
    claims, gave_up = [dict() for _ in range(len(X))], 0
    for i in range(len(X)):
        opts = [np.flatnonzero(r[i]) for r in reach]
        if np.prod([float(len(o)) for o in opts]) > ENUM_CAP:
            gave_up += 1
            continue
        hits = [c for c in itertools.product(*opts)
                if sum(int(q[k][leaf]) for k, leaf in enumerate(c)) == target[i]]
        for k, (tree, _) in enumerate(fed):
            chosen = {c[k] for c in hits}
            if len(chosen) == 1:
                for nid, left in paths[k][chosen.pop()]:
                    claims[i][(id(tree), nid)] = left
    return claims, gave_up


def grade(claims, truth_by_key, needed):
    """(correct claims per enterprise, of which beyond the path, needed per enterprise, wrong)."""
    correct = beyond = wrong = 0
    for i, cl in enumerate(claims):
        on_path = set(needed[i])
        for key, left in cl.items():
            if truth_by_key[key][i] == left:
                correct += 1
                beyond += key not in on_path
            else:
                wrong += 1
    n = len(claims)
    return correct / n, beyond / n, sum(len(set(x)) for x in needed) / n, wrong


def _truth_by_key(model, truth):
    return {(id(t), nid): v for t, d in zip(model.trees_, truth) for nid, v in d.items()}


def test_leaf_masks_show_holder_decisions_beyond_the_path(world):
    bank, holder, party, channel, big, _ = world
    X = bank[bank.index.isin(holder.index)].iloc[:N_SCORED]
    federated = [t for t in big.tree_ids_ if t >= 0]
    masks = big._score_with(channel, lambda s: sb_bank.leaf_masks(s, X.index.tolist(),
                                                                  federated))
    truth = _truth(party, big, X)
    per, beyond, needed, wrong = grade(decode_masks(big, masks), _truth_by_key(big, truth),
                                       _needed(big, X, truth))
    print(f"leaf masks: {per:.2f} holder decisions decoded per enterprise, {beyond:.2f} "
          f"beyond the path; {needed:.2f} needed")
    assert wrong == 0
    assert per > needed  # the masks give away more than scoring needs
    assert beyond >= 1.0  # at least one off-path decision per enterprise on average


def test_private_scoring_gives_only_the_score(world):
    bank, holder, party, channel, big, _ = world
    X = bank[bank.index.isin(holder.index)].iloc[:N_SCORED]
    assert private_path_bits(big) >= 32  # passes the holder's default check
    big.close_scoring()
    channel.received.clear()
    raw = private_decision_function(big, X, channel)
    received = [msg for msg, _ in channel.received]
    assert not any(isinstance(msg, sb_messages.LeafMasks) for msg in received)
    got = [msg for msg in received if isinstance(msg, pm.PrivateScores)]
    width = scoring_key(big).public_key.ciphertext_bytes
    assert sum(len(msg.scores) for msg in got) == len(X) * width  # one ciphertext each
    truth = _truth(party, big, X)
    claims, gave_up = decode_score(big, X, raw)
    per, beyond, needed, wrong = grade(claims, _truth_by_key(big, truth),
                                       _needed(big, X, truth))
    print(f"private: {per:.2f} decisions decoded per enterprise, {beyond:.2f} beyond the "
          f"path; {needed:.2f} needed; enumeration infeasible for {gave_up}/{len(X)}")
    assert beyond == 0.0 and per == 0.0 and wrong == 0
    assert gave_up == len(X)
    np.testing.assert_allclose(raw, big.decision_function(X, channel), rtol=0,
                               atol=len(big.trees_) * 2.0 ** -(FRAC_BITS + 1))


def test_complexity_check_refuses_a_model_whose_score_gives_the_path_away(world):
    bank, holder, party, channel, _, small = world
    X = bank[bank.index.isin(holder.index)].iloc[:N_SCORED]
    assert private_path_bits(small) < 32
    with pytest.raises(PolicyViolation):  # the holder's check, the bank's local one off
        private_decision_function(small, X, channel, min_bits=None)
    party.policy.min_private_path_bits = 0  # switch the holder's check off
    try:
        small.close_scoring()
        raw = private_decision_function(small, X, channel, min_bits=None)
    finally:
        del party.policy.min_private_path_bits
    truth = _truth(party, small, X)
    needed_by = _needed(small, X, truth)
    claims, gave_up = decode_score(small, X, raw)
    per, beyond, needed, wrong = grade(claims, _truth_by_key(small, truth), needed_by)
    print(f"check off, {private_path_bits(small):.1f}-bit model: {per:.2f} path decisions "
          f"decoded from the score per enterprise of {needed:.2f} needed; {wrong} wrong")
    assert gave_up == 0 and wrong == 0 and beyond == 0.0
    assert per >= 0.9 * needed > 0  # the score alone names the path
