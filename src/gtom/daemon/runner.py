"""The daemon's pipeline: read ops, batch them, send each batch, then save the checkpoint.

Delivery is *ack-then-checkpoint*: a batch goes to the sink; only once the sink confirmed every
event of it does the checkpoint move past it (`gtom.daemon.acks`), and it is saved before the
next batch is sent. So a crash (even ``kill -9``) repeats at most the batch that was in flight,
and loses nothing. A failing sink is retried with capped, jittered backoff while reading waits
(backpressure): the checkpoint never passes an undelivered event.

Where a run starts is `gtom.daemon.startup`'s; a copy's progress is `gtom.daemon.progress`'s.
SIGTERM/SIGINT stop reading, deliver what was read, save the checkpoint and exit 0 within 10 s;
a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import queue
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import ConfigurationError as PyMongoConfigurationError

import gtom
from gtom._backoff import Backoff
from gtom._extjson import output_codec_options
from gtom._op import Op
from gtom._position import Position, previous_timestamp
from gtom._redact import uri_error
from gtom.daemon import exits
from gtom.daemon.acks import Ack, AckTracker, Batch
from gtom.daemon.checkpoint import Checkpoint, CheckpointStore, FileStore, MongoStore, StreamMark
from gtom.daemon.config import Config
from gtom.daemon.errors import ConfigError
from gtom.daemon.metrics import Metrics, serve
from gtom.daemon.positions import lane_of
from gtom.daemon.progress import report_copies
from gtom.daemon.sinks.base import Event, Sink, SinkError
from gtom.daemon.sinks.factory import make_sink
from gtom.daemon.startup import Started, Startup

__all__ = ["Runner"]

#: SIGTERM/SIGINT: everything is delivered and saved within this many seconds, or given up.
SHUTDOWN_SECONDS = 8.0
#: While a copy runs, where it is is noted at most this often (to save with the next batch).
COPY_SNAPSHOT_EVERY = 0.5
#: Lost history is answered by copying again (``resnapshot``) at most this many times a run.
RESNAPSHOTS = 2

log = logging.getLogger("gtom.daemon")

#: Saves a checkpoint (retrying while the store is unreachable).
Save = Callable[[Checkpoint], Awaitable[None]]


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

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped or failed; the exit code."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal)
        try:
            async with contextlib.AsyncExitStack() as resources:
                return await self._run(resources)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals > 1:
            print("gtom: second signal: exiting at once", file=sys.stderr, flush=True)
            os._exit(exits.INTERRUPTED)
        log.info("stopping: delivering what was read, then saving the checkpoint")
        self._stopping.set()
        asyncio.get_running_loop().call_later(SHUTDOWN_SECONDS, self._give_up.set)

    async def _run(self, resources: contextlib.AsyncExitStack) -> int:
        """Open what the run needs (each closed by ``resources``), then follow."""
        config = self.config
        resources.push_async_callback(self._close_clients)
        if config.metrics.listen != "off":
            server = await self._serve_metrics(config.metrics.listen)
            resources.callback(server.close)
        source = config.source
        client = self._open_client(source.shards_from or source.uri, "source")
        store = self._make_store(client)
        resources.push_async_callback(store.close)
        if self.reset:
            await store.reset()
            log.info("checkpoint in %s reset: starting over", store.where)
        saved = await store.load()
        sink = make_sink(config)
        resources.push_async_callback(_close_quietly, sink)
        await sink.open()
        save = functools.partial(self._save, store)
        startup = Startup(config, client, self._open_client, save)
        if not source.shards_from:
            await startup.check_namespaces()
        return await self._follow(startup, sink, save, saved)

    async def _serve_metrics(self, listen: str) -> asyncio.Server:
        host, _, port = listen.rpartition(":")
        try:
            return await serve(self.metrics, host.strip("[]"), int(port))
        except OSError as e:
            raise ConfigError(
                f"cannot serve metrics on {listen} (metrics.listen): {e.strerror or e}",
                exits.BAD_VALUE,
            ) from e

    def _open_client(self, uri: str, what: str) -> AsyncMongoClient[Any]:
        timeout_ms = int(self.config.source.timeout * 1000)
        try:
            client: AsyncMongoClient[Any] = AsyncMongoClient(
                uri,
                serverSelectionTimeoutMS=timeout_ms,
                appname="gtom",
                **output_codec_options(),  # documents the event encoder writes exactly
            )
        except (PyMongoConfigurationError, ValueError, TypeError) as e:
            raise ConfigError(
                f"invalid MongoDB URI for {what}: {uri_error(uri, e)}", exits.BAD_URI
            ) from e
        self._clients.append(client)
        return client

    async def _close_clients(self) -> None:
        for client in self._clients:
            await client.close()

    def _make_store(self, client: AsyncMongoClient[Any]) -> CheckpointStore:
        settings = self.config.checkpoint
        if settings.store == "file":
            return FileStore(settings.path)
        if settings.uri is not None and settings.uri != self.config.source.uri:
            client = self._open_client(settings.uri, "checkpoint")
        return MongoStore(client, settings.collection, settings.name)

    async def _save(self, store: CheckpointStore, checkpoint: Checkpoint) -> None:
        """Save ``checkpoint``, retrying while the store is unreachable (until shutdown)."""
        backoff = Backoff(base=0.2, cap=5.0)
        while True:
            try:
                await store.save(checkpoint)
                self.metrics.checkpoint_saved = time.monotonic()
                return
            except gtom.ServerUnavailableError as e:
                if self._give_up.is_set():
                    raise
                log.warning("cannot save the checkpoint yet (%s): retrying", e)
                await asyncio.sleep(backoff.next_delay())

    # -- following -----------------------------------------------------------------------------

    async def _follow(
        self, startup: Startup, sink: Sink, save: Save, saved: Checkpoint | None
    ) -> int:
        """Deliver until stopped; on lost history, copy again (``resnapshot``) at most twice."""
        checkpoint, fresh = saved or Checkpoint(), saved is None
        resnapshots = 0
        while True:
            started = await startup.start(checkpoint, fresh=fresh)
            self.metrics.ready = True
            if started.ctx is None:
                return exits.OK  # nothing to do
            delivery = _Delivery(self, started, checkpoint, sink, save)
            try:
                await delivery.run(started.ctx)
            except gtom.HistoryLostError as e:
                if delivery.fatal is not None:  # the sink refused the batch before the gap
                    raise delivery.fatal from e
                policy = self.config.delivery.on_history_lost
                if policy == "fail" or resnapshots >= RESNAPSHOTS:
                    raise gtom.HistoryLostError(
                        f"{e} Everything before it was delivered and checkpointed. To recover: "
                        f"run with --reset-checkpoint and source.direct_read listing your "
                        f"collections (to copy them again), or set delivery.on_history_lost = "
                        f'"resnapshot"' + (" (tried twice already)" if resnapshots else ""),
                    ) from e
                resnapshots += 1
                log.warning("%s: copying the followed collections again, then tailing", e)
                await started.ctx.stop()
                # Saved with the new start: a restart during the copy finishes it.
                checkpoint, fresh = Checkpoint(recopy=await startup.followed_collections()), True
                continue
            finally:
                await started.ctx.stop()
            if delivery.fatal is not None:
                raise delivery.fatal
            return exits.OK


class _Delivery:
    """Read → batch → send, from one context, until it ends or the run stops."""

    def __init__(
        self, runner: Runner, started: Started, checkpoint: Checkpoint, sink: Sink, save: Save
    ) -> None:
        self.config = runner.config
        self.metrics = runner.metrics
        self._stopping = runner._stopping
        self._give_up = runner._give_up
        self._started = started
        self._checkpoint = checkpoint
        self._acks = AckTracker(checkpoint)
        self._sink = sink
        self._save_checkpoint = save
        self._copy_noted = 0.0
        self.fatal: SinkError | None = None
        """The sink refused a batch no retry can fix: the run stops with it."""

    async def _save(self) -> None:
        await self._save_checkpoint(self._checkpoint)

    async def run(self, ctx: gtom.AsyncOpCtx) -> None:
        """Read, batch and hand batches to the sender until stopped or the context ends."""
        batches: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=1)
        sender = asyncio.create_task(self._send_all(batches))
        copying = bool(self._started.copies)
        progress = asyncio.create_task(report_copies(ctx)) if copying else None
        try:
            await self._read_all(ctx, batches, sender)
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await self._hand_over(batches, None, sender)
                await sender
            if progress is not None:
                progress.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await progress

    async def _hand_over(
        self, batches: asyncio.Queue[Batch | None], batch: Batch | None, sender: asyncio.Task[None]
    ) -> None:
        """Give ``batch`` to the sender (None: the end), unless the sender has stopped."""
        put = asyncio.ensure_future(batches.put(batch))
        await asyncio.wait({put, sender}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()

    async def _read_all(
        self, ctx: gtom.AsyncOpCtx, batches: asyncio.Queue[Batch | None], sender: asyncio.Task[None]
    ) -> None:
        started = self._started
        delivery = self.config.delivery
        skip, make = started.skipper.skip, started.maker.make
        events_in = self.metrics.events_in
        batch = Batch()
        deadline = 0.0
        copies_done = False
        while not self._stopping.is_set() and not sender.done():
            copied = bool(started.copies) and ctx.copied
            wait = min(0.5, max(0.0, deadline - time.monotonic())) if batch else 0.5
            try:
                # Every op waiting, up to a full batch: ops leave op_c a server batch at a time.
                ops = await ctx.op_c.get_many(delivery.batch_size - len(batch), timeout=wait)
            except gtom.HistoryLostError:
                if batch:  # what came before the gap is good: deliver it first
                    await self._hand_over(batches, batch, sender)
                raise
            except queue.Empty:
                if batch and time.monotonic() >= deadline:
                    await self._hand_over(batches, batch, sender)
                    batch = Batch()
                elif not batch:
                    await self._idle(ctx, batches)
                continue
            except gtom.StoppedError:
                break  # a copy-only run is complete
            if not batch:
                deadline = time.monotonic() + delivery.batch_wait
            if copied and not copies_done:
                batch.copies_done = copies_done = True  # every copied document is before these
            before = len(batch)
            for op in ops:
                lane = lane_of(op)
                if skip(op, lane):
                    continue
                batch.add(make(op, lane), op)
                events_in[(op.namespace, op.operation)] += 1
            self.metrics.queue_depth += len(batch) - before
            if started.copies and not copied and ctx.op_c.empty():
                self._note_copies(ctx, batch)
            if len(batch) >= delivery.batch_size:
                await self._hand_over(batches, batch, sender)
                batch = Batch()
        if not self._stopping.is_set() and started.copies and ctx.copied and not copies_done:
            batch.copies_done = True  # the run ended: the copy is in what was read
        if batch or batch.copies_done:
            await self._hand_over(batches, batch, sender)

    def _note_copies(self, ctx: gtom.AsyncOpCtx, batch: Batch) -> None:
        """Everything the copies queued has been read: where they are goes with ``batch``.

        (``direct_read_checkpoint()`` follows the ops *queued*, so it is only taken while
        ``op_c`` is empty; no await separates the check from the note.)
        """
        now = time.monotonic()
        if now - self._copy_noted < COPY_SNAPSHOT_EVERY or isinstance(ctx, gtom.AsyncMultiOpCtx):
            return
        self._copy_noted = now
        batch.copies = ctx.direct_read_checkpoint()

    async def _idle(self, ctx: gtom.AsyncOpCtx, batches: asyncio.Queue[Batch | None]) -> None:
        """Nothing to send: keep idle streams' tokens and positions, and finished copies, saved."""
        if self._acks.pending or not batches.empty():
            return
        tokens = ctx.resume_tokens  # read before looking at op_c: a later op is still queued
        positions = ctx.oplog_positions()
        if not ctx.op_c.empty():
            return
        cp = self._checkpoint
        changed = False
        for sid, token in tokens.items():
            stream = cp.streams.get(sid)
            if stream is None or stream.token != token:
                cp.streams.setdefault(sid, StreamMark()).token = token
                changed = True
        for shard, ts in positions.items():
            # Entries read past while idle were all filtered out (every delivered op is
            # confirmed), so the position may move up to just before the newest of them: a
            # quiet namespace's position keeps up with the oplog instead of falling off it.
            done_up_to = previous_timestamp(ts)
            position = cp.shards.get(shard) if shard else cp.oplog
            if position is not None and done_up_to > position.ts:
                if shard:
                    cp.shards[shard] = Position(done_up_to)
                else:
                    cp.oplog = Position(done_up_to)
                changed = True
        if self._started.copies and ctx.copied:  # nothing pending: every copied one is confirmed
            self._acks.copies_done = True
        if self._copies_complete() or changed:
            await self._save()

    def _copies_complete(self) -> bool:
        """Record the copies as complete once a confirmed batch said so; whether it did now."""
        copies = self._started.copies
        if not self._acks.copies_done or not copies:
            return False
        for ns in copies:
            if ns not in self._checkpoint.copies_done:
                self._checkpoint.copies_done.append(ns)
            self._checkpoint.copies.pop(ns, None)
        log.info("copy complete: %s", ", ".join(copies))
        copies.clear()
        return True

    async def _send_all(self, batches: asyncio.Queue[Batch | None]) -> None:
        """Send each batch until the sink confirms it, then checkpoint past it."""
        while True:
            batch = await batches.get()
            if batch is None:
                return
            ack = self._acks.track(batch)
            if batch.events and not await self._send(batch.events):
                return
            await self._confirmed(ack)

    async def _send(self, events: list[Event]) -> bool:
        """Send ``events`` until the sink confirms them; False if the run must stop first."""
        backoff = Backoff(base=0.2, cap=self.config.delivery.retry_max_wait)
        while True:
            try:
                if not await self._send_before_deadline(events):
                    return False
                self.metrics.sink_ok()
                return True
            except SinkError as e:
                if not e.retryable:
                    self.fatal = e
                    self._stopping.set()
                    return False
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
                        "gave up delivering %d events at shutdown: the checkpoint stays before "
                        "them, so they are delivered after a restart",
                        len(events),
                    )
                    return False

    async def _confirmed(self, ack: Ack) -> None:
        """The sink confirmed ``ack``'s batch: count it, move the checkpoint, save it."""
        for op in ack.batch.ops:
            self.metrics.delivered(op.namespace, op.operation, _server_time(op))
        self.metrics.queue_depth -= len(ack.batch)
        self._acks.resolve(ack)
        self._copies_complete()
        await self._save()

    async def _send_before_deadline(self, events: list[Event]) -> bool:
        """Send ``events``; False if the shutdown deadline passed first (the send is dropped)."""
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


async def _close_quietly(sink: Sink) -> None:
    with contextlib.suppress(Exception):
        await sink.close()


def _server_time(op: Op) -> float | None:
    """When the server made the change (for the lag metric), if the op says."""
    if op.wall is not None:
        return op.wall.timestamp()
    if op.timestamp is not None:
        return float(op.timestamp.time)
    return None
