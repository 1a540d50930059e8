"""Following change streams: a collection, a database or a whole deployment, without gaps.

One `ChangeStreamFollower` per ``change_stream_ns`` entry (``"db.coll"``, ``"db"`` or ``""``)
reads its stream with ``try_next()`` and hands decoded ops to the context's queue. Its position
is a resume token that moves only after an op is queued, or, while the stream is idle, to the
server's post-batch resume token, so an idle stream's position stays fresh.

pymongo resumes what it can by itself (one retry of a resumable error). For anything else that is
transient the follower re-opens the stream from its own token after a capped, jittered backoff.
A token the server no longer has (``ChangeStreamHistoryLost``, an invalid token) raises
`HistoryLostError`: gtom never restarts from "now" behind your back. A collection or database
stream that is invalidated (the collection was dropped or renamed, the database dropped) opens
again with ``startAfter`` the invalidate event, so it follows a re-created collection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from bson import Timestamp
from pymongo import AsyncMongoClient
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.errors import OperationFailure, PyMongoError

from gtom._async._compat import Prefetcher, Signal, sleep_until_set
from gtom._async.queue import Lane, OpQueue, QueueClosed
from gtom._backoff import Backoff
from gtom._decode_change import ChangeDecoder, is_invalidate
from gtom._errors import (
    ConfigurationError,
    GtomError,
    HistoryLostError,
    NotReplicaSetError,
    call_user,
)
from gtom._extjson import read_codec_options
from gtom._op import Op
from gtom._options import Options
from gtom._retry import describe, is_transient, translate

__all__ = ["ChangeStreamFollower", "StreamPosition", "open_stream"]

Client = AsyncMongoClient[Any]
Stream = AsyncChangeStream[dict[str, Any]]
#: How long a ``getMore`` of a change stream may wait for events when ``max_wait_secs`` is 0.
DEFAULT_MAX_AWAIT_MS = 500
#: The resume point was removed from the oplog, or the token is unusable: not transient.
_FATAL = 280  # ChangeStreamFatalError: a resume point not found, or a pipeline that broke _id
_HISTORY_LOST_CODES = frozenset({286, _FATAL})  # and ChangeStreamHistoryLost
_BAD_TOKEN_CODES = frozenset({260})  # InvalidResumeToken
_NOT_A_REPLICA_SET = 40573
#: At most this many ops go into the queue in one put.
MAX_PUT = 500


class StreamPosition:
    """Where a change stream is: resume after ``token``, or start at ``start_at`` (inclusive)."""

    __slots__ = ("start_after", "start_at", "token")

    def __init__(
        self,
        *,
        token: Mapping[str, Any] | None = None,
        start_at: Timestamp | None = None,
        start_after: bool = False,
    ) -> None:
        """A position: a token (resumed after, or started after once invalidated) or a time."""
        self.token = token
        self.start_at = start_at
        self.start_after = start_after

    def watch_kwargs(self) -> dict[str, Any]:
        """The ``watch()`` arguments that open a stream here (none: "now")."""
        if self.token is not None:
            return {"start_after" if self.start_after else "resume_after": self.token}
        if self.start_at is not None:
            return {"start_at_operation_time": self.start_at}
        return {}


def _has_buffered(stream: Stream) -> bool:
    """Whether the stream holds more events of its current batch (no round trip to get them).

    pymongo keeps that to itself; without it every event is queued on its own (slower, still
    correct).
    """
    has_next = getattr(getattr(stream, "_cursor", None), "_has_next", None)
    return bool(has_next()) if callable(has_next) else False


def _target(client: Client, stream_id: str) -> Any:
    """What to watch: the client, a database or a collection, decoding as gtom decodes.

    (A whole-deployment stream decodes with the client's own codec options: pymongo has no way
    to give it others.)
    """
    db, dot, coll = stream_id.partition(".")
    if not stream_id:
        return client
    codec = read_codec_options(client.codec_options)
    database = client.get_database(db, codec_options=codec)
    return database if not dot else database[coll]


async def open_stream(
    client: Client, options: Options, stream_id: str, position: StreamPosition
) -> Stream:
    """Open the change stream of ``stream_id`` at ``position``; pymongo's errors pass through."""
    pipeline: Sequence[Mapping[str, Any]] = []
    if options.pipe is not None:
        pipeline = call_user("pipe", options.pipe, stream_id, True) or []
    kwargs: dict[str, Any] = {
        "pipeline": list(pipeline),
        "max_await_time_ms": int(options.max_wait_secs * 1000) or DEFAULT_MAX_AWAIT_MS,
        **position.watch_kwargs(),
    }
    if options.full_document != "default":
        kwargs["full_document"] = options.full_document
    if options.full_document_before_change is not None:
        kwargs["full_document_before_change"] = options.full_document_before_change
    if options.show_expanded_events:
        kwargs["show_expanded_events"] = True
    stream: Stream = await _target(client, stream_id).watch(**kwargs)
    return stream


def history_lost(stream_id: str, token: Any, error: PyMongoError) -> HistoryLostError:
    """The error for a stream whose resume point the server no longer has (or never had)."""
    name = repr(stream_id) if stream_id else "of the whole deployment"
    if _is_bad_token(error):
        why = "its resume token is not one this server can use"
    else:
        why = "the server no longer has its resume point"
    return HistoryLostError(
        f"change stream {name} cannot resume: {why} ({describe(error)}), so changes after it "
        f"may be lost. Re-copy the data (direct reads) and start the stream again without a "
        f"resume token, or give the oplog more room.",
        stream_id=stream_id,
        resume_token=token,
    )


def _is_bad_token(error: PyMongoError) -> bool:
    if not isinstance(error, OperationFailure):
        return False
    if error.code in _BAD_TOKEN_CODES:
        return True
    # SecantusDB says FailedToParse (9) for a token it cannot read; mongod's codes vary by version.
    return "resume token" in _message(error).lower()


def _message(error: OperationFailure) -> str:
    return str((error.details or {}).get("errmsg", ""))


def classify_open_error(stream_id: str, token: Any, error: PyMongoError) -> GtomError | None:
    """A `GtomError` for an error that re-opening cannot fix, else None (retry)."""
    name = repr(stream_id) if stream_id else "of the whole deployment"
    if isinstance(error, OperationFailure):
        if error.code == _FATAL and "_id" in _message(error):
            return ConfigurationError(
                f"the pipeline of change stream {name} (from pipe) changes the events' _id, "
                f"their resume token; keep _id as it is: {describe(error)}"
            )
        if error.code in _HISTORY_LOST_CODES or (token is not None and _is_bad_token(error)):
            return history_lost(stream_id, token, error)
        if error.code == _NOT_A_REPLICA_SET:
            return NotReplicaSetError(
                f"change streams need a replica set or a sharded cluster: {describe(error)}"
            )
    if is_transient(error):
        return None
    return translate(error, f"following change stream {name}")


class ChangeStreamFollower:
    """Reads one change stream into an `OpQueue`, until its lane is cancelled."""

    def __init__(
        self,
        client: Client,
        options: Options,
        stream_id: str,
        position: StreamPosition,
        op_c: OpQueue[Op],
        err_c: OpQueue[Exception],
        lane: Lane,
        stream: Stream | None = None,
    ) -> None:
        """Prepare a follower; ``stream`` is an already open stream at ``position``, if any."""
        self.stream_id = stream_id
        self.position = position
        self.lane = lane
        self._client = client
        self._options = options
        self._log = options.log
        self._op_c = op_c
        self._err_c = err_c
        self._stream = stream
        self._reader: Prefetcher[_Read] | None = None
        self._halt = Signal()
        self._backoff = Backoff()
        self._decoder = ChangeDecoder(
            stream_id,
            namespace_filter=options.namespace_filter,
            unmarshal=options.unmarshal,
            codec_options=read_codec_options(client.codec_options),
        )
        if stream is not None:
            self._remember(
                _Read.of(stream, [])
            )  # its position is there to save before the first event

    def halt(self) -> None:
        """Make `run` end soon (it also ends when the lane is cancelled or the queue closed)."""
        self._halt.set()

    def _halted(self) -> bool:
        return self._halt.is_set() or self.lane.cancelled

    async def run(self) -> None:
        """Follow the stream until halted; a fatal error closes the queue with it."""
        try:
            await self._run()
        except QueueClosed:
            pass
        except GtomError as e:
            self._fail(e)
        except Exception as e:  # a bug: say so rather than hang
            self._fail(GtomError(f"internal error while following a change stream: {e!r}"))
            self._log.exception("gtom: internal error while following a change stream")
        finally:
            await self._close()

    async def _run(self) -> None:
        while not self._halted():
            if self._op_c.paused and not await self._op_c.wait_resumed(self.lane):
                return
            try:
                await self._follow()
            except PyMongoError as e:
                fatal = classify_open_error(self.stream_id, self.position.token, e)
                if fatal is not None:
                    raise fatal from e
                await self._close()
                delay = self._backoff.next_delay()
                self._err_c.offer(e)
                self._log.warning(
                    "gtom: change stream %r failed (%s); retry %d in %.2fs",
                    self.stream_id,
                    describe(e),
                    self._backoff.attempts,
                    delay,
                )
                await sleep_until_set(delay, self._halt)

    async def close(self) -> None:
        """Close the stream, if open (`run` does it when it ends)."""
        await self._close()

    async def _close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(PyMongoError):
                await stream.close()

    def _fail(self, error: GtomError) -> None:
        if self.lane.cancelled:
            return
        self._log.error("gtom: change stream %r stopped: %s", self.stream_id, error)
        self._op_c.close(error)

    async def _follow(self) -> None:
        """Read until paused or halted (return), invalidated (return) or an error (raise).

        The next batch is read while the current one is decoded and queued (a prefetch), and
        the position moves only once a batch's ops are queued.
        """
        pauses = self._op_c.pause_count
        if self._stream is None:
            self._stream = await open_stream(
                self._client, self._options, self.stream_id, self.position
            )
        stream = self._stream
        self._remember(_Read.of(stream, []))
        reader = self._reader = Prefetcher(f"gtom-stream-reader:{self.stream_id}")
        reader.start(lambda: read_batch(stream))
        while True:
            if self._op_c.pause_count != pauses or self._halted():
                await self._close()  # a batch not queued is read again from the position
                return
            read = await reader.result()
            self._recovered()
            ended = bool(read.events) and is_invalidate(read.events[-1])
            if not ended and stream.alive:
                await reader.begin(lambda: read_batch(stream))  # read on while this is queued
            if not await self._queue(read.events[:-1] if ended else read.events):
                return
            if ended:
                await self._close()
                self.position = StreamPosition(token=read.events[-1]["_id"], start_after=True)
                return
            self._remember(read)
            if not stream.alive:  # the server ended the cursor without an invalidate
                await self._close()
                await sleep_until_set(0.05, self._halt)
                return

    def _recovered(self) -> None:
        """A read succeeded: the failures before it are over."""
        if self._backoff.attempts:
            self._log.warning(
                "gtom: change stream %r recovered after %d failed attempts",
                self.stream_id,
                self._backoff.attempts,
            )
            self._backoff.reset()

    async def _queue(self, events: list[Mapping[str, Any]]) -> bool:
        """Queue the ops of ``events``; False when this follower's lane was cancelled.

        Parts enter the queue whole and the position moves past each, so a checkpoint taken
        once the queue is drained is exact.
        """
        size = max(1, min(MAX_PUT, self._op_c.maxsize))
        for start in range(0, len(events), size):
            part = events[start : start + size]
            ops = self._decode(part)
            if ops and not await self._op_c.put_many(ops, self.lane, atomic=True):
                return False
            if start + size < len(events):
                self.position = StreamPosition(token=part[-1]["_id"])
        return True

    def _decode(self, events: list[Mapping[str, Any]]) -> list[Op]:
        keep = self._options.filter
        ops = []
        for event in events:
            op = self._decoder.decode(event)
            if op is not None and (keep is None or call_user("filter", keep, op)):
                ops.append(op)
        return ops

    def _remember(self, read: _Read) -> None:
        token = read.token
        # Until the stream moves past an invalidate it reopened after, keep using startAfter.
        if token is not None and token != self.position.token:
            self.position = StreamPosition(token=token)
        elif token is None and self.position.token is None and self.position.start_at is None:
            # A server without post-batch tokens (before 4.0.7): pin "now" to the operation time
            # pymongo resumes from itself, so a re-open never skips ahead.
            self.position = StreamPosition(start_at=read.start_at)


class _Read(NamedTuple):
    """A batch of events, and the stream's position after them."""

    events: list[Mapping[str, Any]]
    token: Mapping[str, Any] | None
    #: pymongo's ``startAtOperationTime`` while the stream has no token yet (old servers).
    start_at: Timestamp | None

    @classmethod
    def of(cls, stream: Stream, events: list[Mapping[str, Any]]) -> _Read:
        start_at = getattr(stream, "_start_at_operation_time", None)
        return cls(
            events, stream.resume_token, start_at if isinstance(start_at, Timestamp) else None
        )


async def read_batch(stream: Stream) -> _Read:
    """The stream's next events: what its current batch holds, else one ``getMore``'s worth.

    At most `MAX_PUT` events; an ``invalidate`` is always last. No events: the stream is idle.
    """
    events: list[Mapping[str, Any]] = []
    event = await stream.try_next()
    while event is not None:
        events.append(event)
        if is_invalidate(event) or len(events) >= MAX_PUT or not _has_buffered(stream):
            break
        event = await stream.try_next()
    return _Read.of(stream, events)
