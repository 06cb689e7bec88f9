"""Attack (leak 3): the holder reads the bank's labels off the SecureBoost instance space.

The curious holder keeps what it legitimately receives — each tree's root rows
(``TreeStart``), the rows of every node the bank asks about (``LayerRequest``: the smaller
sibling sent, the larger derived as parent minus sibling), the partitions of its own splits
(its ``SplitResult``), the tree's shape (``TreeFinish``) — plus its own session's aligned
ids. From these it rebuilds every node row set it can, including the child of a bank split
that was never sent (parent minus the sent sibling), and guesses labels:

* **below-floor sets**: a bank split with a child under the holder's ``min_node_samples``
  (the bank's ``min_child_samples`` may be smaller) hands the holder that child as parent
  minus sibling — a small set the bank's features and labels cut out (measured: 2 sets of
  22 and 46 enterprises under a floor of 50, none of them a defaulter, base rate 4.5 %);
* **label guess**: the bank's splits maximise label separation and defaulters are the
  minority, so small cut-out sets are the risky ones; the holder scores each enterprise by
  ``sum over trees of -log(size of the smallest known set holding it)``. Tree 0 is the
  sharpest: its gradients are a constant minus the label.

Mitigations: the bank never sends a node whose sibling is below the floor
(``TreeGrower.hide_small_siblings``, switched off here only to show the attack), and
``bank_only_trees=k`` keeps the first k trees from the holder altogether.
"""
from __future__ import annotations

import numpy as np
import pytest

from fedcredit.datasets import make_credit_data
from fedcredit.metrics import auc
from fedcredit.models import SecureBoostClassifier
from fedcredit.models.secureboost.grower import TreeGrower
from fedcredit.protocol import PassiveParty
from fedcredit.protocol.registry import MESSAGES as m
from fedcredit.protocol.wire import rows_from_bytes

from conftest import TEST_KEY_BITS, RecordingChannel, test_policy

FLOOR, MIN_CHILD, TREES = 50, 5, 4


class HolderTap(RecordingChannel):
    """The recorded channel, plus the holder's own aligned ids (its session state)."""

    aligned: list[str] | None = None

    def exchange(self, requests):
        yield from super().exchange(requests)
        for s in list(self.passive._sessions.values()):
            if s.aligned_ids:
                self.aligned = list(s.aligned_ids)


def holder_view(sent, received):
    """Per tree the holder saw: node id -> the aligned positions it knows are in that node;
    and per tree the ids of the bank splits' children."""
    trees: dict[int, dict[int, np.ndarray]] = {}
    bank_cut: dict[int, set[int]] = {}  # per tree, the children of the bank's splits
    requests = []
    for msg, _ in sent:
        if isinstance(msg, m.TreeStart):
            trees[msg.tree] = {0: rows_from_bytes(msg.rows)}
        elif isinstance(msg, m.LayerRequest):
            t = trees[msg.tree]
            for task in msg.tasks:
                if task.sibling_id >= 0:
                    t[task.node_id] = np.setdiff1d(t[task.parent_id], t[task.sibling_id])
                elif task.node_id != 0:
                    t[task.node_id] = rows_from_bytes(task.rows)
        elif isinstance(msg, m.SplitRequest):
            requests.append(msg)
    answers = [msg for msg, _ in received if isinstance(msg, m.SplitResult)]
    for req, res in zip(requests, answers):  # children of its own splits
        t, by = trees[req.tree], {o.node_id: o for o in res.outcomes}
        for ch in req.choices:
            rows = t[ch.node_id]
            bits = np.unpackbits(np.frombuffer(by[ch.node_id].left_rows, np.uint8))
            left = bits[:len(rows)].astype(bool)
            t[ch.left_id], t[ch.right_id] = rows[left], rows[~left]
    for msg, _ in sent:  # the shape: a child never sent is its parent minus its sibling
        if isinstance(msg, m.TreeFinish):
            t = trees[msg.tree]
            for nd in msg.nodes:  # parents before children
                if nd.owner == "bank":
                    bank_cut[msg.tree] = bank_cut.get(msg.tree, set()) | {nd.left, nd.right}
                if nd.left < 0 or nd.node_id not in t:
                    continue
                for a, b in ((nd.left, nd.right), (nd.right, nd.left)):
                    if a in t and b not in t:
                        t[b] = np.setdiff1d(t[nd.node_id], t[a])
    return trees, bank_cut


def bank_cut_score(view, bank_cut, n: int) -> np.ndarray:
    """Only sets the bank's splits cut out: what the holder could not compute itself."""
    return small_set_score({k: {i: r for i, r in t.items() if i in bank_cut.get(k, ())}
                            for k, t in view.items()}, n)


def small_set_score(view, n: int) -> np.ndarray:
    score = np.zeros(n)
    for t in view.values():
        smallest = np.full(n, float(n))
        for rows in t.values():
            smallest[rows] = np.minimum(smallest[rows], len(rows))
        score -= np.log(smallest)
    return score


@pytest.fixture(scope="module")
def data():
    bank, holder = make_credit_data(rows=3000, seed=3, overlap=1.0)
    bank, holder = bank.set_index("uscc"), holder.set_index("uscc")
    y = bank.pop("label")
    return bank, y, holder


def _attack(data, *, bank_only_trees: int, hide: bool):
    bank, y, holder = data
    party = PassiveParty(holder, policy=test_policy(min_node_samples=FLOOR))
    tap = HolderTap(party)
    model = SecureBoostClassifier(n_estimators=TREES, max_depth=3, learning_rate=0.3, max_bin=16,
                                  min_child_samples=MIN_CHILD, bank_only_trees=bank_only_trees,
                                  key_bits=TEST_KEY_BITS, insecure_key=True, verbose=False,
                                  n_jobs=2)
    old = TreeGrower.hide_small_siblings
    TreeGrower.hide_small_siblings = hide
    try:
        model.fit(bank, y.to_numpy(), holder=tap)
    finally:
        TreeGrower.hide_small_siblings = old
    view, bank_cut = holder_view(tap.sent, tap.received)
    truth = y.loc[tap.aligned].to_numpy()  # for scoring the attack only
    small = [r for t in view.values() for r in t.values() if len(r) < FLOOR]
    out = dict(trees_seen=sorted(view), n_small=len(small),
               small_sizes=sorted(len(r) for r in small),
               small_default_rate=float(np.mean(np.concatenate([truth[r] for r in small])))
               if small else None, base_rate=float(truth.mean()),
               auc=auc(truth, small_set_score(view, len(truth))),
               bank_auc=auc(truth, bank_cut_score(view, bank_cut, len(truth))),
               first_auc=auc(truth, small_set_score({min(view): view[min(view)]}, len(truth))))
    print(f"bank_only_trees={bank_only_trees} hide_small_siblings={hide}: {out}")
    return out


@pytest.fixture(scope="module")
def runs(data):
    return {"off": _attack(data, bank_only_trees=0, hide=False),
            0: _attack(data, bank_only_trees=0, hide=True),
            1: _attack(data, bank_only_trees=1, hide=True),
            2: _attack(data, bank_only_trees=2, hide=True)}


def test_holder_derives_sets_below_its_floor_only_without_the_bank_floor(runs):
    off, on = runs["off"], runs[0]
    # today: a bank split's small child is parent - sibling, below the holder's own floor
    assert off["n_small"] >= 1 and min(off["small_sizes"]) < FLOOR
    # ... and a label-skewed one (a split cut it out for its labels): its default rate is
    # under half or over twice the base rate
    rate, base = off["small_default_rate"], off["base_rate"]
    assert rate < base / 2 or rate > 2 * base
    # with the bank floor: no set the holder knows or derives is below min_node_samples
    assert on["n_small"] == 0
    assert runs[1]["n_small"] == runs[2]["n_small"] == 0


def test_the_first_trees_never_reach_the_holder_and_its_label_guess_degrades(runs):
    today, k0, k1, k2 = runs["off"], runs[0], runs[1], runs[2]
    assert k0["trees_seen"] == [0, 1, 2, 3]
    assert k1["trees_seen"] == [1, 2, 3] and k2["trees_seen"] == [2, 3]  # no TreeStart at all
    # from the sets the bank's splits cut out, the holder ranks defaulters above chance
    # (measured 0.77 today, 0.66 with the bank floor alone) ...
    assert today["bank_auc"] > 0.70 and k0["bank_auc"] > 0.62
    # ... and near chance once the first tree is the bank's alone (measured 0.52, and 0.41
    # for k=2: the small-set heuristic then points the wrong way)
    for k in (k1, k2):
        assert abs(k["bank_auc"] - 0.5) < abs(k0["bank_auc"] - 0.5) - 0.05
    assert abs(k1["bank_auc"] - 0.5) < 0.05
    # with the holder's own splits counted too (their partitions it could compute itself:
    # the accepted leak) the guess still weakens with every bank-only tree: 0.80, 0.79, 0.74
    assert k2["auc"] < k1["auc"] < k0["auc"]
