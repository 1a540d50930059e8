# Generated from src/gtom/_async/oplog_source.py by tools/synchro.py. Edit that one.
"""The oplog as a source: its collection and cursor, the server's kind, its two ends.

Used by the tailer (`gtom._sync.oplog`), the contexts and the public helpers
``last_op_timestamp`` / ``first_op_timestamp``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import Timestamp
from bson.codec_options import CodecOptions
from pymongo import MongoClient
from pymongo.errors import PyMongoError
from pymongo.synchronous.collection import Collection
from pymongo.synchronous.cursor import Cursor

from gtom._batch_reply import split_batch
from gtom._errors import DecodeError, NotReplicaSetError
from gtom._extjson import read_codec_options
from gtom._options import DEFAULT_OPLOG_COLLECTION, DEFAULT_OPLOG_DATABASE, Options
from gtom._retry import translate
from gtom._servers import MONGOD, ServerTraits

__all__ = [
    "BATCH_SIZE",
    "MAX_AWAIT_MS",
    "UNREAD_FIELDS",
    "OplogCursor",
    "check_oplog_source",
    "dict_codec",
    "edge_timestamp",
    "first_op_timestamp",
    "last_op_timestamp",
    "oplog_collection",
    "oplog_name",
    "server_traits",
]

#: How long one ``getMore`` may wait for new entries. Short, so a stopped sync face ends quickly.
MAX_AWAIT_MS = 500
#: Entries per batch: small enough that reading the next batch overlaps delivering this one.
BATCH_SIZE = 1000
#: Fields of an oplog entry gtom never reads, left on the server: ``ui`` (the collection's UUID)
#: alone costs about a quarter of decoding an insert's entry.
UNREAD_FIELDS = {"ui": 0}

Client = MongoClient[Any]


class OplogCursor(Cursor[dict[str, Any]]):
    """A cursor whose batches stay BSON until the tailer decodes them.

    pymongo decodes a reply as it arrives, before the next ``getMore`` can be sent. This cursor
    leaves the batch's documents as the BSON of their array (`gtom._batch_reply`), so the tailer
    sends the next ``getMore`` first and decodes while the server works on it. Each "document"
    of its batches is one such array (`_read` / `_decode_batch`).
    """

    def _unpack_response(
        self,
        response: Any,
        cursor_id: int | None,
        codec_options: Any,
        user_fields: Mapping[str, Any] | None = None,
        legacy_response: bool = False,
    ) -> Any:
        split = None if legacy_response else split_batch(response.payload_document)
        if split is None:  # an error, or a shape not seen before: pymongo's own way
            return super()._unpack_response(
                response, cursor_id, codec_options, user_fields, legacy_response
            )
        return [split]


def dict_codec(client: Client) -> CodecOptions[dict[str, Any]]:
    """The client's codec options (timezone, UUIDs, ...), decoding documents into dicts.

    A date out of Python's range becomes a `bson.DatetimeMS` rather than an error.
    """
    return read_codec_options(client.codec_options)


def oplog_collection(client: Client, options: Options) -> Collection[dict[str, Any]]:
    """The oplog collection, decoding with the client's codec options into dicts."""
    return client[options.oplog_database_name].get_collection(
        options.oplog_collection_name, codec_options=dict_codec(client)
    )


def oplog_name(options: Options) -> str:
    return f"{options.oplog_database_name}.{options.oplog_collection_name}"


def check_oplog_source(client: Client, options: Options) -> None:
    """Raise a clear `ServerError` unless the server answers and keeps an oplog."""
    try:
        hello = client.admin.command("hello")
    except PyMongoError as e:
        raise translate(e, "connecting") from e
    if (options.oplog_database_name, options.oplog_collection_name) != (
        DEFAULT_OPLOG_DATABASE,
        DEFAULT_OPLOG_COLLECTION,
    ):
        return  # a custom capped collection: nothing to say about the topology
    if hello.get("msg") == "isdbgrid":
        raise NotReplicaSetError(
            "connected to a mongos router, which has no oplog: follow a sharded cluster with "
            "change streams (Options(change_stream_ns=...)) or tail each shard with start_multi"
        )
    if not hello.get("setName"):
        raise NotReplicaSetError(
            "the server is not a replica set member, so it keeps no oplog: run it as a replica "
            "set (a single member is enough: start mongod with --replSet and run rs.initiate()) "
            "or disable oplog tailing"
        )


def edge_timestamp(
    oplog: Collection[dict[str, Any]], direction: int, traits: ServerTraits = MONGOD
) -> Timestamp:
    """The timestamp of the oldest (1) or newest (-1) entry; pymongo's errors pass through."""
    key = "$natural" if traits.natural_sort else "ts"
    entry = oplog.find_one({}, sort=[(key, direction)], projection={"ts": 1})
    if entry is None:
        raise NotReplicaSetError(
            f"{oplog.full_name} is missing or empty: the server keeps no oplog there"
        )
    ts = entry.get("ts")
    if not isinstance(ts, Timestamp):
        raise DecodeError(f"an entry of {oplog.full_name} has no timestamp", entry)
    return ts


def _public_edge(client: Client, options: Options | None, direction: int) -> Timestamp:
    options = options or Options()
    traits = server_traits(client)
    try:
        return edge_timestamp(oplog_collection(client, options), direction, traits)
    except PyMongoError as e:
        raise translate(e, f"reading {oplog_name(options)}") from e


def server_traits(client: Client) -> ServerTraits:
    """What the server needs worked around, from its ``buildInfo``."""
    try:
        build_info = client.admin.command("buildInfo")
    except PyMongoError as e:
        raise translate(e, "connecting") from e
    return ServerTraits.from_build_info(build_info)


def last_op_timestamp(client: Client, options: Options | None = None) -> Timestamp:
    """The timestamp of the newest oplog entry ("now" for tailing)."""
    return _public_edge(client, options, -1)


def first_op_timestamp(client: Client, options: Options | None = None) -> Timestamp:
    """The timestamp of the oldest oplog entry still kept (how far back tailing can start)."""
    return _public_edge(client, options, 1)
