"""What every sink is: the `Sink` protocol, the `Event` it receives, and the errors it raises."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gtom._errors import GtomError

__all__ = ["Event", "Sink", "SinkError", "SinkRejectedError", "SinkUnavailableError"]


@dataclass(frozen=True, slots=True)
class Event:
    """One change, ready to deliver."""

    id: str
    """Stable id (position + namespace + ``_id`` + index): the same event always has the same id,
    across restarts, so a consumer (or a broker's duplicate window) can drop a replay."""
    namespace: str
    """``"db.coll"`` (``"db.$cmd"`` for database commands)."""
    operation: str
    """``"i"``, ``"u"``, ``"d"`` or ``"c"``."""
    document_id: Any
    """The document's ``_id`` (None for commands): a partition key for brokers."""
    payload: bytes
    """The event as one JSON object (Extended JSON), without a trailing newline."""


class SinkError(GtomError):
    """Delivery of a batch failed; ``retryable`` says whether sending it again may succeed."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        """Create the error; transient failures (network, 5xx) are retryable."""
        super().__init__(message)
        self.retryable = retryable


class SinkUnavailableError(SinkError):
    """The sink cannot be reached (raised by `Sink.open` at start, or while sending)."""


class SinkRejectedError(SinkError):
    """The sink refused the events for good (e.g. HTTP 400/401/404): retrying cannot help."""

    def __init__(self, message: str) -> None:
        """Create the error (never retryable)."""
        super().__init__(message, retryable=False)


@runtime_checkable
class Sink(Protocol):
    """Where the daemon delivers events. Used from one asyncio task at a time.

    ``send`` returns only once the target has confirmed *every* event of the batch (written,
    acknowledged, stored): the daemon saves its checkpoint past a batch only after that. It
    raises `SinkError` otherwise; the daemon then sends the same batch again after a backoff
    (retryable) or stops without moving the checkpoint (not retryable). Events of a batch are
    in delivery order, and a sink must keep that order per document.
    """

    name: str
    """A short name for logs and metrics: ``"stdout"``, ``"file"``, ``"webhook"``, ..."""

    async def open(self) -> None:
        """Connect, check the target is there; raise `SinkUnavailableError` if it is not."""
        ...

    async def send(self, batch: Sequence[Event]) -> None:
        """Deliver ``batch`` and wait until the target confirmed all of it."""
        ...

    async def close(self) -> None:
        """Flush and release everything (idempotent)."""
        ...
