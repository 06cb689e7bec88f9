"""``HeteroWOE``: weight of evidence and information value of both parties' features.

The bank learns, per bin of each holder feature, the count and the number of events — from
which WOE and IV follow — without seeing a holder value or bin edge, in three steps:

1. ``WoeStart`` + ``WoeLabels`` (bank -> holder): the training rows and Enc(y_i) per row.
   The holder learns the rows (of ids it already aligned) and nothing of the labels.
2. ``WoeStats`` (holder -> bank): per holder bin, the count in the clear and the encrypted
   sum of labels, packed and re-randomised; bins below the holder's ``min_node_samples``
   were merged into a neighbour first. The bank learns counts and event counts per bin
   (the bin sizes follow the holder's quantiles, so counts say little beyond the feature's
   share of missing or repeated values), and bins' order within a feature — no edge.
3. ``WoeMerge`` (bank -> holder, optional): the optimal binning, solved by the bank on the
   decrypted per-bin counts (monotonic WOE trend), as merge maps of adjacent bins. The
   holder learns which of its bins the bank joins (inequalities on their event rates, no
   count, not the trend's direction); its edges never leave.

The holder learns no default count in these steps. The tables themselves must not reach it:
the WOE of its bins with its own bin counts solve for every bin's default count and the
bank's total, which is why :class:`Scorecard` sends the holder a blinded image of them
(``blind_woe=True``) and why :meth:`HeteroWOE.woe_values` is for the bank's own use.

WOE and IV follow optbinning's convention: ``WoE = ln(%non-events / %events)`` per bin
(0 for a bin without events or without non-events), ``IV = sum (%events - %non-events) *
ln(%events / %non-events)``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..binning import BinMapper
from ..errors import InvalidInput
from ..protocol.woe import bank as woe_steps
from ..protocol.woe.math import floor_map
from .base import FederatedEstimator
from .holders import HolderPart, HolderSessions

FORMAT = "fedcredit.woe/1"
TRENDS = ("auto", "ascending", "descending", "none")


def woe_table(events: np.ndarray, counts: np.ndarray, labels: list[str],
              totals: np.ndarray | None = None) -> pd.DataFrame:
    """A binning table with optbinning's columns and formulas. With ``totals`` (weighted
    rows per bin) ``events`` are weighted too: Event, Non-event and Event rate are weighted,
    Count stays the bin's rows."""
    ev = np.asarray(events, dtype=np.float64)
    cnt = np.asarray(counts, dtype=np.float64)
    ne = (cnt if totals is None else np.asarray(totals, dtype=np.float64)) - ev
    weighted = totals is not None
    te, tn, tc = ev.sum(), ne.sum(), cnt.sum()
    p_e = ev / te if te else np.zeros_like(ev)
    p_n = ne / tn if tn else np.zeros_like(ne)
    ok = (ev > 0) & (ne > 0)
    woe = np.zeros_like(ev)
    iv = np.zeros_like(ev)
    rate = np.divide(ev, ev + ne, out=np.zeros_like(ev), where=ev + ne > 0)
    woe[ok] = np.log(p_n[ok] / p_e[ok])
    iv[ok] = (p_e[ok] - p_n[ok]) * np.log(p_e[ok] / p_n[ok])
    kind = np.float64 if weighted else np.int64
    return pd.DataFrame({"Bin": labels, "Count": cnt.astype(np.int64),
                         "Count (%)": cnt / tc if tc else cnt, "Non-event": ne.astype(kind),
                         "Event": ev.astype(kind), "Event rate": rate, "WoE": woe, "IV": iv})


def _seg_iv(e: float, n: float, te: float, tn: float) -> tuple[float, float]:
    if e <= 0 or n <= 0:
        return 0.0, 0.0
    pe, pn = e / te, n / tn
    return float(np.log(pn / pe)), float((pe - pn) * np.log(pe / pn))


def monotonic_merge(events: np.ndarray, counts: np.ndarray, min_count: int,
                    trend: str = "auto", max_bins: int = 20,
                    totals: np.ndarray | None = None) -> np.ndarray:
    """Optimal merge of adjacent bins (the last one, missing, stays apart): maximise IV
    subject to a monotonic WOE trend and at least ``min_count`` rows per bin, by dynamic
    programming over segment ends (exact for the given prebins). ``totals``: weighted rows
    per bin, for weighted ``events`` (rows still count for ``min_count``). Returns prebin ->
    bin."""
    ev = np.asarray(events, dtype=np.float64)
    cnt = np.asarray(counts, dtype=np.float64)
    tot = cnt if totals is None else np.asarray(totals, dtype=np.float64)
    te, tn = ev.sum(), (tot - ev).sum()
    m = len(ev) - 1
    ce = np.concatenate([[0.0], np.cumsum(ev[:m])])
    cc = np.concatenate([[0.0], np.cumsum(cnt[:m])])
    ct = np.concatenate([[0.0], np.cumsum(tot[:m])])
    if m <= 1 or te == 0 or tn == 0:
        return np.r_[np.zeros(m, dtype=np.int64), min(m, 1)]
    seg = {}
    for i in range(m):
        for j in range(i + 1, m + 1):
            if cc[j] - cc[i] >= min_count:
                e = ce[j] - ce[i]
                seg[i, j] = _seg_iv(e, ct[j] - ct[i] - e, te, tn)
    best_map, best_iv = None, -np.inf
    for tr in (("ascending", "descending") if trend == "auto" else (trend,)):
        # trends name the event rate, as in optbinning: WoE moves the other way
        sign = {"ascending": -1, "descending": 1, "none": 0}[tr]
        # dp[i, j, q] = (iv, prev start) for a prefix ending with segment [i, j) as bin q
        dp: dict = {}
        for j in range(1, m + 1):
            for i in range(0, j):
                if (i, j) not in seg:
                    continue
                w, v = seg[i, j]
                if i == 0:
                    dp[i, j, 1] = (v, None)
                    continue
                for q in range(2, max_bins + 1):
                    cand = None
                    for h in range(0, i):
                        prev = dp.get((h, i, q - 1))
                        if prev is None or (sign and sign * (w - seg[h, i][0]) < 0):
                            continue
                        if cand is None or prev[0] > cand[0]:
                            cand = (prev[0], h)
                    if cand is not None:
                        dp[i, j, q] = (cand[0] + v, cand[1])
        ends = [(dp[key][0], key) for key in dp if key[1] == m]
        if not ends:
            continue
        iv, (i, j, q) = max(ends)
        if iv > best_iv:
            starts = []
            while True:
                starts.append(i)
                h = dp[i, j, q][1]
                if h is None:
                    break
                i, j, q = h, i, q - 1
            starts = sorted(starts)
            mp = np.searchsorted(np.array(starts), np.arange(m), side="right") - 1
            best_map, best_iv = mp, iv
    if best_map is None:  # no valid segmentation: one bin
        best_map = np.zeros(m, dtype=np.int64)
    return np.r_[best_map, best_map.max() + 1].astype(np.int64)


def optbinning_merge(events, counts, min_count, trend="auto", max_bins=20) -> np.ndarray:
    """The same merge solved by optbinning (optional dependency) from prebin index and
    counts as sample weights: an exact input, since every row of a prebin is alike."""
    from optbinning import OptimalBinning

    ev = np.asarray(events, dtype=np.float64)
    cnt = np.asarray(counts, dtype=np.float64)
    m = len(ev) - 1
    x = np.r_[np.arange(m), np.arange(m), np.nan, np.nan].astype(np.float64)
    yv = np.r_[np.ones(m), np.zeros(m), 1, 0]
    sw = np.r_[ev[:m], cnt[:m] - ev[:m], ev[m], cnt[m] - ev[m]]
    keep = sw > 0
    ob = OptimalBinning(dtype="numerical", monotonic_trend=None if trend == "none" else
                        ("auto_asc_desc" if trend == "auto" else trend),
                        user_splits=np.arange(m - 1) + 0.5, max_n_bins=max_bins,
                        min_bin_size=min_count / max(cnt.sum(), 1))
    ob.fit(x[keep], yv[keep], sample_weight=sw[keep])
    mp = np.searchsorted(np.asarray(ob.splits, dtype=np.float64), np.arange(m))
    return np.r_[mp, mp.max() + 1 if m else 0].astype(np.int64)


class HeteroWOE(FederatedEstimator):
    """WOE/IV of the bank's and the holder's features; optional optimal monotonic binning.

    Parameters
    ----------
    max_bin : int
        Quantile prebins per feature (each party bins its own).
    optimal : bool
        Merge prebins optimally (max IV, monotonic WOE, ``min_bin_size``); for holder
        features the bank solves it on decrypted counts and sends only merge maps.
    monotonic_trend : {"auto", "ascending", "descending", "none"}
    min_bin_size : float
        Smallest final bin as a fraction of the rows.
    max_n_bins : int
    solver : {"dp", "optbinning"}
        Own exact dynamic programme (no extra dependency), or optbinning's solver.
    iv_threshold : float
        Features with IV below it are not :attr:`selected_`.
    key_bits, insecure_key, he_scheme, n_jobs, random_state : as for SecureBoost.
    """

    _format = FORMAT
    _task = "woe"
    _multi_holder = True

    def __init__(self, max_bin: int = 20, optimal: bool = True, monotonic_trend: str = "auto",
                 min_bin_size: float = 0.05, max_n_bins: int = 10, solver: str = "dp",
                 iv_threshold: float = 0.02, key_bits: int = 2048, insecure_key: bool = False,
                 he_scheme: str = "paillier", n_jobs: int | None = None,
                 random_state: int | None = 0):
        self.max_bin = max_bin
        self.optimal = optimal
        self.monotonic_trend = monotonic_trend
        self.min_bin_size = min_bin_size
        self.max_n_bins = max_n_bins
        self.solver = solver
        self.iv_threshold = iv_threshold
        self.key_bits = key_bits
        self.insecure_key = insecure_key
        self.he_scheme = he_scheme
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _validate_params(self) -> None:
        if self.monotonic_trend not in TRENDS or self.solver not in ("dp", "optbinning"):
            raise InvalidInput(f"monotonic_trend must be one of {TRENDS}; solver 'dp' or "
                               "'optbinning'")
        if not 0 <= float(self.min_bin_size) < 1 or int(self.max_n_bins) < 1:
            raise InvalidInput("min_bin_size must be in [0, 1) and max_n_bins >= 1")

    def _merge(self, events, counts, n_rows, totals=None) -> np.ndarray:
        min_count = max(1, int(np.ceil(float(self.min_bin_size) * n_rows)))
        if self.solver == "dp":
            return monotonic_merge(events, counts, min_count, self.monotonic_trend,
                                   int(self.max_n_bins), totals)
        return optbinning_merge(events, counts, min_count, self.monotonic_trend,
                                int(self.max_n_bins))

    def fit(self, X, y, holder=None, *, holders=None, id_column: str | None = None,
            sample_weight=None, align: str = "all"):
        """Align with the holder (PSI), then WOE/IV of both parties' features.

        Parameters
        ----------
        X, y, holder, holders, id_column
            As for :meth:`FederatedEstimator.fit` (several holders: each bins and sums its
            own features, named ``<holder name>:<feature>``).
        sample_weight : array-like, optional
            Weighted WOE and IV: events and non-events are weighted sums (the holder's sums
            over its bins too), while counts, the holder's floor and ``min_bin_size`` stay
            on rows. Needs ``solver="dp"``.
        align : "all"
            The enterprises every holder serves; "any" is refused (a holder folds a small
            missing bin into its largest, unseen by the bank: SecureBoost only).

        Returns
        -------
        self
        """
        if sample_weight is not None and self.solver != "dp":
            raise InvalidInput("sample_weight needs solver='dp' (optbinning's minimum bin "
                               "size would count weight, not rows)")
        return self._fit_federated(X, y, holder, holders=holders, id_column=id_column,
                                   sample_weight=sample_weight, align=align)

    def _fit_aligned(self, session, Xa: pd.DataFrame, ya: np.ndarray, *, weights=None,
                     rows=None) -> None:
        """WOE/IV on ``rows`` of an aligned session, or of several holders' sessions
        (:class:`~fedcredit.models.holders.HolderSessions`): each holder bins and sums its
        own features, named ``<holder name>:<feature>`` when there are several."""
        n = len(ya)
        rows = np.arange(n) if rows is None else rows
        group = session if isinstance(session, HolderSessions) else \
            HolderSessions([session], [None])
        floor = max([int(s.min_node_samples) for s in group.sessions] + [1])
        tables: dict[str, pd.DataFrame] = {}
        party: dict[str, str] = {}
        self.holder_feature_names_: list[str] = []
        self.holder_bins_: dict[int, int] = {}
        self.holders_: list[HolderPart] = []
        for s, local in zip(group.sessions, group.local):
            prefix = "holder:" if len(group) == 1 else f"{s.holder_name}:"
            own = rows if local is None else local[rows]
            stats = woe_steps.woe_stats(s, own, ya, self.max_bin,
                                        **({} if weights is None else {"weights": weights}))
            self._holder_tables(s, stats, n, prefix, tables, party)
            self.holders_.append(HolderPart(s.holder_name, stats.binning_id,
                                            list(stats.feature_names)))
        # the bank's own features: the same procedure in the clear
        self.mapper_ = BinMapper(self.max_bin, self.random_state).fit(Xa)
        self.feature_names_bank_ = list(self.mapper_.feature_names)
        raw = self.mapper_.transform(Xa).astype(np.int64)
        self.bank_maps_ = {}
        wy = ya if weights is None else ya * weights
        for f, fb in enumerate(self.mapper_.features_):
            cnt0 = np.bincount(raw[:, f], minlength=fb.n_bins + 1)
            pre, size = floor_map(cnt0, floor)
            pb = pre[raw[:, f]]
            ev = np.bincount(pb, weights=wy, minlength=size)
            cnt = np.bincount(pb, minlength=size)
            tot = None if weights is None else np.bincount(pb, weights=weights, minlength=size)
            mp = self._merge(ev, cnt, n, tot) if self.optimal else np.arange(size)
            full = mp[pre]  # raw bin -> final bin
            self.bank_maps_[fb.name] = full
            fb_rows = full[raw[:, f]]
            fe = np.bincount(fb_rows, weights=wy, minlength=mp.max() + 1)
            fc = np.bincount(fb_rows, minlength=mp.max() + 1)
            ft = None if weights is None else np.bincount(fb_rows, weights=weights,
                                                          minlength=mp.max() + 1)
            tables[fb.name] = woe_table(fe, fc, self._bank_labels(f, full, mp.max() + 1), ft)
            party[fb.name] = "bank"
        self.tables_ = tables
        self.iv_ = pd.Series({k: float(t["IV"].sum()) for k, t in tables.items()},
                             name="iv").sort_values(ascending=False)
        self.party_ = pd.Series(party, name="party")
        # the holder keeps its bins under this id (several holders: each its own, in order)
        self.model_id_ = "+".join(h.model_id for h in self.holders_)

    def _holder_tables(self, session, stats, n: int, prefix: str, tables: dict,
                       party: dict) -> None:
        """One holder's WOE tables from its per-bin sums (merged as the bank's optimal
        binning says, the merge maps sent back)."""
        all_totals = stats.totals  # None unweighted
        holder_maps, at = {}, 0
        for f, (name, size) in enumerate(zip(stats.feature_names, stats.n_bins)):
            ev, cnt = stats.events[at:at + size], stats.counts[at:at + size]
            tot = None if all_totals is None else all_totals[at:at + size]
            at += size
            mp = self._merge(ev, cnt, n, tot) if self.optimal else np.arange(size)
            if self.optimal:
                holder_maps[f] = mp
            fe = np.bincount(mp, weights=ev, minlength=mp.max() + 1)
            fc = np.bincount(mp, weights=cnt, minlength=mp.max() + 1)
            ft = None if tot is None else np.bincount(mp, weights=tot, minlength=mp.max() + 1)
            labels = [f"bin {k}" for k in range(len(fc) - 1)] + ["missing"]
            key = f"{prefix}{name}"
            tables[key] = woe_table(fe, fc, labels, ft)
            party[key] = "holder"
            self.holder_bins_[len(self.holder_feature_names_)] = len(fc)
            self.holder_feature_names_.append(name if prefix == "holder:" else key)
        if holder_maps:
            woe_steps.woe_merge(session, stats.binning_id, holder_maps)

    def _bank_labels(self, f: int, full: np.ndarray, n_final: int) -> list[str]:
        fb = self.mapper_.features_[f]
        if fb.kind != "numeric":
            out = []
            for k in range(n_final - 1):
                cats = [str(c) for i, c in enumerate(fb.categories) if full[i] == k]
                out.append(", ".join(cats) if cats else f"bin {k}")
            return out + ["missing"]
        edges = np.r_[-np.inf, fb.upper, np.inf]
        out = []
        for k in range(n_final - 1):
            idx = np.flatnonzero(full[:-1] == k)
            if len(idx) == 0:
                out.append(f"bin {k}")
                continue
            lo, hi = edges[idx.min()], edges[idx.max() + 1]
            out.append(f"[{lo:.6g}, {hi:.6g})")
        return out + ["missing"]

    # -- results ----------------------------------------------------------------------------
    @property
    def selected_(self) -> list[str]:
        """Features whose IV reaches ``iv_threshold``, strongest first."""
        self._check_fitted()
        return [k for k, v in self.iv_.items() if v >= float(self.iv_threshold)]

    def iv_table(self) -> pd.DataFrame:
        self._check_fitted()
        iv = self.iv_
        return pd.DataFrame({"feature": iv.index, "party": self.party_[iv.index].values,
                             "iv": iv.values, "selected": iv.values >= float(self.iv_threshold)})

    def woe_values(self, feature: str) -> np.ndarray:
        self._check_fitted()
        return self.tables_[feature]["WoE"].to_numpy()

    def transform_bank(self, X: pd.DataFrame, features: list[str] | None = None) -> pd.DataFrame:
        """WOE-encode the bank's own features (the holder encodes its own)."""
        self._check_fitted()
        names = list(features or self.mapper_.feature_names)
        raw = self.mapper_.transform(X).astype(np.int64)
        cols = {}
        for f, fb in enumerate(self.mapper_.features_):
            if fb.name in names:
                final = self.bank_maps_[fb.name][raw[:, f]]
                cols[fb.name] = self.woe_values(fb.name)[final]
        return pd.DataFrame(cols, index=X.index)[names]

    # -- persistence: the bank's bins, both parties' tables; the holder's binning id ----------
    def _state(self) -> dict:
        return {"model_id": self.model_id_, "holder_name": self.holder_name_,
                "holder_features": self.holder_feature_names_,
                "holder_bins": [self.holder_bins_[f] for f in range(len(self.holder_bins_))],
                "mapper": self.mapper_.to_dict(),
                "bank_maps": {k: v.tolist() for k, v in self.bank_maps_.items()},
                "tables": {k: t.to_dict(orient="list") for k, t in self.tables_.items()},
                "iv": [[k, v] for k, v in self.iv_.items()], "party": self.party_.to_dict(),
                "holders": [h.to_dict() for h in self.holders_]}

    def _restore(self, d: dict, fmt: str) -> None:
        self.holders_ = [HolderPart.from_dict(h) for h in d.get("holders", [])] or [
            HolderPart(d["holder_name"], d["model_id"], list(d["holder_features"]))]
        self.holder_name_ = d["holder_name"]
        self.holder_feature_names_ = list(d["holder_features"])
        self.holder_bins_ = dict(enumerate(int(b) for b in d["holder_bins"]))
        self.mapper_ = BinMapper.from_dict(d["mapper"])
        self.feature_names_bank_ = list(self.mapper_.feature_names)
        self.bank_maps_ = {k: np.asarray(v, dtype=np.int64) for k, v in d["bank_maps"].items()}
        self.tables_ = {k: pd.DataFrame(t) for k, t in d["tables"].items()}
        self.iv_ = pd.Series(dict((k, float(v)) for k, v in d["iv"]), name="iv", dtype=float)
        self.party_ = pd.Series(d["party"], name="party")
        self.model_id_ = d["model_id"]
