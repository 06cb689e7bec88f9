"""The gates a hostile bank meets before the protocol core sees its call: admission per
bank, deadlines on a silent stream (a read-ahead pump), and the rate-limited audit of
refusals. :mod:`.server` describes the policy; this module holds the mechanisms.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ..errors import (
    ERROR_TYPES,
    FedCreditError,
    InvalidInput,
    PeerUnavailable,
    ProtocolError,
    ResourceLimit,
)

log = logging.getLogger("fedcredit.holder")

READ_AHEAD_FRAMES = 4
DEFAULT_REFUSAL_AUDIT_SECONDS = 1.0

class StreamTimeout(PeerUnavailable):
    """The bank sent nothing for longer than the holder waits (first message or inside a
    stream). Travels as ``DEADLINE_EXCEEDED``; the bank sees :class:`PeerUnavailable`."""

    grpc_status = "DEADLINE_EXCEEDED"

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def wire_name(error: FedCreditError) -> str:
    """The nearest class the client knows, for the trailing metadata."""
    for cls in type(error).__mro__:
        if ERROR_TYPES.get(cls.__name__) is cls:
            return cls.__name__
    return FedCreditError.__name__


# -- audit of refusals, rate limited per certificate name --------------------------------------
@dataclass
class _Slot:
    since: float  # when this key's last record was written
    count: int = 0  # events since then, not yet written
    detail: str = ""  # the last of them


class RefusalAudit:
    """At most one audit record per (bank, operation) per ``window`` seconds.

    Every event is eventually written: each record carries the events suppressed since the
    key's previous record (``"(+N more in 1 s)"``), so the events a set of records stands
    for add up to ``len(records) + sum(N)``.
    """

    def __init__(self, auditor, window: float = DEFAULT_REFUSAL_AUDIT_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.auditor = auditor
        self.window = float(window)
        self.clock = clock
        self._lock = threading.Lock()
        self._slots: dict[tuple[str, str], _Slot] = {}
        self._swept = clock()

    def note(self, bank: str, operation: str, detail: str) -> None:
        now = self.clock()
        writes: list[tuple[str, str, str, int]] = []
        with self._lock:
            key = (bank, operation)
            slot = self._slots.get(key)
            if slot is not None and now - slot.since < self.window:
                slot.count += 1
                slot.detail = detail
            else:
                writes.append((bank, operation, detail, slot.count if slot else 0))
                self._slots[key] = _Slot(since=now)
            if now - self._swept >= self.window:  # pending tails of keys that went quiet
                self._swept = now
                for k, s in list(self._slots.items()):
                    if now - s.since >= self.window:
                        if s.count:
                            writes.append((*k, s.detail, s.count - 1))
                        del self._slots[k]
        for w in writes:
            self._write(*w)

    def flush(self) -> None:
        """Write every pending count (at server stop)."""
        with self._lock:
            writes = [(*k, s.detail, s.count - 1) for k, s in self._slots.items() if s.count]
            self._slots.clear()
        for w in writes:
            self._write(*w)

    def _write(self, bank: str, operation: str, detail: str, more: int) -> None:
        if more:
            detail = f"{detail} (+{more} more in {self.window:g} s)"
        if operation.startswith("refused:"):
            log.info("request refused: bank=%s %s: %s", bank, operation, detail)
        try:
            self.auditor.record(bank=bank, purpose="", operation=operation, enterprises=0,
                                session="", detail=detail)
        except Exception:  # the refusal stands even if its record cannot be written
            log.exception("could not audit a refused request")


class Refused(Exception):
    """Internal: a refusal before the core, with its audit reason."""

    def __init__(self, reason: str, error: FedCreditError):
        super().__init__(reason)
        self.reason, self.error = reason, error


# -- admission ---------------------------------------------------------------------------------
class Admission:
    """Counts open ``Exchange`` calls, in all and per bank."""

    def __init__(self, total: int, per_bank: int):
        self.total, self.per_bank = total, per_bank
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._count = 0

    def enter(self, bank: str) -> Callable[[], None]:
        with self._lock:
            mine = self._open.get(bank, 0)
            if mine >= self.per_bank:
                raise Refused("bank_call_limit", ResourceLimit(
                    f"bank {bank!r} already has {mine} calls open, the most the holder "
                    "allows one bank; wait for one to finish"))
            if self._count >= self.total:
                raise Refused("server_busy", ResourceLimit(
                    f"the holder serves its maximum of {self.total} calls; retry later"))
            self._open[bank] = mine + 1
            self._count += 1
        left = False

        def leave() -> None:
            nonlocal left
            with self._lock:
                if left:
                    return
                left = True
                self._count -= 1
                n = self._open[bank] - 1
                if n:
                    self._open[bank] = n
                else:
                    del self._open[bank]
        return leave

    def open_calls(self, bank: str | None = None) -> int:
        with self._lock:
            return self._count if bank is None else self._open.get(bank, 0)


# -- reading a stream with deadlines -----------------------------------------------------------
_END = object()


class FramePump:
    """Reads a call's request frames on a helper thread, so that waiting can time out."""

    def __init__(self, request_iterator: Iterable, first_seconds: float, idle_seconds: float):
        self.first_seconds, self.idle_seconds = first_seconds, idle_seconds
        self.ended_mid_message = False
        self._queue: queue.Queue = queue.Queue(maxsize=READ_AHEAD_FRAMES)
        self._closed = False
        self._thread = threading.Thread(target=self._read, args=(request_iterator,),
                                        name="fedcredit-frames", daemon=True)
        self._thread.start()

    def _read(self, request_iterator: Iterable) -> None:
        put = self._queue.put
        end: object = _END
        try:
            for frame in request_iterator:
                put(frame)
                if self._closed:
                    return
        except Exception as e:  # noqa: BLE001 - the call was cancelled or ended: hand it over
            end = e
        put(end)  # never blocks for long: close() drains the queue after setting _closed

    def frames(self) -> Iterator:
        get, last = self._queue.get, None
        timeout, reason = self.first_seconds, "first_message_timeout"
        while True:
            try:
                item = get(timeout=timeout)
            except queue.Empty:
                raise StreamTimeout(
                    f"the holder received no {'message' if last is None else 'frame'} "
                    f"within {timeout:g} s", reason) from None
            if item is _END:
                self.ended_mid_message = last is not None and not last.end_of_message
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            last, timeout, reason = item, self.idle_seconds, "idle_stream_timeout"

    def close(self) -> None:
        self._closed = True
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def first_message_reason(error: FedCreditError, pump: FramePump) -> str:
    if isinstance(error, StreamTimeout):
        return error.reason
    if isinstance(error, ResourceLimit):
        return "oversized_message"
    if isinstance(error, InvalidInput):
        return "invalid_envelope"
    if isinstance(error, ProtocolError):
        return "truncated_message" if pump.ended_mid_message else "protocol_version"
    return "first_message"
