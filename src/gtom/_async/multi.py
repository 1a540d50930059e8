"""Following a sharded cluster through its shards' oplogs: one context per shard, one stream.

For clusters followed without change streams (servers before 3.6, or a deliberate choice):
`start_multi_async` starts one context per shard, all feeding the same ``op_c`` and ``err_c``.
Each shard keeps its own position and its own order (oplog order holds *within* a shard); ops
of different shards interleave in the order they are read, which is close to time order but
not exactly it, since each shard has its own clock and its own cursor. A document lives on one
shard at a time, so per-document order holds too, except across a chunk migration: the donor's
delete and the recipient's insert of a moved document come from two shards (MongoDB marks both
``fromMigrate``; gtom, like gtm, delivers the recipient's insert and hides nothing).

`AsyncMultiOpCtx.add_shard_listener` tails the config server's oplog for inserts into
``config.shards`` and starts tailing each new shard from the moment it was added.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from bson import Timestamp
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from gtom._async._compat import Gather, Worker, maybe_await
from gtom._async.ctx import ERR_C_SIZE, STOP_TIMEOUT, AsyncOpCtx, _DeploymentCtx
from gtom._async.oplog_source import first_op_timestamp
from gtom._async.queue import OpQueue
from gtom._errors import ConfigurationError, GtomError, StoppedError, call_user
from gtom._op import Op
from gtom._options import Options, resolve
from gtom._position import check_timestamp
from gtom._retry import translate
from gtom._segments import DirectReadProgress
from gtom._shards import ShardInfo, shards_from_documents

__all__ = ["SHARD_CLOCK_MARGIN", "AsyncMultiOpCtx", "get_shards", "start_multi_async"]

#: A shard added later is tailed from this many seconds before the config server recorded it,
#: so a shard whose clock runs slightly behind the config server's loses nothing.
SHARD_CLOCK_MARGIN = 1
#: Shards started (or stopped) at once.
_CONCURRENCY = 8

# synchro: async-only
ShardHandler = Callable[[ShardInfo], AsyncMongoClient[Any] | Awaitable[AsyncMongoClient[Any]]]
"""``handler(shard_info) -> client`` for a new shard; a coroutine function is fine too."""
# synchro: end
# synchro: sync-only
# ShardHandler = Callable[[ShardInfo], AsyncMongoClient[Any]]
# """``handler(shard_info) -> client`` for a new shard."""
# synchro: end


async def get_shards(config_client: AsyncMongoClient[Any]) -> list[ShardInfo]:
    """The shards ``config.shards`` lists on the config server (or a mongos) ``config_client``."""
    try:
        documents = await config_client["config"]["shards"].find({}, sort=[("_id", 1)]).to_list()
    except PyMongoError as e:
        raise translate(e, "reading config.shards") from e
    return shards_from_documents(documents)


def _where(client: AsyncMongoClient[Any]) -> str:
    """The servers a client was given, for error messages."""
    addresses = client.topology_description.server_descriptions()
    return ",".join(f"{host}:{port}" for host, port in addresses) or "no servers"


def _labelled(error: GtomError, label: str) -> GtomError:
    """``error`` with ``label`` (which shard) in front of its message; same class."""
    error.args = (f"{label}: {error}", *error.args[1:])
    return error


class AsyncMultiOpCtx(AsyncOpCtx):
    """A context following several shards, with one ``op_c`` and one ``err_c`` for them all.

    Create it with `start_multi_async`. Iteration, `pause`, `resume`, `since` and `stop` act on
    every shard; a fatal error on any shard ends the whole context, as it does a single one.
    """

    def __init__(self, options: Options) -> None:
        """Internal: use `start_multi_async`.

        This context runs no job of its own: it shares its queues with one context per shard.
        """
        super().__init__(options, OpQueue(options.channel_size), OpQueue(ERR_C_SIZE))
        self._shards: list[_DeploymentCtx] = []
        self._starting = 0  # shards being started: the copy is not over while one starts
        self._names: set[str] = set()  # every shard's name (op.shard)
        self._listeners: list[tuple[_DeploymentCtx, Worker]] = []

    # -- shards --------------------------------------------------------------------------------

    async def _add(
        self, client: AsyncMongoClient[Any], options: Options, label: str, name: str
    ) -> None:
        """Start following one more shard (``op.shard`` = ``name``); errors are labelled."""
        if not isinstance(client, AsyncMongoClient):
            raise ConfigurationError(
                f"{label}: each shard needs a pymongo.AsyncMongoClient, got {type(client).__name__}"
            )
        shard = _DeploymentCtx(
            client,
            options,
            shared=(self.op_c, self.err_c),
            on_copied=self._shard_copied,
            shard=name,
        )
        with self._lock:
            if self.stopped:
                raise StoppedError("the context was stopped")
            self._shards.append(shard)
            self._names.add(name)
            self._starting += 1
        try:
            await shard._begin()
        except GtomError as e:
            await self._drop(shard)
            raise _labelled(e, label) from e
        except BaseException:
            await self._drop(shard)
            raise
        finally:
            with self._lock:
                self._starting -= 1
        if self._stopped:  # stopped while this shard started: stop what it started since
            await shard.stop()
        self._shard_copied()

    async def _drop(self, shard: _DeploymentCtx) -> None:
        with self._lock:
            if shard in self._shards:
                self._shards.remove(shard)
        await shard.stop()

    def _shard_copied(self) -> None:
        """A shard finished its direct reads: once all have and nothing tails, the work is done."""
        with self._lock:
            shards = list(self._shards)
            busy = self._starting or self._listeners
        if not busy and shards and all(s.copied and not s.tails() for s in shards):
            self.op_c.close()

    def tails(self) -> bool:
        """Whether any shard tails (or a listener may add one that does)."""
        with self._lock:
            return bool(self._listeners) or any(shard.tails() for shard in self._shards)

    @property
    def copied(self) -> bool:
        """Whether every shard's direct reads have queued their last op."""
        with self._lock:
            return all(shard.copied for shard in self._shards)

    # -- new shards ----------------------------------------------------------------------------

    async def add_shard_listener(
        self,
        config_client: AsyncMongoClient[Any],
        options: Options | None,
        handler: ShardHandler,
        *,
        after: Timestamp | None = None,
    ) -> None:
        """Follow shards added to the cluster from now on, as well as the current ones.

        Tails ``config_client``'s oplog (the config server's replica set) for inserts into
        ``config.shards`` after ``after`` (default: now; pass `gtom.last_op_timestamp` of the
        config server read *before* `get_shards`, so a shard added meanwhile is not missed).
        A shard whose id is already a shard name of this context is not added twice. For each
        new shard, ``handler(shard_info)`` returns the client to follow it with (asyncio
        contexts also take a coroutine function), and the shard is tailed with ``options``
        (None: this context's options) from the moment it was added: from `SHARD_CLOCK_MARGIN`
        seconds before the config server recorded it, or from its oldest oplog entry if that is
        newer. A handler that raises, or a shard that cannot be reached, puts a `GtomError` on
        ``err_c``; the other shards keep running. A copy-only context (``oplog_disabled``)
        takes no listener: it ends once its copies are done.
        """
        if self.options.oplog_disabled:
            raise ConfigurationError(
                "add_shard_listener() needs a context that tails (oplog_disabled is set: the "
                "context ends once its copies are done)"
            )
        if self.stopped:
            raise StoppedError("add_shard_listener() on a context that has ended")
        shard_options = self.options if options is None else resolve(options)
        listen = Options(
            namespace_filter=_is_new_shard,
            include_internal=True,  # config.shards is the config server's own
            channel_size=self.options.channel_size,
        )
        if after is not None:
            since = check_timestamp(after, "add_shard_listener(after=)")
            listen = listen.replace(after=lambda client, options: since)
        listener = _DeploymentCtx(
            config_client, listen, shared=(OpQueue(listen.channel_size), self.err_c)
        )
        try:
            await listener._begin()
        except BaseException as e:
            await listener.stop()
            if isinstance(e, GtomError):
                raise _labelled(e, f"the shard listener on {_where(config_client)}") from e
            raise
        with self._lock:
            if not self._ended():

                async def listen_loop() -> None:
                    await self._listen(listener, shard_options, handler)

                worker = Worker(listen_loop, name="gtom-shard-listener")
                self._listeners.append((listener, worker))
                return
        await listener.stop()  # the context ended while the listener started
        raise StoppedError("add_shard_listener() on a context that has ended")

    def _ended(self) -> bool:
        return self.stopped

    async def _listen(
        self, listener: _DeploymentCtx, options: Options, handler: ShardHandler
    ) -> None:
        seen: set[Any] = set()
        try:
            while True:
                op = await listener.op_c.get()
                try:
                    info = ShardInfo.from_document(op.data or {})
                    with self._lock:
                        known = info.id in seen or str(info.id) in self._names
                    if known:
                        continue
                    seen.add(info.id)
                    added = op.timestamp or Timestamp(0, 0)  # oplog ops always have one
                    await self._add_new_shard(info, added, options, handler)
                except GtomError as e:
                    if self.stopped:
                        return
                    self.err_c.offer(e)
        except StoppedError:
            return  # the listener was stopped
        except GtomError as e:  # its tailer failed (e.g. the config server's history is lost)
            self.op_c.close(_labelled(e, "the shard listener stopped"))

    async def _add_new_shard(
        self, info: ShardInfo, added: Timestamp, options: Options, handler: ShardHandler
    ) -> None:
        label = f"new shard {info.id} ({info.host})"
        client = call_user("the shard handler", handler, info)
        # synchro: async-only
        client = await maybe_await(client)  # an async function may be given here
        # synchro: end
        if not isinstance(client, AsyncMongoClient):
            raise ConfigurationError(
                f"{label}: the shard handler must return a pymongo.AsyncMongoClient, "
                f"got {type(client).__name__}"
            )
        start = Timestamp(max(0, added.time - SHARD_CLOCK_MARGIN), 0)
        if not options.oplog_disabled:
            try:
                oldest = await first_op_timestamp(client, options)
            except GtomError as e:
                raise _labelled(e, label) from e
            if oldest > start:
                start = Timestamp(0, 0)  # its whole oplog is younger: all of it

        def since_added(client: Any, options: Options) -> Timestamp:
            return start

        await self._add(client, options.replace(after=since_added), label, str(info.id))

    # -- control -------------------------------------------------------------------------------

    @property
    def resume_tokens(self) -> dict[str, Mapping[str, Any]]:
        """Change streams are not followed shard by shard: always empty."""
        return {}

    def oplog_positions(self) -> dict[str, Timestamp]:
        """Each shard's oplog position, by shard name (see `AsyncOpCtx.oplog_positions`)."""
        with self._lock:
            shards = list(self._shards)
        positions: dict[str, Timestamp] = {}
        for shard in shards:
            positions.update(shard.oplog_positions())
        return positions

    def since(self, ts: Timestamp) -> None:
        """Restart tailing on every shard just after ``ts`` (see `AsyncOpCtx.since`)."""
        check_timestamp(ts, "since(ts)")
        with self._lock:
            if self.stopped:
                raise StoppedError("since() on a stopped context")
            shards = list(self._shards)
        for shard in shards:
            shard.since(ts)

    async def stop(self) -> None:
        """Stop every shard and listener (idempotent); queued ops can still be iterated."""
        with self._lock:
            self._stopped = True
            shards = list(self._shards)
            listeners = list(self._listeners)
        self.op_c.close()
        self.err_c.close()
        for listener, _ in listeners:
            listener.op_c.close()
        contexts = [*shards, *(listener for listener, _ in listeners)]
        halted = [(ctx, ctx._halt()) for ctx in contexts]  # all at once, then wait for all
        deadline = time.monotonic() + STOP_TIMEOUT
        for _, worker in listeners:
            worker.cancel()
        for ctx, workers in halted:
            await ctx._settle(workers, deadline)
        for _, worker in listeners:
            await worker.join(max(0.0, deadline - time.monotonic()))

    async def wait_for_direct_reads(self, timeout: float | None = None) -> bool:
        """Wait until every shard's direct reads have queued their last op (see `AsyncOpCtx`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                shards = list(self._shards)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            for shard in shards:
                if not await shard.wait_for_direct_reads(left):
                    return False
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
            with self._lock:
                if self._shards == shards:
                    return True

    def direct_read_progress(self) -> dict[str, DirectReadProgress]:
        """Each namespace's progress, summed over the shards."""
        with self._lock:
            shards = list(self._shards)
        total: dict[str, DirectReadProgress] = {}
        for shard in shards:
            for ns, progress in shard.direct_read_progress().items():
                total[ns] = total[ns].combined(progress) if ns in total else progress
        return total

    def direct_read_checkpoint(self) -> dict[str, Any]:
        """Not available shard by shard: resume an unfinished copy through mongos instead."""
        raise ConfigurationError(
            "direct_read_checkpoint() is not available on a multi-shard context"
        )


def _is_new_shard(op: Op) -> bool:
    return op.namespace == "config.shards" and op.is_insert()


async def start_multi_async(
    clients: Sequence[AsyncMongoClient[Any]] | Mapping[str, AsyncMongoClient[Any]],
    options: Options | None = None,
) -> AsyncMultiOpCtx:
    """Start following every shard in ``clients`` (one client per shard) as one context.

    ``clients`` is a list, or a mapping from shard names to clients; each oplog op's ``shard``
    is its shard's name (its index in the list, as a string, for a list).

    ``options`` apply to each shard, ``after`` included (it is called with each shard's
    client). Change streams are shard-aware through mongos: follow them with `start_async`.
    Raises the first shard's `GtomError`, naming the shard, if one cannot be followed.
    """
    options = resolve(options)
    if options.change_stream_ns:
        raise ConfigurationError(
            "change_stream_ns is not for start_multi: change streams follow a sharded cluster "
            "whole through mongos; use gtom.start with a client of the mongos instead"
        )
    if options.direct_read_resume:
        raise ConfigurationError(
            "direct_read_resume is not for start_multi: copy a sharded collection through "
            "mongos to resume it"
        )
    if isinstance(clients, Mapping):
        named = [(str(name), client) for name, client in clients.items()]
    elif isinstance(clients, (list, tuple)):
        named = [(str(i), client) for i, client in enumerate(clients)]
    else:
        raise ConfigurationError(
            f"clients must be a list of pymongo.AsyncMongoClient (one per shard), got {clients!r}"
        )
    if not named:
        raise ConfigurationError("clients is empty: give start_multi at least one shard's client")
    ctx = AsyncMultiOpCtx(options)

    def starter(
        i: int, name: str, client: AsyncMongoClient[Any]
    ) -> Callable[[], Awaitable[BaseException | None]]:
        async def start() -> BaseException | None:
            label = f"shard {i + 1} of {len(named)}"
            if isinstance(client, AsyncMongoClient):
                label += f" ({_where(client)})"
            try:
                await ctx._add(client, options, label, name)
            except Exception as e:  # every shard's start ends before the first error is raised
                return e
            return None

        return start

    gather = Gather(_CONCURRENCY, "gtom-shard-start")
    ctx._starting += 1  # no copy is over before every shard has started
    try:
        jobs = [starter(i, name, client) for i, (name, client) in enumerate(named)]
        errors = await gather.run(jobs)
        error = next((e for e in errors if e is not None), None)
        if error is not None:
            raise error
    except BaseException:  # a shard's error, or the caller gave up (cancelled, interrupted)
        await ctx.stop()
        raise
    finally:
        gather.close(wait=True)
        with ctx._lock:
            ctx._starting -= 1
    ctx._shard_copied()  # a copy that ended while other shards were starting
    return ctx
