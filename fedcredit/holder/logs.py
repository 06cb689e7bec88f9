"""Structured logs for the holder service: one JSON object (or ``key=value`` line) per event.

Events carry fields (``extra={"fields": {...}}``): bank, operation, counts, the first 8
characters of a session id — never an enterprise id or a feature value. As a second line of
defence every message and field is scrubbed of anything shaped like a USCC before it is
written.

While the service runs, :func:`capture_stderr` also routes what others write to the
process's stderr — gRPC's C core (its lines are the only trace of a refused TLS handshake),
Python warnings, a thread's uncaught exception — through the same formatter, so stderr
stays one event per line.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable

# 18 characters of the USCC alphabet (digits and capitals without I, O, Z, S, V)
_USCC_LIKE = re.compile(r"(?<![0-9A-Z])[0-9A-HJ-NP-RTUWXY]{18}(?![0-9A-Z])")
REDACTED = "[uscc]"


def scrub(text: str) -> str:
    return _USCC_LIKE.sub(REDACTED, text)


def _fields(record: logging.LogRecord) -> dict:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
            .strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": scrub(record.getMessage()),
        }
        for k, v in _fields(record).items():
            out[k] = scrub(v) if isinstance(v, str) else v
        if record.exc_info:
            out["error"] = scrub(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = dt.datetime.fromtimestamp(record.created, dt.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        parts = [f"ts={ts}", f"level={record.levelname.lower()}",
                 f"event={json.dumps(scrub(record.getMessage()), ensure_ascii=False)}"]
        for k, v in _fields(record).items():
            v = scrub(v) if isinstance(v, str) else v
            parts.append(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + scrub(self.formatException(record.exc_info))
        return line


class _Handler(logging.StreamHandler):
    """A stream handler that drops an event it cannot write (a full disk under a log file)
    instead of printing a traceback to stderr, which, routed back through the loggers by
    :func:`capture_stderr`, would fail again and again."""

    dropped = 0

    def handleError(self, record: logging.LogRecord) -> None:
        type(self).dropped += 1


def setup(fmt: str = "json", level: str = "info", stream=None) -> None:
    """Route the ``fedcredit`` loggers to ``stream`` (stderr) in the chosen format."""
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("fedcredit")
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    root.propagate = False


#: gRPC's C core writes absl lines: ``I1201 11:14:35.195383  2525 file.cc:2563] message``
_NATIVE = re.compile(r"^([IWEF])\d{4} [0-9:.]+\s+\d+ ([^\]\s]+)\] ?(.*)$")
_NATIVE_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR,
                  "F": logging.CRITICAL}


def _relog(line: str) -> None:
    """One line someone wrote to stderr, as a structured event (JSON lines pass through)."""
    if line.startswith("{"):
        try:
            json.loads(line)
        except ValueError:
            pass
        else:
            handler = _state.get("handler")
            try:
                if handler is not None:
                    handler.acquire()  # one writer at a time: lines never interleave
                try:
                    _original_stream().write(line + "\n")
                finally:
                    if handler is not None:
                        handler.release()
            except (OSError, ValueError):  # the real stderr cannot take it: drop the line
                _Handler.dropped += 1
            return
    m = _NATIVE.match(line)
    if m:
        logging.getLogger("fedcredit.grpc").log(_NATIVE_LEVELS[m[1]], m[3],
                                                extra={"fields": {"source": m[2]}})
    else:
        logging.getLogger("fedcredit.stderr").warning(line)


def _original_stream():
    return _state.get("stream") or sys.stderr


_state: dict = {}


def capture_stderr() -> Callable[[], None]:
    """Route file descriptor 2 through the ``fedcredit`` loggers; returns the undo.

    The ``fedcredit`` handler keeps writing to the real stderr (a duplicate of it); a
    thread reads the pipe now behind descriptor 2 and re-emits each line as an event.
    Uncaught exceptions in threads are logged as one event with the traceback as a field.
    """
    sys.stderr.flush()
    real = os.dup(2)
    stream = os.fdopen(real, "w", buffering=1, encoding="utf-8", errors="replace")
    _state["stream"] = stream
    for h in logging.getLogger("fedcredit").handlers:
        if isinstance(h, logging.StreamHandler):
            h.setStream(stream)
            _state["handler"] = h
    r, w = os.pipe()
    os.dup2(w, 2)
    os.close(w)
    previous_hook = threading.excepthook

    def hook(args) -> None:
        logging.getLogger("fedcredit").error(
            "uncaught exception in a thread", extra={"fields": {"thread": getattr(
                args.thread, "name", "")}},
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    threading.excepthook = hook

    def pump() -> None:
        buf = b""
        with os.fdopen(r, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    if raw.strip():
                        try:
                            _relog(raw.decode("utf-8", "replace").rstrip("\r"))
                        except Exception:  # never stop draining: a full pipe blocks writers
                            _Handler.dropped += 1
        if buf.strip():
            _relog(buf.decode("utf-8", "replace"))

    reader = threading.Thread(target=pump, daemon=True, name="stderr-router")
    reader.start()

    def undo() -> None:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last writer: the reader drains and ends
        reader.join(timeout=5)
        threading.excepthook = previous_hook
        for h in logging.getLogger("fedcredit").handlers:
            if isinstance(h, logging.StreamHandler) and h.stream is stream:
                h.setStream(sys.stderr)
        _state.pop("stream", None)
        _state.pop("handler", None)
        stream.close()

    return undo
