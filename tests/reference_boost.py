"""An independent, plaintext implementation of fedcredit's SecureBoost, for the lossless test.

It sees both parties' binned features in one place and grows trees with the algorithm the
protocol implements — quantised gradients, bank candidates first, holder candidates only
where the holder would disclose them (both sides of the node hold max(min_child_samples,
floor) rows and both sides within the sibling hold the floor), exact ties among holder
candidates broken by (feature, bin, missing right before left) — written directly over numpy
arrays. It shares with the library only the two rules that define the model: which split
candidates exist and which way a row goes (``fedcredit.protocol.secureboost.math``), so the
comparison tests the grower, the encrypted arithmetic and the protocol's bookkeeping, not a
second copy of the rules.
"""
from __future__ import annotations

import numpy as np

from fedcredit.protocol.secureboost.math import SplitCandidates, goes_left


def candidates(n_bins, has_missing):
    c = SplitCandidates.build(np.asarray(n_bins), np.asarray(has_missing))
    return list(zip(c.feature.tolist(), c.bin.tolist(), c.missing_left.tolist()))


def gain(GL, HL, G, H, lam, gamma, scale):
    gl, hl, g, h = GL / scale, HL / scale, G / scale, H / scale
    gr, hr = g - gl, h - hl
    return 0.5 * (gl * gl / (hl + lam) + gr * gr / (hr + lam) - g * g / (h + lam)) - gamma


def grow_reference(bank_bins, bank_nb, holder_bins, holder_nb, holder_has_missing, g, h,
                   g_int, h_int, *, max_depth, min_child_samples, min_child_weight, reg_lambda,
                   gamma, floor, scale, learning_rate, rows, bank_only=False,
                   min_bin=0):
    """Returns a list of nodes: dict(id, owner, feature, bin, ml, left, right, value, count)."""
    bank_has_missing = (bank_bins[rows] == np.asarray(bank_nb)[None, :]).any(axis=0)
    bc = candidates(bank_nb, bank_has_missing)
    hc = candidates(holder_nb, holder_has_missing)
    side = max(min_child_samples, floor, 1)
    nodes = {0: dict(id=0, rows=rows, owner="leaf", left=-1, right=-1, parent=-1)}
    order, open_ids, nxt = [0], [0], 1
    known_now: dict = {}  # node id -> holder candidates the bank knows there (min_bin > 0)
    for depth in range(max_depth):
        new_open = []
        known_prev, known_now = known_now, {}
        for i in open_ids:
            nd = nodes[i]
            r = nd["rows"]
            if len(r) < 2 * min_child_samples:
                continue
            G, H = int(g_int[r].sum()), int(h_int[r].sum())
            best, choice = -np.inf, None
            for (f, t, ml) in bc:
                left = goes_left(bank_bins[r, f], bank_nb[f], t, ml)
                cl = int(left.sum())
                if cl < min_child_samples or len(r) - cl < min_child_samples:
                    continue
                GL, HL = int(g_int[r][left].sum()), int(h_int[r][left].sum())
                if HL / scale < min_child_weight or (H - HL) / scale < min_child_weight:
                    continue
                v = gain(GL, HL, G, H, reg_lambda, gamma, scale)
                if v > best:
                    best, choice = v, ("bank", f, t, ml)
            sib = None
            if nd["parent"] >= 0:
                prow = nodes[nd["parent"]]["rows"]
                sib = np.setdiff1d(prow, r, assume_unique=True)
            # the bank never sends a node whose sibling is below the floor (the holder would
            # derive the sibling as parent - node); bank-only trees have no holder candidates
            if len(r) >= floor and (sib is None or len(sib) >= floor) and not bank_only:
                hbest, hchoice = -np.inf, None
                kept = None
                if min_bin:
                    if i not in known_now:
                        known_now.update(_known_pair(
                            i, nodes, hc, holder_bins, holder_nb, side, floor, min_bin,
                            known_prev, lambda j: _asked(nodes, j, floor, min_child_samples,
                                                         bank_only)))
                    kept = known_now[i]
                for (f, t, ml) in hc:
                    if kept is not None and (f, t, ml) not in kept:
                        continue
                    left = goes_left(holder_bins[r, f], holder_nb[f], t, ml)
                    cl = int(left.sum())
                    if cl < side or len(r) - cl < side:
                        continue
                    if sib is not None:
                        sl = int(goes_left(holder_bins[sib, f], holder_nb[f], t, ml).sum())
                        if sl < floor or len(sib) - sl < floor:
                            continue
                    GL, HL = int(g_int[r][left].sum()), int(h_int[r][left].sum())
                    if HL / scale < min_child_weight or (H - HL) / scale < min_child_weight:
                        continue
                    v = gain(GL, HL, G, H, reg_lambda, gamma, scale)
                    if v > hbest:  # strict: the first in canonical order wins ties
                        hbest, hchoice = v, ("holder", f, t, ml)
                if hbest > best:
                    best, choice = hbest, hchoice
            if choice is None or best <= 0:
                continue
            owner, f, t, ml = choice
            bins = bank_bins if owner == "bank" else holder_bins
            nbs = bank_nb if owner == "bank" else holder_nb
            left = goes_left(bins[r, f], nbs[f], t, ml)
            nd.update(owner=owner, feature=f, bin=t, ml=ml, left=nxt, right=nxt + 1)
            for cid, mask in ((nxt, left), (nxt + 1, ~left)):
                nodes[cid] = dict(id=cid, rows=r[mask], owner="leaf", left=-1, right=-1, parent=i)
                order.append(cid)
                new_open.append(cid)
            nxt += 2
        open_ids = new_open
        if not open_ids:
            break
    out = []
    for i in order:
        nd = nodes[i]
        r = nd["rows"]
        nd["count"] = len(r)
        if nd["owner"] == "leaf":
            nd["value"] = float(-g[r].sum() / (h[r].sum() + reg_lambda) * learning_rate)
        out.append(nd)
    return out


# -- the minimum bin mass, written out plainly (the holder's version is vectorised) -----------
def _asked(nodes, j, floor, min_child_samples, bank_only):
    """Whether the bank sends node ``j`` to the holder (the grower's rule)."""
    r = nodes[j]["rows"]
    sib_n = None
    if nodes[j]["parent"] >= 0:
        sib_n = len(nodes[nodes[j]["parent"]]["rows"]) - len(r)
    return (len(r) >= 2 * min_child_samples and len(r) >= floor
            and (sib_n is None or sib_n >= floor) and not bank_only)


def _floor_ok(rows, sib, hc, holder_bins, holder_nb, side, floor):
    ok = set()
    for (f, t, ml) in hc:
        cl = int(goes_left(holder_bins[rows, f], holder_nb[f], t, ml).sum())
        if cl < side or len(rows) - cl < side:
            continue
        if sib is not None:
            sl = int(goes_left(holder_bins[sib, f], holder_nb[f], t, ml).sum())
            if sl < floor or len(sib) - sl < floor:
                continue
        ok.add((f, t, ml))
    return ok


def _known_pair(i, nodes, hc, holder_bins, holder_nb, side, floor, min_bin, known_prev, asked):
    """Candidates the bank learns at node ``i`` and at its sibling if that is asked too."""
    par = nodes[i]["parent"]
    shared = known_prev.get(par, set()) if par >= 0 else set()
    group, sib_rows = [i], None
    if par >= 0:
        sib_id = nodes[par]["left"] if nodes[par]["right"] == i else nodes[par]["right"]
        sib_rows = nodes[sib_id]["rows"]
        if asked(sib_id):
            group.append(sib_id)
    views = []  # (rows, eligible): node(s) asked, then a sibling the bank derives shared sums at
    for j in group:
        rj = nodes[j]["rows"]
        sj = np.setdiff1d(nodes[par]["rows"], rj, assume_unique=True) if par >= 0 else None
        views.append((rj, _floor_ok(rj, sj, hc, holder_bins, holder_nb, side, floor)))
    if par >= 0 and len(group) == 1:
        sib_floor = set()
        for (f, t, ml) in hc:
            sl = int(goes_left(holder_bins[sib_rows, f], holder_nb[f], t, ml).sum())
            if sl >= floor and len(sib_rows) - sl >= floor and (f, t, ml) in shared:
                sib_floor.add((f, t, ml))
        views.append((sib_rows, sib_floor))
    kept = [set() for _ in views]
    for f in range(len(holder_nb)):
        nb = holder_nb[f]
        stat = []
        for rows, _ in views:
            cnt = np.bincount(holder_bins[rows, f], minlength=nb + 1)
            nonmiss, miss = int(cnt[:nb].sum()), int(cnt[nb])
            two = miss >= min_bin
            stat.append((np.cumsum(cnt[:nb]), two, nonmiss if two else len(rows)))
        last = [0] * len(views)
        for t in sorted({c[1] for c in hc if c[0] == f}):
            variants = [c for c in hc if c[0] == f and c[1] == t]
            ok = {}
            for x, (_, eligible) in enumerate(views):
                cum, two, top = stat[x]
                lo = int(cum[t])
                gap = lo - last[x] >= min_bin and (top - lo >= min_bin or (two and top == lo))
                for c in variants:
                    ok[x, c] = gap and c in eligible and (two or not c[2])
            for c in variants:
                if c in shared:
                    both = all(ok[x, c] for x in range(len(views)))
                    for x in range(len(views)):
                        ok[x, c] = both
            for x in range(len(views)):
                for c in variants:
                    if ok[x, c]:
                        kept[x].add(c)
                if any(ok[x, c] for c in variants):
                    last[x] = int(stat[x][0][t])
    # across features: two known left sets differ in no row or in min_bin rows or more
    masks = [{c: goes_left(holder_bins[rows, c[0]], holder_nb[c[0]], c[1], c[2]) for c in k}
             for (rows, _), k in zip(views, kept)]
    accepted = [[] for _ in views]
    for c in hc:  # canonical order
        ok = []
        for x in range(len(views)):
            good = c in kept[x]
            for a in accepted[x] if good else []:
                d = int((masks[x][c] ^ masks[x][a]).sum())
                if a[0] != c[0] and 0 < d < min_bin:
                    good = False
            ok.append(good)
        if c in shared:
            ok = [all(ok)] * len(views)
        for x in range(len(views)):
            if ok[x]:
                accepted[x].append(c)
    return {j: set(accepted[k]) for k, j in enumerate(group)}
