"""Tailing the oplog: every entry after a position, in order, once, whatever the network does.

The tailer reads ``local.oplog.rs`` with a tailable-await cursor and hands decoded ops to the
context's queue. Its position is an `OplogPosition` that advances only after the ops of an entry
are queued. On any transient error it re-opens from that position (``ts >= position``, skipping
what it already delivered) after a capped, jittered backoff, and before every re-open it checks
that the position is still in the oplog, raising `HistoryLostError` when it is not.

Opening a tailable cursor while writes are in flight can miss the entries written during the
open on some servers (SecantusDB). So every (re-)open first reads what is already there with a
plain query, then opens the tailable cursor, then reads once more with a plain query from the
position reached; the re-read filter drops the overlap. The backlog is read once; the overlap is
whatever was written during the open.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

import bson
from bson import Timestamp
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient, CursorType
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncRawBatchCursor
from pymongo.errors import OperationFailure, PyMongoError

from gtom._async._compat import Lane, OpQueue, QueueClosed, Signal, sleep_until_set
from gtom._backoff import Backoff
from gtom._decode_oplog import ChainIncomplete, OplogDecoder, call_user
from gtom._errors import (
    DecodeError,
    GtomError,
    HistoryLostError,
    NotReplicaSetError,
)
from gtom._op import Op
from gtom._options import DEFAULT_OPLOG_COLLECTION, DEFAULT_OPLOG_DATABASE, Options
from gtom._position import OplogPosition, ReRead, format_ts
from gtom._retry import describe, is_transient, translate

__all__ = [
    "OplogTailer",
    "ServerCursorClosed",
    "check_oplog_source",
    "first_op_timestamp",
    "last_op_timestamp",
]

#: How long one ``getMore`` may wait for new entries. Short, so a stopped sync face ends quickly.
MAX_AWAIT_MS = 500
#: How often a running tailer checks that its position is still in the oplog (some servers
#: truncate under an open cursor without an error).
HISTORY_CHECK_SECONDS = 10.0
_ZERO = Timestamp(0, 0)

Client = AsyncMongoClient[Any]


def raw_codec(client: Client) -> CodecOptions[RawBSONDocument]:
    """The client's codec options, reading documents as lazily decoded raw BSON."""
    return client.codec_options.with_options(document_class=RawBSONDocument)


def dict_codec(client: Client) -> CodecOptions[dict[str, Any]]:
    """The client's codec options (timezone, UUIDs, ...), decoding documents into dicts."""
    return client.codec_options.with_options(document_class=dict)


def oplog_collection(client: Client, options: Options) -> AsyncCollection[RawBSONDocument]:
    """The oplog collection, read as raw BSON."""
    return client[options.oplog_database_name].get_collection(
        options.oplog_collection_name, codec_options=raw_codec(client)
    )


def _oplog_name(options: Options) -> str:
    return f"{options.oplog_database_name}.{options.oplog_collection_name}"


async def check_oplog_source(client: Client, options: Options) -> None:
    """Raise a clear `ServerError` unless the server answers and keeps an oplog."""
    try:
        hello = await client.admin.command("hello")
    except PyMongoError as e:
        raise translate(e, "connecting") from e
    if (options.oplog_database_name, options.oplog_collection_name) != (
        DEFAULT_OPLOG_DATABASE,
        DEFAULT_OPLOG_COLLECTION,
    ):
        return  # a custom capped collection: nothing to say about the topology
    if hello.get("msg") == "isdbgrid":
        raise NotReplicaSetError(
            "connected to a mongos router, which has no oplog: follow a sharded cluster with "
            "change streams (Options(change_stream_ns=...)) or tail each shard with start_multi"
        )
    if not hello.get("setName"):
        raise NotReplicaSetError(
            "the server is not a replica set member, so it keeps no oplog: run it as a replica "
            "set (a single member is enough: start mongod with --replSet and run rs.initiate()) "
            "or disable oplog tailing"
        )


async def _edge_timestamp(oplog: AsyncCollection[RawBSONDocument], direction: int) -> Timestamp:
    """The timestamp of the oldest (1) or newest (-1) entry; pymongo's errors pass through."""
    entry = await oplog.find_one({}, sort=[("$natural", direction)], projection={"ts": 1})
    if entry is None:
        raise NotReplicaSetError(
            f"{oplog.full_name} is missing or empty: the server keeps no oplog there"
        )
    ts = entry.get("ts")
    if not isinstance(ts, Timestamp):
        raise DecodeError(f"an entry of {oplog.full_name} has no timestamp", entry)
    return ts


async def _public_edge(client: Client, options: Options | None, direction: int) -> Timestamp:
    options = options or Options()
    try:
        return await _edge_timestamp(oplog_collection(client, options), direction)
    except PyMongoError as e:
        raise translate(e, f"reading {_oplog_name(options)}") from e


async def last_op_timestamp(client: Client, options: Options | None = None) -> Timestamp:
    """The timestamp of the newest oplog entry ("now" for tailing)."""
    return await _public_edge(client, options, -1)


async def first_op_timestamp(client: Client, options: Options | None = None) -> Timestamp:
    """The timestamp of the oldest oplog entry still kept (how far back tailing can start)."""
    return await _public_edge(client, options, 1)


class OplogTailer:
    """Reads the oplog from a position into an `OpQueue`, until its lane is cancelled."""

    def __init__(
        self,
        client: Client,
        options: Options,
        position: OplogPosition,
        op_c: OpQueue[Op],
        err_c: OpQueue[Exception],
        lane: Lane,
    ) -> None:
        """Prepare a tailer starting just after ``position``; `run` does the work."""
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
        self._raw = raw_codec(client)
        self._decoder = OplogDecoder(
            namespace_filter=options.namespace_filter,
            unmarshal=options.unmarshal,
            codec_options=dict_codec(client),
        )
        self._backoff = Backoff()
        self._next_history_check = 0.0

    def halt(self) -> None:
        """Make `run` end soon (it also ends when the lane is cancelled or the queue closed)."""
        self._halt.set()

    def _halted(self) -> bool:
        return self._halt.is_set() or self.lane.cancelled

    async def run(self) -> None:
        """Tail until halted; a fatal error is stored in ``error`` and closes the queue."""
        try:
            await self._run()
        except QueueClosed:
            pass
        except GtomError as e:
            self._fail(e)
        except Exception as e:  # a bug: say so rather than hang
            self._fail(GtomError(f"internal error while tailing the oplog: {e!r}"))
            self._log.exception("gtom: internal error while tailing the oplog")

    async def _run(self) -> None:
        while not self._halted():
            if self._op_c.paused and not await self._op_c.wait_resumed(self.lane):
                return
            try:
                await self._tail()
            except PyMongoError as e:
                if not is_transient(e):
                    raise translate(e, f"tailing {_oplog_name(self._options)}") from e
                delay = self._backoff.next_delay()
                self._err_c.offer(e)
                self._log.warning(
                    "gtom: oplog tailing failed (%s); retry %d in %.2fs from %s",
                    describe(e),
                    self._backoff.attempts,
                    delay,
                    format_ts(self.position.ts),
                )
                await sleep_until_set(delay, self._halt)

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

    async def _tail(self) -> None:
        """Read from the position until paused or halted (return) or an error (raise).

        After a pause, even one that began while ops waited to enter the queue, it returns too:
        the cursor is re-opened, so the history check runs before anything newer is read.
        """
        pauses = self._op_c.pause_count
        await self._check_history()
        # 1. The backlog, with a plain query.
        if not await self._catch_up(pauses):
            return
        # 2. The tailable cursor, opened from where the backlog ended.
        cursor = self._oplog.find_raw_batches(
            {"ts": {"$gte": self.position.ts}}, cursor_type=CursorType.TAILABLE_AWAIT
        ).max_await_time_ms(MAX_AWAIT_MS)
        try:
            first = await self._next_batch(cursor)
            self._recovered()
            # 3. Whatever was written while the cursor opened, in case the cursor missed it.
            if not await self._catch_up(pauses):
                return
            re_read = self.position.re_read()
            if first is not None and not await self._deliver(first, re_read):
                return
            while cursor.alive:
                if self._op_c.pause_count != pauses or self._halted():
                    return  # resume() re-opens from the position, checking history first
                if time.monotonic() >= self._next_history_check:
                    await self._check_history()
                raw = await self._next_batch(cursor)
                if raw is not None and not await self._deliver(raw, re_read):
                    return
            # The server ended the cursor (e.g. killed it): open a new one after a pause.
            raise ServerCursorClosed
        finally:
            await cursor.close()

    async def _catch_up(self, pauses: int) -> bool:
        """Deliver what the oplog holds after the position; False when paused or halted."""
        re_read = self.position.re_read()
        cursor = self._oplog.find_raw_batches({"ts": {"$gte": self.position.ts}})
        try:
            async for raw in cursor:
                if not await self._deliver(cast("bytes", raw), re_read):
                    return False
                if self._op_c.pause_count != pauses:
                    return False
        finally:
            await cursor.close()
        return not self._halted()

    @staticmethod
    async def _next_batch(cursor: AsyncRawBatchCursor[Any]) -> bytes | None:
        try:
            raw: bytes = await cursor.next()
            return raw
        except StopAsyncIteration:
            return None  # an empty batch: nothing new within the await time

    async def _check_history(self) -> None:
        position = self.position.ts
        self._next_history_check = time.monotonic() + HISTORY_CHECK_SECONDS
        if position == _ZERO:
            return  # "from the oldest entry there is"
        oldest = await _edge_timestamp(self._oplog, 1)
        if oldest > position:
            raise HistoryLostError(
                f"the oplog no longer reaches back to the position gtom must resume from: it "
                f"needs the entries after {format_ts(position)}, but the oldest entry left is "
                f"{format_ts(oldest)}, so the changes in between are lost. Re-copy the data "
                f"(direct reads) and tail from a new position, or give the oplog more room.",
                position=position,
                oldest=oldest,
            )

    # -- entries to ops ------------------------------------------------------------------------

    async def _deliver(self, raw: bytes, re_read: ReRead) -> bool:
        """Queue the ops of one batch; False when this tailer's lane was cancelled."""
        position = self.position.copy()
        ops: list[Op] = []
        for entry in bson.decode_all(raw, self._raw):
            ts = entry.get("ts")
            if not isinstance(ts, Timestamp):
                raise DecodeError("an oplog entry has no valid 'ts'", entry)
            if not re_read.admit(ts):
                continue
            ops += await self._decode(entry)
            position.advance(ts)
        keep = self._options.filter
        if keep is not None:
            ops = [op for op in ops if call_user("filter", keep, op)]
        if ops and not await self._op_c.put_many(ops, self.lane):
            return False
        self.position = position
        return not self.lane.cancelled

    async def _decode(self, entry: Mapping[str, Any]) -> list[Op]:
        while True:
            try:
                return self._decoder.decode(entry)
            except ChainIncomplete as missing:
                self._decoder.remember(await self._fetch_chain_entry(missing.ts))

    async def _fetch_chain_entry(self, ts: Timestamp) -> RawBSONDocument:
        entry = await self._oplog.find_one({"ts": ts})
        if entry is None:
            raise HistoryLostError(
                f"a transaction committed in the oplog, but its earlier entry at {format_ts(ts)} "
                f"is no longer there, so its writes cannot be delivered",
                position=ts,
            )
        return entry


class ServerCursorClosed(OperationFailure):
    """The server closed the tailable cursor without an error: re-open it (transient)."""

    def __init__(self) -> None:
        """Create the error (code 237 CursorKilled, which is transient)."""
        super().__init__("the server closed the oplog cursor", code=237)
