# Generated from src/gtom/_async/ctx.py by tools/synchro.py. Edit that one.
"""The context a caller holds: it starts the engine's jobs, hands out their ops, and stops them."""

from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Protocol

from bson import Timestamp
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from gtom._errors import ConfigurationError, GtomError, StoppedError, call_user
from gtom._op import Op
from gtom._options import Options, resolve
from gtom._position import Position, check_timestamp, next_timestamp
from gtom._retry import translate
from gtom._segments import DirectReadProgress
from gtom._servers import MONGOD
from gtom._sync._compat import Lock, Signal, Worker
from gtom._sync.change_stream import (
    ChangeStreamFollower,
    StreamPosition,
    classify_open_error,
    open_stream,
)
from gtom._sync.direct_read import DirectReads
from gtom._sync.oplog import OplogTailer
from gtom._sync.oplog_quirks import tailer_class
from gtom._sync.oplog_source import (
    check_oplog_source,
    first_op_timestamp,
    last_op_timestamp,
    server_traits,
)
from gtom._sync.queue import Lane, OpQueue

__all__ = ["OpCtx", "start"]

#: `stop` waits at most this long for the jobs to end.
STOP_TIMEOUT = 0.9
#: Non-fatal errors kept in ``err_c`` when nobody reads it (the oldest are dropped).
ERR_C_SIZE = 100


class _Job(Protocol):
    """A tailer or follower: it feeds ``op_c`` through its lane until halted."""

    lane: Lane

    def halt(self) -> None: ...

    def run(self) -> None: ...


class OpCtx(abc.ABC):
    """A running gtom context: iterate it for ops; pause, resume, seek or stop it.

    Create it with `start` (one deployment) or `start_multi` (several shards).
    ``op_c`` is the bounded queue ops flow through and ``err_c`` the queue of non-fatal errors
    (retried network errors, ...). Iteration ends once the context is stopped and ``op_c``
    drained; a fatal error (e.g. `HistoryLostError`) ends it by raising. An asyncio context
    belongs to the event loop that started it; a sync one works from any thread.
    """

    def __init__(self, options: Options, op_c: OpQueue[Op], err_c: OpQueue[Exception]) -> None:
        """Internal: use `start` or `start_multi`."""
        self.options = options
        self.op_c = op_c
        self.err_c = err_c
        self._lock = Lock()
        self._stopped = False

    # -- receiving ops -------------------------------------------------------------------------

    def __iter__(self) -> OpCtx:
        """Iterate over the ops, in order, until stopped and drained."""
        return self

    def __next__(self) -> Op:
        """The next op."""
        try:
            return self.op_c.get()
        except StoppedError:
            raise StopIteration from None

    def batches(self, max_items: int | None = None) -> Iterator[list[Op]]:
        """Iterate over the ops in batches: lists of every op waiting, in order.

        Each batch holds at least one op and at most ``max_items`` (None: no limit; at most
        ``channel_size`` wait at a time). Ops enter ``op_c`` a server batch at a time, so a busy
        context gives big batches, and taking one costs about what taking one op does. Ends,
        like iterating op by op, once the context is stopped and drained, or raises its error.
        """
        while True:
            try:
                batch = self.op_c.get_many(max_items)
            except StoppedError:
                return
            yield batch

    # -- control -------------------------------------------------------------------------------

    def pause(self) -> None:
        """Pause tailing: once this returns, no new op from the oplog or a stream enters ``op_c``.

        Ops already queued stay. Direct reads are not paused.
        """
        self.op_c.pause()

    def resume(self) -> None:
        """Resume tailing after `pause`, from where it paused (nothing is skipped)."""
        self.op_c.resume()

    @property
    def stopped(self) -> bool:
        """Whether `stop` was called or a fatal error ended the context."""
        return self._stopped or self.op_c.closed

    @abc.abstractmethod
    def since(self, ts: Timestamp) -> None:
        """Restart tailing just after ``ts``: the next tailed ops have timestamps > ``ts``.

        Applies to the oplog and to every change stream. Takes effect at once: queued ops not yet
        taken are discarded, and an op read before the call is never delivered after it.
        """

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop every job this context started (idempotent; a stopped context stays stopped).

        Returns within about a second even if nobody takes ops from ``op_c``; ops already queued
        can still be iterated.
        """

    @abc.abstractmethod
    def tails(self) -> bool:
        """Whether this context tails anything (the oplog or a change stream)."""

    @property
    @abc.abstractmethod
    def copied(self) -> bool:
        """Whether every direct read has queued its last op (True without any)."""

    @property
    @abc.abstractmethod
    def resume_tokens(self) -> dict[str, Mapping[str, Any]]:
        """Each change stream's position (``change_stream_ns`` entry -> resume token)."""

    @abc.abstractmethod
    def oplog_positions(self) -> dict[str, Timestamp]:
        """Where oplog tailing is, per shard (``""`` for a single deployment)."""

    @abc.abstractmethod
    def wait_for_direct_reads(self, timeout: float | None = None) -> bool:
        """Wait until every direct read has queued its last op (True; at once without any).

        False if ``timeout`` seconds passed first, or the context stopped (or failed) first.
        """

    @abc.abstractmethod
    def direct_read_progress(self) -> dict[str, DirectReadProgress]:
        """Each ``direct_read_ns`` namespace's progress: documents read, estimate, segments."""

    @abc.abstractmethod
    def direct_read_checkpoint(self) -> dict[str, Any]:
        """Where each direct read is, as a BSON-able document for ``Options.direct_read_resume``."""

    def __enter__(self) -> OpCtx:
        """Use the context in a ``with`` block; leaving it stops the context."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the context."""
        self.stop()


class _DeploymentCtx(OpCtx):
    """The context of one deployment (a replica set, or a mongos for change streams)."""

    def __init__(
        self,
        client: MongoClient[Any],
        options: Options,
        *,
        shared: tuple[OpQueue[Op], OpQueue[Exception]] | None = None,
        on_copied: Callable[[], None] | None = None,
        shard: str | None = None,
    ) -> None:
        """Internal: use `start`.

        ``shared``: the ``(op_c, err_c)`` of a multi-shard context this one feeds; it then leaves
        closing them to its owner, and calls ``on_copied`` instead once its direct reads are done.
        ``shard`` labels its oplog ops (``op.shard``).
        """
        self._owns_queues = shared is None
        if shared is None:
            shared = (OpQueue(options.channel_size), OpQueue(ERR_C_SIZE))
        super().__init__(options, *shared)
        self._shard = shard
        self._on_copied = on_copied
        self._client = client
        self._traits = MONGOD
        self._jobs: dict[str, tuple[_Job, Worker]] = {}  # by name: "oplog", "stream:<ns>"
        self._workers: list[Worker] = []  # every worker started, until it ended
        self._direct: DirectReads | None = None
        # Tailing jobs deliver once direct reads are done (the hand-over) or the context stops.
        self._tail_gate = Signal()
        if not options.direct_read_ns:
            self._tail_gate.set()

    def _begin(self) -> None:
        options = self.options
        client = self._client
        after: Timestamp | None = None
        if options.after is not None:
            result = call_user("after", options.after, client, options)
            after = check_timestamp(result, "the value returned by the after function")
        if not options.oplog_disabled:
            check_oplog_source(client, options)
            self._traits = server_traits(client)
            if after is None:
                after = last_op_timestamp(client, options)
            self._start_tailer(Position(after))
        direct = None
        if options.direct_read_ns:  # made first: a bad checkpoint fails before anything opens
            direct = DirectReads(
                client,
                options,
                self.op_c,
                self.err_c,
                resume=options.direct_read_resume,
                on_done=self._direct_reads_done,
            )
        start_at = self._stream_start(after) if options.change_stream_ns else None
        for stream_id in options.change_stream_ns:
            token = options.resume_tokens.get(stream_id)
            if token is not None:
                # startAfter resumes after any token, an invalidate's too (resumeAfter refuses it)
                position = StreamPosition(token=token, start_after=True)
            else:
                position = StreamPosition(start_at=start_at)
            try:
                stream = open_stream(client, options, stream_id, position)
            except PyMongoError as e:
                raise (
                    classify_open_error(stream_id, token, e) or translate(e, "connecting")
                ) from e
            self._start_follower(stream_id, position, stream)
        if direct is not None:  # after every tailing position was taken: the hand-over
            self._direct = direct
            self._workers += direct.start()

    def _direct_reads_done(self) -> None:
        self._tail_gate.set()
        if self._on_copied is not None:
            self._on_copied()
        elif not self._jobs:  # nothing tails: the context's work is done once the copy is
            self.op_c.close()

    def _stream_start(self, after: Timestamp | None) -> Timestamp | None:
        """Where streams without a resume token start: just after ``after``, else now (None).

        ``after`` = Timestamp(0, 0) means "the oldest change the server has", as for the oplog:
        the oldest oplog entry when the oplog can be read, else the server decides.
        """
        if after is None:
            return None
        if after == Timestamp(0, 0):
            with contextlib.suppress(GtomError):  # no oplog to read (mongos, no access, ...)
                return first_op_timestamp(self._client, self.options)
        return next_timestamp(after)

    def _start(self, name: str, job: _Job) -> None:
        def run() -> None:
            while not self._tail_gate.is_set():  # direct reads first
                if self.op_c.closed:
                    return  # stopped, or failed: never start
                self._tail_gate.wait(0.25)
            job.run()

        worker = Worker(run, name=f"gtom-{name}")
        self._jobs[name] = (job, worker)
        self._workers = [w for w in self._workers if not w.done()]
        self._workers.append(worker)

    def _start_tailer(self, position: Position) -> None:
        lane = Lane(gated=True)
        tailer = tailer_class(self._traits)(
            self._client,
            self.options,
            position,
            self.op_c,
            self.err_c,
            lane,
            self._traits,
            shard=self._shard,
        )
        self._start("oplog", tailer)

    def _start_follower(self, stream_id: str, position: StreamPosition, stream: Any = None) -> None:
        lane = Lane(gated=True)
        follower = ChangeStreamFollower(
            self._client, self.options, stream_id, position, self.op_c, self.err_c, lane, stream
        )
        self._start(f"stream:{stream_id}", follower)

    def tails(self) -> bool:
        """Whether this context tails anything (the oplog or a change stream)."""
        return bool(self._jobs)

    @property
    def copied(self) -> bool:
        """Whether every direct read has queued its last op (True without any)."""
        return self._direct is None or self._direct.done.is_set()

    @property
    def resume_tokens(self) -> dict[str, Mapping[str, Any]]:
        """Each change stream's position (``change_stream_ns`` entry -> resume token).

        The token follows the last event queued, or the server's post-batch token while idle. A
        stream positioned by time (just after `since`, or started with ``after`` before its first
        batch) has no token yet and is left out: save the ops' own ``resume_token`` then.
        Save it once ``op_c`` is drained (or save the ``resume_token`` of the last op you
        handled) and pass it back as ``Options.resume_tokens`` to continue exactly there.
        """
        with self._lock:
            jobs = list(self._jobs.values())
        return {
            job.stream_id: job.position.token
            for job, _ in jobs
            if isinstance(job, ChangeStreamFollower) and job.position.token is not None
        }

    def oplog_positions(self) -> dict[str, Timestamp]:
        """Where oplog tailing is: the newest entry it has read past, delivered or filtered out.

        Keyed by shard name (``""`` for a single deployment; empty without oplog tailing). Like
        `resume_tokens`, it follows the ops *queued*: once ``op_c`` is drained and those ops
        handled, everything up to it is done, including entries the filters dropped, so a
        quiet namespace's saved position need not fall behind the oplog's window.
        """
        with self._lock:
            entry = self._jobs.get("oplog")
        if entry is None or not isinstance(entry[0], OplogTailer):
            return {}
        return {self._shard or "": entry[0].position.ts}

    # -- control -------------------------------------------------------------------------------

    def since(self, ts: Timestamp) -> None:
        """Restart tailing just after ``ts``: the next tailed ops have timestamps > ``ts``.

        Applies to the oplog and to every change stream. Takes effect at once: queued ops not yet
        taken are discarded, and an op read before the call is never delivered after it.
        """
        check_timestamp(ts, "since(ts)")
        with self._lock:
            if self.stopped:
                raise StoppedError("since() on a stopped context")
            for name, (job, worker) in list(self._jobs.items()):
                self.op_c.cancel_lane(job.lane)
                job.halt()
                worker.cancel()
                if isinstance(job, ChangeStreamFollower):
                    self._start_follower(job.stream_id, StreamPosition(start_at=next_timestamp(ts)))
                elif name == "oplog":
                    self._start_tailer(Position(ts))

    def stop(self) -> None:
        """Stop every job this context started (idempotent; a stopped context stays stopped).

        Returns within about a second even if nobody takes ops from ``op_c``; ops already queued
        can still be iterated.
        """
        workers = self._halt()
        self._settle(workers, time.monotonic() + STOP_TIMEOUT)

    def _halt(self) -> list[Worker]:
        """Tell every job to end, at once; the workers to wait for."""
        with self._lock:
            self._stopped = True
            workers = list(self._workers)
            jobs = list(self._jobs.values())
            for job, _ in jobs:
                job.halt()
            if self._direct is not None:
                self._direct.halt()
        self._tail_gate.set()  # held tailing jobs see they are halted and end
        if self._owns_queues:
            self.op_c.close()
            self.err_c.close()
        elif not self.op_c.closed:  # the queue goes on for the other shards: silence this one's
            for job, _ in jobs:
                self.op_c.cancel_lane(job.lane)
            if self._direct is not None:
                self.op_c.cancel_lane(self._direct.lane)
        for worker in workers:
            worker.cancel()
        return workers

    def _settle(self, workers: list[Worker], deadline: float) -> None:
        """Wait for halted ``workers`` until ``deadline`` (monotonic), then release streams."""
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            jobs = list(self._jobs.values())
        for job, worker in jobs:
            # A follower cancelled before it ran still holds the stream opened at start.
            if isinstance(job, ChangeStreamFollower) and worker.done():
                job.close()

    def wait_for_direct_reads(self, timeout: float | None = None) -> bool:
        """Wait until every direct read has queued its last op (True; at once without any).

        False if ``timeout`` seconds passed first, or the context stopped (or failed) first.
        """
        direct = self._direct
        if direct is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while not direct.done.is_set():
            if self.stopped:
                return False
            remaining = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if remaining <= 0:
                return False
            direct.done.wait(remaining)
        return True

    def direct_read_progress(self) -> dict[str, DirectReadProgress]:
        """Each ``direct_read_ns`` namespace's progress: documents read, estimate, segments."""
        return self._direct.progress() if self._direct is not None else {}

    def direct_read_checkpoint(self) -> dict[str, Any]:
        """Where each direct read is, as a BSON-able document for ``Options.direct_read_resume``.

        Positions follow the ops *queued*: save it when ``op_c`` is drained (or after handling
        the last op taken) to resume an unfinished copy in a new process without a gap.
        """
        return self._direct.checkpoint() if self._direct is not None else {}


def start(client: MongoClient[Any], options: Options | None = None) -> OpCtx:
    """Start following ``client``'s deployment and return the running context.

    By default tailing starts at the newest oplog entry, so any write made after this returns is
    delivered. Raises a `GtomError` (e.g. `NotReplicaSetError`, `ServerUnavailableError`) when the
    deployment cannot be followed.
    """
    if not isinstance(client, MongoClient):
        raise ConfigurationError(
            f"client must be a pymongo.MongoClient, got {type(client).__name__}"
        )
    ctx = _DeploymentCtx(client, resolve(options))
    try:
        ctx._begin()
    except BaseException:
        ctx.stop()
        raise
    return ctx
