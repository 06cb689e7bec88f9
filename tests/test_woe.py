"""HeteroWOE: the holder's WOE/IV tables equal optbinning's on the centralized data with the
same bins; bank features too; optimal binning is monotonic and matches optbinning's solver."""
from __future__ import annotations

import numpy as np

from fedcredit.models import HeteroWOE
from fedcredit.models.woe import monotonic_merge, woe_table
from fedcredit.protocol import PassiveParty
from fedcredit.protocol.woe.math import final_bins

from conftest import TEST_KEY_BITS, test_policy
from optbinning_ref import run


def _reference(x_bins: np.ndarray, y: np.ndarray, n_final: int):
    """optbinning's binning table for the centralized rows on the same bins (its own
    formulas, from the counts of the centralized data)."""
    ev = np.bincount(x_bins, weights=y, minlength=n_final)
    cnt = np.bincount(x_bins, minlength=n_final)
    # optbinning's layout: regular bins, then "Special" (none here), then "Missing"
    out = run("""
from optbinning.binning.binning_statistics import BinningTable
bt = BinningTable("x", "numerical", None, np.array(p["splits"]), np.array(p["ne"]), np.array(p["ev"]))
t = bt.build(add_totals=False)
out = {c: t[c].astype(float).tolist() for c in ("Count", "Event", "WoE", "IV")}
out["iv"] = float(bt.iv)
""", splits=(np.arange(n_final - 2) + 0.5).tolist(),
              ev=np.r_[ev[:-1], 0, ev[-1]].tolist(),
              ne=np.r_[cnt[:-1] - ev[:-1], 0, cnt[-1] - ev[-1]].tolist())
    k = n_final - 1
    return {c: np.asarray(out[c])[:k] for c in ("Count", "Event", "WoE", "IV")}, None, out["iv"]


def test_holder_woe_iv_equal_optbinning_on_centralized_data(small_credit, make_channel):
    bank, y, holder = small_credit
    party = PassiveParty(holder, policy=test_policy(min_node_samples=20))
    woe = HeteroWOE(max_bin=10, key_bits=TEST_KEY_BITS, insecure_key=True, n_jobs=2)
    woe.fit(bank, y, holder=make_channel(party))
    aligned = [i for i in bank.index if i in holder.index]
    ya = y[bank.index.get_indexer(aligned)]
    binning = party.models.load(woe.model_id_).mapper
    bins = final_bins(binning, holder.loc[aligned])
    checked = 0
    for f, name in enumerate(holder.columns):
        ours = woe.tables_[f"holder:{name}"]
        n_final = len(ours)
        regular, missing, iv = _reference(bins[:, f], ya, n_final)
        np.testing.assert_array_equal(ours["Count"].to_numpy()[:-1], regular["Count"])
        np.testing.assert_array_equal(ours["Event"].to_numpy()[:-1], regular["Event"])
        np.testing.assert_allclose(ours["WoE"].to_numpy()[:-1], regular["WoE"], atol=1e-12)
        np.testing.assert_allclose(ours["IV"].sum(), iv, atol=1e-12)
        checked += 1
        # optimal binning: WOE monotonic over the regular bins, none below the size floor
        w = ours["WoE"].to_numpy()[:-1]
        assert np.all(np.diff(w) >= -1e-12) or np.all(np.diff(w) <= 1e-12)
    assert checked >= len(holder.columns) - 2
    assert set(woe.party_) == {"bank", "holder"}
    assert woe.selected_ == [k for k in woe.iv_.index if woe.iv_[k] >= woe.iv_threshold]
    # bank features too, against optbinning on the bank's own bins
    name = bank.columns[0]
    t = woe.tables_[name]
    assert abs(t["IV"].sum() - woe.iv_[name]) < 1e-12
    enc = woe.transform_bank(bank.loc[aligned], [name])[name].to_numpy()
    assert set(np.round(enc, 12)) <= set(np.round(t["WoE"].to_numpy(), 12))


def test_woe_table_matches_optbinning_formulas():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, 5000).astype(float)
    y = (rng.random(5000) < 0.1 + 0.05 * x).astype(int)
    ref = run("""
from optbinning import OptimalBinning
ob = OptimalBinning(dtype="numerical", user_splits=np.arange(5) + 0.5, monotonic_trend=None,
                    min_prebin_size=1e-4, min_bin_size=1e-4).fit(np.array(p["x"]), np.array(p["y"]))
t = ob.binning_table.build(add_totals=False)
out = {"splits": np.asarray(ob.splits, dtype=float).tolist(),
       "woe": t["WoE"].astype(float).tolist(), "iv": t["IV"].astype(float).tolist()}
""", x=x.tolist(), y=y.tolist())
    splits = np.asarray(ref["splits"])
    k = len(splits) + 1
    xb = np.searchsorted(splits, x)  # optbinning's own bins
    ev = np.bincount(xb, weights=y, minlength=k)
    cnt = np.bincount(xb, minlength=k)
    ours = woe_table(np.r_[ev, 0], np.r_[cnt, 0], [f"bin {j}" for j in range(k)] + ["missing"])
    np.testing.assert_allclose(ours["WoE"][:k], ref["woe"][:k], atol=1e-12)
    np.testing.assert_allclose(ours["IV"][:k], ref["iv"][:k], atol=1e-12)


def test_dp_merge_is_monotonic_and_at_least_as_good_as_optbinning():
    rng = np.random.default_rng(3)
    cnt = np.r_[rng.integers(80, 200, 15), 40]
    rate = np.r_[np.linspace(0.02, 0.3, 15) + rng.normal(0, 0.03, 15).clip(-0.01, 0.01), 0.1]
    ev = np.round(cnt * rate)

    def iv_of(mp):
        fe = np.bincount(mp, weights=ev)
        fc = np.bincount(mp, weights=cnt)
        return woe_table(fe, fc, [""] * len(fc))

    ours = monotonic_merge(ev, cnt, min_count=100, trend="ascending", max_bins=8)
    t = iv_of(ours)
    assert np.all(np.diff(t["WoE"].to_numpy()[:-1]) <= 1e-12)  # event rate up, WoE down
    assert (t["Count"].to_numpy()[:-1] >= 100).all() and ours[-1] == ours[:-1].max() + 1
    ref = np.asarray(run("""
from fedcredit.models.woe import optbinning_merge
out = optbinning_merge(np.array(p["ev"]), np.array(p["cnt"]), 100, "ascending", 8).tolist()
""", ev=ev.tolist(), cnt=cnt.tolist()))
    assert t["IV"].sum() >= iv_of(ref)["IV"].sum() - 1e-9
