"""Read → batch → send, for one context: the daemon's delivery pipeline.

Delivery is *ack-then-checkpoint*: a batch goes to the sink; only once the sink confirmed every
event of it does the checkpoint move past it (`gtom.daemon.acks`), and it is saved before the
next batch is sent. So a crash (even ``kill -9``) repeats at most the batch that was in flight,
and loses nothing. A failing sink is retried with capped, jittered backoff while reading waits
(backpressure): the checkpoint never passes an undelivered event.

In a cluster (`gtom.daemon.cluster`) every send waits until this process may send under its
lease, and must end within what the lease has left; a send that runs out of it is given up
(the batch is sent again once the lease is renewed, or by the next leader).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import queue
import time
from collections.abc import Awaitable, Callable

import gtom
from gtom._backoff import Backoff
from gtom._op import Op
from gtom._position import Position, previous_timestamp
from gtom.daemon.acks import Ack, AckTracker, Batch
from gtom.daemon.checkpoint import Checkpoint, StreamMark
from gtom.daemon.cluster import Lease
from gtom.daemon.config import Config
from gtom.daemon.metrics import Metrics
from gtom.daemon.positions import lane_of
from gtom.daemon.progress import report_copies
from gtom.daemon.sinks.base import Event, Sink, SinkError
from gtom.daemon.startup import Started

__all__ = ["COPY_SNAPSHOT_EVERY", "Delivery", "Save"]

#: While a copy runs, where it is is noted at most this often (to save with the next batch).
COPY_SNAPSHOT_EVERY = 0.5

log = logging.getLogger("gtom.daemon")

_EPOCH = datetime.datetime(1970, 1, 1)

#: Saves a checkpoint (retrying while the store is unreachable).
Save = Callable[[Checkpoint], Awaitable[None]]


class Delivery:
    """Read → batch → send, from one context, until it ends or the run stops."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        events: tuple[asyncio.Event, asyncio.Event],
        started: Started,
        checkpoint: Checkpoint,
        sink: Sink,
        save: Save,
        lease: Lease | None = None,
    ) -> None:
        """Deliver ``started``'s context from ``checkpoint`` into ``sink``.

        ``events`` are the run's (stopping, give up) signals; ``lease``, in a cluster, the
        lease every send needs.
        """
        self.config = config
        self.metrics = metrics
        self._stopping, self._give_up = events
        self._lease = lease
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
        progress = asyncio.create_task(report_copies(ctx, self.metrics)) if copying else None
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
                if self._lease is not None:
                    await self._lease.wait_valid()  # LeaseLost once another process leads
                began = time.monotonic()
                if not await self._send_before_deadline(events):
                    if self._lease is not None and not self._give_up.is_set():
                        continue  # the lease ran out mid-send: again once it is renewed
                    return False
                self.metrics.sink_ok(time.monotonic() - began)
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
        deadline = None if self._lease is None else self._lease.remaining()
        try:
            await asyncio.wait(
                {send, give_up}, timeout=deadline, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            give_up.cancel()
        if not send.done():
            send.cancel()
            with contextlib.suppress(asyncio.CancelledError, SinkError):
                await send
            if self._give_up.is_set():
                log.warning(
                    "gave up delivering %d events at shutdown: the checkpoint stays before "
                    "them, so they are delivered after a restart",
                    len(events),
                )
            else:
                log.warning(
                    "cluster: the lease ran out while %d events were being sent: sending stops "
                    "until it is renewed (the checkpoint stays before them)",
                    len(events),
                )
            return False
        send.result()  # its SinkError, if it failed
        return True


def _server_time(op: Op) -> float | None:
    """When the server made the change (for the lag metric), if the op says."""
    wall = op.wall
    if wall is not None:
        if wall.tzinfo is None:  # BSON dates are UTC; naive.timestamp() would read local time
            return (wall - _EPOCH).total_seconds()
        return wall.timestamp()
    if op.timestamp is not None:
        return float(op.timestamp.time)
    return None
