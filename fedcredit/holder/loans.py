"""The loan book: loan outcomes the banks report, in the store's ``loans`` table.

One row per (bank, loan id): a bank's later report of the same loan updates it in place —
its performance status first of all, and any field the bank corrects — keeping when it was
first reported (``reported_at``) and stamping ``updated_at``. A report is written in one
transaction: all its loans or none.
"""
from __future__ import annotations

import sqlite3
import threading
import time

import pandas as pd

from ..errors import InvalidInput
from ..protocol.loans.math import LOAN_COLUMNS
from .audit_report import parse_time
from .store import write

_UPSERT = (
    "INSERT INTO loans (bank, loan_id, uscc, loan_date, amount, product, credit_type, "
    "first_loan, status, reported_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT(bank, loan_id) DO UPDATE SET uscc = excluded.uscc, "
    "loan_date = excluded.loan_date, amount = excluded.amount, product = excluded.product, "
    "credit_type = excluded.credit_type, first_loan = excluded.first_loan, "
    "status = excluded.status, updated_at = excluded.updated_at")
#: the columns :func:`read_loans` returns
BOOK_COLUMNS = ("bank", *LOAN_COLUMNS, "reported_at", "updated_at")


class SqliteLoanBook:
    """The protocol core's ``loans`` hook (:class:`fedcredit.protocol.hooks.LoanBook`)."""

    def __init__(self, con: sqlite3.Connection):
        self.con = con
        self._lock = threading.Lock()

    def record(self, bank: str, loans: pd.DataFrame) -> int:
        """Insert or update the loans (a table the loan rules accepted); returns how many."""
        missing = [c for c in LOAN_COLUMNS if c not in loans.columns]
        if missing:
            raise InvalidInput(f"a loan report to keep lacks column(s) {missing}")
        now = time.time()
        rows = [(str(bank), str(r.loan_id), str(r.uscc), str(r.loan_date), float(r.amount),
                 str(r.product), str(r.credit_type), int(bool(r.first_loan)), str(r.status),
                 now, now)
                for r in loans[list(LOAN_COLUMNS)].itertuples(index=False)]
        with self._lock, write(self.con):
            self.con.executemany(_UPSERT, rows)
        return len(rows)


def read_loans(con: sqlite3.Connection, since: str | None = None) -> pd.DataFrame:
    """The loan book (every bank's), as a table of :data:`BOOK_COLUMNS`.

    ``since``: only loans granted on or after that day (the forms of
    :func:`~fedcredit.holder.audit_report.parse_time`: a date, a time, ``30d``).
    """
    sql = f"SELECT {', '.join(BOOK_COLUMNS)} FROM loans"
    args: list = []
    if since:
        sql += " WHERE loan_date >= ?"
        args.append(parse_time(since)[:10])
    frame = pd.DataFrame(con.execute(sql + " ORDER BY bank, loan_id", args).fetchall(),
                         columns=list(BOOK_COLUMNS))
    frame["amount"] = frame["amount"].astype("float64")
    frame["first_loan"] = frame["first_loan"].astype(bool)
    return frame
