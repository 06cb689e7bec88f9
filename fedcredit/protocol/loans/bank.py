"""The bank's step of loan reports, over a ``loans`` :class:`BankSession`.

    with BankSession(channel, "loans") as session:
        outcome = report_loans(session, loans)      # a DataFrame of LOAN_COLUMNS

A report of a loan id the bank reported before updates it (send the whole book again, or
only the loans whose status changed). The holder keeps each request whole or not at all; a
table of more than :data:`ROWS_PER_REQUEST` loans goes as several requests, so after an
error part of it may be kept: sending it again is harmless.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from ...errors import InvalidInput, ProtocolError
from ..channel import Channel
from ..session import BankSession
from . import messages as m
from .math import parse_loans

#: loans per message, and per request (the holder takes at most its max_predict_ids)
CHUNK_ROWS = 5_000
ROWS_PER_REQUEST = 100_000
SHOWN = 5


@dataclass
class LoanReportOutcome:
    """What the holder kept; ``refused``: row (0-based position in the table), loan_id and
    reason of every loan it refused."""

    received: int
    accepted: int
    refused: pd.DataFrame


def report_loans(session: BankSession, loans: pd.DataFrame, chunk_rows: int = CHUNK_ROWS,
                 rows_per_request: int = ROWS_PER_REQUEST) -> LoanReportOutcome:
    """Send a loan table to the holder, checked here first by the holder's own rules.

    **Privacy**: the holder receives every loan of the table (id, enterprise, date, amount,
    product, credit type, first loan or not, status); the bank learns which were refused
    and why.

    Raises
    ------
    InvalidInput
        If a row breaks a rule (nothing is sent); the message names the first rows.
    """
    if chunk_rows < 1 or rows_per_request < 1:
        raise InvalidInput("chunk_rows and rows_per_request must be >= 1")
    frame, reasons = parse_loans(loans)
    if reasons:
        shown = "; ".join(f"row {r}: {t}" for r, t in list(reasons.items())[:SHOWN])
        raise InvalidInput(f"{len(reasons)} of {len(frame)} loans break the report's rules "
                           f"(rows 0-based), nothing was sent: {shown}")
    received = accepted = 0
    refused: list[tuple[int, str, str]] = []
    for lo in range(0, max(len(frame), 1), rows_per_request):  # an empty table: one request
        part = frame.iloc[lo:lo + rows_per_request]
        r = session.stream(_chunks(session.id, part, chunk_rows), m.LoanReportResult)
        if r.received != len(part) or len(r.refused_rows) != len(r.refused_reasons) or \
                any(not 0 <= i < len(part) for i in r.refused_rows) or \
                r.accepted + len(r.refused_rows) > len(part):
            raise ProtocolError("the holder's loan report answer does not match the request")
        received += r.received
        accepted += r.accepted
        refused += [(lo + i, str(part["loan_id"].iloc[i]), why)
                    for i, why in zip(r.refused_rows, r.refused_reasons)]
    return LoanReportOutcome(received, accepted,
                             pd.DataFrame(refused, columns=["row", "loan_id", "reason"]))


def report_loans_to(channel: Channel, loans: pd.DataFrame, purpose: str | None = None,
                    **kw) -> tuple[LoanReportOutcome, str]:
    """Open a ``loans`` session, report, close it; returns the outcome and the holder's name."""
    with BankSession(channel, "loans", purpose=purpose) as session:
        return report_loans(session, loans, **kw), session.holder_name


def _chunks(session_id: str, frame: pd.DataFrame, chunk_rows: int) -> Iterator[m.LoanReport]:
    for lo in range(0, max(len(frame), 1), chunk_rows):
        part = frame.iloc[lo:lo + chunk_rows]
        yield m.LoanReport(
            session_id=session_id, loan_ids=part["loan_id"].tolist(),
            usccs=part["uscc"].tolist(), loan_dates=part["loan_date"].tolist(),
            amounts=[float(v) for v in part["amount"]], products=part["product"].tolist(),
            credit_types=part["credit_type"].tolist(),
            first_loans=[bool(v) for v in part["first_loan"]],
            statuses=part["status"].tolist())
