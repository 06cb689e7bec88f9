"""Structured logs for the holder service: one JSON object (or ``key=value`` line) per event.

Events carry fields (``extra={"fields": {...}}``): bank, operation, counts, the first 8
characters of a session id — never an enterprise id or a feature value. As a second line of
defence every message and field is scrubbed of anything shaped like a USCC before it is
written.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys

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


def setup(fmt: str = "json", level: str = "info", stream=None) -> None:
    """Route the ``fedcredit`` loggers to ``stream`` (stderr) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("fedcredit")
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    root.propagate = False
