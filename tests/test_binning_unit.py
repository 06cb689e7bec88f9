"""BinMapper, FeaturePrep and quantize on tiny hand-made columns."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fedcredit.binning import BinMapper, FeaturePrep, quantize
from fedcredit.binning.prep import FEATURE_BITS, FEATURE_INT_BITS
from fedcredit.errors import InvalidInput


@pytest.fixture
def tiny():
    return pd.DataFrame({
        "num": [1.0, 2.0, np.nan, 2.0, 3.0],
        "cat": ["b", "a", None, "c", "a"],
        "const": [7, 7, 7, 7, 7],
    })


# -- BinMapper --------------------------------------------------------------------------------
def test_bin_mapper_numeric_categorical_and_constant_columns(tiny):
    m = BinMapper(max_bin=4).fit(tiny)
    assert m.feature_names == ["num", "cat", "const"]
    # num: 3 distinct values -> one bin each, cut half-way; cat: one bin per category,
    # sorted; const: a single bin. The missing bin is n_bins[f].
    assert m.n_bins.tolist() == [3, 3, 1]
    num, cat, const = m.features_
    assert num.kind == "numeric" and num.upper.tolist() == [1.5, 2.5]
    assert cat.kind == "categorical" and cat.categories == ["a", "b", "c"] and cat.other_bin is None
    assert const.upper.tolist() == []
    got = m.transform(tiny)
    assert got.dtype == np.uint8 and got.shape == (5, 3)
    assert got[:, 0].tolist() == [0, 1, 3, 1, 2]  # NaN -> missing bin 3
    assert got[:, 1].tolist() == [1, 0, 3, 2, 0]  # None -> missing bin 3
    assert got[:, 2].tolist() == [0] * 5
    # new rows: values between and beyond the cuts, an unseen category, a missing constant
    new = pd.DataFrame({"num": [1.5, 1.50001, -100.0, 100.0], "cat": ["c", "zz", "a", np.nan],
                        "const": [7, 8, np.nan, 7]})
    got = m.transform(new)
    assert got[:, 0].tolist() == [0, 1, 0, 2]  # a value on a cut goes left
    assert got[:, 1].tolist() == [2, 3, 0, 3]  # unseen -> missing
    assert got[:, 2].tolist() == [0, 0, 1, 0]
    assert num.threshold(0) == 1.5 and num.threshold(2) == float("inf")
    assert cat.threshold(1) == ["a", "b"]


def test_bin_mapper_quantile_cuts_on_many_distinct_values():
    X = pd.DataFrame({"x": np.arange(100.0)})
    m = BinMapper(max_bin=4).fit(X)
    assert m.features_[0].upper.tolist() == [24.75, 49.5, 74.25]
    assert np.bincount(m.transform(X)[:, 0]).tolist() == [25, 25, 25, 25]
    # heavy ties: cuts are unique and never equal to the largest value
    skew = pd.DataFrame({"x": [0.0] * 90 + list(range(1, 11))})
    up = BinMapper(max_bin=4).fit(skew).features_[0].upper
    assert len(np.unique(up)) == len(up) and up.max() < 10


def test_bin_mapper_rare_categories_share_an_other_bin():
    X = pd.DataFrame({"c": ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]})
    m = BinMapper(max_bin=3).fit(X)
    f = m.features_[0]
    assert f.categories == ["a", "b"] and f.other_bin == 2 and m.n_bins.tolist() == [3]
    got = m.transform(pd.DataFrame({"c": ["a", "b", "c", "d", None]}))[:, 0]
    assert got.tolist() == [0, 1, 2, 2, 3]


def test_bin_mapper_keeps_an_ordered_categorical_order():
    col = pd.Categorical(["lo", "hi", "mid", "lo"], categories=["lo", "mid", "hi", "unused"],
                         ordered=True)
    m = BinMapper(max_bin=4).fit(pd.DataFrame({"c": col}))
    assert m.features_[0].categories == ["lo", "mid", "hi"]  # unused level dropped
    assert m.transform(pd.DataFrame({"c": col}))[:, 0].tolist() == [0, 2, 1, 0]


def test_bin_mapper_dict_round_trip(tiny):
    m = BinMapper(max_bin=4).fit(tiny)
    d = json.loads(json.dumps(m.to_dict()))  # what a holder stores
    m2 = BinMapper.from_dict(d)
    assert m2.max_bin == 4 and m2.feature_names == m.feature_names
    assert m2.n_bins.tolist() == m.n_bins.tolist()
    assert np.array_equal(m2.transform(tiny), m.transform(tiny))
    assert m2.to_dict() == m.to_dict()


def test_bin_mapper_refusals(tiny):
    for bad in (1, 256):
        with pytest.raises(InvalidInput, match="max_bin"):
            BinMapper(max_bin=bad)
    with pytest.raises(InvalidInput, match="not fitted"):
        BinMapper().transform(tiny)
    with pytest.raises(InvalidInput, match="infinite"):
        BinMapper().fit(pd.DataFrame({"x": [1.0, np.inf]}))
    with pytest.raises(InvalidInput, match="columns missing"):
        BinMapper().fit(tiny).transform(tiny.drop(columns="cat"))
    with pytest.raises(InvalidInput):
        BinMapper().fit(tiny.iloc[:0])
    with pytest.raises(InvalidInput):
        BinMapper().fit(tiny.values)


# -- FeaturePrep ------------------------------------------------------------------------------
def test_feature_prep_standardises_and_adds_a_missing_indicator(tiny):
    p = FeaturePrep().fit(tiny[["num", "const"]])
    assert p.output_names() == ["num", "num[missing]", "const"]
    out = p.transform(tiny[["num", "const"]])
    std = np.std([1.0, 2.0, 2.0, 3.0])  # population std of the present values, mean 2
    z = np.array([-1.0, 0.0, 0.0, 0.0, 1.0]) / std  # missing -> the mean -> 0
    assert np.array_equal(out[:, 0], np.round(z * 2**FEATURE_BITS) / 2**FEATURE_BITS)
    assert out[:, 1].tolist() == [0, 0, 1, 0, 0]
    assert out[:, 2].tolist() == [0] * 5  # a constant column: std 1, all at its mean
    # no indicator when training rows had no missing value; missing later still -> 0
    p2 = FeaturePrep().fit(pd.DataFrame({"x": [0.0, 2.0]}))
    assert p2.output_names() == ["x"]
    assert p2.transform(pd.DataFrame({"x": [np.nan, 4.0]}))[:, 0].tolist() == [0.0, 3.0]


def test_feature_prep_one_hot(tiny):
    p = FeaturePrep().fit(tiny[["cat"]])
    assert p.output_names() == ["cat=a", "cat=b", "cat=c"]
    assert p.output_names(publish_levels=False) == ["cat[level 0]", "cat[level 1]",
                                                    "cat[level 2]"]
    out = p.transform(pd.DataFrame({"cat": ["b", "a", None, "c", "zz"]}))
    assert out.tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 1], [0, 0, 0]]
    # at most max_levels levels: the most frequent, then sorted
    X = pd.DataFrame({"c": ["z"] * 3 + ["y"] * 2 + ["x"]})
    p = FeaturePrep(max_levels=2).fit(X)
    assert p.output_names() == ["c=y", "c=z"]
    assert p.transform(X).tolist() == [[0, 1]] * 3 + [[1, 0]] * 2 + [[0, 0]]


def test_feature_prep_dict_round_trip_and_missing_column(tiny):
    p = FeaturePrep().fit(tiny)
    p2 = FeaturePrep.from_dict(json.loads(json.dumps(p.to_dict())))
    assert np.array_equal(p2.transform(tiny), p.transform(tiny))
    assert p.transform(tiny).shape == (5, len(p.output_names()))
    with pytest.raises(InvalidInput, match="'num' is missing"):
        p.transform(tiny.drop(columns="num"))


def test_quantize_rounds_and_clips():
    lim = 2.0 ** FEATURE_INT_BITS - 1
    x = np.array([1000.0, -1000.0, 0.1234, -0.1234, lim, 2.0 ** -14])
    got = quantize(x)
    assert got[0] == lim and got[1] == -lim
    assert got[2] == round(0.1234 * 4096) / 4096 and got[3] == -got[2]
    assert got[4] == lim and got[5] == 0.0
    assert quantize(np.array([0.3]), frac_bits=2).tolist() == [0.25]
    assert np.all(np.abs(quantize(np.linspace(-500, 500, 101))) <= lim)


def test_a_few_rows_bin_value_by_value_exactly_as_a_table_does():
    """Online scoring bins its one enterprise value by value (``SMALL_ROWS``); the codes must
    be the table path's for every kind of value a caller can send."""
    from fedcredit.binning.mapper import SMALL_ROWS
    rng = np.random.default_rng(2)
    train = pd.DataFrame({
        "x": rng.normal(size=200), "k": rng.integers(0, 5, 200).astype("int8"),
        "c": pd.Categorical(rng.choice(["a", "b", "c"], 200)),
        "s": rng.choice(["u", "v", "w", "z"], 200).astype(object)})
    m = BinMapper(max_bin=3).fit(train)  # "s" has an "other" bin
    odd = pd.DataFrame({
        "x": [np.nan, 0.25, None, "1.5", "n/a", True, -1e9, np.inf, 0.0, 3],
        "k": [1, None, 4, 2.5, "3", pd.NA, 0, 9, -2, 1],
        "c": ["a", "zz", None, "b", np.nan, "c", 3, "a", "b", "c"],
        "s": ["u", "nope", None, "w", pd.NA, 1, "z", "v", "u", "w"]}, dtype=object)
    assert len(odd) > SMALL_ROWS  # so the whole table takes the table path
    table = m.transform(odd)
    for i in range(len(odd)):
        assert m.transform(odd.iloc[i:i + 1]).tolist() == [table[i].tolist()], odd.iloc[i]
    few = train.iloc[:SMALL_ROWS]  # and typed columns, as a holder's table has them
    assert np.array_equal(m.transform(few), m.transform(train)[:SMALL_ROWS])
    assert m.transform(train.iloc[:0]).shape == (0, 4)


def test_bin_mapper_fit_on_row_positions_equals_fit_on_the_slice():
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.normal(size=400), "b": rng.integers(0, 9, 400).astype(float),
                      "c": rng.choice(["x", "y", "z"], 400)})
    rows = np.sort(rng.choice(400, 150, replace=False))
    whole = BinMapper(max_bin=8).fit(X.iloc[rows])
    by_rows = BinMapper(max_bin=8).fit(X, rows=rows)
    assert json.dumps(whole.to_dict()) == json.dumps(by_rows.to_dict())
    with pytest.raises(InvalidInput, match="no rows"):
        BinMapper().fit(X, rows=np.array([], dtype=np.int64))


def test_bin_mapper_transform_in_slices_equals_transform_whole(monkeypatch):
    import fedcredit.binning.mapper as mapper_module

    rng = np.random.default_rng(4)
    X = pd.DataFrame({"a": rng.normal(size=1000), "b": rng.choice(["p", "q"], 1000),
                      "c": np.where(rng.random(1000) < 0.2, np.nan, rng.random(1000))})
    m = BinMapper(max_bin=16).fit(X)
    whole = m.transform(X)
    monkeypatch.setattr(mapper_module, "TRANSFORM_ROWS", 97)  # slices that do not divide 1000
    assert np.array_equal(m.transform(X), whole)


def test_categorical_columns_bin_by_distinct_value_exactly_as_value_by_value():
    """Text and categorical columns are binned once per distinct value; the codes must be
    :meth:`FeatureBins.bin_value`'s per row, and mixed objects (``1 == 1.0 == True``, whose
    texts differ) keep the per-value path."""
    rng = np.random.default_rng(5)
    cols = {
        "arrow_text": pd.Series(rng.choice(["a", "b", "c", None, "zz"], 600), dtype="str"),
        "object_text": pd.Series(rng.choice(["a", "b", "c", None], 600).astype(object)),
        "mixed": pd.Series([1, 1.0, True, "a", None, 2] * 100, dtype=object),
        "categories": pd.Series(pd.Categorical(rng.choice(["x", "y", "w"], 600),
                                               categories=["y", "x", "w", "unused"])),
        "int_categories": pd.Series(pd.Categorical(rng.choice([3, 1, 2], 600))),
        "rare": pd.Series([f"k{i % 40}" for i in range(600)]),  # an "other" bin at max_bin 8
    }
    for name, col in cols.items():
        train = pd.DataFrame({name: col})
        m = BinMapper(max_bin=8).fit(train)
        f = m.features_[0]
        assert f.kind == "categorical", name
        unseen = pd.concat([col, pd.Series(["never seen"], dtype=col.dtype
                                           if name != "categories" else object)],
                           ignore_index=True)
        codes = m.transform(pd.DataFrame({name: unseen}))[:, 0]
        assert codes.tolist() == [f.bin_value(v) for v in unseen.tolist()], name
    assert BinMapper(8).fit(pd.DataFrame({"m": cols["mixed"]})).features_[0].categories == \
        ["1", "1.0", "2", "True", "a"]
