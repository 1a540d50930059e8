"""The daemon's logs: text or JSON lines on stderr, scrubbed of every secret.

Each line goes through a `gtom._redact.Scrubber`: URL credentials and secret options are
masked, and so are the config's own secrets (header values, the HMAC key, passwords).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

from gtom._redact import Scrubber

__all__ = ["setup"]


class _Text(logging.Formatter):
    def __init__(self, scrub: Callable[[str], str]) -> None:
        super().__init__()
        self.scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"{when}Z {record.levelname.lower()} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return self.scrub(line)


class _Json(_Text):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.scrub(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = self.scrub(self.formatException(record.exc_info))
        return json.dumps(entry)


def setup(
    format: str = "text",
    level: str = "info",
    stream: TextIO | None = None,
    *,
    scrub: Callable[[str], str] | None = None,
) -> None:
    """Send the ``gtom`` loggers' records to ``stream`` (stderr) as text or JSON lines.

    ``scrub`` masks secrets in every line (default: URL credentials and secret options).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    scrub = scrub or Scrubber()
    handler.setFormatter(_Json(scrub) if format == "json" else _Text(scrub))
    root = logging.getLogger("gtom")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
