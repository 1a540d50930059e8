# Generated from src/gtom/_async/oplog.py by tools/synchro.py. Edit that one.
"""Tailing the oplog: every entry after a position, in order, once, whatever the network does.

mongod's path, `OplogTailer._tail`, is the whole algorithm: open a tailable-cursor at the
position (``ts >= position``), verify that the oplog still reaches back to the position, then
pump: deliver each batch while the next one is read. The position (a
`gtom._position.Position`) advances only after the ops of an entry are queued, and a re-read
drops what was delivered, so on any transient error the tailer re-opens from the position after
a capped, jittered backoff and nothing is lost or repeated.

History is verified at every open: the first entry read is the position's own entry, or else the
oldest entry must not be newer than the position; if it is, `HistoryLostError` is raised.
Servers that need workarounds get a subclass of `OplogTailer` (`gtom._sync.oplog_quirks`,
chosen once from their `gtom._servers.ServerTraits`); mongod needs none.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import bson
from bson import Timestamp
from pymongo import CursorType
from pymongo.errors import OperationFailure, PyMongoError

from gtom._backoff import Backoff
from gtom._decode_oplog import OplogDecoder
from gtom._errors import (
    DecodeError,
    GtomError,
    HistoryLostError,
    IncompleteChainError,
    call_user,
)
from gtom._op import Op
from gtom._options import Options
from gtom._pending import PendingOps
from gtom._position import ALL, Position, ReRead, format_ts, next_timestamp
from gtom._retry import describe, is_transient, translate
from gtom._servers import MONGOD, ServerTraits
from gtom._sync._compat import Job, Jobs, Prefetcher, Signal, sleep_until_set
from gtom._sync.fetch import Fetcher, delta
from gtom._sync.oplog_source import (
    BATCH_SIZE,
    MAX_AWAIT_MS,
    UNREAD_FIELDS,
    Client,
    OplogCursor,
    dict_codec,
    edge_timestamp,
    oplog_collection,
    oplog_name,
)
from gtom._sync.queue import Lane, OpQueue, QueueClosed

__all__ = ["OplogTailer", "ServerCursorClosed"]

#: Groups of ops whose documents are being fetched while the tailer reads on (bounds memory).
FETCHES_AHEAD = 4
_ZERO = Timestamp(0, 0)


class OplogTailer:
    """Reads the oplog from a position into an `OpQueue`, until its lane is cancelled."""

    def __init__(
        self,
        client: Client,
        options: Options,
        position: Position,
        op_c: OpQueue[Op],
        err_c: OpQueue[Exception],
        lane: Lane,
        traits: ServerTraits = MONGOD,
        shard: str | None = None,
    ) -> None:
        """Prepare a tailer starting just after ``position``; `run` does the work.

        ``traits`` are the server's (how edges are found); ``shard`` labels the ops
        (``op.shard``) of a shard of a multi-shard context.
        """
        self._shard = shard
        self.position = position
        self.lane = lane
        self.error: GtomError | None = None
        self._client = client
        self._options = options
        self._log = options.log
        self._op_c = op_c
        self._err_c = err_c
        self._halt = Signal()
        self._oplog = oplog_collection(client, options)
        self._codec = dict_codec(client)
        self._decoder = OplogDecoder(
            namespace_filter=options.namespace_filter,
            unmarshal=options.unmarshal,
            include_internal=options.include_internal,
            disambiguate=options.show_expanded_events,
            codec_options=self._codec,
        )
        self._backoff = Backoff()
        self._traits = traits
        self._read_ts = position.ts  # the newest entry read (delivered or not)
        fetching = not options.update_data_as_delta
        # Decoded entries wait here while their updates' documents are fetched together.
        self._pending = PendingOps(options.buffer_size, options.buffer_duration, fetching=fetching)
        self._fetcher = Fetcher(client, options, err_c, self._halt) if fetching else None
        # Ops taken from _pending, in order, each group with its fetch (None: nothing to fetch)
        # and the position after it; handed over once fetched. _taken: the last one's position.
        self._ahead: deque[tuple[Job[None] | None, list[Op], Position]] = deque()
        self._taken = position
        self._jobs = Jobs(FETCHES_AHEAD, "gtom-fetch-ahead")

    def halt(self) -> None:
        """Make `run` end soon (it also ends when the lane is cancelled or the queue closed)."""
        self._halt.set()

    def _halted(self) -> bool:
        return self._halt.is_set() or self.lane.cancelled

    def run(self) -> None:
        """Tail until halted; a fatal error is stored in ``error`` and closes the queue."""
        try:
            self._run()
        except QueueClosed:
            pass
        except GtomError as e:
            self._fail(e)
        except Exception as e:  # a bug: say so rather than hang
            self._fail(GtomError(f"internal error while tailing the oplog: {e!r}"))
            self._log.exception("gtom: internal error while tailing the oplog")
        finally:
            self._drop_ahead()
            self._jobs.close()
            if self._fetcher is not None:
                self._fetcher.close()

    def _run(self) -> None:
        while not self._halted():
            if self._op_c.paused and not self._op_c.wait_resumed(self.lane):
                return
            try:
                self._tail()
            except PyMongoError as e:
                if not is_transient(e):
                    raise translate(e, f"tailing {oplog_name(self._options)}") from e
                delay = self._backoff.next_delay()
                self._err_c.offer(e)
                self._log.warning(
                    "gtom: oplog tailing failed (%s); retry %d in %.2fs from %s",
                    describe(e),
                    self._backoff.attempts,
                    delay,
                    format_ts(self.position.ts),
                )
                sleep_until_set(delay, self._halt)

    def _fail(self, error: GtomError) -> None:
        if self.lane.cancelled:
            return  # a replaced tailer's errors no longer matter
        self.error = error
        self._log.error("gtom: oplog tailing stopped: %s", error)
        self._op_c.close(error)

    def _recovered(self) -> None:
        if self._backoff.attempts:
            self._log.warning(
                "gtom: oplog tailing recovered after %d failed attempts", self._backoff.attempts
            )
            self._backoff.reset()

    # -- one cursor's life ---------------------------------------------------------------------

    def _tail(self) -> None:
        """Read from the position until paused or halted (return) or an error (raise).

        Open, verify history, pump. After a pause, even one that began while ops waited to enter
        the queue, it returns too: the cursor is re-opened, so history is verified again before
        anything newer is read.
        """
        pauses = self._begin_read()
        cursor = self._find(tailable=True)
        try:
            first = self._fetch(cursor)
            self._verify_history(first)
            self._recovered()
            re_read = self.position.re_read()
            if first and not self._deliver(first, re_read):
                return
            if self._pump(cursor, re_read, pauses):
                # The server ended the cursor (e.g. killed it): open a new one after a pause.
                raise ServerCursorClosed
        finally:
            cursor.close()

    def _begin_read(self) -> int:
        """Start reading from the position again; the pause count to watch."""
        self._read_ts = self.position.ts
        # What was not handed over is read again from the position.
        self._pending.clear()
        self._drop_ahead()
        return self._op_c.pause_count

    def _drop_ahead(self) -> None:
        for job, _, _ in self._ahead:
            if job is not None:
                job.cancel()
        self._ahead.clear()
        self._taken = self.position

    def _find(self, *, tailable: bool, whole: bool = False) -> OplogCursor:
        """A cursor over the entries from the position on (``tailable``: and those to come).

        Its batches arrive as raw BSON: the next one is requested before this one is decoded.
        Entries come without the fields gtom never reads, unless ``whole``.
        """
        cursor = OplogCursor(
            self._oplog,
            {"ts": {"$gte": self.position.ts}},
            None if whole else UNREAD_FIELDS,
            cursor_type=CursorType.TAILABLE_AWAIT if tailable else CursorType.NON_TAILABLE,
            batch_size=BATCH_SIZE,
        )
        if tailable:
            cursor.max_await_time_ms(MAX_AWAIT_MS)
        return cursor

    def _pump(self, cursor: OplogCursor, re_read: ReRead, pauses: int) -> bool:
        """Deliver a cursor's batches, reading the next one while delivering the last.

        True when the cursor ended; False when paused, halted or replaced. A batch read but not
        delivered is not lost: the position has not moved past it.
        """
        reader: Prefetcher[bytes | None] = Prefetcher("gtom-oplog-reader")
        try:
            reader.start(lambda: self._read(cursor))
            while True:
                # Nothing read yet: hand over what was being fetched meanwhile.
                if self._ahead and not reader.wait(0) and not self._hand_over(keep=0):
                    return False
                if len(self._pending):
                    # Ops wait for a fetch batch: hand them over when their time is up, even
                    # if the server sends nothing meanwhile.
                    wait = self._pending.remaining(time.monotonic())
                    if not reader.wait(wait):
                        if self._op_c.pause_count != pauses or self._halted():
                            return False
                        if not self._flush():
                            return False
                        continue
                raw = reader.result()
                if self._op_c.pause_count != pauses or self._halted():
                    return False
                more = cursor.alive
                if more:
                    reader.begin(lambda: self._read(cursor))
                entries = self._decode_batch(raw)  # while the server works on the next batch
                if entries:
                    if not self._deliver(entries, re_read):
                        return False
                elif len(self._pending) and not self._flush():
                    return False  # idle: ops waiting for a fetch batch may have waited enough
                if not more:
                    return self._flush(force=True)
        finally:
            reader.close()

    def _fetch(self, cursor: OplogCursor) -> list[dict[str, Any]] | None:
        """The next batch's entries, decoded (None for an empty batch)."""
        return self._decode_batch(self._read(cursor))

    def _read(self, cursor: OplogCursor) -> bytes | None:
        """The next server batch, as the BSON of its entries (None for an empty batch)."""
        batches: list[Any] = []
        # One server batch at a time: the same private method pymongo's public to_list() uses
        # (tests/_sync/test_tail.py pins what gtom relies on). This cursor gives one bytes
        # object per batch (the BSON array of its documents), or, in a reply of a shape it does
        # not split, the documents decoded.
        if not cursor._next_batch(batches):
            return None  # an empty batch: nothing new within the time
        if len(batches) == 1 and isinstance(batches[0], bytes):
            return batches[0]
        return bson.encode({str(i): document for i, document in enumerate(batches)})

    def _decode_batch(self, raw: bytes | None) -> list[dict[str, Any]] | None:
        """A batch's entries, decoded with the client's codec options (None stays None)."""
        if raw is None:
            return None
        entries: list[dict[str, Any]] = list(bson.decode(raw, self._codec).values())
        if entries and isinstance(entries[-1].get("ts"), Timestamp):
            self._read_ts = entries[-1]["ts"]
        return entries or None

    def _verify_history(self, first: list[dict[str, Any]] | None) -> None:
        """Make sure the oplog still reaches back to the position (raise `HistoryLostError`).

        A read from the position that starts with the position's own entry proves it at no cost;
        otherwise (the entry is gone, or the position is a time with no entry of its own) the
        oldest entry decides.
        """
        position = self.position.ts
        if position == _ZERO:
            return  # "from the oldest entry there is"
        if first and first[0].get("ts") == position:
            return
        self._check_history(position, all_seen=self.position.seen == ALL)

    def _check_history(self, position: Timestamp, *, all_seen: bool = False) -> None:
        """Raise `HistoryLostError` if entries needed after ``position`` may have been trimmed.

        ``all_seen``: every entry at ``position`` itself was delivered, so an oldest entry that
        is the very next timestamp proves nothing is missing (a young oplog, e.g. a new shard).
        """
        oldest = edge_timestamp(self._oplog, 1, self._traits)
        if oldest > (next_timestamp(position) if all_seen else position):
            raise HistoryLostError(
                f"the oplog no longer reaches back to the position gtom must resume from: it "
                f"needs the entries after {format_ts(position)}, but the oldest entry left is "
                f"{format_ts(oldest)}, so the changes in between are lost. Re-copy the data "
                f"(direct reads) and tail from a new position, or give the oplog more room.",
                position=position,
                oldest=oldest,
            )

    # -- entries to ops ------------------------------------------------------------------------

    def _deliver(self, entries: list[dict[str, Any]], re_read: ReRead) -> bool:
        """Decode one batch, add its ops to the pending ones, hand over what is due.

        The batch goes in as one unit, or, when updates' documents are fetched, as one unit per
        whole fetch batch of updates (so that no fetch is cut short). False if cancelled.
        """
        start = 0
        if not re_read.passed:  # a re-read: skip the entries passed already
            for start, entry in enumerate(entries):  # noqa: B007 - start is used below
                ts = entry.get("ts")
                if ts.__class__ is not Timestamp and not isinstance(ts, Timestamp):
                    raise DecodeError("an oplog entry has no valid 'ts'", entry)
                if re_read.admit(ts):
                    break
            else:
                return not self.lane.cancelled  # all read before: nothing new
        decode = self._decoder.decode
        pending = self._pending
        fetching = self._fetcher is not None
        size = self._options.buffer_size
        now = time.monotonic()
        ops: list[Op] = []
        first = start  # the unit's first entry
        needs = 0  # updates in the unit whose documents are to be fetched
        for at in range(start, len(entries)):
            entry = entries[at]
            try:
                new = decode(entry)  # checks the entry's ts too
            except IncompleteChainError:
                new = self._decode_chain(entry)
            if not new:
                continue
            ops += new
            if fetching:
                for op in new:
                    if op.operation == "u" and op.data is None:
                        needs += 1
                if needs and (pending.needs + needs) % size == 0:
                    ts, run = _last_run(entries, first, at)
                    pending.add(ops, ts, now, run, needs=needs)
                    ops, first, needs = [], at + 1, 0
        if first < len(entries):
            if self._options.update_data_as_delta:
                for op in ops:
                    if op.operation == "u" and op.data is None:
                        op.data = delta(op)
            ts, run = _last_run(entries, first, len(entries) - 1)
            pending.add(ops, ts, now, run, needs=needs)
        return self._flush()

    def _flush(self, *, force: bool = False) -> bool:
        """Hand over the waiting ops that are due, in order; False if the lane was cancelled.

        Their documents are fetched in the background (at most `FETCHES_AHEAD` groups at a
        time) while the tailer reads on; ``force`` hands over everything, fetched, at once.
        """
        pending = self._pending
        while count := pending.due(time.monotonic(), force=force):
            while count:
                group = pending.group(count)
                count -= group
                needs = pending.needs
                ops, self._taken = pending.take(group, self._taken)
                job = None
                if self._fetcher is not None and pending.needs < needs:
                    job = self._jobs.start(functools.partial(self._fetcher.fill, ops))
                self._ahead.append((job, ops, self._taken))
                if not self._hand_over(keep=FETCHES_AHEAD):
                    return False
        return self._hand_over(keep=0 if force else FETCHES_AHEAD)

    def _hand_over(self, *, keep: int) -> bool:
        """Queue the fetched groups in order; the position follows. False if cancelled.

        While more than ``keep`` groups are still being fetched, it waits for the oldest.
        """
        ahead = self._ahead
        keep_filter = self._options.filter
        while ahead:
            job, ops, position = ahead[0]
            if job is not None:
                if not job.done() and len(ahead) <= keep:
                    break
                job.result()
            ahead.popleft()
            if self._shard is not None:
                for op in ops:
                    op.shard = self._shard
            if keep_filter is not None:
                ops = [op for op in ops if call_user("filter", keep_filter, op)]
            if ops and not self._queue(ops):
                return False
            self.position = position
        return not self.lane.cancelled

    def _queue(self, ops: list[Op]) -> bool:
        """Put ``ops`` in ``op_c``, waiting for room; False if the lane was cancelled."""
        return self._op_c.put_many(ops, self.lane)

    def _decode_chain(self, entry: Mapping[str, Any]) -> list[Op]:
        """Decode a transaction's commit, fetching the chain entries the decoder has not seen."""
        while True:
            try:
                return self._decoder.decode(entry)
            except IncompleteChainError as missing:
                self._decoder.remember(self._fetch_chain_entry(missing.ts))

    def _fetch_chain_entry(self, ts: Timestamp) -> dict[str, Any]:
        entry = self._oplog.find_one({"ts": ts})
        if entry is None:
            raise HistoryLostError(
                f"a transaction committed in the oplog, but its earlier entry at {format_ts(ts)} "
                f"is no longer there, so its writes cannot be delivered",
                position=ts,
            )
        return entry


def _last_run(entries: list[dict[str, Any]], first: int, last: int) -> tuple[Timestamp, int]:
    """The timestamp of ``entries[last]``, and how many entries up to it share it.

    Only ``entries[first:last + 1]`` count; entries come in timestamp order.
    """
    ts: Timestamp = entries[last]["ts"]
    run = 1
    while last - run >= first and entries[last - run]["ts"] == ts:
        run += 1
    return ts, run


class ServerCursorClosed(OperationFailure):
    """The server closed the tailable cursor without an error: re-open it (transient)."""

    def __init__(self) -> None:
        """Create the error (code 237 CursorKilled, which is transient)."""
        super().__init__("the server closed the oplog cursor", code=237)
