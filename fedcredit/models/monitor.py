"""Post-loan monitoring: re-score a watchlist of borrowers, report who migrated, and ask the
holder how its features drifted.

>>> mon = Monitor(model, watchlist, holder=channel)                 # doctest: +SKIP
>>> report = mon.run()                  # on demand
>>> report = mon.check()                # only if the holder's feature table changed (or None)
>>> report.alerts; report.migration; report.score_psi; report.csi
>>> report.to_csv("monitor/"); open("monitor.json", "w").write(report.to_json())

The watchlist holds the bank's borrowers with their probability of default at origination
(``score``) and, optionally, their ``grade`` then (derived from the score by the grade cuts
otherwise). The monitor re-scores them with the model (bank features from ``X`` where the
model uses any), grades them with :mod:`fedcredit.metrics.grades`, and reports:

* **alerts**: every enterprise whose grade fell by at least ``notches`` notches, or whose
  probability rose to ``threshold`` or beyond from below it;
* **migration**: the grade migration matrix (origination grade by row, current by column);
* **score PSI** of the current scores against those at origination (:func:`~fedcredit.metrics.psi`);
* **CSI** per holder feature (SecureBoost models): the holder compares each feature's
  distribution over the watchlist now with the model's training distribution and sends
  only bin shares merged to its privacy floor (:mod:`fedcredit.protocol.drift`) — the bank
  learns drift, never a value.

The holder tells its feature table version when a session opens; :meth:`Monitor.check`
re-scores only when it differs from the last run's.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_atomic, write_with
from ..errors import InvalidInput, PolicyViolation
from ..metrics import psi_table
from ..metrics.grades import DEFAULT_CUTS, GRADES, check_cuts, grade, notch
from ..protocol.drift.bank import FeatureDrift, feature_drift
from ..protocol.session import BankSession
from .base import as_channel, check_xy, open_session
from .holders import require_one_holder
from .population import POPULATION_MODELS
from .secureboost import SecureBoostClassifier

#: default probability of default an enterprise's score may rise past before it is flagged
DEFAULT_THRESHOLD = 0.10
#: the files :meth:`MonitorReport.to_csv` writes
CSV_FILES = ("scores.csv", "alerts.csv", "migration.csv", "score_psi.csv", "csi.csv",
             "csi_bins.csv")


def check_watchlist(watchlist: pd.DataFrame, cuts=DEFAULT_CUTS,
                    id_column: str | None = None) -> pd.DataFrame:
    """The watchlist as ``id`` (str), ``origination_score`` and ``origination_grade``.

    ``watchlist``: columns ``id`` (or ``uscc``, or ``id_column``), ``score`` (probability
    of default at origination, in [0, 1]) and optionally ``grade`` (one of A..E)."""
    if not isinstance(watchlist, pd.DataFrame):
        raise InvalidInput("the watchlist must be a pandas DataFrame")
    col = id_column or next((c for c in ("id", "uscc") if c in watchlist.columns), None)
    if col is None or col not in watchlist.columns:
        raise InvalidInput(f"the watchlist has no id column ({id_column or 'id or uscc'}); "
                           f"its columns: {list(watchlist.columns)[:8]}")
    if "score" not in watchlist.columns:
        raise InvalidInput("the watchlist has no 'score' column (probability of default at "
                           "origination)")
    ids = watchlist[col].astype("string").str.strip()
    if ids.isna().any() or (ids == "").any():
        row = int(np.flatnonzero((ids.isna() | (ids == "")).to_numpy())[0])
        raise InvalidInput(f"watchlist row {row + 1}: missing id")
    if ids.duplicated().any():
        row = int(np.flatnonzero(ids.duplicated().to_numpy())[0])
        raise InvalidInput(f"watchlist row {row + 1}: id {ids.iloc[row]!r} appears twice")
    score = pd.to_numeric(watchlist["score"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(score) & (score >= 0) & (score <= 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvalidInput(f"watchlist row {row + 1}: score {watchlist['score'].iloc[row]!r} "
                           "is not a probability in [0, 1]")
    if "grade" in watchlist.columns:
        grades = watchlist["grade"].astype("string").str.strip().fillna("")
        wrong = ~grades.isin(GRADES)
        if wrong.any():
            row = int(np.flatnonzero(wrong.to_numpy())[0])
            raise InvalidInput(f"watchlist row {row + 1}: grade {grades.iloc[row]!r} is not "
                               f"one of {', '.join(GRADES)}")
        grades = grades.to_numpy(dtype=object)
    else:
        grades = grade(score, cuts)
    if len(ids) == 0:
        raise InvalidInput("the watchlist is empty")
    return pd.DataFrame({"id": ids.to_numpy(dtype=object), "origination_score": score,
                         "origination_grade": grades})


def migration_matrix(before, after, labels=GRADES) -> pd.DataFrame:
    """Counts of enterprises by grade then (rows) and now (columns), every grade shown."""
    cat = pd.CategoricalDtype(list(labels), ordered=True)
    out = pd.crosstab(pd.Series(before, dtype=cat, name="origination"),
                      pd.Series(after, dtype=cat, name="current"), dropna=False)
    return out.reindex(index=list(labels), columns=list(labels), fill_value=0).astype(np.int64)


@dataclass
class MonitorReport:
    """One monitoring run; see the module notes for what each part means."""

    model_id: str
    holder_name: str
    features_version: int
    scored_at: str
    threshold: float | None
    notches: int
    scores: pd.DataFrame
    migration: pd.DataFrame
    score_psi: float | None
    score_psi_table: pd.DataFrame | None
    drift: FeatureDrift | None
    notes: list[str] = field(default_factory=list)

    @property
    def alerts(self) -> pd.DataFrame:
        """The watchlist rows that raised an alert (``alert`` says why)."""
        return self.scores[self.scores["alert"] != ""].reset_index(drop=True)

    @property
    def csi(self) -> pd.DataFrame | None:
        """Per holder feature: ``feature``, ``csi``, ``bins`` (None: not reported)."""
        return None if self.drift is None else self.drift.csi

    @property
    def csi_bins(self) -> pd.DataFrame | None:
        return None if self.drift is None else self.drift.bins

    def summary(self) -> dict:
        scores = self.scores
        return {"model_id": self.model_id, "holder_name": self.holder_name,
                "features_version": self.features_version, "scored_at": self.scored_at,
                "watchlist": len(scores), "alerts": int((scores["alert"] != "").sum()),
                "downgraded": int((scores["notches"] >= self.notches).sum()),
                "threshold": self.threshold, "notches": self.notches,
                "score_psi": self.score_psi,
                "holder_covered": None if self.drift is None else self.drift.covered,
                "notes": list(self.notes)}

    def to_dict(self) -> dict:
        out = self.summary()
        out["alerts_table"] = _records(self.alerts)
        out["migration"] = {str(k): {str(c): int(v) for c, v in row.items()}
                            for k, row in self.migration.iterrows()}
        out["score_psi_table"] = None if self.score_psi_table is None else _records(
            self.score_psi_table.reset_index())
        out["csi"] = None if self.csi is None else _records(self.csi)
        out["csi_bins"] = None if self.csi_bins is None else _records(self.csi_bins)
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_csv(self, directory) -> list[Path]:
        """Write :data:`CSV_FILES` (those the report has) and ``summary.json`` into
        ``directory``, each atomically; returns the paths written."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tables = {"scores.csv": self.scores, "alerts.csv": self.alerts,
                  "migration.csv": self.migration.rename_axis("origination"),
                  "score_psi.csv": self.score_psi_table, "csi.csv": self.csi,
                  "csi_bins.csv": self.csi_bins}
        written = []
        for name, frame in tables.items():
            if frame is None:
                continue
            write_with(d / name, _csv_writer(frame, name in ("migration.csv", "score_psi.csv")))
            written.append(d / name)
        write_atomic(d / "summary.json", json.dumps(self.summary(), indent=2))
        return written + [d / "summary.json"]


def _csv_writer(frame: pd.DataFrame, index: bool):
    def write(tmp: Path) -> None:
        frame.to_csv(tmp, index=index)
    return write


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-safe dicts (NaN and infinities as null)."""
    out = []
    for row in frame.to_dict(orient="records"):
        out.append({str(k): (None if isinstance(v, float) and not math.isfinite(v) else
                             v.item() if isinstance(v, np.generic) else v)
                    for k, v in row.items()})
    return out


class Monitor:
    """A watchlist and a model, re-scored on demand (:meth:`run`) or when the holder's
    feature table changes (:meth:`check`).

    Parameters
    ----------
    model : SecureBoostClassifier or HeteroLogisticRegression
    watchlist : pandas.DataFrame
        See :func:`check_watchlist`.
    holder : Channel or PassiveParty
    X : pandas.DataFrame, optional
        The watchlist's current bank features, indexed by id; needed only when the model
        uses bank features.
    threshold : float or None
        Flag a probability of default rising to it from below; None: grades only.
    notches : int
        Flag a grade falling by at least this many notches.
    cuts : sequence of float
        Grade cuts (:mod:`fedcredit.metrics.grades`).
    purpose : str, optional
        Purpose presented for the drift request (default: the channel's).
    """

    def __init__(self, model, watchlist: pd.DataFrame, holder, *, X: pd.DataFrame | None = None,
                 threshold: float | None = DEFAULT_THRESHOLD, notches: int = 1,
                 cuts=DEFAULT_CUTS, purpose: str | None = None, id_column: str | None = None):
        if not isinstance(model, POPULATION_MODELS):
            names = ", ".join(k.__name__ for k in POPULATION_MODELS)
            raise InvalidInput(f"a monitor takes a fitted {names}, not {type(model).__name__}")
        model._check_fitted()
        require_one_holder(model, "post-loan monitoring")
        self.cuts = check_cuts(cuts)
        if threshold is not None and not (isinstance(threshold, (int, float))
                                          and 0 < float(threshold) < 1):
            raise InvalidInput(f"threshold must be a probability in (0, 1), got {threshold!r}")
        if isinstance(notches, bool) or not isinstance(notches, (int, np.integer)) or notches < 1:
            raise InvalidInput(f"notches must be a whole number >= 1, got {notches!r}")
        self.model, self.holder = model, holder
        self.watchlist = check_watchlist(watchlist, self.cuts, id_column)
        self.X = self._bank_table(X)
        self.threshold = None if threshold is None else float(threshold)
        self.notches = int(notches)
        self.purpose = purpose
        #: the holder's feature table version at the last run (None: never run)
        self.last_version: int | None = None

    def _bank_table(self, X) -> pd.DataFrame:
        ids = self.watchlist["id"].tolist()
        if not len(self.model.feature_names_bank_):
            return pd.DataFrame(index=pd.Index(ids))
        if X is None:
            raise InvalidInput("this model uses bank features: pass X, the watchlist's current "
                               "bank features indexed by id")
        X, _ = check_xy(X)
        absent = [i for i in ids if i not in X.index]
        if absent:
            raise InvalidInput(f"X has no row for {len(absent)} watchlist id(s), e.g. "
                               f"{absent[0]!r}")
        return X.loc[ids]

    def _session(self) -> BankSession:
        channel = as_channel(self.holder)
        return open_session(lambda: BankSession(channel, "score", model_id=self.model.model_id_,
                                                purpose=self.purpose))

    def holder_version(self) -> int:
        """The holder's feature table version now (a session opened and closed)."""
        with self._session() as s:
            return s.features_version

    def check(self) -> MonitorReport | None:
        """:meth:`run` if the holder's feature table changed since the last run (or there
        was none); None otherwise."""
        if self.last_version is not None and self.holder_version() == self.last_version:
            return None
        return self.run()

    def run(self) -> MonitorReport:
        """Re-score the watchlist now and report (see the module notes)."""
        notes: list[str] = []
        ids = self.watchlist["id"].tolist()
        with self._session() as session:
            version, holder_name = session.features_version, session.holder_name
            p = self.model.predict_proba(self.X, holder=self.holder)[:, 1]
            drift = None
            if isinstance(self.model, SecureBoostClassifier):
                try:
                    drift = feature_drift(session, ids)
                except (PolicyViolation, InvalidInput) as e:
                    notes.append(f"no CSI: {e}")
            else:
                notes.append("no CSI: the holder keeps training bins for SecureBoost models "
                             "only")
        self.last_version = version
        scores = self._scores(p)
        table: pd.DataFrame | None = None
        value: float | None = None
        try:  # psi() is this table's sum
            table = psi_table(scores["origination_score"], scores["score"])
            value = float(table["psi"].sum())
        except InvalidInput as e:
            notes.append(f"no score PSI: {e}")
        return MonitorReport(
            model_id=self.model.model_id_, holder_name=holder_name, features_version=version,
            scored_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            threshold=self.threshold, notches=self.notches, scores=scores,
            migration=migration_matrix(scores["origination_grade"], scores["grade"]),
            score_psi=value, score_psi_table=table, drift=drift, notes=notes)

    def _scores(self, p: np.ndarray) -> pd.DataFrame:
        out = self.watchlist.copy()
        out["score"] = p
        out["grade"] = grade(p, self.cuts)
        out["notches"] = notch(out["grade"]) - notch(out["origination_grade"])
        down = out["notches"].to_numpy() >= self.notches
        crossed = np.zeros(len(out), dtype=bool)
        if self.threshold is not None:
            crossed = ((out["origination_score"].to_numpy() < self.threshold)
                       & (p >= self.threshold))
        out["alert"] = np.where(down & crossed, "downgrade+threshold",
                                np.where(down, "downgrade", np.where(crossed, "threshold", "")))
        return out


def monitor(model, watchlist: pd.DataFrame, holder, **kw) -> MonitorReport:
    """One monitoring run now: ``Monitor(model, watchlist, holder, **kw).run()``."""
    return Monitor(model, watchlist, holder, **kw).run()
