"""The ``file`` sink: JSON Lines appended to a file, rotated by size."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from gtom.daemon.sinks.base import Event, SinkUnavailableError
from gtom.daemon.sinks.stdout import json_lines

__all__ = ["FileSink"]

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)  # no CRLF on Windows


class FileSink:
    """Appends each event's JSON as one line to ``path``, rotating it past ``max_bytes``.

    Rotation happens between batches, never inside one: when the next batch would make the file
    larger than ``max_bytes``, ``path`` becomes ``path.1`` (``path.1`` becomes ``path.2``, and so
    on; at most ``backups`` old files are kept, the oldest is dropped) and the batch starts a new
    file. A batch larger than ``max_bytes`` on its own still goes whole into a fresh file.
    ``max_bytes = 0`` never rotates. A batch is delivered once written (and, with ``fsync``, on
    disk). A write that fails is cut off again, so a retried batch leaves no partial line; a
    torn last line left by a killed process is cut off when the file is opened.

    The file I/O is done directly on the event loop: local files are fast, and the daemon sends
    from one task anyway.
    """

    name: str = "file"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 0,
        backups: int = 5,
        fsync: bool = False,
    ) -> None:
        """Append to ``path``; rotate past ``max_bytes`` (0: never), keeping ``backups`` files."""
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        if backups < 0:
            raise ValueError(f"backups must be >= 0, got {backups}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        self._fd: int | None = None
        self._size = 0

    async def open(self) -> None:
        """Create the file (and its directories) if missing and open it for appending."""
        self._open_file()

    async def send(self, batch: Sequence[Event]) -> None:
        """Append ``batch`` (rotating first if it would not fit), then flush (and fsync)."""
        if not batch:
            return
        data = json_lines(batch)
        if self._fd is None:
            self._open_file()  # after close(), or after a rotation that failed half-way
        if self.max_bytes and self._size > 0 and self._size + len(data) > self.max_bytes:
            self._rotate()
        self._write(data)

    async def close(self) -> None:
        """Close the file (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            # every write was already confirmed (and fsynced if asked): nothing is lost
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the blocking parts --------------------------------------------------------------------

    def _open_file(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, _FLAGS, 0o644)
        except OSError as e:
            raise SinkUnavailableError(
                f"cannot open the sink file {str(self.path)!r}: {e.strerror or e}"
            ) from e
        try:
            self._size = self._repair() or os.fstat(fd).st_size
        except OSError as e:
            os.close(fd)
            raise SinkUnavailableError(
                f"cannot open the sink file {str(self.path)!r}: {e.strerror or e}"
            ) from e
        self._fd = fd

    def _repair(self) -> int:
        """Cut a torn last line (a process killed mid-write); the size kept (0: nothing cut).

        The events of that line were never confirmed, so the restarted daemon writes them again.
        """
        with open(self.path, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return 0
            keep = 0
            position = size
            while position > 0:
                step = min(65536, position)
                position -= step
                f.seek(position)
                chunk = f.read(step)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    keep = position + newline + 1
                    break
            f.truncate(keep)
            return keep

    def _write(self, data: bytes) -> None:
        fd = self._fd
        assert fd is not None
        start = self._size
        view = memoryview(data)
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self.fsync:
                os.fsync(fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)  # no partial line before the retry writes it again
            raise SinkUnavailableError(
                f"cannot write to the sink file {str(self.path)!r}: {e.strerror or e}"
            ) from e
        self._size = start + len(data)

    def _backup(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def _rotate(self) -> None:
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                os.close(fd)
            if self.backups == 0:
                self.path.unlink(missing_ok=True)
            else:
                for n in range(self.backups - 1, 0, -1):
                    older = self._backup(n)
                    if older.exists():
                        os.replace(older, self._backup(n + 1))  # drops the oldest
                os.replace(self.path, self._backup(1))
        except OSError as e:
            raise SinkUnavailableError(
                f"cannot rotate the sink file {str(self.path)!r}: {e.strerror or e}"
            ) from e
        self._open_file()
