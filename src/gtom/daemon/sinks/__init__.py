"""Where the daemon delivers events: the `Sink` protocol, its errors, and the built-in sinks.

* `StdoutSink`: JSON Lines on standard output;
* `FileSink`: JSON Lines appended to a file, rotated by size;
* `WebhookSink`: each batch POSTed as a JSON array, optionally HMAC-signed (needs httpx, from
  ``pip install 'gtom[daemon]'``; imported only when first used, so the rest works without it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gtom.daemon.sinks.base import (
    Event,
    Sink,
    SinkError,
    SinkRejectedError,
    SinkUnavailableError,
)
from gtom.daemon.sinks.file import FileSink
from gtom.daemon.sinks.stdout import StdoutSink

if TYPE_CHECKING:
    from gtom.daemon.sinks.webhook import WebhookSink

__all__ = [
    "Event",
    "FileSink",
    "Sink",
    "SinkError",
    "SinkRejectedError",
    "SinkUnavailableError",
    "StdoutSink",
    "WebhookSink",
]


def __getattr__(name: str) -> Any:
    """Import `WebhookSink` (and with it httpx) on first use only."""
    if name == "WebhookSink":
        from gtom.daemon.sinks.webhook import WebhookSink

        return WebhookSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
