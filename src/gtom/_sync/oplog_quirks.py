# Generated from src/gtom/_async/oplog_quirks.py by tools/synchro.py. Edit that one.
"""Tailing servers that differ from mongod: workarounds as subclasses of `OplogTailer`.

`tailer_class` picks the tailer once, from the server's `gtom._servers.ServerTraits`; mongod gets
`OplogTailer` itself, whose path is the plain algorithm (open, verify history, pump). SecantusDB,
the test and benchmark server, needs three workarounds, each named by the trait that asks for it:

* ``open_race`` (`CatchUpTailer`): a tailable cursor's first batch is a snapshot of what is
  committed, but its later batches go on from the newest entry the server shows to tailers, taken
  a moment later. So it misses the entries committed in between, and it shows again those of its
  first batch that were committed but not yet shown to tailers. Every open is therefore followed
  by a plain read from the position, which delivers everything the first batch holds and more; the
  first batch itself is only used to verify history, and the later batches go through the
  position's re-read filter, which drops what the plain read delivered. A plain read *before* the
  open also gets the backlog out in one oplog scan, so the cursor opens near the end. A catch-up
  of more than `CATCH_UP_REOPEN` entries re-opens the cursor from where it ended rather than read
  them again through it, and so does a full first batch: the cursor's next batches would first
  finish its snapshot, then go back to the visible point. Two gaps remain, on that server only,
  which gtom cannot close: the server does not tell how far its oplog is complete. It commits
  writes to different collections out of timestamp order, so a plain read can show an entry while
  an older one is still being written; if gtom opens a cursor at that moment, it passes over the
  older entry. And it takes a transaction's timestamp before the transaction's place in the oplog,
  so a write made meanwhile can come first with a later timestamp. Neither happens on mongod.
* ``silent_truncation`` (`CatchUpTailer`): the oplog can be trimmed under an open cursor without
  an error (mongod fails the cursor with ``CappedPositionLost``), so a tailer that waited
  `HISTORY_CHECK_SECONDS` in total for room in ``op_c`` checks the oldest entry before reading on.
* ``stale_tail`` (`PollingTailer`, its Rust server): a tailable cursor never shows an entry
  written after it opened, so the tailer polls with plain reads every `POLL_SECONDS` instead.
* ``projection_scans`` (`PollingTailer`): a projection costs for every entry a query scans, so
  a poll after a quiet one asks for whole entries.
"""

from __future__ import annotations

import time
from typing import Any

from gtom._op import Op
from gtom._servers import ServerTraits
from gtom._sync._compat import sleep_until_set
from gtom._sync.oplog import OplogTailer, ServerCursorClosed
from gtom._sync.oplog_source import BATCH_SIZE, OplogCursor

__all__ = [
    "CATCH_UP_REOPEN",
    "HISTORY_CHECK_SECONDS",
    "POLL_SECONDS",
    "CatchUpTailer",
    "PollingTailer",
    "tailer_class",
]

#: A catch-up read that delivered more entries than this re-opens the tailable cursor from where
#: it ended, rather than read the same entries through it again.
CATCH_UP_REOPEN = 2 * BATCH_SIZE
#: After waiting this long (in total) for room in ``op_c``, the oldest entry is checked.
HISTORY_CHECK_SECONDS = 10.0
#: The pause between polls on a server whose tailable cursors go stale.
POLL_SECONDS = 0.02


def tailer_class(traits: ServerTraits) -> type[OplogTailer]:
    """The tailer for a server with these traits."""
    if traits.stale_tail:
        return PollingTailer
    if traits.open_race or traits.silent_truncation:
        return CatchUpTailer
    return OplogTailer


class CatchUpTailer(OplogTailer):
    """A tailer that reads from the position with plain queries around each open (see module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As `OplogTailer`."""
        super().__init__(*args, **kwargs)
        self._entries_read = 0  # entries passed to _deliver, ever (admitted or not)
        self._blocked = 0.0  # seconds spent waiting for room in op_c since the last check

    def _tail(self) -> None:
        """Catch up, open, verify, catch up again, pump (see the module for why)."""
        pauses = self._begin_read()
        if not self._catch_up(pauses, first_read=True):
            return
        cursor = self._find(tailable=True)
        try:
            first = self._fetch(cursor)
            self._verify_history(first)
            self._recovered()
            read_before = self._entries_read
            # This read delivers all the first batch holds. The batch itself is not delivered:
            # its newest entries may come again in the cursor's next batches (see the module).
            if not self._catch_up(pauses):
                return
            if self._entries_read - read_before > CATCH_UP_REOPEN:
                return  # writes poured in while the cursor opened: open a new one from here
            if first is not None and len(first) >= BATCH_SIZE:
                # A full first batch may go on in the next ones before the entries after the
                # visible point come, so the re-read filter would meet its entries twice.
                return  # open a new cursor from here
            if self._pump(cursor, self.position.re_read(), pauses):
                raise ServerCursorClosed
        finally:
            cursor.close()

    def _catch_up(self, pauses: int, *, first_read: bool = False, whole: bool = False) -> bool:
        """Deliver what the oplog holds after the position, with a plain query.

        ``first_read``: the read made before the cursor opens, which verifies history first.
        ``whole``: ask for whole entries (see `PollingTailer`). False when paused or halted.
        """
        cursor = self._find(tailable=False, whole=whole)
        re_read = self.position.re_read()
        try:
            if first_read:
                first = self._fetch(cursor)
                self._verify_history(first)
                if first and not self._deliver(first, re_read):
                    return False
            return self._pump(cursor, re_read, pauses)
        finally:
            cursor.close()

    def _read(self, cursor: OplogCursor) -> bytes | None:
        if self._blocked >= HISTORY_CHECK_SECONDS:
            # Waited long on the consumer: make sure nothing after the newest entry read is gone.
            self._blocked = 0.0
            self._check_history(self._read_ts)
        return super()._read(cursor)

    def _decode_batch(self, raw: bytes | None) -> list[dict[str, Any]] | None:
        entries = super()._decode_batch(raw)
        if entries:
            self._entries_read += len(entries)
        return entries

    def _queue(self, ops: list[Op]) -> bool:
        started = time.monotonic()
        try:
            return super()._queue(ops)
        finally:
            self._blocked += time.monotonic() - started


class PollingTailer(CatchUpTailer):
    """A tailer that polls with plain reads, for servers whose tailable cursors go stale.

    Where a projection costs for every entry a query scans (``projection_scans``), a poll that
    follows a quiet one asks for whole entries: it scans the whole oplog to find a few. The
    first read, and a poll that follows a busy one, leave out the unread fields, which pays
    over a backlog.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As `OplogTailer`."""
        super().__init__(*args, **kwargs)
        self._busy = True  # the last poll read a full batch or more (or there was none yet)

    def _tail(self) -> None:
        """Read what is there after the position, then wait a moment (the caller reads on)."""
        pauses = self._begin_read()
        before = self._entries_read
        whole = self._traits.projection_scans and not self._busy
        if self._catch_up(pauses, first_read=True, whole=whole):
            self._recovered()
            self._busy = self._entries_read - before >= BATCH_SIZE
            sleep_until_set(POLL_SECONDS, self._halt)
