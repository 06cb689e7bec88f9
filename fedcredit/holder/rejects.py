"""Rejected input rows: collected with their reasons, reported to the operator in one place.

Row numbers count data rows from 1 (the header is not a row), the way an operator reads a
spreadsheet. The report prints the first rows and the total; ``write_csv`` keeps them all.
"""
from __future__ import annotations

import csv

import numpy as np

from ..atomic import write_with
from ..datasets import uscc as _uscc

SHOWN = 20


def uscc_reason(value) -> str:
    """Why ``value`` is not a valid USCC, in words ("invalid USCC: ...")."""
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return "missing id"
    reason = _uscc._reason(value)  # the datasets package's own wording
    return f"invalid USCC: {reason}" if reason else "valid"


class Rejects:
    """Reasons per 0-based row position; a row may collect several."""

    def __init__(self, n_rows: int):
        self.n_rows = n_rows
        self._reasons: dict[int, list[str]] = {}

    def add(self, position: int, reason: str) -> None:
        self._reasons.setdefault(int(position), []).append(reason)

    @property
    def count(self) -> int:
        return len(self._reasons)

    def mask(self) -> np.ndarray:
        m = np.zeros(self.n_rows, dtype=bool)
        if self._reasons:
            m[list(self._reasons)] = True
        return m

    def items(self):
        for pos in sorted(self._reasons):
            yield pos + 1, "; ".join(self._reasons[pos])

    def report(self, what: str, shown: int = SHOWN) -> str:
        if not self.count:
            return f"{what}: all {self.n_rows} rows valid"
        lines = [f"{what}: rejected {self.count} of {self.n_rows} rows "
                 "(row numbers count data rows from 1):"]
        for k, (row, reason) in enumerate(self.items()):
            if k == shown:
                lines.append(f"  ... and {self.count - shown} more rejected rows "
                             "(--rejects-out FILE lists them all)")
                break
            lines.append(f"  row {row}: {reason}")
        return "\n".join(lines)

    def write_csv(self, path) -> None:
        def writer(tmp):
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["row", "reason"])
                w.writerows(self.items())

        write_with(path, writer)
