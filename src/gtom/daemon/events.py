"""Ops as events: a stable id, and one JSON object per event (relaxed or canonical Extended JSON).

An event's id is ``<seconds>.<increment>:<index>:<namespace>:<key>``:

* ``seconds.increment``: the op's timestamp (the oplog entry's, or the change event's cluster
  time); ``copy`` for a document of a direct read, which has none;
* ``index``: the op's place among the ops sharing that timestamp (its index in a transaction,
  else a count that the checkpoint carries across restarts);
* ``namespace`` and ``key``: the collection, and a 16-hex-digit BLAKE2b digest of the document's
  ``_id`` as BSON (``-`` for commands, which have none; a null ``_id`` has a digest of its own).

The same change always gets the same id, in every run and every process, so it can be used as a
dedupe key (e.g. as ``Nats-Msg-Id``). The JSON has the fields of ``gtom tail``'s lines plus
``event_id`` and ``document_key`` (``{"_id": ...}``, null for commands), written by
`gtom._extjson` exactly as ``bson.json_util`` would write them.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from bson import ObjectId, Timestamp
from bson.binary import UuidRepresentation

from gtom._extjson import ExtendedJSON
from gtom._jsonl import op_document
from gtom._op import Op, Source
from gtom._position import ALL, Position
from gtom.consistent import key_of
from gtom.daemon.sinks.base import Event

__all__ = ["NO_ID", "EventMaker", "event_id", "id_digest"]


NO_ID = object()
"""The ``_id`` of an op that has none (a command), as opposed to a null ``_id``."""


#: ``{"_id": <ObjectId>}`` as BSON, up to the ObjectId's 12 bytes: its length (22), the type
#: (7) and the key.
_OBJECT_ID_KEY = b"\x16\x00\x00\x00\x07_id\x00"
#: The same for an int _id: an int32 (14 bytes in all, type 0x10) or an int64 (18, type 0x12).
_INT32_KEY = b"\x0e\x00\x00\x00\x10_id\x00"
_INT64_KEY = b"\x12\x00\x00\x00\x12_id\x00"
_I32, _I64 = struct.Struct("<i"), struct.Struct("<q")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def id_digest(document_id: Any) -> str:
    """16 hex digits identifying a document ``_id`` (``-`` for `NO_ID`: a command)."""
    cls = document_id.__class__
    if cls is ObjectId:  # the usual _ids: their BSON, as key_of writes it, without encoding
        key = _OBJECT_ID_KEY + document_id.binary + b"\x00"
    elif cls is int and _INT32_MIN <= document_id <= _INT32_MAX:
        key = _INT32_KEY + _I32.pack(document_id) + b"\x00"
    elif cls is int and _INT64_MIN <= document_id <= _INT64_MAX:
        key = _INT64_KEY + _I64.pack(document_id) + b"\x00"
    elif document_id is NO_ID:
        return "-"
    else:
        key = key_of(document_id)
    return hashlib.blake2b(key, digest_size=8).hexdigest()


def event_id(ts: Timestamp | None, index: int, namespace: str, document_id: Any) -> str:
    """The id of the event at ``ts`` with that index, namespace and ``_id`` (see the module).

    ``document_id`` is `NO_ID` for a command.
    """
    position = "copy" if ts is None else f"{ts.time}.{ts.inc}"
    return f"{position}:{index}:{namespace}:{id_digest(document_id)}"


class EventMaker:
    """Turns ops into `Event`s in delivery order, keeping each lane's per-timestamp index.

    `resume` carries a lane's index across restarts: a daemon resumed after ``count`` events at
    ``ts`` numbers the next op at ``ts`` ``count``, as the first run would have.
    """

    def __init__(
        self, *, canonical: bool = False, uuid_representation: int = UuidRepresentation.STANDARD
    ) -> None:
        """Encode relaxed Extended JSON, or canonical if asked; UUIDs as the client decodes them."""
        self.canonical = canonical
        self._dumps = ExtendedJSON(
            canonical=canonical, uuid_representation=uuid_representation
        ).dumps
        # Each lane's position, [ts, seen] as in a `Position` (mutable: one per op would cost).
        self._lanes: dict[str, list[Any]] = {}

    def resume(self, lane: str, position: Position) -> None:
        """Continue ``lane`` after ``position``: its ops up to there were made into events."""
        if position.seen > 0:
            self._lanes[lane] = [position.ts, position.seen]

    def index_at(self, op: Op, lane: str) -> int:
        """The index of ``op`` (the next op of ``lane``), counting it."""
        ts = op.timestamp
        if op.source is Source.DIRECT_READ or ts is None:
            return 0
        last = self._lanes.get(lane)
        if last is None:
            self._lanes[lane] = [ts, 1]
            seen = 1
        elif last[0] == ts:  # Position.passed: one more at ts (ALL stays ALL)
            if last[1] != ALL:
                last[1] += 1
            seen = last[1]
        else:
            last[0], last[1] = ts, 1
            seen = 1
        index = max(0, seen - 1)
        if op.txn is not None and op.source is Source.OPLOG:
            return op.txn.index  # from the oplog entries themselves: the same in every run
        # A change stream's txn index counts the events this process decoded, so after a
        # restart in mid-transaction it would start again at 0: the lane count (which the
        # checkpoint carries across restarts) is the stable one.
        return index

    def make(self, op: Op, lane: str) -> Event:
        """The event of ``op``, the next op of ``lane`` in delivery order."""
        ts = None if op.source is Source.DIRECT_READ else op.timestamp
        key = NO_ID if op.operation == "c" else op.id
        eid = event_id(ts, self.index_at(op, lane), op.namespace, key)
        return Event(
            id=eid,
            namespace=op.namespace,
            operation=op.operation,
            document_id=op.id,
            payload=self.encode(op, eid),
        )

    def encode(self, op: Op, eid: str) -> bytes:
        """The JSON object of ``op`` with id ``eid``."""
        document = {"event_id": eid, **op_document(op)}
        document["document_key"] = None if op.operation == "c" else {"_id": op.id}
        return self._dumps(document)
