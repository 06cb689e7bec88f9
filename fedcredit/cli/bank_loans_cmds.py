"""``fedcredit bank report-loans``: the bank reports loan outcomes to the holder.

    fedcredit bank report-loans --holder ADDR --tls-dir T --csv loans.csv [--rejects-out F]

``loans.csv`` has the columns loan_id, uscc (or ``--id-column``), loan_date (YYYY-MM-DD),
amount, product, credit_type (credit | secured), first_loan (true/false) and status
(current | repaid | overdue | default). The file is checked here by the holder's own rules
first; a file with a bad row is not sent. The holder then refuses the loans of enterprises
that do not authorise this bank for the purpose. Exit 0 when every loan was kept, 1 when
any was refused (each named, with its reason, in ``--rejects-out``), 2 on an error.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

SHOWN = 20


def register(bs) -> None:
    """Add this module's commands to ``fedcredit bank``."""
    from .bank_cmds import _common

    s = bs.add_parser(
        "report-loans", help="report loans granted through the platform, and how they perform",
        description="Send loans (loan_id, uscc, loan_date, amount, product, credit_type "
                    "credit|secured, first_loan true|false, status current|repaid|overdue|"
                    "default) to the holder. A loan id reported again updates the loan (its "
                    "status, or a corrected field). Exit 1 if any loan was refused.")
    _common(s)
    s.add_argument("--rejects-out", help="write every refused loan (row, loan_id, reason) to "
                                         "this CSV")
    s.set_defaults(func=_report_loans)


def read_loans_csv(path, id_column: str = "uscc"):
    """The loan file as text (every column a string; an Excel BOM is dropped)."""
    import pandas as pd

    from ..errors import InvalidInput

    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{path}: not a readable UTF-8 CSV ({type(e).__name__}: "
                           f"{str(e)[:200]})") from None
    if id_column != "uscc":
        if id_column not in raw.columns:
            raise InvalidInput(f"{path}: no id column {id_column!r}")
        raw = raw.drop(columns=["uscc"], errors="ignore").rename(columns={id_column: "uscc"})
    return raw


def _report_loans(a) -> int:
    from ..errors import InvalidInput
    from ..protocol.loans.bank import report_loans_to
    from ..protocol.loans.math import parse_loans
    from .bank_cmds import _connect

    if a.no_uscc_check:
        raise InvalidInput("loans are reported by unified social credit code: "
                           "--no-uscc-check does not apply to report-loans")
    raw = read_loans_csv(a.csv, a.id_column)
    loans, reasons = parse_loans(raw)
    if reasons:
        rows = [(r + 1, str(raw["loan_id"].iloc[r]) if "loan_id" in raw else "", why)
                for r, why in reasons.items()]
        _show(f"{a.csv}: {len(rows)} of {len(loans)} loans break the rules (row numbers "
              "count data rows from 1); nothing was sent", rows, a.rejects_out)
        return 1
    channel = _connect(a)
    try:
        t0 = time.perf_counter()
        outcome, holder = report_loans_to(channel, loans, purpose=a.purpose)
        seconds = time.perf_counter() - t0
    finally:
        channel.close()
    refused = [(int(r.row) + 1, r.loan_id, r.reason) for r in outcome.refused.itertuples()]
    print(f"reported {outcome.received} loans to holder {holder!r} in {seconds:.1f} s: "
          f"{outcome.accepted} accepted, {len(refused)} refused")
    if refused:
        _show("refused by the holder (row numbers count data rows from 1)", refused,
              a.rejects_out)
        return 1
    return 0


def _show(title: str, rows: list[tuple[int, str, str]], rejects_out) -> None:
    print(title + ":")
    for row, loan_id, why in rows[:SHOWN]:
        print(f"  row {row} (loan {loan_id!r}): {why}")
    if len(rows) > SHOWN:
        print(f"  ... and {len(rows) - SHOWN} more (--rejects-out FILE lists them all)")
    if rejects_out:
        from ..atomic import write_with

        def writer(tmp):
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["row", "loan_id", "reason"])
                w.writerows(rows)

        out = Path(rejects_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_with(out, writer)
        print(f"wrote {len(rows)} refused loans to {out}")
