"""Post-loan monitoring figures: the grade migration heatmap and the score drift."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import metrics
from ..errors import InvalidInput
from . import _axes, _named


def migration_heatmap(migration, ax=None, cmap: str = "Blues"):
    """The grade migration matrix as a heatmap: origination grade by row, current grade by
    column, each cell's count written in it (below the diagonal: upgrades; above: downgrades).

    ``migration``: a square DataFrame of counts (``MonitorReport.migration``). Returns the Axes.
    """
    if not isinstance(migration, pd.DataFrame) or migration.shape[0] != migration.shape[1] \
            or migration.empty:
        raise InvalidInput("migration must be a square, non-empty DataFrame of counts")
    try:
        counts = migration.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput("migration must hold counts") from None
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise InvalidInput("migration counts must be finite and >= 0")
    ax = _axes(ax)
    ax.imshow(counts, cmap=cmap, vmin=0, vmax=max(counts.max(), 1.0))
    ticks = np.arange(counts.shape[0])
    ax.set_xticks(ticks, labels=[str(c) for c in migration.columns])
    ax.set_yticks(ticks, labels=[str(r) for r in migration.index])
    ax.set_xlabel("current grade")
    ax.set_ylabel("grade at origination")
    for (i, j), v in np.ndenumerate(counts):
        ax.text(j, i, f"{int(v)}", ha="center", va="center",
                color="white" if v > counts.max() / 2 else "black")
    return ax


def score_drift(origination, current, bins: int = 20, ax=None, label=None):
    """Overlaid histograms of scores (probabilities of default) at origination and now, the
    score PSI in the legend. Returns the Axes."""
    before = np.asarray(origination, dtype=np.float64)
    after = np.asarray(current, dtype=np.float64)
    if before.ndim != 1 or after.ndim != 1 or not len(before) or not len(after):
        raise InvalidInput("origination and current must be non-empty 1-d arrays of scores")
    value = metrics.psi(before, after)  # checks the values (no NaN, two distinct at least)
    ax = _axes(ax)
    edges = np.histogram_bin_edges(np.r_[before, after], bins=int(bins))
    ax.hist(before, bins=edges, alpha=0.5, label=_named(label, "at origination"))
    ax.hist(after, bins=edges, alpha=0.5, label=_named(label, f"now (PSI {value:.3f})"))
    ax.set_xlabel("probability of default")
    ax.set_ylabel("enterprises")
    ax.legend()
    return ax
