"""The boosting loop every SecureBoost estimator shares: losses, weighted gradients in the
holder's slot width, monotone constraints resolved to features, and the trees.

**Gradients on the wire.** The holder caps the packing slot at what honest classifier
gradients need at ``frac_bits`` (|g| <= 1, h <= 1/4). Weighted gradients (``w * g``) and a
regressor's residuals are larger, so each tree scales its g and h by powers of two until they
fit (``g / 2**k_g``, ``h / 2**k_h``, rounded at ``frac_bits``); the bank, which decrypts the
sums, multiplies back when it computes gains. An unweighted classifier has ``k_g = k_h = 0``:
its integers are exactly those of ``FixedPoint(frac_bits)``. The holder sees no more than
before: one ciphertext per row in a slot no wider than its cap. What scaling costs is
precision: ``k`` bits of the gradients' fraction (a weight of 5 loses 3 bits of 24; residuals
of a million yuan are kept to 1/16 yuan).
"""
from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np

from ...binning import BinMapper
from ...errors import InvalidInput
from ...protocol.secureboost import bank as steps
from ..base import check_xy, progress_bar, sigmoid
from ..holders import HolderPart, HolderSessions
from .federated import FederatedHolder, SharedGradients
from .grower import TreeGrower, each
from .splitting import SplitParams

#: ``tree_ids_`` entry of a bank-only tree: the holder has no tree for it
BANK_ONLY = -1


class Loss:
    """What the boosting loop needs of a loss: the initial score, per-row gradient and
    hessian of the raw score, and the validation loss."""

    name = ""

    @staticmethod
    def init_score(y: np.ndarray, w: np.ndarray | None) -> float:
        raise NotImplementedError

    @staticmethod
    def gradients(raw: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    @staticmethod
    def loss(raw: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError


class LogisticLoss(Loss):
    """Binary log-loss on log-odds (the classifier)."""

    name = "log-loss"

    @staticmethod
    def init_score(y: np.ndarray, w: np.ndarray | None) -> float:
        rate = float(y.mean()) if w is None else float(np.average(y, weights=w))
        return float(np.log(rate / (1 - rate)))

    @staticmethod
    def gradients(raw: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = sigmoid(raw)
        return p - y, np.maximum(p * (1 - p), 1e-16)

    @staticmethod
    def loss(raw: np.ndarray, y: np.ndarray) -> float:
        p = np.clip(sigmoid(raw), 1e-15, 1 - 1e-15)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


class SquaredLoss(Loss):
    """Squared error (the regressor): init at the (weighted) mean, g = prediction - y."""

    name = "squared error"

    @staticmethod
    def init_score(y: np.ndarray, w: np.ndarray | None) -> float:
        return float(y.mean()) if w is None else float(np.average(y, weights=w))

    @staticmethod
    def gradients(raw: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return raw - y, np.ones(len(y))

    @staticmethod
    def loss(raw: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((raw - y) ** 2))


def _shift(bound: float) -> int:
    """The least k >= 0 with ``bound <= 2**k``."""
    if not bound > 1:
        return 0
    k = int(np.ceil(np.log2(bound)))
    return k + 1 if bound > 2.0 ** k else k


def tree_gradients(g: np.ndarray, h: np.ndarray, frac_bits: int, params: SplitParams
                   ) -> tuple[np.ndarray, np.ndarray, SplitParams]:
    """Fixed-point g and h within the holder's slot cap (|g| <= 2**f, h <= 2**f / 4), and
    ``params`` with the scales that undo it (see the module docstring)."""
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(h))):
        raise InvalidInput("gradients contain NaN or infinite entries (targets too large?)")
    f = int(frac_bits)
    fg = f - _shift(float(np.max(np.abs(g))) if len(g) else 0.0)
    fh = f - _shift(4.0 * float(np.max(h)) if len(h) else 0.0)
    g_int = np.rint(g * 2.0 ** fg).astype(np.int64)
    h_int = np.rint(h * 2.0 ** fh).astype(np.int64)
    return g_int, h_int, replace(params, scale=2.0 ** fg, h_scale=2.0 ** fh)


def goss_rows(g: np.ndarray, top_rate: float, other_rate: float, rng
              ) -> tuple[np.ndarray, np.ndarray]:
    """GOSS: (positions kept, increasing; each one's gradient multiplier). The rows of the
    ``top_rate`` largest ``|g|`` count once; a uniform ``other_rate`` sample of the rest
    counts ``(1 - top_rate) / other_rate`` times, so sums stay unbiased."""
    n = len(g)
    k_top = int(round(top_rate * n))
    order = np.argsort(-np.abs(g), kind="stable")
    rest = order[k_top:]
    other = rng.choice(rest, size=min(len(rest), max(1, int(round(other_rate * n)))),
                       replace=False)
    sel = np.sort(np.concatenate([order[:k_top], other]))
    amp = np.where(np.isin(sel, other), (1.0 - top_rate) / other_rate, 1.0)
    return sel, amp


def resolve_monotone(constraints, mapper: BinMapper, holders: list[tuple[str, list[str]]]
                     ) -> tuple[np.ndarray, list[dict[str, int]]]:
    """(direction per bank feature, per holder: its feature name -> direction) of
    ``monotone_constraints``. ``holders``: (name, published features) per holder. Keys name
    bank columns, or holder features: ``<holder name>:<feature>``, or with one holder
    ``holder:<feature>``, or the plain name where no bank column and only one holder has
    it."""
    bank_names = mapper.feature_names
    bank: dict[str, int] = {}
    per_holder: list[dict[str, int]] = [{} for _ in holders]
    for key, d in dict(constraints or {}).items():
        name = str(key)
        if int(d) == 0:
            continue
        if name in bank_names:
            bank[name] = int(d)
            continue
        hits = [(k, name[len(h) + 1:]) for k, (h, feats) in enumerate(holders)
                if name.startswith(f"{h}:") and name[len(h) + 1:] in feats]
        plain = name[len("holder:"):] if name.startswith("holder:") and len(holders) == 1 \
            else name
        hits = hits or [(k, plain) for k, (_, feats) in enumerate(holders) if plain in feats]
        if len(hits) != 1:
            known = [f for _, feats in holders for f in feats]
            why = "more than one holder publishes it: name it <holder>:<feature>" if hits \
                else (f"it is neither a bank feature ({', '.join(bank_names) or 'none'}) nor "
                      f"one the holder publishes ({', '.join(known[:8])} ...)")
            raise InvalidInput(f"monotone_constraints names {name!r}: {why}")
        k, feature = hits[0]
        per_holder[k][feature] = int(d)
    try:
        per_bank = mapper.monotone_directions(list(bank), list(bank.values()))
    except InvalidInput as e:
        raise InvalidInput(f"monotone_constraints: {e}") from None
    return per_bank, per_holder


def fit_boosting(est, session, Xa, ya, weights, rows, *, eval_set=None,
                 early_stopping_rounds=None, eval_id_column=None) -> dict[str, float]:
    """Boost ``est`` (a SecureBoost estimator) on ``rows`` of an open, aligned session (or
    of the sessions of several holders, :class:`~fedcredit.models.holders.HolderSessions`).

    All row arrays live in the session's position space (size ``rows.max() + 1``; rows not
    trained on stay zero), so the grower's node rows are the positions the holder knows
    (each holder's, through its ``local`` map).
    """
    group = session if isinstance(session, HolderSessions) else HolderSessions([session], [None])
    sessions = group.sessions
    loss = est._loss
    pos = np.asarray(rows, dtype=np.int64)
    n_space = int(pos.max()) + 1
    est.mapper_ = mapper = BinMapper(est.max_bin, est.random_state).fit(Xa)
    bins = np.zeros((n_space, len(mapper.features_)), dtype=np.uint8)
    bins[pos] = mapper.transform(Xa)
    y = np.zeros(n_space)
    y[pos] = ya
    w = None
    if weights is not None:
        w = np.zeros(n_space)
        w[pos] = weights
    est.feature_names_bank_ = list(mapper.feature_names)
    published = [(s.holder_name, list(s.feature_names)) for s in sessions]
    est.holder_feature_names_ = [f for _, feats in published for f in feats]
    est.holders_ = [HolderPart(name, "", feats) for name, feats in published]
    bank_mono, holder_mono = resolve_monotone(est.monotone_constraints, mapper, published)
    params = SplitParams(est.reg_lambda, est.gamma, est.min_child_samples,
                         est.min_child_weight)

    def own_rows(k: int) -> np.ndarray:  # the training rows holder k serves, as it numbers them
        m = group.local[k]
        return pos if m is None else m[pos][m[pos] >= 0]

    each(list(range(len(sessions))), lambda k: steps.boost_start(
        sessions[k], own_rows(k), est.max_bin, est.min_child_samples, est.frac_bits,
        holder_mono[k]))
    shared = SharedGradients(len(sessions)) if len(sessions) > 1 else None
    federated = [FederatedHolder(s, k, group.local[k], shared) for k, s in enumerate(sessions)]
    for f in federated:  # the next tree's randomisers are made while this one grows
        f.last_tree = int(est.n_estimators) - 1
    grower = TreeGrower(bins, mapper.n_bins, params, est.max_depth, federated, bank_mono)
    local = TreeGrower(bins, mapper.n_bins, params, est.max_depth, None, bank_mono)
    n_local = min(int(est.bank_only_trees), int(est.n_estimators) - 1)
    if n_local and not len(mapper.features_):
        warnings.warn("bank_only_trees needs bank features: with ids and labels only, every "
                      "tree is federated and the first one's gradients are one constant "
                      "minus the label (docs/PRIVACY.md)", stacklevel=6)
        n_local = 0
    est.base_score_ = loss.init_score(ya, weights)
    raw = np.full(n_space, est.base_score_)
    rng = np.random.default_rng(est.random_state)
    est.trees_ = []
    est.tree_ids_ = []
    est.n_aligned_ = len(pos)
    val = _eval_setup(est, eval_set, eval_id_column)
    best, best_iter, history = np.inf, -1, []
    bar = progress_bar(est.verbose, int(est.n_estimators), "SecureBoost trees", "tree")
    sk = sessions[0].key[1]
    if steps.PRECOMPUTE_RANDOMISERS and n_local < int(est.n_estimators):  # while tree 0 grows
        share = float(est.goss_top_rate) + float(est.goss_other_rate) if est.goss_top_rate \
            else float(est.subsample)  # a tree's rows, not more
        sk.stock_randomisers(int(round(share * len(pos))), sessions[0].workers)
    try:
        for t in range(int(est.n_estimators)):
            g, h = loss.gradients(raw, y)
            if w is not None:
                g, h = g * w, h * w
            tree_rows = pos
            if est.goss_top_rate:  # the largest |g| and a scaled sample of the rest
                sel, amp = goss_rows(g[pos], float(est.goss_top_rate),
                                     float(est.goss_other_rate), rng)
                tree_rows = pos[sel]
                g, h = g.copy(), h.copy()
                g[tree_rows] *= amp
                h[tree_rows] *= amp
            g_int, h_int, tree_params = tree_gradients(g[pos], h[pos], est.frac_bits, params)
            g_full, h_full = np.zeros(n_space, np.int64), np.zeros(n_space, np.int64)
            g_full[pos], h_full[pos] = g_int, h_int
            if est.subsample < 1:
                k = max(2 * est.min_child_samples, int(round(est.subsample * len(pos))))
                tree_rows = pos[np.sort(rng.choice(len(pos), size=min(len(pos), k),
                                                   replace=False))]
            tree, leaf_rows = (local if t < n_local else grower).grow(
                t, tree_rows, g, h, g_full, h_full, float(est.learning_rate),
                progress=(lambda d, t=t: bar.set_postfix(tree=t, level=d)) if bar else None,
                params=tree_params)
            est.trees_.append(tree)
            est.tree_ids_.append(BANK_ONLY if t < n_local else t)
            if len(tree_rows) == len(pos):
                for leaf, r in leaf_rows.items():
                    raw[r] += next(nd.value for nd in tree.nodes if nd.node_id == leaf)
            else:
                raw[pos] += est._tree_scores(group, tree, est.tree_ids_[-1], bins[pos],
                                             Xa.index.tolist())
            if val is not None:
                val["raw"] += est._tree_scores(group, tree, est.tree_ids_[-1], val["bins"],
                                               val["ids"])
                history.append(loss.loss(val["raw"], val["y"]))
                if history[-1] < best - 1e-12:
                    best, best_iter = history[-1], t
                elif early_stopping_rounds and t - best_iter >= early_stopping_rounds:
                    break
            if bar:
                bar.update(1)
    finally:
        sk.drop_randomisers()  # the fit's key encrypts nothing more
        if bar:
            bar.close()
    if val is not None and early_stopping_rounds:
        keep = best_iter + 1
        est.trees_, est.tree_ids_ = est.trees_[:keep], est.tree_ids_[:keep]
        est.best_iteration_ = best_iter
    est.eval_history_ = history
    ids = each(sessions, steps.finish_model)
    for part, model_id in zip(est.holders_, ids):
        part.model_id = model_id
    est.model_id_ = "+".join(ids)  # one holder: its id; several: each holder's, in order
    return {"bank_split_finding": round(grower.split_seconds + local.split_seconds, 4),
            "bank_encryptions_precomputed": int(sk.randomisers_used)}


def _eval_setup(est, eval_set, id_column):
    if eval_set is None:
        return None
    Xv, yv = eval_set
    Xv, yv = check_xy(Xv, yv, id_column, target=est._target)
    return {"ids": Xv.index.tolist(), "bins": est.mapper_.transform(Xv), "y": yv,
            "raw": np.full(len(yv), est.base_score_)}
