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

Beyond the classifier it mirrors the estimator options: weighted and regression gradients
(the caller passes g and h already weighted, and their integers at the per-tree scales
``scale`` for G and ``h_scale`` for H), and monotone constraints (``bank_mono`` and
``holder_mono``: +1/-1/0 per feature), written the plain way: per node output bounds, each
child's output clipped into them, the gain as the drop of ``G w + (H + lambda) w^2 / 2``, a
threshold of a +1 feature never with a higher left output (-1: right), the midpoint of a
monotone split bounding each side's subtree, leaves clipped. :func:`boost_reference` runs
the boosting loop around it.
"""
from __future__ import annotations

import numpy as np

from fedcredit.protocol.secureboost.math import SplitCandidates, goes_left


def candidates(n_bins, has_missing):
    c = SplitCandidates.build(np.asarray(n_bins), np.asarray(has_missing))
    return list(zip(c.feature.tolist(), c.bin.tolist(), c.missing_left.tolist()))


def gain(GL, HL, G, H, lam, gamma, scale, h_scale=None):
    hs = scale if h_scale is None else h_scale
    gl, hl, g, h = GL / scale, HL / hs, G / scale, H / hs
    gr, hr = g - gl, h - hl
    return 0.5 * (gl * gl / (hl + lam) + gr * gr / (hr + lam) - g * g / (h + lam)) - gamma


def bounded_split(GL, HL, G, H, lam, gamma, scale, h_scale, direction, lo, hi):
    """(gain, left output, right output) of a candidate at a node with output bounds
    [lo, hi]; gain None when the constraint forbids it."""
    gl, hl, g, h = GL / scale, HL / h_scale, G / scale, H / h_scale
    gr, hr = g - gl, h - hl
    wl = min(max(-gl / (hl + lam), lo), hi)
    wr = min(max(-gr / (hr + lam), lo), hi)
    if (direction > 0 and wl > wr) or (direction < 0 and wl < wr):
        return None, wl, wr
    if direction == 0 and lo == -np.inf and hi == np.inf:
        return gain(GL, HL, G, H, lam, gamma, scale, h_scale), wl, wr
    wp = min(max(-g / (h + lam), lo), hi)

    def objective(a, b, w):
        return a * w + 0.5 * (b + lam) * w * w

    return objective(g, h, wp) - objective(gl, hl, wl) - objective(gr, hr, wr) - gamma, wl, wr


def split_bounds(lo, hi, direction, wl, wr):
    if direction == 0:
        return (lo, hi), (lo, hi)
    mid = 0.5 * (wl + wr)
    if direction > 0:
        return (lo, min(hi, mid)), (max(lo, mid), hi)
    return (max(lo, mid), hi), (lo, min(hi, mid))


def grow_reference(bank_bins, bank_nb, holder_bins, holder_nb, holder_has_missing, g, h,
                   g_int, h_int, *, max_depth, min_child_samples, min_child_weight, reg_lambda,
                   gamma, floor, scale, learning_rate, rows, bank_only=False,
                   min_bin=0, h_scale=None, bank_mono=None, holder_mono=None,
                   holder_of=None, served=None):
    """Returns a list of nodes: dict(id, owner, feature, bin, ml, left, right, value, count).

    Several holders that serve different rows (``align="any"``): ``holder_of[f]`` is holder
    feature f's holder, ``served[k]`` a bool per row, whether holder k serves it; its
    features read as missing (bin ``holder_nb[f]``) on the rows it does not serve, and every
    count a holder's rules take (floors, sides, siblings, whether a node is asked) is over
    its served rows only. Sums are over every row. The minimum bin mass is not mirrored."""
    if served is not None and min_bin:
        raise NotImplementedError("the reference mirrors min_bin for holders that serve "
                                  "every row")
    k_of = np.zeros(len(holder_nb), dtype=int) if holder_of is None else np.asarray(holder_of)
    srv = [np.ones(len(g_int), dtype=bool)] if served is None else [np.asarray(v, dtype=bool)
                                                                      for v in served]

    def own(k, rows):  # the rows holder k serves
        return rows[srv[k][rows]]

    hs = scale if h_scale is None else h_scale
    bmono = np.zeros(len(bank_nb), dtype=int) if bank_mono is None else np.asarray(bank_mono)
    hmono = np.zeros(len(holder_nb), dtype=int) if holder_mono is None else \
        np.asarray(holder_mono)

    def direction(mono, nbs, f, t):  # a threshold between values, not "missing apart"
        return int(mono[f]) if t <= nbs[f] - 2 else 0

    bank_has_missing = (bank_bins[rows] == np.asarray(bank_nb)[None, :]).any(axis=0)
    bc = candidates(bank_nb, bank_has_missing)
    hc = candidates(holder_nb, holder_has_missing)
    side = max(min_child_samples, floor, 1)
    nodes = {0: dict(id=0, rows=rows, owner="leaf", left=-1, right=-1, parent=-1,
                     bounds=(-np.inf, np.inf))}
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
            lo, hi = nd["bounds"]
            best, choice = -np.inf, None
            for (f, t, ml) in bc:
                left = goes_left(bank_bins[r, f], bank_nb[f], t, ml)
                cl = int(left.sum())
                if cl < min_child_samples or len(r) - cl < min_child_samples:
                    continue
                GL, HL = int(g_int[r][left].sum()), int(h_int[r][left].sum())
                if HL / hs < min_child_weight or (H - HL) / hs < min_child_weight:
                    continue
                d = direction(bmono, bank_nb, f, t)
                v, wl, wr = bounded_split(GL, HL, G, H, reg_lambda, gamma, scale, hs, d, lo, hi)
                if v is not None and v > best:
                    best, choice = v, ("bank", f, t, ml, d, wl, wr)
            sib = None
            if nd["parent"] >= 0:
                prow = nodes[nd["parent"]]["rows"]
                sib = np.setdiff1d(prow, r, assume_unique=True)
            # the bank never sends a node whose sibling is below the floor (the holder would
            # derive the sibling as parent - node); bank-only trees have no holder candidates
            asked = {k for k in range(len(srv)) if len(own(k, r)) >= max(floor, 1) and
                     (sib is None or len(own(k, sib)) >= floor)}
            if asked and not bank_only:
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
                    if kept is not None and (f, t, ml) not in kept or k_of[f] not in asked:
                        continue
                    left = goes_left(holder_bins[r, f], holder_nb[f], t, ml)
                    rs = own(k_of[f], r)
                    cl = int(goes_left(holder_bins[rs, f], holder_nb[f], t, ml).sum())
                    if cl < side or len(rs) - cl < side:
                        continue
                    if sib is not None:
                        ss = own(k_of[f], sib)
                        sl = int(goes_left(holder_bins[ss, f], holder_nb[f], t, ml).sum())
                        if sl < floor or len(ss) - sl < floor:
                            continue
                    GL, HL = int(g_int[r][left].sum()), int(h_int[r][left].sum())
                    if HL / hs < min_child_weight or (H - HL) / hs < min_child_weight:
                        continue
                    d = direction(hmono, holder_nb, f, t)
                    v, wl, wr = bounded_split(GL, HL, G, H, reg_lambda, gamma, scale, hs, d,
                                              lo, hi)
                    if v is not None and v > hbest:  # strict: the first canonical one wins
                        hbest, hchoice = v, ("holder", f, t, ml, d, wl, wr)
                if hbest > best:
                    best, choice = hbest, hchoice
            if choice is None or best <= 0:
                continue
            owner, f, t, ml, d, wl, wr = choice
            bins = bank_bins if owner == "bank" else holder_bins
            nbs = bank_nb if owner == "bank" else holder_nb
            left = goes_left(bins[r, f], nbs[f], t, ml)
            nd.update(owner=owner, feature=f, bin=t, ml=ml, left=nxt, right=nxt + 1)
            for cid, mask, bnd in zip((nxt, nxt + 1), (left, ~left),
                                      split_bounds(lo, hi, d, wl, wr)):
                nodes[cid] = dict(id=cid, rows=r[mask], owner="leaf", left=-1, right=-1, parent=i,
                                  bounds=bnd)
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
            lo, hi = nd["bounds"]
            nd["value"] = float(min(max(-g[r].sum() / (h[r].sum() + reg_lambda), lo), hi)
                                * learning_rate)
        out.append(nd)
    return out


def scaled_ints(g, h, frac_bits):
    """g and h as the holder's slot cap allows them: the least k >= 0 with max|g| <= 2**k
    and 4 max h <= 2**k' scale them down by 2**k, 2**k' before rounding at ``frac_bits``.
    Returns (g_int, h_int, scale of G, scale of H)."""
    def k_for(bound):
        k = 0
        while bound > 2.0 ** k:
            k += 1
        return k

    fg = frac_bits - k_for(float(np.max(np.abs(g))))
    fh = frac_bits - k_for(4.0 * float(np.max(h)))
    return (np.rint(g * 2.0 ** fg).astype(np.int64), np.rint(h * 2.0 ** fh).astype(np.int64),
            2.0 ** fg, 2.0 ** fh)


def boost_reference(model, bank, y, holder, floor, *, weights=None, min_bin=0,
                    regression=False, bank_mono=None, holder_mono=None):
    """The plaintext boosting of ``model``'s settings on the rows ``bank`` shares with
    ``holder`` (in id order, as the session aligns them), with the model's own bank bins;
    log-loss, or squared error for ``regression``. Returns (base score, trees)."""
    from fedcredit.binning import BinMapper

    aligned = sorted(i for i in bank.index if i in holder.index)
    pos = bank.index.get_indexer(aligned)
    Xa, ya, Ha = bank.loc[aligned], np.asarray(y, dtype=float)[pos], holder.loc[aligned]
    wa = None if weights is None else np.asarray(weights, dtype=float)[pos]
    bank_bins = model.mapper_.transform(Xa).astype(np.int64)
    hm = BinMapper(model.max_bin).fit(Ha)
    holder_bins = hm.transform(Ha).astype(np.int64)
    holder_nb = hm.n_bins.tolist()
    holder_missing = (holder_bins == np.array(holder_nb)[None, :]).any(axis=0)
    if regression:
        base = float(np.average(ya, weights=wa))
    else:
        rate = float(np.average(ya, weights=wa))
        base = float(np.log(rate / (1 - rate)))
    raw = np.full(len(ya), base)
    rows = np.arange(len(ya))
    trees = []
    for t in range(model.n_estimators):
        if regression:
            g, h = raw - ya, np.ones(len(ya))
        else:
            p = 1 / (1 + np.exp(-raw))
            g, h = p - ya, np.maximum(p * (1 - p), 1e-16)
        if wa is not None:
            g, h = g * wa, h * wa
        g_int, h_int, sg, sh = scaled_ints(g, h, model.frac_bits)
        nodes = grow_reference(
            bank_bins, model.mapper_.n_bins.tolist(), holder_bins, holder_nb, holder_missing,
            g, h, g_int, h_int, max_depth=model.max_depth,
            min_child_samples=model.min_child_samples, min_child_weight=model.min_child_weight,
            reg_lambda=model.reg_lambda, gamma=model.gamma, floor=floor, scale=sg,
            learning_rate=model.learning_rate, rows=rows,
            bank_only=t < min(model.bank_only_trees, model.n_estimators - 1)
            and bank_bins.shape[1] > 0, min_bin=min_bin,
            h_scale=sh, bank_mono=bank_mono, holder_mono=holder_mono)
        for nd in nodes:
            if nd["owner"] == "leaf":
                raw[nd["rows"]] += nd["value"]
        trees.append(nodes)
    return base, trees


def assert_same_trees(model, party, trees, tol=1e-6):
    """``model``'s trees (and the holder's stored splits) are ``trees`` node for node."""
    stored = party.models.load(model.model_id_)
    assert len(model.trees_) == len(trees)
    for tree, rtree in zip(model.trees_, trees):
        assert [(nd.node_id, nd.owner, nd.left, nd.right, nd.count) for nd in tree.nodes] == [
            (rn["id"], rn["owner"], rn["left"], rn["right"], rn["count"]) for rn in rtree]
        for nd, rn in zip(tree.nodes, rtree):
            if nd.owner == "bank":
                assert (nd.feature, nd.bin, nd.missing_left) == (rn["feature"], rn["bin"],
                                                                 rn["ml"])
            elif nd.owner == "holder":
                assert stored.splits[nd.record_id] == (rn["feature"], rn["bin"], rn["ml"])
            else:
                assert abs(nd.value - rn["value"]) <= tol * max(1.0, abs(rn["value"]))


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
