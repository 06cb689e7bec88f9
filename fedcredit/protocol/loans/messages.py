"""Messages of loan reports: loans in, as columns (one entry per loan in every list), and
how many the holder kept, with every refused loan's position and reason."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LoanReport:
    """One chunk of a bank's loan report; the chunks of one request follow one another."""

    session_id: str = ""
    loan_ids: list[str] = field(default_factory=list)
    usccs: list[str] = field(default_factory=list)
    loan_dates: list[str] = field(default_factory=list)  # ISO dates, YYYY-MM-DD
    amounts: list[float] = field(default_factory=list)
    products: list[str] = field(default_factory=list)
    credit_types: list[str] = field(default_factory=list)  # credit | secured
    first_loans: list[bool] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)  # current | repaid | overdue | default


@dataclass
class LoanReportResult:
    """Loans received and kept; the refused ones by position in the request, with reasons."""

    session_id: str = ""
    received: int = 0
    accepted: int = 0
    refused_rows: list[int] = field(default_factory=list)
    refused_reasons: list[str] = field(default_factory=list)


#: in wire order (field and envelope tags are append-only)
MESSAGE_TYPES: tuple[type, ...] = (LoanReport, LoanReportResult)
#: the loan table's column -> the LoanReport list that carries it
COLUMN_FIELDS: dict[str, str] = {
    "loan_id": "loan_ids", "uscc": "usccs", "loan_date": "loan_dates", "amount": "amounts",
    "product": "products", "credit_type": "credit_types", "first_loan": "first_loans",
    "status": "statuses"}
