"""The ``stdout`` sink: one JSON object per line on standard output (JSON Lines)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import BinaryIO

from gtom.daemon.sinks.base import Event, SinkRejectedError, SinkUnavailableError

__all__ = ["StdoutSink", "json_lines"]


def json_lines(batch: Sequence[Event]) -> bytes:
    """The events' JSON, a line each: JSON Lines (made in one copy, not line by line)."""
    parts = [event.payload for event in batch]
    parts.append(b"")  # the last line's newline
    return b"\n".join(parts)


class StdoutSink:
    """Writes each event's JSON as one line to a binary stream (standard output by default).

    A batch counts as delivered once it was written and the stream flushed: for a pipe that is
    when the reader's end has the bytes (the pipe's buffer), not when the reader handled them.
    Writing blocks when the reader is slow, which is the backpressure the daemon wants.
    """

    name: str = "stdout"

    def __init__(self, stream: BinaryIO | None = None) -> None:
        """Write to ``stream``, or to ``sys.stdout.buffer`` if none is given."""
        self._stream: BinaryIO = stream if stream is not None else sys.stdout.buffer

    async def open(self) -> None:
        """Nothing to connect to: standard output is always there."""

    async def send(self, batch: Sequence[Event]) -> None:
        """Write every event of ``batch`` as a line, then flush once."""
        if not batch:
            return
        data = json_lines(batch)
        try:
            self._stream.write(data)
            self._stream.flush()
        except BrokenPipeError as e:
            raise SinkRejectedError("the reader of stdout went away") from e
        except OSError as e:
            raise SinkUnavailableError(f"cannot write to stdout: {e.strerror or e}") from e

    async def close(self) -> None:
        """Flush what is left; the stream itself is not closed (the sink does not own it)."""
        # reader gone, or the stream already closed: nothing more can be delivered anyway
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()
