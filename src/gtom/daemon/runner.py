"""One run of the daemon: open what it needs, follow, stop cleanly; and lead a cluster.

The pipeline itself (read → batch → send, ack-then-checkpoint) is `gtom.daemon.delivery`'s;
where a run starts is `gtom.daemon.startup`'s; a copy's progress is `gtom.daemon.progress`'s.
SIGTERM/SIGINT stop reading, deliver what was read, save the checkpoint and exit 0 within 10 s;
a second signal exits at once.

With ``cluster.name`` (`gtom.daemon.cluster`), the run stands by until it holds the cluster's
lease, then delivers from the shared checkpoint (its term raised first) while it renews the
lease; if it loses the lease it stops delivering at once and stands by again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import time
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import ConfigurationError as PyMongoConfigurationError

import gtom
from gtom._backoff import Backoff
from gtom._extjson import output_codec_options
from gtom._redact import uri_error
from gtom.daemon import exits
from gtom.daemon.checkpoint import (
    Checkpoint,
    CheckpointFenced,
    CheckpointStore,
    FileStore,
    MongoStore,
)
from gtom.daemon.cluster import Lease, LeaseLost, install_wake_guard, lease_key
from gtom.daemon.config import Config
from gtom.daemon.delivery import Delivery, Save
from gtom.daemon.errors import ConfigError
from gtom.daemon.metrics import Metrics, serve
from gtom.daemon.progress import close_all_bars
from gtom.daemon.sinks.base import Sink
from gtom.daemon.sinks.factory import make_sink
from gtom.daemon.startup import Startup

__all__ = ["Runner"]

#: SIGTERM/SIGINT: everything is delivered and saved within this many seconds, or given up.
SHUTDOWN_SECONDS = 8.0
#: Lost history is answered by copying again (``resnapshot``) at most this many times a run.
RESNAPSHOTS = 2

log = logging.getLogger("gtom.daemon")


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
            close_all_bars()  # os._exit skips atexit: give the terminal its cursor back
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
        sink = make_sink(config)
        resources.push_async_callback(_close_quietly, sink)
        await sink.open()
        save = functools.partial(self._save, store)
        startup = Startup(config, client, self._open_client, save)
        if not source.shards_from:
            await startup.check_namespaces()
        if isinstance(store, MongoStore) and config.cluster.name is not None:
            return await self._lead(store, startup, sink, save)
        return await self._follow(startup, sink, save, await store.load())

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
        return MongoStore(client, settings.collection, self._lease_key() or settings.name)

    def _lease_key(self) -> str | None:
        """In a cluster, the lease's key, also the checkpoint's ``_id`` (None without one)."""
        name = self.config.cluster.name
        if name is None:
            return None
        return lease_key(name, self.config.source.worker, self.config.source.shard)

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

    async def _lead(self, store: MongoStore, startup: Startup, sink: Sink, save: Save) -> int:
        """Stand by until this process holds the cluster's lease, deliver while it does, again.

        Returns when the run stops (its lease given up for a standby to take at once).
        """
        cluster = self.config.cluster
        key = self._lease_key()
        assert key is not None
        lease = Lease(store.client, cluster.collection, key, cluster.lease_ttl)
        install_wake_guard(lease)
        first = await startup.first_start()
        if first is not None:  # before this member is ready: the cluster starts no later
            await store.seed(first)
        metrics = self.metrics
        while True:
            metrics.role, metrics.term, metrics.ready = "standby", 0, True
            log.info("cluster %s: standing by as %s", key, lease.holder)
            if not await lease.acquire(self._stopping):
                return exits.OK
            metrics.role, metrics.term = "leader", lease.term
            metrics.failovers += lease.took_over
            log.info(
                "cluster %s: took the lease (term %d%s): delivering",
                key,
                lease.term,
                ", from a process that stopped renewing it" if lease.took_over else "",
            )
            if hasattr(sink, "sender"):
                sink.sender = f"{lease.holder} term {lease.term}"
            keeper = asyncio.create_task(lease.keep())
            try:
                await store.claim(lease.term)
                saved = await store.load()
                if saved is None:  # no leader saved a checkpoint yet: from the first start
                    startup.first = await store.seeded()
                follow = asyncio.create_task(self._follow(startup, sink, save, saved, lease))
                await asyncio.wait({keeper, follow}, return_when=asyncio.FIRST_COMPLETED)
                if follow.done():
                    code = follow.result()  # LeaseLost or CheckpointFenced: stand by again
                    await lease.release()
                    log.info("cluster %s: gave the lease up", key)
                    return code
                follow.cancel()  # the keeper saw the lease taken: stop at once
                with contextlib.suppress(asyncio.CancelledError, LeaseLost, CheckpointFenced):
                    await follow
            except (LeaseLost, CheckpointFenced) as e:
                log.warning("cluster %s: stopped delivering: %s", key, e)
            finally:
                keeper.cancel()
            lease.term = 0

    async def _follow(
        self,
        startup: Startup,
        sink: Sink,
        save: Save,
        saved: Checkpoint | None,
        lease: Lease | None = None,
    ) -> int:
        """Deliver until stopped; on lost history, copy again (``resnapshot``) at most twice."""
        checkpoint, fresh = saved or Checkpoint(), saved is None
        resnapshots = 0
        while True:
            started = await startup.start(checkpoint, fresh=fresh)
            self.metrics.ready = True
            if started.ctx is None:
                return exits.OK  # nothing to do
            events = (self._stopping, self._give_up)
            delivery = Delivery(
                self.config, self.metrics, events, started, checkpoint, sink, save, lease
            )
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


async def _close_quietly(sink: Sink) -> None:
    with contextlib.suppress(Exception):
        await sink.close()
