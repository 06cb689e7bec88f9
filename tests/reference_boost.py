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
                   gamma, floor, scale, learning_rate, rows):
    """Returns a list of nodes: dict(id, owner, feature, bin, ml, left, right, value, count)."""
    bank_has_missing = (bank_bins[rows] == np.asarray(bank_nb)[None, :]).any(axis=0)
    bc = candidates(bank_nb, bank_has_missing)
    hc = candidates(holder_nb, holder_has_missing)
    side = max(min_child_samples, floor, 1)
    nodes = {0: dict(id=0, rows=rows, owner="leaf", left=-1, right=-1, parent=-1)}
    order, open_ids, nxt = [0], [0], 1
    for depth in range(max_depth):
        new_open = []
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
            if len(r) >= floor:
                sib = None
                if nd["parent"] >= 0:
                    prow = nodes[nd["parent"]]["rows"]
                    sib = np.setdiff1d(prow, r, assume_unique=True)
                hbest, hchoice = -np.inf, None
                for (f, t, ml) in hc:
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
