"""The daemon's logs: text or JSON lines on stderr, with every URL's password masked."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

from gtom._redact import redact

__all__ = ["setup"]


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return redact(f"{when}Z {record.levelname.lower()} {record.getMessage()}")


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry)


def setup(format: str = "text", level: str = "info", stream: TextIO | None = None) -> None:
    """Send the ``gtom`` loggers' records to ``stream`` (stderr) as text or JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Json() if format == "json" else _Text())
    root = logging.getLogger("gtom")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
