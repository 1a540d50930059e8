"""Change stream events -> `Op`s. Pure: no I/O; every shape is tested on fixtures.

`ChangeDecoder` is public (``gtom.ChangeDecoder``): it turns change events read from anywhere
into the ops gtom would deliver, without a server.

The mapping follows the oplog decoder, so a consumer sees the same ops whichever source it uses:
``insert`` -> ``"i"``; ``update`` and ``replace`` -> ``"u"``; ``delete`` -> ``"d"``; ``drop``,
``rename``, ``dropDatabase`` and the DDL events of ``showExpandedEvents`` -> ``"c"`` with the
command document the oplog would hold as ``op.data`` (``{"drop": "coll"}``,
``{"renameCollection": "db.old", "to": "db.new"}``, ``{"dropDatabase": 1}``,
``{"create": "coll", ...}``, ...). ``invalidate`` ends a stream and gives no op: see
`is_invalidate`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeGuard, cast

import bson
from bson import Timestamp
from bson.codec_options import DEFAULT_CODEC_OPTIONS, CodecOptions
from bson.raw_bson import RawBSONDocument

from gtom._errors import CallbackError, DecodeError, call_user
from gtom._op import Op, Source, Txn

_CHANGE_STREAM = Source.CHANGE_STREAM

__all__ = ["ChangeDecoder", "is_invalidate"]

_DOCUMENT_EVENTS = {"insert": "i", "update": "u", "replace": "u", "delete": "d"}
#: Expanded (DDL) events and the command name their ``op.data`` starts with.
_DDL_EVENTS = {
    "create": "create",
    "createIndexes": "createIndexes",
    "dropIndexes": "dropIndexes",
    "modify": "collMod",
}
#: Events that end a stream, or that gtom does not ask for, and that give no op.
_IGNORED_EVENTS = frozenset({"invalidate", "endOfTransaction", "migrateLastChunkFromShard"})
#: Transactions whose events are counted at once (interleaved through mongos).
_TXNS_REMEMBERED = 64
#: Sharding events name the whole namespace, as their commands do.
_SHARDING_EVENTS = ("shardCollection", "reshardCollection", "refineCollectionShardKey")


def is_invalidate(event: Mapping[str, Any]) -> bool:
    """Whether ``event`` ends its stream (the collection or database went away)."""
    return event.get("operationType") == "invalidate"


class ChangeDecoder:
    """Decodes the events of one change stream, in order, into ops (pure, no I/O).

    ``decode(event)`` returns the op of an event, or None (an ``invalidate``, or filtered out).
    ``stream_id`` names the stream (``op.stream_id``); ``namespace_filter`` sees each op before
    its documents are set (operation, namespace, id, timestamp only); ``unmarshal`` fills
    ``op.doc`` from the full document when there is one; ``codec_options`` decodes raw events.
    A transaction's events carry ``op.txn``, numbered in the order this decoder saw them.
    """

    __slots__ = ("_codec", "_ns_filter", "_stream_id", "_txn_counts", "_unmarshal")

    def __init__(
        self,
        stream_id: str,
        *,
        namespace_filter: Callable[[Op], bool] | None = None,
        unmarshal: Callable[[str, RawBSONDocument], Any] | None = None,
        codec_options: CodecOptions[dict[str, Any]] = DEFAULT_CODEC_OPTIONS,
    ) -> None:
        """Create the decoder of the stream named ``stream_id`` (its ``change_stream_ns``)."""
        self._stream_id = stream_id
        self._ns_filter = namespace_filter
        self._unmarshal = unmarshal
        self._codec = codec_options
        self._txn_counts: dict[tuple[bytes, int], int] = {}  # oldest first

    def decode(self, event: Mapping[str, Any]) -> Op | None:
        """The op for ``event``, or None (filtered out, or an ``invalidate``).

        Raises `DecodeError` for an event of unknown shape.
        """
        try:
            return self._decode(event)
        except (DecodeError, CallbackError):
            raise
        except (
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            IndexError,
            OverflowError,
            RecursionError,
            bson.InvalidBSON,
            bson.InvalidDocument,
        ) as e:
            raise DecodeError(f"malformed change event ({type(e).__name__}: {e})", event) from e

    def _decode(self, event: Mapping[str, Any]) -> Op | None:
        if not _is_map(event):
            raise DecodeError(f"a change event must be a document, got {type(event).__name__}")
        kind = event.get("operationType")
        token = event.get("_id")
        if not _is_map(token):
            raise DecodeError("change event has no resume token (_id)", event)
        if not isinstance(kind, str):
            raise DecodeError("change event has no operationType", event)
        if kind in _IGNORED_EVENTS:
            return None
        ts = event.get("clusterTime")
        if ts is not None and not isinstance(ts, Timestamp):
            raise DecodeError(f"change event has a bad clusterTime: {ts!r}", event)
        wall = event.get("wallTime")
        ns = event.get("ns")
        if not _is_map(ns) or ns.get("db").__class__ is not str:
            raise DecodeError("change event has no valid ns", event)
        db, coll = ns["db"], ns.get("coll")
        if coll is not None and coll.__class__ is not str:
            raise DecodeError("change event has a bad ns.coll", event)
        # Positional (a third of the keyword call's cost): operation, namespace, id, data,
        # timestamp, source, update_description, doc, txn, resume_token, stream_id, wall;
        # tests/test_decode_oplog.py pins the order.
        op = Op(
            "c",
            f"{db}.{coll}" if coll else f"{db}.$cmd",
            None,
            None,
            ts,
            _CHANGE_STREAM,
            None,
            None,
            None if event.get("lsid") is None else self._txn(event),
            token,
            self._stream_id,
            wall if wall.__class__ is datetime or isinstance(wall, datetime) else None,
        )
        operation = _DOCUMENT_EVENTS.get(kind)
        if operation is not None:
            key = event.get("documentKey")
            if not _is_map(key) or "_id" not in key or not coll:
                raise DecodeError(f"{kind} event has no documentKey._id or collection", event)
            op.operation, op.id = operation, self._dict(key)["_id"]
            if not self._keep(op):
                return None
            self._documents(op, event, kind)
            return op
        command = self._command(kind, event, db, coll)
        if not self._keep(op):
            return None
        op.data = command
        return op

    def _command(
        self, kind: str, event: Mapping[str, Any], db: str, coll: str | None
    ) -> dict[str, Any]:
        description = event.get("operationDescription") or {}
        if not isinstance(description, Mapping):
            raise DecodeError("operationDescription must be a document", event)
        description = self._dict(description)
        if kind == "dropDatabase":
            return {"dropDatabase": 1}
        if not coll:
            raise DecodeError(f"{kind} event has no collection", event)
        if kind == "drop":
            return {"drop": coll}
        if kind == "rename":
            to = event.get("to") or description.get("to")
            if not isinstance(to, Mapping) or "db" not in to or "coll" not in to:
                raise DecodeError("rename event has no target namespace", event)
            command: dict[str, Any] = {
                "renameCollection": f"{db}.{coll}",
                "to": f"{to['db']}.{to['coll']}",
            }
            if description.get("dropTarget") is not None:
                command["dropTarget"] = description["dropTarget"]
            return command
        if kind in _DDL_EVENTS:
            return {_DDL_EVENTS[kind]: coll, **description}
        if kind in _SHARDING_EVENTS:
            return {kind: f"{db}.{coll}", **description}
        raise DecodeError(f"unknown change event type {kind!r}", event)

    def _documents(self, op: Op, event: Mapping[str, Any], kind: str) -> None:
        full = event.get("fullDocument")
        if _is_map(full):
            op.data = self._dict(full)
            if self._unmarshal is not None:
                raw = full if isinstance(full, RawBSONDocument) else _to_raw(full)
                op.doc = call_user("unmarshal", self._unmarshal, op.namespace, raw)
        elif full is not None:
            raise DecodeError("fullDocument must be a document or null", event)
        before = event.get("fullDocumentBeforeChange")
        if before is not None and _is_map(before):
            op.before = self._dict(before)
        if kind == "update":
            description = event.get("updateDescription")
            if not isinstance(description, Mapping):
                raise DecodeError("update event has no updateDescription", event)
            op.update_description = _normalised(self._dict(description), event)

    def _keep(self, op: Op) -> bool:
        return self._ns_filter is None or bool(call_user("namespace_filter", self._ns_filter, op))

    def _txn(self, event: Mapping[str, Any]) -> Txn | None:
        """The transaction of an event; its index counts the events of that transaction so far."""
        lsid = event.get("lsid")
        number = event.get("txnNumber")
        if not isinstance(lsid, Mapping) or not isinstance(number, int):
            return None
        plain_lsid = self._dict(lsid)
        key = (bson.encode(plain_lsid), int(number))
        # Through mongos, events of transactions on different shards can interleave: count per
        # transaction, remembering the most recent ones.
        index = self._txn_counts.pop(key, -1) + 1
        self._txn_counts[key] = index
        if len(self._txn_counts) > _TXNS_REMEMBERED:
            del self._txn_counts[next(iter(self._txn_counts))]
        return Txn(plain_lsid, int(number), index)

    def _dict(self, value: Mapping[str, Any]) -> dict[str, Any]:
        if value.__class__ is dict:
            return cast("dict[str, Any]", value)
        if isinstance(value, RawBSONDocument):
            return bson.decode(value.raw, self._codec)
        return value if isinstance(value, dict) else dict(value)


def _is_map(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, at once for a dict (the usual case)."""
    return value.__class__ is dict or isinstance(value, Mapping)


def _normalised(description: Mapping[str, Any], event: Mapping[str, Any]) -> dict[str, Any]:
    """An ``updateDescription`` with all three keys, and ``disambiguatedPaths`` if sent.

    Servers before 5.0 send no ``truncatedArrays``.
    """
    updated = description.get("updatedFields", {})
    removed = description.get("removedFields", [])
    truncated = description.get("truncatedArrays", [])
    if not isinstance(updated, Mapping) or not isinstance(removed, list):
        raise DecodeError("updateDescription has bad updatedFields or removedFields", event)
    if not isinstance(truncated, list):
        raise DecodeError("updateDescription has bad truncatedArrays", event)
    out = {
        "updatedFields": updated if isinstance(updated, dict) else dict(updated),
        "removedFields": removed,
        "truncatedArrays": truncated,
    }
    paths = description.get("disambiguatedPaths")
    if paths is not None:
        if not isinstance(paths, Mapping):
            raise DecodeError("updateDescription has bad disambiguatedPaths", event)
        out["disambiguatedPaths"] = paths
    return out


def _to_raw(value: Mapping[str, Any]) -> RawBSONDocument:
    return RawBSONDocument(bson.encode(value))
