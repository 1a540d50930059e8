"""The daemon's pipeline: read ops, batch them, send each batch, then save the checkpoint.

Delivery is *ack-then-checkpoint*: a batch goes to the sink; only once the sink confirmed every
event of it does the checkpoint move past it, and it is saved before the next batch is sent. So a
crash (even ``kill -9``) repeats at most the batch that was in flight, and loses nothing. A
failing sink is retried with capped, jittered backoff while reading waits (backpressure): the
checkpoint never passes an undelivered event.

On start the checkpoint decides where each lane resumes (`gtom.daemon.positions`); without one,
the first run records where it starts *before* anything is read, so even a crash before the
first delivery loses nothing. SIGTERM/SIGINT stop reading, deliver what was read, save the
checkpoint and exit 0 within 10 s; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import signal
import sys
import time
from typing import Any

from bson import Timestamp
from pymongo import AsyncMongoClient
from pymongo.errors import ConfigurationError as PyMongoConfigurationError
from pymongo.errors import PyMongoError

import gtom
from gtom._async.oplog import check_oplog_source
from gtom._backoff import Backoff
from gtom._extjson import output_codec_options
from gtom._op import Op
from gtom._redact import redact, uri_error
from gtom._retry import translate
from gtom.daemon import exits
from gtom.daemon.checkpoint import (
    Checkpoint,
    CheckpointStore,
    FileStore,
    Mark,
    MongoStore,
    StreamMark,
)
from gtom.daemon.config import Config, ConfigError
from gtom.daemon.events import EventMaker
from gtom.daemon.exits import UnknownNamespaceError
from gtom.daemon.metrics import Metrics, serve
from gtom.daemon.positions import (
    ALL,
    Skipper,
    Tracker,
    lane_of,
    previous_timestamp,
    resume_after,
)
from gtom.daemon.sinks.base import Event, Sink, SinkError
from gtom.daemon.sinks.factory import make_sink
from gtom.daemon.sources import parse_after, progress_line, tail_filter

__all__ = ["Runner"]

#: SIGTERM/SIGINT: everything is delivered and saved within this many seconds, or given up.
SHUTDOWN_SECONDS = 8.0
#: How often a copy's progress is reported.
PROGRESS_EVERY = 0.5
_SYSTEM_DATABASES = frozenset({"admin", "config", "local"})

log = logging.getLogger("gtom.daemon")

Batch = list[tuple[Event, Op, int]]  # (event, op, sequence number)


class Runner:
    """One run of the daemon: `run` returns the exit code."""

    def __init__(self, config: Config, *, reset: bool = False) -> None:
        """Prepare a run with ``config``; ``reset`` forgets the saved checkpoint first."""
        self.config = config
        self.reset = reset
        self.metrics = Metrics()
        self._stopping = asyncio.Event()
        self._give_up = asyncio.Event()  # shutdown deadline: stop retrying the sink
        self._signals = 0
        self._clients: list[AsyncMongoClient[Any]] = []
        self._client: AsyncMongoClient[Any] | None = None
        self._store: CheckpointStore | None = None
        self._sink: Sink | None = None
        self._ctx: gtom.AsyncOpCtx | None = None
        self._server: asyncio.Server | None = None
        self._checkpoint = Checkpoint()
        self._fatal: BaseException | None = None
        self._seq = 0  # events made
        self._acked = 0  # events confirmed (by sequence number)
        self._sending = False
        self._copies: list[str] = []  # direct reads of this run not yet confirmed complete
        self._copy_barrier: int | None = None  # once this event is confirmed, copies are done
        # Where the copies were when every event up to this sequence number had been read.
        self._copy_snapshot: tuple[int, dict[str, Any]] | None = None
        self._copy_snapshot_at = 0.0

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped or failed; the exit code."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal)
        try:
            await self._start()
            return await self._follow()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            await self._close()

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals > 1:
            print("gtom: second signal: exiting at once", file=sys.stderr, flush=True)
            os._exit(exits.INTERRUPTED)
        log.info("stopping: delivering what was read, then saving the checkpoint")
        self._stopping.set()
        asyncio.get_running_loop().call_later(SHUTDOWN_SECONDS, self._give_up.set)

    async def _start(self) -> None:
        config = self.config
        if config.metrics.listen != "off":
            host, _, port = config.metrics.listen.rpartition(":")
            try:
                self._server = await serve(self.metrics, host.strip("[]"), int(port))
            except OSError as e:
                raise ConfigError(
                    f"cannot serve metrics on {config.metrics.listen} (metrics.listen): "
                    f"{e.strerror or e}",
                    exits.BAD_VALUE,
                ) from e
        source = config.source
        self._client = self._open_client(source.shards_from or source.uri, "source")
        self._store = self._make_store()
        if self.reset:
            await self._store.reset()
            log.info("checkpoint in %s reset: starting over", self._store.where)
        saved = await self._store.load()
        self._sink = make_sink(config)
        await self._sink.open()
        if not source.shards_from:
            await self._check_namespaces(self._client)
        self._checkpoint = saved if saved is not None else Checkpoint()
        self._ctx = await self._start_context(fresh=saved is None)
        self.metrics.ready = True

    def _open_client(self, uri: str, what: str, **kwargs: Any) -> AsyncMongoClient[Any]:
        timeout_ms = int(self.config.source.timeout * 1000)
        try:
            client: AsyncMongoClient[Any] = AsyncMongoClient(
                uri,
                serverSelectionTimeoutMS=timeout_ms,
                appname="gtom",
                **output_codec_options(),  # documents the event encoder writes exactly
                **kwargs,
            )
        except (PyMongoConfigurationError, ValueError, TypeError) as e:
            raise ConfigError(
                f"invalid MongoDB URI for {what}: {uri_error(uri, e)}", exits.BAD_URI
            ) from e
        self._clients.append(client)
        return client

    def _make_store(self) -> CheckpointStore:
        settings = self.config.checkpoint
        if settings.store == "file":
            return FileStore(settings.path)
        client = self._client
        if settings.uri is not None and settings.uri != self.config.source.uri:
            client = self._open_client(settings.uri, "checkpoint")
        assert client is not None
        return MongoStore(client, settings.collection, settings.name)

    async def _check_namespaces(self, client: AsyncMongoClient[Any]) -> None:
        """Every ``direct_read`` collection must exist (a typo would copy nothing)."""
        for ns in self.config.source.direct_read:
            database, _, collection = ns.partition(".")
            try:
                names = await client[database].list_collection_names()
            except PyMongoError as e:
                raise translate(e, f"listing the collections of {database}") from e
            if collection not in names:
                have = ", ".join(sorted(names)[:10]) or "no collections"
                raise UnknownNamespaceError(
                    f"unknown namespace {ns} (source.direct_read): database {database} has {have}"
                )

    # -- where to start ------------------------------------------------------------------------

    async def _start_context(self, *, fresh: bool) -> gtom.AsyncOpCtx | None:
        """Start following, from the checkpoint (or, ``fresh``, from now or source.after)."""
        config = self.config
        source = config.source
        cp = self._checkpoint
        assert self._client is not None
        assert self._store is not None
        options = gtom.Options(
            channel_size=max(256, 2 * config.delivery.batch_size),
            update_data_as_delta=source.update_data_as_delta,
            include_internal=source.include_internal,
            full_document=source.full_document,
        )
        if source.worker is not None:
            assert source.workers_file is not None
            options = options.replace(
                filter=gtom.consistent.consistent_hash_filter_from_file(
                    source.worker, source.workers_file
                )
            )
        wanted = [*source.direct_read, *(ns for ns in cp.recopy if ns not in source.direct_read)]
        self._copies = [ns for ns in wanted if ns not in cp.copies_done]
        resume = {ns: at for ns, at in cp.copies.items() if ns in self._copies}
        options = options.replace(direct_read_ns=list(self._copies), direct_read_resume=resume)
        self._copy_snapshot = None
        self._copy_barrier = None
        self._resume_numbering()
        if source.no_tail and not self._copies:
            log.info("every direct read is complete already: nothing to do")
            return None
        if source.shards_from:  # copies too: each shard holds its part of a collection
            return await self._start_shards(options, fresh=fresh)
        if source.no_tail:
            return await gtom.start_async(self._client, options.replace(oplog_disabled=True))
        if source.change_streams:
            if fresh:
                cp.start = await self._now_or_after(streams=True)
                await self._save()
            streams = list(source.namespaces) or [""]
            tokens = {sid: s.token for sid, s in cp.streams.items() if s.token is not None}
            start = cp.start
            options = options.replace(
                oplog_disabled=True,
                change_stream_ns=streams,
                resume_tokens=tokens,
                after=None if start is None else (lambda client, options: start),
            )
            return await gtom.start_async(self._client, options)
        if fresh:
            cp.start = await self._now_or_after(streams=False)
            cp.oplog = Mark(cp.start, ALL)
            await self._save()
        mark = cp.oplog or Mark(cp.start or Timestamp(0, 0), ALL)
        after = resume_after(mark)
        options = options.replace(
            namespace_filter=tail_filter(source.namespaces),
            after=lambda client, options: after,
        )
        return await gtom.start_async(self._client, options)

    async def _start_shards(self, options: gtom.Options, *, fresh: bool) -> gtom.AsyncOpCtx:
        source = self.config.source
        cp = self._checkpoint
        assert self._client is not None
        assert source.shards_from is not None
        listen_after: Timestamp | None = None
        try:  # before reading config.shards: a shard added meanwhile is not missed
            listen_after = await gtom.last_op_timestamp(self._client)
        except gtom.GtomError as e:
            log.warning("shards added later will not be followed: %s", e)
        shards = await gtom.get_shards(self._client)
        if not shards:
            raise ConfigError(
                f"config.shards of {redact(source.shards_from)} lists no shard", exits.BAD_VALUE
            )
        clients = {str(info.id): self._open_shard(info) for info in shards}
        if fresh:
            for name, client in clients.items():
                start = parse_after(source.after)
                if start is None:
                    start = await gtom.last_op_timestamp(client)
                cp.shards[name] = Mark(start, ALL)
            cp.start = min(mark.ts for mark in cp.shards.values())
            await self._save()
        by_client = {id(client): name for name, client in clients.items()}

        async def after(client: Any, options: gtom.Options) -> Timestamp:
            mark = cp.shards.get(by_client.get(id(client), ""))
            if mark is not None:
                return resume_after(mark)
            # A shard without a mark joined after the first run started: from that start, or
            # all of its oplog if that is younger (as the shard listener does).
            start = cp.start or Timestamp(0, 0)
            oldest = await gtom.first_op_timestamp(client, options)
            return Timestamp(0, 0) if oldest > start else start

        options = options.replace(namespace_filter=tail_filter(source.namespaces), after=after)
        if source.no_tail:
            options = options.replace(oplog_disabled=True)
        ctx = await gtom.start_multi_async(clients, options)
        assert isinstance(ctx, gtom.AsyncMultiOpCtx)

        if listen_after is not None and not source.no_tail:
            try:
                await ctx.add_shard_listener(
                    self._client, None, self._open_shard, after=listen_after
                )
            except gtom.GtomError as e:
                log.warning("shards added later will not be followed: %s", e)
        return ctx

    def _open_shard(self, info: gtom.ShardInfo) -> AsyncMongoClient[Any]:
        """A client of a shard, with the credentials and options of ``source.shards_from``."""
        assert self.config.source.shards_from is not None
        return self._open_client(
            info.get_url(like=self.config.source.shards_from), f"shard {info.id}"
        )

    async def _now_or_after(self, *, streams: bool) -> Timestamp:
        """Where a first run starts: ``source.after``, or the server's time now."""
        assert self._client is not None
        start = parse_after(self.config.source.after)
        if start is not None:
            return start
        if not streams:
            await check_oplog_source(self._client, gtom.Options())  # a clear error first
            return await gtom.last_op_timestamp(self._client)
        try:
            reply = await self._client.admin.command("ping")
        except PyMongoError as e:
            raise translate(e, "connecting") from e
        now = reply.get("operationTime") or reply.get("$clusterTime", {}).get("clusterTime")
        if not isinstance(now, Timestamp):
            raise gtom.NotReplicaSetError(
                "the server reports no cluster time, so it has no change streams: connect to "
                "a replica set or a mongos"
            )
        return now

    def _resume_numbering(self) -> None:
        cp = self._checkpoint
        assert self._client is not None
        self._maker = EventMaker(
            canonical=self.config.delivery.format == "canonical",
            uuid_representation=self._client.codec_options.uuid_representation,
        )
        if cp.oplog is not None and cp.oplog.count > 0:
            self._maker.resume("oplog", cp.oplog.ts, cp.oplog.count)
        for shard, mark in cp.shards.items():
            if mark.count > 0:
                self._maker.resume(f"shard:{shard}", mark.ts, mark.count)
        for sid, stream in cp.streams.items():
            if stream.mark is not None and stream.mark.count > 0:
                self._maker.resume(f"stream:{sid}", stream.mark.ts, stream.mark.count)
        self._skipper = Skipper(cp)

    # -- following -----------------------------------------------------------------------------

    async def _follow(self) -> int:
        """Deliver until stopped; on lost history, copy again (``resnapshot``) at most twice."""
        resnapshots = 0
        while True:
            if self._ctx is None:
                return exits.OK  # nothing to do
            try:
                await self._deliver(self._ctx)
            except gtom.HistoryLostError as e:
                if self._fatal is not None:  # the sink refused the batch before the gap
                    raise self._fatal from e
                policy = self.config.delivery.on_history_lost
                if policy == "fail" or resnapshots >= 2:
                    raise gtom.HistoryLostError(
                        f"{e} Everything before it was delivered and checkpointed. To recover: "
                        f"run with --reset-checkpoint and source.direct_read listing your "
                        f"collections (to copy them again), or set delivery.on_history_lost = "
                        f'"resnapshot"' + (" (tried twice already)" if resnapshots else ""),
                    ) from e
                resnapshots += 1
                log.warning("%s: copying the followed collections again, then tailing", e)
                await self._resnapshot()
                continue
            if self._fatal is not None:
                raise self._fatal
            return exits.OK

    async def _resnapshot(self) -> None:
        assert self._ctx is not None
        assert self._client is not None
        await self._ctx.stop()
        namespaces = await self._followed_collections(self._client)
        # Saved with the new start: a restart during the copy finishes it instead of forgetting it.
        self._checkpoint = Checkpoint(recopy=namespaces)
        self._ctx = await self._start_context(fresh=True)

    async def _followed_collections(self, client: AsyncMongoClient[Any]) -> list[str]:
        source = self.config.source
        found = set(source.direct_read)
        try:
            databases = {ns.partition(".")[0] for ns in source.namespaces if "." not in ns}
            found |= {ns for ns in source.namespaces if "." in ns}
            if not source.namespaces:
                databases = set(await client.list_database_names()) - _SYSTEM_DATABASES
            for database in databases:
                names = await client[database].list_collection_names(filter={"type": "collection"})
                found |= {f"{database}.{n}" for n in names if not n.startswith("system.")}
        except PyMongoError as e:
            raise translate(e, "listing the collections to copy again") from e
        return sorted(found)

    async def _deliver(self, ctx: gtom.AsyncOpCtx) -> None:
        """Read, batch and hand batches to the sender until stopped or the context ends."""
        batches: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=1)
        sender = asyncio.create_task(self._send_all(batches))
        progress = asyncio.create_task(self._report_copies(ctx)) if self._copies else None
        try:
            await self._read_all(ctx, batches, sender)
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await self._put(batches, None, sender)
                await sender
            if progress is not None:
                progress.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await progress

    async def _put(
        self, batches: asyncio.Queue[Batch | None], item: Batch | None, sender: asyncio.Task[None]
    ) -> None:
        while True:
            try:
                await asyncio.wait_for(batches.put(item), 0.5)
                return
            except asyncio.TimeoutError:
                if sender.done():
                    return

    async def _read_all(
        self, ctx: gtom.AsyncOpCtx, batches: asyncio.Queue[Batch | None], sender: asyncio.Task[None]
    ) -> None:
        delivery = self.config.delivery
        batch: Batch = []
        deadline = 0.0
        while not self._stopping.is_set() and not sender.done():
            copied = bool(self._copies) and ctx.copied
            now = time.monotonic()
            wait = min(0.5, max(0.0, deadline - now)) if batch else 0.5
            try:
                op = await ctx.op_c.get(timeout=wait)
            except gtom.HistoryLostError:
                if batch:  # what came before the gap is good: deliver it first
                    await self._put(batches, batch, sender)
                raise
            except queue.Empty:
                if batch and time.monotonic() >= deadline:
                    await self._put(batches, batch, sender)
                    batch = []
                elif not batch:
                    await self._idle(ctx, batches)
                continue
            except gtom.StoppedError:
                break  # a copy-only run is complete
            lane = lane_of(op)
            if self._skipper.skip(op, lane):
                continue
            event = self._maker.make(op, lane)
            self._seq += 1
            if copied and self._copy_barrier is None:
                self._copy_barrier = self._seq  # every copied document is at or before it
            if self._copies and ctx.op_c.empty() and not copied:
                self._snapshot_copies(ctx)
            self.metrics.events_in[(op.namespace, op.operation)] += 1
            self.metrics.queue_depth += 1
            batch.append((event, op, self._seq))
            if len(batch) == 1:
                deadline = time.monotonic() + delivery.batch_wait
            if len(batch) >= delivery.batch_size:
                await self._put(batches, batch, sender)
                batch = []
        if not self._stopping.is_set() and self._copies and ctx.copied:
            self._copy_barrier = self._seq  # the run ended: the copy is in what was read
        if batch:
            await self._put(batches, batch, sender)

    async def _idle(self, ctx: gtom.AsyncOpCtx, batches: asyncio.Queue[Batch | None]) -> None:
        """Nothing to send: keep idle change streams' tokens and finished copies saved."""
        if self._sending or not batches.empty() or self._acked != self._seq:
            return
        tokens = ctx.resume_tokens  # read before looking at op_c: a later op is still queued
        positions = ctx.oplog_positions()
        if not ctx.op_c.empty():
            return
        cp = self._checkpoint
        changed = False
        for sid, token in tokens.items():
            stream = self._checkpoint.streams.get(sid)
            if stream is None or stream.token != token:
                self._checkpoint.streams.setdefault(sid, StreamMark()).token = token
                changed = True
        for shard, ts in positions.items():
            # Entries read past while idle were all filtered out (every delivered op is
            # confirmed), so the position may move up to just before the newest of them: a
            # quiet namespace's position keeps up with the oplog instead of falling off it.
            done_up_to = previous_timestamp(ts)
            mark = cp.shards.get(shard) if shard else cp.oplog
            if mark is not None and done_up_to > mark.ts:
                if shard:
                    cp.shards[shard] = Mark(done_up_to, ALL)
                else:
                    cp.oplog = Mark(done_up_to, ALL)
                changed = True
        if self._copies and ctx.copied:
            self._copy_barrier = self._seq
            changed = self._copies_confirmed() or changed
        if changed:
            await self._save()

    def _snapshot_copies(self, ctx: gtom.AsyncOpCtx) -> None:
        """Everything the copies queued has been read: their positions, saved once confirmed.

        (``direct_read_checkpoint()`` follows the ops *queued*, so it is only taken while
        ``op_c`` is empty; no await separates the check from the snapshot.)
        """
        now = time.monotonic()
        if now - self._copy_snapshot_at < 0.5 or isinstance(ctx, gtom.AsyncMultiOpCtx):
            return
        self._copy_snapshot_at = now
        self._copy_snapshot = (self._seq, ctx.direct_read_checkpoint())

    def _copies_confirmed(self) -> bool:
        if self._copy_barrier is None or self._acked < self._copy_barrier or not self._copies:
            return False
        for ns in self._copies:
            if ns not in self._checkpoint.copies_done:
                self._checkpoint.copies_done.append(ns)
            self._checkpoint.copies.pop(ns, None)
        log.info("copy complete: %s", ", ".join(self._copies))
        self._copies = []
        return True

    async def _send_all(self, batches: asyncio.Queue[Batch | None]) -> None:
        """Send each batch until the sink confirms it, then checkpoint past it."""
        assert self._sink is not None
        cap = self.config.delivery.retry_max_wait
        while True:
            batch = await batches.get()
            if batch is None:
                return
            self._sending = True
            events = [event for event, _, _ in batch]
            backoff = Backoff(base=0.2, cap=cap)
            while True:
                try:
                    if not await self._send_before_deadline(events):
                        return
                    self.metrics.sink_ok()
                    break
                except SinkError as e:
                    if not e.retryable:
                        self._fatal = e
                        self._stopping.set()
                        return
                    self.metrics.sink_failed()
                    delay = backoff.next_delay()
                    if backoff.attempts == 1 or backoff.attempts % 10 == 0:
                        log.warning(
                            "%s sink failed (attempt %d), retrying in %.1fs: %s",
                            self._sink.name,
                            backoff.attempts,
                            delay,
                            e,
                        )
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._give_up.wait(), delay)
                    if self._give_up.is_set():
                        log.warning(
                            "gave up delivering %d events at shutdown: the checkpoint stays "
                            "before them, so they are delivered after a restart",
                            len(events),
                        )
                        return
            tracker = Tracker(self._checkpoint)  # the checkpoint may have been replaced
            tracker.confirm(op for _, op, _ in batch)
            self._acked = batch[-1][2]
            for _, op, _ in batch:
                server_time = op.wall.timestamp() if op.wall is not None else None
                if server_time is None and op.timestamp is not None:
                    server_time = float(op.timestamp.time)
                self.metrics.delivered(op.namespace, op.operation, server_time)
            self.metrics.queue_depth -= len(batch)
            snapshot = self._copy_snapshot
            if snapshot is not None and snapshot[0] <= self._acked and self._copies:
                self._checkpoint.copies = snapshot[1]
                self._copy_snapshot = None
            self._copies_confirmed()
            await self._save()
            self._sending = False

    async def _send_before_deadline(self, events: list[Event]) -> bool:
        """Send ``events``; False if the shutdown deadline passed first (the send is dropped)."""
        assert self._sink is not None
        send = asyncio.ensure_future(self._sink.send(events))
        give_up = asyncio.ensure_future(self._give_up.wait())
        try:
            await asyncio.wait({send, give_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            give_up.cancel()
        if not send.done():
            send.cancel()
            with contextlib.suppress(asyncio.CancelledError, SinkError):
                await send
            log.warning(
                "gave up delivering %d events at shutdown: the checkpoint stays before them, "
                "so they are delivered after a restart",
                len(events),
            )
            return False
        send.result()  # its SinkError, if it failed
        return True

    async def _save(self) -> None:
        assert self._store is not None
        backoff = Backoff(base=0.2, cap=5.0)
        while True:
            try:
                await self._store.save(self._checkpoint)
                self.metrics.checkpoint_saved = time.monotonic()
                return
            except gtom.ServerUnavailableError as e:
                if self._give_up.is_set():
                    raise
                log.warning("cannot save the checkpoint yet (%s): retrying", e)
                await asyncio.sleep(backoff.next_delay())

    async def _report_copies(self, ctx: gtom.AsyncOpCtx) -> None:
        """A progress bar on a terminal; a log line every 10 s otherwise."""
        tty = sys.stderr.isatty()
        last_log = time.monotonic()
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            progress = ctx.direct_read_progress()
            if not progress:
                continue
            line = progress_line(progress)
            if tty:
                print(f"\r\x1b[K{line}", end="", file=sys.stderr, flush=True)
            elif time.monotonic() - last_log >= 10:
                log.info("copying: %s", line)
                last_log = time.monotonic()
            if all(p.done for p in progress.values()):
                if tty:
                    print(file=sys.stderr)
                log.info("copy read: %s", line)
                return

    async def _close(self) -> None:
        if self._ctx is not None:
            await self._ctx.stop()
        if self._sink is not None:
            with contextlib.suppress(Exception):
                await self._sink.close()
        if self._server is not None:
            self._server.close()
        if self._store is not None:
            await self._store.close()
        for client in self._clients:
            await client.close()
