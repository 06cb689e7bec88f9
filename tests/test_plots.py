"""fedcredit.plots draws headless (Agg) and returns Axes with the expected artists."""
import sys

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fedcredit import plots  # noqa: E402
from fedcredit.errors import InvalidInput  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = rng.binomial(1, 0.2, 1000)
    score = 0.8 * y + rng.normal(size=1000)
    prob = 1 / (1 + np.exp(-(score - 1.5)))
    return y, score, prob


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_roc_curve_several_models_on_one_axes(data):
    y, score, _ = data
    ax = plots.roc_curve(y, score, label="bank only")
    assert isinstance(ax, matplotlib.axes.Axes)
    assert len(ax.lines) == 2  # curve and chance diagonal
    assert plots.roc_curve(y, score + 0.5 * y, ax=ax, label="federated") is ax
    plots.roc_curve(y, score + y, ax=ax, label="centralised")
    assert len(ax.lines) == 4  # the diagonal is drawn once
    texts = _legend_texts(ax)
    assert len(texts) == 4
    assert texts[0].startswith("bank only (AUC = 0.")
    assert "Chance" in texts


def test_roc_curve_without_label_and_with_style(data):
    y, score, _ = data
    ax = plots.roc_curve(y, score, color="black", linestyle="--")
    assert _legend_texts(ax)[0].startswith("AUC = ")
    assert ax.lines[0].get_linestyle() == "--"


def test_ks_curve(data):
    y, score, _ = data
    ax = plots.ks_curve(y, score, label="fed")
    assert len(ax.lines) == 3  # events, non-events, KS gap
    assert any(t.startswith("fed: KS = 0.") for t in _legend_texts(ax))
    gap = ax.lines[2].get_ydata()
    assert gap[1] - gap[0] > 0.2


def test_lift_chart(data):
    y, score, _ = data
    ax = plots.lift_chart(y, score, label="fed")
    assert len(ax.lines) == 2  # lift curve, baseline
    assert len(ax.lines[0].get_xdata()) == 10
    plots.lift_chart(y, score, ax=ax, label="fed cumulative", cumulative=True)
    assert len(ax.lines) == 3
    assert ax.lines[2].get_ydata()[-1] == pytest.approx(1.0)


def test_score_distribution(data):
    y, score, _ = data
    ax = plots.score_distribution(y, score, bins=25)
    assert len(ax.patches) == 2
    assert any("events (n = " in t for t in _legend_texts(ax))


def test_iv_bar_chart_top_and_order():
    iv = {"age": 0.05, "uscc_tax_grade": 0.4, "overdue_30d": 0.3, "region": 0.01,
          "loan_count": 0.12}
    ax = plots.iv_bar_chart(iv, top=3)
    assert len(ax.patches) == 3
    labels = [t.get_text() for t in ax.get_yticklabels()]
    widths = {lab: p.get_width() for lab, p in
              zip(labels, sorted(ax.patches, key=lambda p: p.get_y()))}
    assert set(labels) == {"uscc_tax_grade", "overdue_30d", "loan_count"}
    top_bar = max(ax.patches, key=lambda p: p.get_y())
    assert top_bar.get_width() == 0.4 and max(widths.values()) == 0.4


def test_iv_bar_chart_coloured_by_party():
    iv = pd.Series({"bank_balance": 0.2, "tax_grade": 0.5, "court_cases": 0.1, "age": 0.05})
    party = {"bank_balance": "active", "age": "active", "tax_grade": "passive"}
    ax = plots.iv_bar_chart(iv, party=party)
    assert len(ax.patches) == 4
    colours = {tuple(p.get_facecolor()) for p in ax.patches}
    assert len(colours) == 3  # active, passive, unknown
    assert sorted(_legend_texts(ax)) == ["active", "passive", "unknown"]


@pytest.mark.parametrize("iv, message", [
    ({}, "empty"),
    ({"a": 0.1, "b": float("nan")}, "1 feature.*: b"),
    ({"a": -0.1}, ">= 0"),
    ({"a": "high"}, "numbers"),
    ([0.1, 0.2], "mapping"),
])
def test_iv_bar_chart_bad_input(iv, message):
    with pytest.raises(InvalidInput, match=message):
        plots.iv_bar_chart(iv)


def test_calibration_plot(data):
    y, _, prob = data
    ax = plots.calibration_plot(y, prob, label="fed")
    assert len(ax.lines) == 2  # curve, perfect-calibration diagonal
    plots.calibration_plot(y, prob, ax=ax, label="fed uniform", strategy="uniform")
    assert len(ax.lines) == 3


def test_saves_png(data, tmp_path):
    y, score, _ = data
    ax = plots.roc_curve(y, score, label="bank only")
    path = tmp_path / "roc.png"
    ax.figure.savefig(path)
    content = path.read_bytes()
    assert content.startswith(b"\x89PNG") and len(content) > 1000


def test_bad_input_draws_nothing(data):
    y, score, _ = data
    before = plt.get_fignums()
    with pytest.raises(InvalidInput, match="NaN"):
        plots.roc_curve(y, np.r_[score[:-1], np.nan])
    assert plt.get_fignums() == before


def test_ax_must_be_axes(data):
    y, score, _ = data
    with pytest.raises(InvalidInput, match="ax must be a matplotlib Axes"):
        plots.roc_curve(y, score, ax="not an axes")


def test_missing_matplotlib_is_explained(data, monkeypatch):
    y, score, _ = data
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install fedcredit\[plots\]"):
        plots.roc_curve(y, score)
