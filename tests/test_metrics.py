"""fedcredit.metrics against independent implementations (sklearn, scipy, brute force)."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fedcredit import metrics
from fedcredit.errors import InvalidInput


def _sample(n=3000, seed=0, decimals=None):
    """Labels with a 20 % event rate and a score that separates them moderately."""
    rng = np.random.default_rng(seed)
    y = rng.binomial(1, 0.2, n)
    s = 0.8 * y + rng.normal(size=n)
    return y, (np.round(s, decimals) if decimals is not None else s)


def _brute_force_ks(y, s):
    """max over every observed value t of |F_event(t) - F_non_event(t)|."""
    events, non_events = s[y == 1], s[y == 0]
    return max(abs(np.mean(events <= t) - np.mean(non_events <= t)) for t in np.unique(s))


CONVERTERS = {
    "ndarray": lambda a: a,
    "list": lambda a: a.tolist(),
    "series": lambda a: pd.Series(a),
}


# --------------------------------------------------------------------------- AUC, KS, Gini


@pytest.mark.parametrize("kind", CONVERTERS)
@pytest.mark.parametrize("decimals", [None, 1, 0])  # 0 decimals: heavy ties
def test_auc_matches_sklearn(kind, decimals):
    y, s = _sample(decimals=decimals)
    conv = CONVERTERS[kind]
    assert metrics.auc(conv(y), conv(s)) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_ks_matches_brute_force(decimals):
    y, s = _sample(n=800, decimals=decimals)
    assert metrics.ks(y, s) == pytest.approx(_brute_force_ks(y, s), abs=1e-12)


@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_ks_matches_scipy_ks_2samp(decimals):
    stats = pytest.importorskip("scipy.stats")
    y, s = _sample(decimals=decimals)
    expected = stats.ks_2samp(s[y == 1], s[y == 0]).statistic
    assert metrics.ks(y, s) == pytest.approx(expected, abs=1e-12)


def test_ks_with_all_scores_tied_is_zero():
    # a single threshold cannot separate anything, whatever the record order
    assert metrics.ks([0, 1, 0, 1, 1], [0.3] * 5) == 0.0
    assert metrics.auc([0, 1, 0, 1, 1], [0.3] * 5) == 0.5


def test_perfect_and_reversed_scores():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.8, 0.9])
    assert metrics.auc(y, s) == 1.0 and metrics.ks(y, s) == 1.0
    assert metrics.gini(y, -s) == -1.0
    assert metrics.ks(y, -s) == 1.0


def test_gini_identity():
    y, s = _sample(decimals=1)
    assert metrics.gini(y, s) == pytest.approx(2 * roc_auc_score(y, s) - 1, abs=1e-12)


def test_summary():
    y, s = _sample()
    out = metrics.summary(y, s)
    assert set(out) == {"auc", "ks", "gini", "event_rate", "n"}
    assert out["n"] == y.size and isinstance(out["n"], int)
    assert out["event_rate"] == pytest.approx(y.mean())
    assert out["auc"] == pytest.approx(metrics.auc(y, s))
    assert out["ks"] == pytest.approx(metrics.ks(y, s))
    assert out["gini"] == pytest.approx(2 * out["auc"] - 1)


def test_accepts_booleans_and_column_vectors():
    y, s = _sample(n=200)
    assert metrics.auc(y.astype(bool), s[:, None]) == pytest.approx(roc_auc_score(y, s))
    assert metrics.auc(y, pd.DataFrame({"p": s})) == pytest.approx(roc_auc_score(y, s))


def test_aligned_series_with_custom_index_are_accepted():
    y, s = _sample(n=200)
    index = np.random.default_rng(1).permutation(1000)[:200]
    assert metrics.auc(pd.Series(y, index=index), pd.Series(s, index=index)) == \
        pytest.approx(roc_auc_score(y, s))


# --------------------------------------------------------------------------- tables


def test_ks_table():
    y, s = _sample()
    table = metrics.ks_table(y, s)
    assert list(table.index) == list(range(1, 11))
    assert table["count"].sum() == y.size
    assert table["events"].sum() == y.sum()
    assert (table["count"] == y.size // 10).all()
    assert table["cum_event_share"].iloc[-1] == pytest.approx(1.0)
    assert table["cum_non_event_share"].iloc[-1] == pytest.approx(1.0)
    # bins only see some thresholds, so the table can only under-state the KS
    assert table["ks"].max() <= metrics.ks(y, s) + 1e-12
    assert (table["min_score"].to_numpy()[:-1] > table["max_score"].to_numpy()[1:]).all()


def test_lift_table_sums():
    y, s = _sample()
    table = metrics.lift_table(y, s, bins=10)
    assert len(table) == 10
    assert table["count"].sum() == y.size
    assert table["events"].sum() == y.sum()
    assert table["cum_event_share"].iloc[-1] == pytest.approx(1.0)
    assert table["cum_population_share"].iloc[-1] == pytest.approx(1.0)
    assert table["cum_lift"].iloc[-1] == pytest.approx(1.0)
    # lift averaged over bins, weighted by size, is the overall rate over itself
    assert np.average(table["lift"], weights=table["count"]) == pytest.approx(1.0)
    assert table["cum_event_share"].is_monotonic_increasing
    # a score that separates the classes puts more than a tenth of the events in the top bin
    assert table["lift"].iloc[0] > 1.5 and table["lift"].iloc[-1] < 1.0
    assert table["event_rate"].iloc[0] == pytest.approx(
        table["events"].iloc[0] / table["count"].iloc[0])


def test_tables_never_split_ties():
    y, s = _sample(decimals=0)  # about 8 distinct values
    for table in (metrics.lift_table(y, s, bins=10), metrics.ks_table(y, s, bins=10)):
        assert len(table) <= np.unique(s).size
        assert table["count"].sum() == y.size
        # strictly decreasing, non-overlapping score ranges: no value sits in two bins
        assert (table["min_score"].to_numpy()[:-1] > table["max_score"].to_numpy()[1:]).all()


def test_more_bins_than_records():
    table = metrics.lift_table([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], bins=10)
    assert len(table) == 4 and table["count"].sum() == 4


def test_calibration_table():
    rng = np.random.default_rng(2)
    prob = rng.beta(1, 8, 20000)
    y = rng.binomial(1, prob)
    table = metrics.calibration_table(y, prob, bins=10)
    assert table.shape == (10, 6)
    assert list(table.columns) == ["min_prob", "max_prob", "count", "events",
                                   "mean_predicted", "observed_rate"]
    assert table["count"].sum() == y.size
    # labels drawn from the probabilities themselves: calibrated up to sampling noise
    assert np.allclose(table["mean_predicted"], table["observed_rate"], atol=0.03)
    assert table["mean_predicted"].is_monotonic_increasing


def test_calibration_table_uniform_drops_empty_bins():
    table = metrics.calibration_table([0, 1, 0, 1], [0.05, 0.07, 0.5, 1.0], bins=10,
                                      strategy="uniform")
    assert list(table["count"]) == [2, 1, 1]
    assert table["max_prob"].iloc[-1] == 1.0


def test_calibration_table_allows_one_class():
    table = metrics.calibration_table([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], bins=2)
    assert (table["observed_rate"] == 0).all()


# --------------------------------------------------------------------------- PSI


def test_psi_identical_is_zero():
    _, s = _sample()
    assert metrics.psi(s, s) == 0.0
    assert metrics.psi(s, pd.Series(s).sample(frac=1.0, random_state=0)) == pytest.approx(0.0)


def test_psi_shifted_is_large_and_similar_is_small():
    rng = np.random.default_rng(3)
    base = rng.normal(size=5000)
    assert metrics.psi(base, rng.normal(loc=1.0, size=5000)) > 0.25
    assert metrics.psi(base, rng.normal(size=5000)) < 0.1


def test_psi_table():
    rng = np.random.default_rng(4)
    expected, actual = rng.normal(size=4000), rng.normal(0.3, 1.2, size=3000)
    table = metrics.psi_table(expected, actual, bins=10)
    assert len(table) == 10
    assert table["expected_share"].to_numpy() == pytest.approx(np.full(10, 0.1))
    assert table["actual_count"].sum() == actual.size
    assert table["psi"].sum() == pytest.approx(metrics.psi(expected, actual))
    assert (table["psi"] >= 0).all()
    assert table["lower"].iloc[0] == -np.inf and table["upper"].iloc[-1] == np.inf


def test_psi_empty_bin_uses_eps():
    expected = np.arange(100.0)
    actual = np.full(50, 1000.0)  # everything lands in the last bin
    table = metrics.psi_table(expected, actual, bins=10)
    assert (table["actual_count"].iloc[:-1] == 0).all()
    e = table["expected_share"].to_numpy()
    expected_psi = np.sum((1e-4 - e[:-1]) * np.log(1e-4 / e[:-1])) + (1 - e[-1]) * np.log(
        1 / e[-1])
    assert metrics.psi(expected, actual) == pytest.approx(expected_psi)
    assert metrics.psi(expected, actual, eps=1e-6) > metrics.psi(expected, actual)


def test_psi_tied_expected_has_no_empty_expected_bin():
    expected = np.r_[np.zeros(90), np.arange(1.0, 11.0)]
    table = metrics.psi_table(expected, expected, bins=10)
    assert (table["expected_count"] > 0).all()
    assert table["expected_count"].sum() == 100


# --------------------------------------------------------------------------- errors


def test_length_mismatch():
    with pytest.raises(InvalidInput, match="y_true has 3 entries but score has 2"):
        metrics.auc([0, 1, 0], [0.1, 0.2])


@pytest.mark.parametrize("labels", [[1, 2, 1, 2], [-1, 1, 1, -1], [0, 1, 0.5, 1]])
def test_labels_must_be_zero_one(labels):
    with pytest.raises(InvalidInput, match="only 0 and 1"):
        metrics.auc(labels, [0.1, 0.2, 0.3, 0.4])


def test_string_labels():
    with pytest.raises(InvalidInput, match="must be numeric.*'good'/'bad'"):
        metrics.ks(["good", "bad"], [0.1, 0.2])


def test_missing_labels():
    with pytest.raises(InvalidInput, match="1 missing label"):
        metrics.auc(pd.Series([0, 1, None, 1], dtype="Int64"), [0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize("fn", [metrics.auc, metrics.ks, metrics.gini, metrics.summary,
                                metrics.ks_table, metrics.lift_table])
def test_single_class_is_refused(fn):
    with pytest.raises(InvalidInput, match=r"needs both events \(1\) and non-events \(0\).*"
                                           r"all 3 labels in y_true are non-events"):
        fn([0, 0, 0], [0.1, 0.2, 0.3])


def test_nan_scores_are_counted():
    with pytest.raises(InvalidInput, match="score contains 2 NaN value.*out of 4"):
        metrics.auc([0, 1, 0, 1], [0.1, np.nan, 0.3, np.nan])
    with pytest.raises(InvalidInput, match="actual contains 1 NaN"):
        metrics.psi([1.0, 2.0, 3.0], [1.0, np.nan])
    with pytest.raises(InvalidInput, match="infinite"):
        metrics.ks([0, 1], [0.1, np.inf])


def test_predict_proba_matrix_is_refused():
    with pytest.raises(InvalidInput, match=r"one-dimensional.*proba\[:, 1\]"):
        metrics.auc([0, 1, 1], np.full((3, 2), 0.5))


def test_misaligned_series_are_refused():
    y = pd.Series([0, 1, 0, 1], index=[10, 11, 12, 13])
    s = pd.Series([0.1, 0.9, 0.2, 0.8], index=[13, 12, 11, 10])
    with pytest.raises(InvalidInput, match="different indexes"):
        metrics.auc(y, s)
    assert metrics.auc(y, s.loc[y.index]) == 0.0  # by label: every event scores lowest
    assert metrics.auc(y, s.to_numpy()) == 1.0  # by position: the opposite answer


def test_empty_input():
    with pytest.raises(InvalidInput, match="y_true is empty"):
        metrics.auc([], [])


@pytest.mark.parametrize("bins", [0, 1, 2.5, True, "10"])
def test_bad_bins(bins):
    y, s = _sample(n=100)
    with pytest.raises(InvalidInput, match="bins must be an integer >= 2"):
        metrics.lift_table(y, s, bins=bins)


def test_psi_bad_arguments():
    with pytest.raises(InvalidInput, match="single distinct value"):
        metrics.psi(np.ones(50), np.arange(50.0))
    with pytest.raises(InvalidInput, match="eps"):
        metrics.psi(np.arange(50.0), np.arange(50.0), eps=0)


def test_calibration_bad_arguments():
    with pytest.raises(InvalidInput, match=r"in \[0, 1\]; 1 of 3"):
        metrics.calibration_table([0, 1, 0], [0.1, 1.5, 0.2])
    with pytest.raises(InvalidInput, match="strategy"):
        metrics.calibration_table([0, 1], [0.1, 0.2], strategy="kmeans")


def test_invalid_input_is_a_value_error():
    # notebooks and sklearn-style callers catch ValueError
    with pytest.raises(ValueError):
        metrics.auc([0, 1], [0.1])


def test_metrics_does_not_import_matplotlib():
    code = "import sys, fedcredit.metrics; sys.exit('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
