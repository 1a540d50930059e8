"""gtom: follow a MongoDB deployment's changes as a stream of `Op` events.

>>> import gtom
>>> ctx = gtom.start(client)            # a pymongo.MongoClient of a replica set
>>> for op in ctx:                       # blocks; ends after ctx.stop()
...     print(op.operation, op.namespace, op.id, op.data)

``gtom.start_async`` does the same for a ``pymongo.AsyncMongoClient`` (``async for``). Both faces
run the same engine, over the caller's own client.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, overload

from bson import Timestamp
from pymongo import AsyncMongoClient, MongoClient

from gtom import consistent
from gtom._async import multi as _async_multi
from gtom._async import oplog as _async_oplog
from gtom._async._compat import OpQueue as AsyncOpQueue
from gtom._async.ctx import AsyncOpCtx, start_async
from gtom._async.multi import AsyncMultiOpCtx, start_multi_async
from gtom._decode_change import ChangeDecoder
from gtom._decode_oplog import IncompleteChainError, OplogDecoder
from gtom._errors import (
    AuthenticationFailedError,
    CallbackError,
    ConfigurationError,
    DecodeError,
    GtomError,
    HistoryLostError,
    NotAuthorizedError,
    NotReplicaSetError,
    ServerError,
    ServerUnavailableError,
    StoppedError,
)
from gtom._op import Op, OpFilter, Ordering, Source, Txn, chain_op_filters
from gtom._options import Options
from gtom._segments import DirectReadProgress
from gtom._shards import ShardInfo
from gtom._sync import multi as _sync_multi
from gtom._sync import oplog as _sync_oplog
from gtom._sync._compat import OpQueue
from gtom._sync.ctx import OpCtx, start
from gtom._sync.multi import MultiOpCtx, start_multi

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
    "Ordering",
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
    "get_shards",
    "last_op_timestamp",
    "start",
    "start_async",
    "start_multi",
    "start_multi_async",
]


@overload
def last_op_timestamp(client: MongoClient[Any], options: Options | None = None) -> Timestamp: ...
@overload
def last_op_timestamp(
    client: AsyncMongoClient[Any], options: Options | None = None
) -> Coroutine[Any, Any, Timestamp]: ...
def last_op_timestamp(
    client: MongoClient[Any] | AsyncMongoClient[Any], options: Options | None = None
) -> Timestamp | Coroutine[Any, Any, Timestamp]:
    """The timestamp of the newest oplog entry; a coroutine for an ``AsyncMongoClient``."""
    if isinstance(client, AsyncMongoClient):
        return _async_oplog.last_op_timestamp(client, options)
    return _sync_oplog.last_op_timestamp(client, options)


@overload
def first_op_timestamp(client: MongoClient[Any], options: Options | None = None) -> Timestamp: ...
@overload
def first_op_timestamp(
    client: AsyncMongoClient[Any], options: Options | None = None
) -> Coroutine[Any, Any, Timestamp]: ...
def first_op_timestamp(
    client: MongoClient[Any] | AsyncMongoClient[Any], options: Options | None = None
) -> Timestamp | Coroutine[Any, Any, Timestamp]:
    """The timestamp of the oldest oplog entry kept; a coroutine for an ``AsyncMongoClient``."""
    if isinstance(client, AsyncMongoClient):
        return _async_oplog.first_op_timestamp(client, options)
    return _sync_oplog.first_op_timestamp(client, options)


@overload
def get_shards(config_client: MongoClient[Any]) -> list[ShardInfo]: ...
@overload
def get_shards(config_client: AsyncMongoClient[Any]) -> Coroutine[Any, Any, list[ShardInfo]]: ...
def get_shards(
    config_client: MongoClient[Any] | AsyncMongoClient[Any],
) -> list[ShardInfo] | Coroutine[Any, Any, list[ShardInfo]]:
    """The shards listed in ``config.shards`` (read through a config server or a mongos client).

    Give each shard's `ShardInfo.get_url` to a client, and the clients to `start_multi`. A
    coroutine for an ``AsyncMongoClient``.
    """
    if isinstance(config_client, AsyncMongoClient):
        return _async_multi.get_shards(config_client)
    return _sync_multi.get_shards(config_client)
