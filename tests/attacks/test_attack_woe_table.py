"""Attack (leak 4): the holder solves the scorecard's WOE table for the bank's default counts.

The holder, curious but honest, keeps what it legitimately has: its own feature table and
stored binning, the aligned ids of the session, and the messages it receives — here the
values of its bins in ``LrStart.woe``. For bin k of a feature with c_k rows (its own count)
and e_k defaulters among n rows, E in all, optbinning's WOE gives
``exp(-WoE_k) = e_k (n - E) / (E (c_k - e_k))``: for each guess of E every e_k follows, and
only the true E makes them all integers that sum to E per feature.

- ``blind_woe=False`` (the encoding before the mitigation): the direct solve names every
  bin's default count (bar those sent a WOE of exactly 0) and E, exactly.
- ``blind_woe=True`` (default: a secret affine map per feature): no E makes the solved
  counts integers; the solve's pick of E is a guess, and bins come out right by chance only.
- What the blinding does *not* hide, measured here as an accepted residual: the affine
  invariants of each feature's values. ``(v_k - v_0) / (v_1 - v_0)`` equals
  ``(L_k - L_0) / (L_1 - L_0)`` with ``L_k = ln((c_k - e_k) / e_k)``, whatever a_j and b_j;
  a search over the defaulters of two bins, an integrality test on the others, and a vote
  on E across features still recover E and most bins. docs/PRIVACY.md states it; closing
  it needs the holder's per-bin values kept from it (encrypted lookups, i.e. MPC-grade
  scoring and training), since a holder that computes its partial score in the clear
  knows its per-bin contributions up to an affine map.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from fedcredit.models import HeteroLogisticRegression, HeteroWOE, Scorecard
from fedcredit.protocol import PassiveParty
from fedcredit.protocol.logistic import messages as lm
from fedcredit.protocol.wire import rows_from_bytes
from fedcredit.protocol.woe.math import final_bins

from conftest import TEST_KEY_BITS, RecordingChannel, test_policy

ROWS = 1500


# -- the holder's side: what it receives and what it can compute from it -----------------------
def holder_view(party: PassiveParty, channel: RecordingChannel, aligned: dict) -> list[dict]:
    """Per holder feature in the scorecard: the values the bank sent for its bins and the
    holder's own count of training rows per bin (from its stored binning)."""
    start = next(msg for msg, _ in channel.sent if isinstance(msg, lm.LrStart))
    binning = party.models.load(start.binning_id).mapper
    frame = party.features.reindex(aligned[start.session_id])
    rows = rows_from_bytes(start.rows, len(frame), "rows")
    bins = final_bins(binning, frame.iloc[rows])
    values = np.frombuffer(start.woe, dtype="<f8")
    out, at = [], 0
    for f in start.features:
        size = binning["n_final"][f]
        out.append({"name": party.feature_names[f], "values": values[at:at + size],
                    "counts": np.bincount(bins[:, f], minlength=size)})
        at += size
    return out


def direct_solve(view: list[dict], n: int) -> tuple[int, list[np.ndarray], float]:
    """Try every total E, derive each bin's defaulters, keep the E whose counts are closest
    to integers summing to E. Bins sent exactly 0 (no events or no non-events: optbinning's
    WOE is 0 there) and empty bins are left unknown (-1). Also returns the mean distance to
    an integer at that E: ~0 when the solve is certain, ~1/4 when it is noise."""
    E = np.arange(1, n, dtype=np.float64)
    odds = E / (n - E)
    cost = np.zeros_like(E)
    for v in view:
        c, w = v["counts"].astype(np.float64), v["values"]
        use = (c > 0) & (w != 0)
        rho = np.exp(-w[use])[None, :] * odds[:, None]
        e = c[use] * rho / (1 + rho)
        cost += np.abs(e - np.rint(e)).sum(axis=1)
        if use.sum() == (c > 0).sum():  # every row of the feature is in a solved bin
            cost += np.abs(np.rint(e).sum(axis=1) - E) / n
    best = int(np.argmin(cost))
    found, dist = [], []
    for v in view:
        c, w = v["counts"].astype(np.float64), v["values"]
        rho = np.exp(-w) * odds[best]
        e = c * rho / (1 + rho)
        use = (c > 0) & (w != 0)
        found.append(np.where(use, np.rint(e), -1))
        dist.extend(np.abs(e - np.rint(e))[use])
    return int(E[best]), found, float(np.mean(dist))


def invariant_candidates(v: np.ndarray, c: np.ndarray, tol: float = 0.05) -> list:
    """(E_j, residual, defaulters per bin) consistent with the affine invariants of one
    feature's values: every (e_0, e_1) of its two smallest bins fixes the others."""
    use = np.flatnonzero(c > 0)
    if len(use) < 3:
        return []
    vals, cnt = v[use], c[use].astype(np.float64)
    i0, i1 = np.argsort(cnt, kind="stable")[:2]
    if vals[i1] == vals[i0]:
        return []
    rest = np.array([k for k in range(len(use)) if k not in (i0, i1)])
    r = (vals[rest] - vals[i0]) / (vals[i1] - vals[i0])
    e0 = np.arange(1, cnt[i0])[:, None, None]
    e1 = np.arange(1, cnt[i1])[None, :, None]
    L0, L1 = np.log((cnt[i0] - e0) / e0), np.log((cnt[i1] - e1) / e1)
    ek = cnt[rest] / (1 + np.exp(L0 + r * (L1 - L0)))
    res = np.abs(ek - np.rint(ek)).max(axis=2)
    out = []
    for a, b in zip(*np.nonzero(res < tol)):
        e = np.full(len(c), -1)
        e[use[i0]], e[use[i1]] = a + 1, b + 1
        e[use[rest]] = np.rint(ek[a, b])
        if np.all((e[use] >= 1) & (e[use] < cnt)):
            out.append((int(e[use].sum()), float(res[a, b]), e))
    return out


def invariant_solve(view: list[dict], n: int) -> tuple[int, list[np.ndarray]]:
    """The vote: the E (below n/2: a default rate under 50 %) most features agree on."""
    cands = [invariant_candidates(v["values"], v["counts"]) for v in view]
    votes: Counter = Counter()
    for cs in cands:
        votes.update({E for E, _, _ in cs if E < n / 2})
    if not votes:
        return -1, [np.full(len(v["counts"]), -1) for v in view]
    E = max(votes, key=lambda k: (votes[k], -k))
    found = []
    for v, cs in zip(view, cands):
        m = [c for c in cs if c[0] == E]
        found.append(min(m, key=lambda c: c[1])[2] if m else np.full(len(v["counts"]), -1))
    return E, found


def grade(view, woe, total, found, residual=None) -> dict:
    """Graded against the bank's own table (the truth, which the attacker lacks)."""
    true = [woe.tables_[f"holder:{v['name']}"]["Event"].to_numpy() for v in view]
    full = [v["counts"] > 0 for v in view]
    return {"features": len(view), "bins": int(sum(m.sum() for m in full)),
            "exact": int(sum((f == t)[m].sum() for f, t, m in zip(found, true, full))),
            "total": total, "true_total": int(true[0].sum()), "residual": residual}


# -- the fit, as the bank runs it ---------------------------------------------------------------
@pytest.fixture(scope="module")
def woe_fit(small_credit):
    bank, y, holder = small_credit
    bank, y = bank.iloc[:ROWS], y[:ROWS]
    party = PassiveParty(holder, policy=test_policy(min_node_samples=20))
    aligned: dict = {}  # the holder's own record of each session's aligned ids
    party.on_session_end(lambda s, reason: aligned.setdefault(s.id, list(s.aligned_ids or [])))
    woe = HeteroWOE(max_bin=8, key_bits=TEST_KEY_BITS, insecure_key=True, n_jobs=2)
    woe.fit(bank, y, holder=RecordingChannel(party))
    return bank, y, party, aligned, woe


def holder_receives(woe_fit, blind: bool) -> tuple[list[dict], int]:
    bank, y, party, aligned, woe = woe_fit
    feats = [f for f in woe.iv_.index if f.startswith("holder:")][:9]
    feats += [f for f in woe.iv_.index if woe.party_[f] == "bank"][:1]
    lr = HeteroLogisticRegression(key_bits=TEST_KEY_BITS, insecure_key=True, verbose=False,
                                  n_jobs=2, max_iter=1, batch_size=300)
    ch = RecordingChannel(party)
    Scorecard(woe=woe, features=feats, lr=lr, blind_woe=blind).fit(bank, y, holder=ch)
    ch.close()
    view = holder_view(party, ch, aligned)
    return view, int(view[0]["counts"].sum())


@pytest.fixture(scope="module")
def plain(woe_fit):
    return holder_receives(woe_fit, blind=False)


@pytest.fixture(scope="module")
def blinded(woe_fit):
    return holder_receives(woe_fit, blind=True)


def test_holder_solves_plain_woe_for_every_bins_default_count(woe_fit, plain):
    view, n = plain
    r = grade(view, woe_fit[4], *direct_solve(view, n))
    print("plain WOE, direct solve:", r)
    assert r["features"] == 9 and r["bins"] >= 27
    # every bin's default count but those sent exactly 0, and the bank's total, exactly
    zero = sum(int(((v["values"] == 0) & (v["counts"] > 0)).sum()) for v in view)
    assert r["exact"] == r["bins"] - zero and r["exact"] >= 0.9 * r["bins"], r
    assert r["total"] == r["true_total"] and r["residual"] < 1e-6, r


def test_blinded_woe_defeats_the_direct_solve(woe_fit, blinded):
    view, n = blinded
    r = grade(view, woe_fit[4], *direct_solve(view, n))
    print("blinded WOE, direct solve:", r)
    assert r["features"] == 9
    # no E makes the counts integers (the best is as far from them as noise), so the E
    # the solve picks is a guess, and bins come out right only by chance
    assert r["residual"] > 0.1, r
    assert r["exact"] <= 0.2 * r["bins"], r


def test_residual_affine_invariants_still_give_counts_away(woe_fit, blinded):
    """An accepted, documented residual (docs/PRIVACY.md, WOE row): numbers, so that the
    day an encoding hides the invariants this test says so and the note is updated."""
    view, n = blinded
    r = grade(view, woe_fit[4], *invariant_solve(view, n))
    print("blinded WOE, affine-invariant search:", r)
    assert r["total"] == r["true_total"], r
    assert r["exact"] >= 0.6 * r["bins"], r
