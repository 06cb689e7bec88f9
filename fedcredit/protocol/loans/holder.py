"""The holder's step of loan reports.

The holder gathers the request's chunks (at most ``policy.max_predict_ids`` loans per
request), checks every row by the rules of :mod:`.math`, refuses the loans of enterprises
that do not currently authorise this bank for the session's purpose, keeps the others in
its loan book (a later report of the same loan id updates it: its performance status, and
any corrected field), audits the request with the enterprises it accepted, and answers the
counts and a reason per refused loan.

The loan book is written before the audit record: if the record cannot be written the bank
gets an error and sends the report again, and the book's upsert makes the repeat harmless.

**Privacy** (what the bank learns): how many of its loans were kept, and why each refused
one was refused — a rule it broke, or that the enterprise does not authorise it (the same
words whether or not the holder knows the enterprise). Nothing about other banks: loan ids
are the bank's own (the book keys them by bank), and no answer depends on another bank's
loans or consents. What the holder learns: the loans, as the platform's duties ask
(financing granted, and how enterprises repay).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from ...errors import InvalidInput, ProtocolError, ResourceLimit
from ..channel import Caller
from ..context import HolderContext
from . import messages as m
from .math import LOAN_COLUMNS, parse_loans

OPERATIONS = ("loan_report",)
TASK = "loans"


def _gather(first: m.LoanReport, rest: Iterator, session_id: str, limit: int) -> pd.DataFrame:
    """The request's chunks as one table, refused past ``limit`` loans before more is held."""
    parts: dict[str, list] = {c: [] for c in LOAN_COLUMNS}
    total, chunk = 0, 0
    for msg in _chunks(first, rest, session_id):
        lists = {c: getattr(msg, f) for c, f in m.COLUMN_FIELDS.items()}
        sizes = {c: len(v) for c, v in lists.items()}
        if len(set(sizes.values())) > 1:
            raise InvalidInput(f"LoanReport chunk {chunk}: its lists differ in length {sizes}")
        total += sizes["loan_id"]
        if total > limit:
            raise ResourceLimit(f"more than {limit} loans in one request; the holder takes at "
                                f"most {limit} per request (send several)")
        for c, v in lists.items():
            parts[c].extend(v)
        chunk += 1
    frame = pd.DataFrame({c: pd.Series(parts[c], dtype=object) for c in LOAN_COLUMNS})
    try:  # typed on the wire (double, bool): kept typed, so the rules need not parse text
        frame["amount"] = np.asarray(parts["amount"], dtype=np.float64)
        frame["first_loan"] = np.asarray(parts["first_loan"], dtype=bool)
    except (TypeError, ValueError):
        raise InvalidInput("LoanReport amounts must be numbers and first_loans true or "
                           "false") from None
    return frame


def _chunks(first: m.LoanReport, rest: Iterator, session_id: str) -> Iterator[m.LoanReport]:
    yield first
    for msg in rest:
        if not isinstance(msg, m.LoanReport) or msg.session_id != session_id:
            raise ProtocolError("a loan report stream mixes in other messages")
        yield msg


def report(core: HolderContext, caller: Caller, first: m.LoanReport, rest) -> Iterator:
    s = core.session(caller, first.session_id, task=TASK)
    with s.lock:
        raw = _gather(first, rest, s.id, core.policy.max_predict_ids)
        loans, reasons = parse_loans(raw)
        valid = np.ones(len(loans), dtype=bool)
        valid[list(reasons)] = False
        candidates = np.flatnonzero(valid)
        allowed = core.consent_mask(s, loans["uscc"].iloc[candidates].tolist())
        for r in candidates[~allowed].tolist():
            reasons[r] = (f"uscc: the enterprise does not authorise bank {s.bank!r} for "
                          f"purpose {s.purpose!r} (no current consent)")
            valid[r] = False
        accepted = loans.iloc[np.flatnonzero(valid)].reset_index(drop=True)
        kept = int(core.loans.record(s.bank, accepted)) if len(accepted) else 0
        enterprises = sorted(set(accepted["uscc"].tolist()))
        core.audit(caller, s, "loan_report", len(enterprises),
                   f"loans={len(loans)} accepted={kept} refused={len(reasons)}",
                   ids=enterprises)
    rows = sorted(reasons)
    yield m.LoanReportResult(session_id=s.id, received=len(loans), accepted=kept,
                             refused_rows=rows, refused_reasons=[reasons[r] for r in rows])


HANDLERS: dict[type, Callable[..., Iterator]] = {m.LoanReport: report}
