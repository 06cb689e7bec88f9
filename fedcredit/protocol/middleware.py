"""Cross-cutting holder duties as middleware around the core's handlers.

A middleware sees every request before the protocol step that serves it and every answer
after it, and calls ``call_next`` to go on (as Flower's mods do)::

    def my_duty(req: Request, call_next: Next) -> Iterator:
        ...                      # before: refuse by raising a typed error
        yield from call_next(req)
        ...                      # after: the step has answered

:class:`~fedcredit.protocol.core.HolderContext` composes its middleware once, outermost first.
The core ships :func:`audit_refusals`; the holder service adds its own (daily caps, the
sessions table, picking up a new feature table).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import FedCreditError
from .channel import Caller
from .context import HolderContext

log = logging.getLogger("fedcredit.protocol")


@dataclass
class Request:
    """One exchange as the holder sees it: the caller, the first message, the rest."""

    core: HolderContext
    caller: Caller
    first: Any
    rest: Iterator


Next = Callable[[Request], Iterator]
Middleware = Callable[[Request, Next], Iterator]


def compose(middleware: Sequence[Middleware], handler: Next) -> Next:
    """One callable: ``middleware[0]`` runs first and wraps all the others."""
    chain = handler
    for mw in reversed(list(middleware)):
        chain = _bind(mw, chain)
    return chain


def _bind(mw: Middleware, call_next: Next) -> Next:
    def run(req: Request) -> Iterator:
        return mw(req, call_next)
    return run


def audit_refusals(scrub: Callable[[str], str] = str) -> Middleware:
    """Audit every refused or failed request (the steps audit the requests they answer).

    A typed error's message is written for the bank and carries no data; ``scrub`` can
    redact it further. Anything else (a bug, a vanished bank) is named by its type only.
    """
    def middleware(req: Request, call_next: Next) -> Iterator:
        try:
            yield from call_next(req)
        except Exception as error:
            _record_refusal(req, error, scrub)
            raise
    return middleware


def _record_refusal(req: Request, error: Exception, scrub: Callable[[str], str]) -> None:
    kind = type(req.first).__name__
    sid = str(getattr(req.first, "session_id", "") or "")
    s = req.core.find_session(sid)
    purpose = s.purpose if s is not None else str(getattr(req.first, "purpose", "") or "")
    reason = scrub(str(error))[:200] if isinstance(error, FedCreditError) else \
        "the call ended abnormally"
    try:
        req.core.auditor.record(bank=req.caller.bank, purpose=purpose[:64],
                                operation=f"refused:{kind}", enterprises=0, session=sid[:64],
                                detail=f"{type(error).__name__}: {reason}")
    except Exception:  # the refusal stands even if its record cannot be written
        log.exception("could not audit a refused request")
