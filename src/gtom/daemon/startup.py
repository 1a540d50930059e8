"""Where a run of the daemon starts: the library context it follows, planned from the checkpoint.

A run resumes every lane from the checkpoint: the oplog (each shard's with ``shards_from``) just
before its position, each change stream after its resume token, each unfinished copy from its
segment positions. A first run (no checkpoint) takes its start — ``source.after``, or the
server's time now — and saves it *before* anything is read, so even a crash before the first
delivery loses nothing. Three modes: the oplog of one deployment, change streams (also through
``mongos``), or every shard's oplog (``shards_from``); each with the copies of ``direct_read``,
or copies alone (``no_tail``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bson import Timestamp
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

import gtom
from gtom._async.oplog_source import check_oplog_source
from gtom._namespaces import parse_position, tail_filter
from gtom._position import Position
from gtom._redact import redact
from gtom._retry import translate
from gtom.daemon import exits
from gtom.daemon.checkpoint import Checkpoint
from gtom.daemon.config import Config
from gtom.daemon.errors import ConfigError, UnknownNamespaceError
from gtom.daemon.events import EventMaker
from gtom.daemon.positions import Skipper

__all__ = ["Started", "Startup", "parse_after"]

log = logging.getLogger("gtom.daemon")

#: Databases whose collections are never copied again by a resnapshot.
_SYSTEM_DATABASES = frozenset({"admin", "config", "local"})

OpenClient = Callable[[str, str], AsyncMongoClient[Any]]
"""``open_client(uri, what) -> client``: a client the run owns (``what`` names it in errors)."""


def parse_after(text: str) -> Timestamp | None:
    """``source.after``: ``now`` (None), ``oldest`` (Timestamp(0, 0)) or ``SECONDS[.INCREMENT]``."""
    try:
        return parse_position(text)
    except ValueError as e:
        raise ConfigError(f"bad value for source.after: {e}", exits.BAD_VALUE) from None


@dataclass
class Started:
    """What a start gives the run."""

    ctx: gtom.AsyncOpCtx | None
    """The context to read from (None: every copy was complete already, nothing to do)."""
    copies: list[str]
    """The copies this run makes (not yet confirmed complete)."""
    maker: EventMaker
    """Numbers events on from where the checkpoint left each lane."""
    skipper: Skipper
    """Drops the ops the checkpoint says were delivered."""


class Startup:
    """Plans and starts the library context of a run (see the module)."""

    def __init__(
        self,
        config: Config,
        client: AsyncMongoClient[Any],
        open_client: OpenClient,
        save: Callable[[Checkpoint], Awaitable[None]],
    ) -> None:
        """Start through ``client`` (of ``source.uri``; the config server's with shards_from).

        ``open_client`` opens the shards' clients; ``save`` saves the checkpoint (a first run's
        start is saved before anything is read).
        """
        self.config = config
        self.client = client
        self._open_client = open_client
        self._save = save
        self.first: Timestamp | None = None
        """A cluster's first start: when its first member came up (a first run starts there)."""

    async def check_namespaces(self) -> None:
        """Every ``direct_read`` collection must exist (a typo would copy nothing)."""
        for ns in self.config.source.direct_read:
            database, _, collection = ns.partition(".")
            try:
                names = await self.client[database].list_collection_names()
            except PyMongoError as e:
                raise translate(e, f"listing the collections of {database}") from e
            if collection not in names:
                have = ", ".join(sorted(names)[:10]) or "no collections"
                raise UnknownNamespaceError(
                    f"unknown namespace {ns} (source.direct_read): database {database} has {have}"
                )

    async def start(self, checkpoint: Checkpoint, *, fresh: bool) -> Started:
        """Start following from ``checkpoint`` (a first run, ``fresh``: from now or after)."""
        config = self.config
        source = config.source
        cp = checkpoint
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
        copies = [ns for ns in wanted if ns not in cp.copies_done]
        resume = {ns: at for ns, at in cp.copies.items() if ns in copies}
        options = options.replace(direct_read_ns=list(copies), direct_read_resume=resume)
        maker, skipper = self._numbering(cp), Skipper(cp)
        if source.no_tail and not copies:
            log.info("every direct read is complete already: nothing to do")
            return Started(None, copies, maker, skipper)
        ctx = await self._start(options, cp, fresh=fresh)
        return Started(ctx, copies, maker, skipper)

    async def _start(
        self, options: gtom.Options, cp: Checkpoint, *, fresh: bool
    ) -> gtom.AsyncOpCtx:
        source = self.config.source
        if source.shards_from:  # copies too: each shard holds its part of a collection
            return await self._start_shards(options, cp, fresh=fresh)
        if source.no_tail:
            return await gtom.start_async(self.client, options.replace(oplog_disabled=True))
        if source.change_streams:
            if fresh:
                cp.start = await self._now_or_after(streams=True)
                await self._save(cp)
            tokens = {sid: s.token for sid, s in cp.streams.items() if s.token is not None}
            start = cp.start
            options = options.replace(
                oplog_disabled=True,
                change_stream_ns=list(source.namespaces) or [""],
                resume_tokens=tokens,
                after=None if start is None else (lambda client, options: start),
            )
            return await gtom.start_async(self.client, options)
        if fresh:
            cp.start = await self._now_or_after(streams=False)
            cp.oplog = Position(cp.start)
            await self._save(cp)
        after = (cp.oplog or Position(cp.start or Timestamp(0, 0))).tail_after()
        options = options.replace(
            namespace_filter=tail_filter(source.namespaces),
            after=lambda client, options: after,
        )
        return await gtom.start_async(self.client, options)

    async def _start_shards(
        self, options: gtom.Options, cp: Checkpoint, *, fresh: bool
    ) -> gtom.AsyncOpCtx:
        source = self.config.source
        assert source.shards_from is not None
        listen_after: Timestamp | None = None
        try:  # before reading config.shards: a shard added meanwhile is not missed
            listen_after = await gtom.last_op_timestamp_async(self.client)
        except gtom.GtomError as e:
            log.warning("shards added later will not be followed: %s", e)
        shards = await gtom.get_shards_async(self.client)
        if not shards:
            raise ConfigError(
                f"config.shards of {redact(source.shards_from)} lists no shard", exits.BAD_VALUE
            )
        if source.shard is not None:  # this process follows one shard only
            mine = [info for info in shards if str(info.id) == source.shard]
            if not mine:
                have = ", ".join(str(info.id) for info in shards)
                raise ConfigError(
                    f"source.shard {source.shard!r} is not in config.shards of "
                    f"{redact(source.shards_from)} (it lists {have})",
                    exits.BAD_VALUE,
                )
            shards, listen_after = mine, None  # new shards are other processes' to follow
        clients = {str(info.id): self._open_shard(info) for info in shards}
        if fresh:
            for name, client in clients.items():
                start = parse_after(source.after)
                if start is None:
                    start = await gtom.last_op_timestamp_async(client)
                cp.shards[name] = Position(start)
            cp.start = min(position.ts for position in cp.shards.values())
            await self._save(cp)
        by_client = {id(client): name for name, client in clients.items()}

        async def after(client: Any, options: gtom.Options) -> Timestamp:
            position = cp.shards.get(by_client.get(id(client), ""))
            if position is not None:
                return position.tail_after()
            # A shard without a position joined after the first run started: from that start,
            # or all of its oplog if that is younger (as the shard listener does).
            start = cp.start or Timestamp(0, 0)
            oldest = await gtom.first_op_timestamp_async(client, options)
            return Timestamp(0, 0) if oldest > start else start

        options = options.replace(namespace_filter=tail_filter(source.namespaces), after=after)
        if source.no_tail:
            options = options.replace(oplog_disabled=True)
        ctx = await gtom.start_multi_async(clients, options)
        if listen_after is not None and not source.no_tail:
            try:
                await ctx.add_shard_listener(
                    self.client, None, self._open_shard, after=listen_after
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

    async def first_start(self) -> Timestamp | None:
        """Where a first run would start now (None with ``shards_from``: one per shard)."""
        if self.config.source.shards_from:
            return None
        return await self._now_or_after(streams=self.config.source.change_streams)

    async def _now_or_after(self, *, streams: bool) -> Timestamp:
        """Where a first run starts: ``source.after``, a cluster's first start, or now."""
        start = parse_after(self.config.source.after)
        if start is not None:
            return start
        if self.first is not None:
            return self.first
        if not streams:
            await check_oplog_source(self.client, gtom.Options())  # a clear error first
            return await gtom.last_op_timestamp_async(self.client)
        try:
            reply = await self.client.admin.command("ping")
        except PyMongoError as e:
            raise translate(e, "connecting") from e
        now = reply.get("operationTime") or reply.get("$clusterTime", {}).get("clusterTime")
        if not isinstance(now, Timestamp):
            raise gtom.NotReplicaSetError(
                "the server reports no cluster time, so it has no change streams: connect to "
                "a replica set or a mongos"
            )
        return now

    def _numbering(self, cp: Checkpoint) -> EventMaker:
        """An event maker numbering each lane on from where ``cp`` left it."""
        maker = EventMaker(
            canonical=self.config.delivery.format == "canonical",
            uuid_representation=self.client.codec_options.uuid_representation,
        )
        if cp.oplog is not None:
            maker.resume("oplog", cp.oplog)
        for shard, position in cp.shards.items():
            maker.resume(f"shard:{shard}", position)
        for sid, stream in cp.streams.items():
            if stream.mark is not None:
                maker.resume(f"stream:{sid}", stream.mark)
        return maker

    async def followed_collections(self) -> list[str]:
        """Every collection the run follows (to copy again after lost history)."""
        source = self.config.source
        found = set(source.direct_read)
        try:
            databases = {ns.partition(".")[0] for ns in source.namespaces if "." not in ns}
            found |= {ns for ns in source.namespaces if "." in ns}
            if not source.namespaces:
                databases = set(await self.client.list_database_names()) - _SYSTEM_DATABASES
            for database in databases:
                names = await self.client[database].list_collection_names(
                    filter={"type": "collection"}
                )
                found |= {f"{database}.{n}" for n in names if not n.startswith("system.")}
        except PyMongoError as e:
            raise translate(e, "listing the collections to copy again") from e
        return sorted(found)
