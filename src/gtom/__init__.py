"""gtom: follow a MongoDB deployment's changes as a stream of `Op` events.

>>> import gtom
>>> ctx = gtom.start(client)            # a pymongo.MongoClient of a replica set
>>> for op in ctx:                       # blocks; ends after ctx.stop()
...     print(op.operation, op.namespace, op.id, op.data)

``gtom.start_async`` does the same for a ``pymongo.AsyncMongoClient`` (``async for``). Both faces
run the same engine, over the caller's own client.
"""

from __future__ import annotations

from typing import Any

from bson import Timestamp
from pymongo import AsyncMongoClient, MongoClient

from gtom import consistent
from gtom._async import multi as _async_multi
from gtom._async import oplog_source as _async_oplog
from gtom._async.ctx import AsyncOpCtx, start_async
from gtom._async.multi import AsyncMultiOpCtx, start_multi_async
from gtom._async.queue import OpQueue as AsyncOpQueue
from gtom._decode_change import ChangeDecoder
from gtom._decode_oplog import OplogDecoder
from gtom._errors import (
    AuthenticationFailedError,
    CallbackError,
    ConfigurationError,
    DecodeError,
    GtomError,
    HistoryLostError,
    IncompleteChainError,
    NotAuthorizedError,
    NotReplicaSetError,
    ServerError,
    ServerUnavailableError,
    StoppedError,
)
from gtom._op import Op, OpFilter, Source, Txn, chain_op_filters
from gtom._options import Options
from gtom._segments import DirectReadProgress
from gtom._shards import ShardInfo
from gtom._sync import multi as _sync_multi
from gtom._sync import oplog_source as _sync_oplog
from gtom._sync.ctx import OpCtx, start
from gtom._sync.multi import MultiOpCtx, start_multi
from gtom._sync.queue import OpQueue

__version__ = "0.1.0"

__all__ = [
    "AsyncMultiOpCtx",
    "AsyncOpCtx",
    "AsyncOpQueue",
    "AuthenticationFailedError",
    "CallbackError",
    "ChangeDecoder",
    "ConfigurationError",
    "DecodeError",
    "DirectReadProgress",
    "GtomError",
    "HistoryLostError",
    "IncompleteChainError",
    "MultiOpCtx",
    "NotAuthorizedError",
    "NotReplicaSetError",
    "Op",
    "OpCtx",
    "OpFilter",
    "OpQueue",
    "OplogDecoder",
    "Options",
    "ServerError",
    "ServerUnavailableError",
    "ShardInfo",
    "Source",
    "StoppedError",
    "Txn",
    "__version__",
    "chain_op_filters",
    "consistent",
    "first_op_timestamp",
    "first_op_timestamp_async",
    "get_shards",
    "get_shards_async",
    "last_op_timestamp",
    "last_op_timestamp_async",
    "start",
    "start_async",
    "start_multi",
    "start_multi_async",
]


def _sync_client(client: Any, function: str) -> MongoClient[Any]:
    if isinstance(client, AsyncMongoClient):
        raise ConfigurationError(
            f"{function}() takes a pymongo.MongoClient; for an AsyncMongoClient use "
            f"{function}_async()"
        )
    return client  # type: ignore[no-any-return]


def last_op_timestamp(client: MongoClient[Any], options: Options | None = None) -> Timestamp:
    """The timestamp of the newest oplog entry ("now" for tailing)."""
    return _sync_oplog.last_op_timestamp(_sync_client(client, "last_op_timestamp"), options)


async def last_op_timestamp_async(
    client: AsyncMongoClient[Any], options: Options | None = None
) -> Timestamp:
    """The timestamp of the newest oplog entry, through an ``AsyncMongoClient``."""
    return await _async_oplog.last_op_timestamp(client, options)


def first_op_timestamp(client: MongoClient[Any], options: Options | None = None) -> Timestamp:
    """The timestamp of the oldest oplog entry still kept (how far back tailing can start)."""
    return _sync_oplog.first_op_timestamp(_sync_client(client, "first_op_timestamp"), options)


async def first_op_timestamp_async(
    client: AsyncMongoClient[Any], options: Options | None = None
) -> Timestamp:
    """The timestamp of the oldest oplog entry still kept, through an ``AsyncMongoClient``."""
    return await _async_oplog.first_op_timestamp(client, options)


def get_shards(config_client: MongoClient[Any]) -> list[ShardInfo]:
    """The shards listed in ``config.shards`` (read through a config server or a mongos client).

    Give each shard's `ShardInfo.get_url` to a client, and the clients to `start_multi`.
    """
    return _sync_multi.get_shards(_sync_client(config_client, "get_shards"))


async def get_shards_async(config_client: AsyncMongoClient[Any]) -> list[ShardInfo]:
    """The shards listed in ``config.shards``, through an ``AsyncMongoClient``."""
    return await _async_multi.get_shards(config_client)
