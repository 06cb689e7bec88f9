"""``fedcredit bank precredit`` and ``fedcredit bank monitor``: the credit lifecycle before a
loan (screen the enterprises that authorise pre-credit) and after it (watch the borrowers).

    fedcredit bank precredit --holder ADDR --tls-dir T --model M --top 500 --out whitelist.csv
    fedcredit bank monitor --holder ADDR --tls-dir T --model M --watchlist W.csv --out DIR

``precredit`` sends no id: the holder lists the enterprises whose consent for ``pre_credit``
covers this bank and scores them with the model (trained for ``pre_credit`` on ids and
labels only); the whitelist is ranked lowest risk first (rank, id, score, grade, reasons).
``monitor`` re-scores a watchlist (id, score at origination, optional grade) and writes the
alerts, the grade migration matrix, the score PSI and the holder's CSI per feature as CSV
(and ``report.json``) into DIR; ``--if-changed`` does nothing when the holder's feature
table is the one of the last report in DIR. Exit 0 on success, 2 on an error.
"""
from __future__ import annotations

import json
import time
from pathlib import Path


def register(bs) -> None:
    """Add ``precredit`` and ``monitor`` to ``fedcredit bank``."""
    s = bs.add_parser(
        "precredit", help="score every enterprise that authorises this bank for pre-credit",
        description="The holder lists, page by page, the enterprises whose pre-credit consent "
                    "covers this bank (named, or all institutions on the platform) and scores "
                    "them; writes the ranked whitelist (rank, id, score, grade, reasons).")
    _connection(s, default_purpose="pre_credit")
    s.add_argument("--model", required=True, help="model file (SecureBoost or hetero LR) "
                                                  "trained for pre_credit on ids and labels")
    s.add_argument("--top", type=int, default=None, help="keep the N lowest-risk enterprises")
    s.add_argument("--out", required=True, help="whitelist CSV")
    s.add_argument("--reasons", type=int, default=3, metavar="K",
                   help="reason_1..K per enterprise (0: none)")
    s.add_argument("--page-size", type=int, default=10_000, help="ids per holder page")
    s.set_defaults(func=_precredit)

    s = bs.add_parser(
        "monitor", help="re-score a watchlist: alerts, grade migration, score PSI, CSI",
        description="Re-score the bank's borrowers (a watchlist CSV: id, score at "
                    "origination, optional grade) and report who fell a grade or crossed "
                    "the threshold, the migration matrix, the score PSI, and the holder's "
                    "CSI of each of its features over the watchlist.")
    _connection(s, default_purpose="credit")
    s.add_argument("--model", required=True, help="model file (SecureBoost or hetero LR)")
    s.add_argument("--watchlist", required=True, help="CSV: id (or uscc), score, [grade]")
    s.add_argument("--id-column", default=None, help="the watchlist's id column "
                                                     "(default: id, else uscc)")
    s.add_argument("--csv", help="the watchlist's current bank features (models that use "
                                 "bank features), keyed by the same id column")
    s.add_argument("--no-uscc-check", action="store_true",
                   help="ids are not unified social credit codes")
    s.add_argument("--out", required=True, help="directory for the CSVs and report.json")
    s.add_argument("--threshold", type=float, default=0.10,
                   help="flag a probability of default rising to this from below")
    s.add_argument("--notches", type=int, default=1, help="flag a fall of this many grades")
    s.add_argument("--if-changed", action="store_true",
                   help="do nothing if the holder's feature table is the one of the last "
                        "report in --out")
    s.add_argument("--figures", action="store_true",
                   help="also write migration.png and score_drift.png (needs matplotlib)")
    s.set_defaults(func=_monitor)


def _connection(s, default_purpose: str) -> None:
    s.add_argument("--holder", required=True, help="holder address host:port")
    s.add_argument("--tls-dir", required=True, help="ca.pem and this bank's certificate")
    s.add_argument("--bank-name", help="pick <NAME>.pem/.key in --tls-dir (default bank.pem)")
    s.add_argument("--purpose", default=default_purpose,
                   help=f"purpose of use presented to the holder (default {default_purpose})")
    s.add_argument("--timeout", type=float, default=3600.0, help="seconds per holder call")


def _precredit(a) -> int:
    from ..errors import InvalidInput
    from ..models.population import load_model, precredit
    from .bank_cmds import _atomic_csv, _connect

    if a.top is not None and a.top < 1:
        raise InvalidInput(f"--top must be >= 1, got {a.top}")
    if a.reasons < 0 or a.page_size < 1:
        raise InvalidInput("--reasons must be >= 0 and --page-size >= 1")
    model = load_model(a.model)
    channel = _connect(a)
    try:
        t0 = time.perf_counter()
        out = precredit(model, channel, top=a.top, reasons=a.reasons, page_size=a.page_size,
                        purpose=a.purpose)
        seconds = time.perf_counter() - t0
    finally:
        channel.close()
    _atomic_csv(out, a.out, index=False)
    info = out.attrs
    print(f"holder {info['holder_name']!r} listed {info['listed']} enterprises authorising "
          f"{a.purpose!r} ({info['withdrawn']} withdrew while being scored); wrote the "
          f"{len(out)} best-ranked to {a.out} in {seconds:.1f} s")
    return 0


def _read_watchlist(path):
    import pandas as pd

    from ..errors import InvalidInput

    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{path}: not a readable UTF-8 CSV ({type(e).__name__}: "
                           f"{str(e)[:200]})") from None


def _last_version(out: Path, model_id: str) -> int | None:
    """The holder's feature version in the last report in ``out`` for this model."""
    try:
        last = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(last, dict) or last.get("model_id") != model_id:
        return None
    version = last.get("features_version")
    return version if isinstance(version, int) else None


def _monitor(a) -> int:
    from ..atomic import write_atomic
    from ..errors import InvalidInput
    from ..models.monitor import Monitor
    from ..models.population import load_model
    from .bank_cmds import _connect

    model = load_model(a.model)
    raw = _read_watchlist(a.watchlist)
    X = None
    if a.csv:
        from ..datasets import load_csv_table

        col = a.id_column or next((c for c in ("id", "uscc") if c in raw.columns), "id")
        X = load_csv_table(a.csv, col, uscc=not a.no_uscc_check)
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out {out} exists and is not a directory")
    channel = _connect(a)
    try:
        mon = Monitor(model, raw, channel, X=X, threshold=a.threshold, notches=a.notches,
                      purpose=a.purpose, id_column=a.id_column)
        mon.last_version = _last_version(out, model.model_id_) if a.if_changed else None
        t0 = time.perf_counter()
        report = mon.check()
        seconds = time.perf_counter() - t0
    finally:
        channel.close()
    if report is None:
        print(f"the holder's feature table is still version {mon.last_version}, as in the "
              f"last report in {out}: nothing re-scored")
        return 0
    report.to_csv(out)
    write_atomic(out / "report.json", report.to_json())
    if a.figures:
        _figures(report, out)
    s = report.summary()
    csi = report.csi
    worst = "" if csi is None or csi.empty else (
        "; largest CSI: " + ", ".join(f"{r.feature} {r.csi:.3f}" for r in
                                      csi.sort_values("csi", ascending=False).head(3).itertuples()))
    print(f"re-scored {s['watchlist']} enterprises (holder {s['holder_name']!r}, features "
          f"version {s['features_version']}) in {seconds:.1f} s: {s['alerts']} alerts, "
          f"score PSI {s['score_psi'] if s['score_psi'] is None else round(s['score_psi'], 4)}"
          f"{worst}; wrote {out}")
    for note in report.notes:
        print(f"note: {note}")
    return 0


def _figures(report, out: Path) -> None:
    """migration.png and score_drift.png, each written whole or not at all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import plots
    from ..atomic import write_with
    from ..errors import InvalidInput

    scores = report.scores
    for name, draw in (
            ("migration.png", lambda ax: plots.migration_heatmap(report.migration, ax=ax)),
            ("score_drift.png", lambda ax: plots.score_drift(
                scores["origination_score"], scores["score"], ax=ax))):
        fig, ax = plt.subplots()
        try:
            draw(ax)
            write_with(out / name, _png(fig))
        except InvalidInput as e:
            print(f"note: no {name}: {e}")
        finally:
            plt.close(fig)


def _png(fig):
    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png")
    return write
