"""The rules every reported loan obeys, applied by both sides.

The bank applies them to its file before sending (so a bad row is named by row and column
at home) and the holder to every row it receives (a bank's word is input like any other).
:func:`parse_loans` takes a table of text (a CSV read as strings) or of typed columns (a
notebook's frame, or the wire's lists) and returns the typed table and a reason per bad row.

Dates are ISO (``2026-03-31``) and may not lie in the future: "today" is the date in the
latest time zone on Earth (UTC+14), so a loan granted today anywhere is never refused for
its date, whichever machine checks it.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from ...datasets.uscc import _reason as uscc_reason
from ...datasets.uscc import invalid_uscc_rows
from ...errors import InvalidInput

LOAN_COLUMNS = ("loan_id", "uscc", "loan_date", "amount", "product", "credit_type",
                "first_loan", "status")
TEXT_COLUMNS = ("loan_id", "uscc", "loan_date", "product", "credit_type", "status")
#: credit: unsecured (信用贷款); secured: with collateral or a guarantee
CREDIT_TYPES = ("credit", "secured")
STATUSES = ("current", "repaid", "overdue", "default")
#: statuses that settle a loan's outcome: the default rate is defaults among these
KNOWN_OUTCOMES = ("repaid", "default")
#: longest loan id or product name (characters)
MAX_TEXT = 64
_LATEST_UTC_OFFSET = dt.timedelta(hours=14)
_TRUE = frozenset({"true", "yes", "y", "1", "是"})
_FALSE = frozenset({"false", "no", "n", "0", "否"})


def latest_today() -> dt.date:
    """Today's date where it is latest (UTC+14): later dates are in the future everywhere."""
    return (dt.datetime.now(dt.timezone.utc) + _LATEST_UTC_OFFSET).date()


def _shown(value) -> str:
    text = str(value)
    return repr(text[:40] + "..." if len(text) > 40 else text)


class _Reasons:
    """One reason per row and column; the first one found for a cell stands."""

    def __init__(self):
        self.cells: dict[int, dict[str, str]] = {}

    def add(self, rows, column: str, why) -> None:
        for r in np.asarray(rows, dtype=np.int64).tolist():
            self.cells.setdefault(r, {}).setdefault(column, why(r) if callable(why) else why)

    def has(self, row: int, column: str) -> bool:
        return column in self.cells.get(row, {})

    def joined(self) -> dict[int, str]:
        order = {c: k for k, c in enumerate(LOAN_COLUMNS)}
        return {r: "; ".join(f"{c}: {cols[c]}" for c in sorted(cols, key=order.__getitem__))
                for r, cols in sorted(self.cells.items())}


def _text(raw: pd.DataFrame, column: str) -> np.ndarray:
    """Object array of stripped str; '' where missing."""
    text = raw[column].astype("string").str.strip().fillna("")
    return text.to_numpy(dtype=object)


def _amounts(raw: pd.Series, why: _Reasons) -> np.ndarray:
    if pd.api.types.is_bool_dtype(raw):
        why.add(np.arange(len(raw)), "amount", "expected a number, got a true/false value")
        return np.full(len(raw), np.nan)
    if pd.api.types.is_numeric_dtype(raw):
        return raw.to_numpy(dtype=np.float64, na_value=np.nan)
    text = pd.Series(_text(raw.to_frame("amount"), "amount"), dtype=object)
    values = pd.to_numeric(text.str.replace(",", "", regex=False), errors="coerce")
    values = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(np.isnan(values) & (text != "").to_numpy())
    why.add(bad, "amount", lambda r: f"{_shown(text.iloc[r])} is not a number")
    return values


def _flags(raw: pd.Series, why: _Reasons) -> np.ndarray:
    if pd.api.types.is_bool_dtype(raw) and not raw.isna().any():
        return raw.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.flatnonzero(~np.isin(values, (0.0, 1.0)))
        why.add(bad, "first_loan", lambda r: "missing (expected true or false)"
                if np.isnan(values[r]) else f"expected 1 or 0, got {values[r]:g}")
        return values == 1.0
    text = raw.astype("string").str.strip().str.lower().fillna("")
    yes, no = text.isin(_TRUE).to_numpy(), text.isin(_FALSE).to_numpy()
    why.add(np.flatnonzero(~yes & ~no), "first_loan", lambda r: "missing (expected true or "
            "false)" if text.iloc[r] == "" else "expected true or false (or yes/no, 1/0), "
            f"got {_shown(raw.iloc[r])}")
    return yes


def parse_loans(raw: pd.DataFrame, today: dt.date | None = None
                ) -> tuple[pd.DataFrame, dict[int, str]]:
    """The typed loan table and why each bad row is bad.

    Parameters
    ----------
    raw : pandas.DataFrame
        Columns :data:`LOAN_COLUMNS` (others are ignored), as text or typed.
    today : datetime.date, optional
        The latest allowed loan date (default :func:`latest_today`).

    Returns
    -------
    (pandas.DataFrame, dict)
        Every row, in order, with stripped text, ``credit_type`` and ``status`` in lower
        case, ``amount`` float and ``first_loan`` bool; and 0-based row position ->
        ``"column: reason; column: reason"`` for the rows that break a rule.

    Raises
    ------
    InvalidInput
        If a column is missing (naming every missing one).
    """
    missing = [c for c in LOAN_COLUMNS if c not in raw.columns]
    if missing:
        raise InvalidInput(f"the loan table has no column(s) {missing}; expected "
                           f"{list(LOAN_COLUMNS)}")
    why = _Reasons()
    text = {c: _text(raw, c) for c in TEXT_COLUMNS}
    for c in ("credit_type", "status"):
        text[c] = np.array([v.lower() for v in text[c]], dtype=object)
    frame = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in text.items()})
    frame["amount"] = _amounts(raw["amount"].reset_index(drop=True), why)
    frame["first_loan"] = _flags(raw["first_loan"].reset_index(drop=True), why)
    frame = frame[list(LOAN_COLUMNS)]
    _check(frame, why, today or latest_today())
    return frame, why.joined()


def _check(frame: pd.DataFrame, why: _Reasons, today: dt.date) -> None:
    for c in TEXT_COLUMNS:
        empty = np.flatnonzero((frame[c] == "").to_numpy())
        why.add(empty, c, "missing")
    for c in ("loan_id", "product"):
        values = frame[c].astype(str)
        long = np.flatnonzero((values.str.len() > MAX_TEXT).to_numpy())
        why.add(long, c, f"longer than {MAX_TEXT} characters")
        control = np.flatnonzero(values.str.contains(r"[\x00-\x1f\x7f]", regex=True).to_numpy())
        why.add(control, c, "contains a control character")
    ids = frame["loan_id"]
    repeated = ids.duplicated(keep=False).to_numpy() & (ids != "").to_numpy()
    counts = ids[repeated].value_counts()
    why.add(np.flatnonzero(repeated), "loan_id",
            lambda r: f"{_shown(ids.iloc[r])} appears {int(counts[ids.iloc[r]])} times in "
                      "this report")
    codes = frame["uscc"]
    bad = [r for r in invalid_uscc_rows(codes).tolist() if codes.iloc[r] != ""]
    why.add(bad, "uscc", lambda r: f"{_shown(codes.iloc[r])} is not a valid unified social "
                                   f"credit code: {uscc_reason(codes.iloc[r])}")
    dates = frame["loan_date"]
    parsed = pd.to_datetime(dates.where(dates.str.fullmatch(r"\d{4}-\d{2}-\d{2}"), None),
                            format="%Y-%m-%d", errors="coerce")
    not_iso = np.flatnonzero(parsed.isna().to_numpy() & (dates != "").to_numpy())
    why.add(not_iso, "loan_date",
            lambda r: f"{_shown(dates.iloc[r])} is not an ISO date (YYYY-MM-DD)")
    future = np.flatnonzero((parsed > pd.Timestamp(today)).to_numpy())
    why.add(future, "loan_date", lambda r: f"{dates.iloc[r]} is in the future")
    amount = frame["amount"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad_amount = ~(np.isfinite(amount) & (amount > 0))
    why.add(np.flatnonzero(bad_amount), "amount",
            lambda r: "missing" if np.isnan(amount[r]) else
            f"must be a finite number > 0, got {amount[r]:g}")
    for c, allowed in (("credit_type", CREDIT_TYPES), ("status", STATUSES)):
        values = frame[c]
        unknown = np.flatnonzero((~values.isin(allowed) & (values != "")).to_numpy())
        why.add(unknown, c, lambda r, v=values, a=allowed: f"{_shown(v.iloc[r])} is not one "
                                                            f"of {', '.join(a)}")
