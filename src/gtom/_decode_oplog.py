"""Oplog entries -> `Op`s. Pure: no I/O, no clock; every shape is tested on fixtures.

`OplogDecoder` is public (``gtom.OplogDecoder``): it turns oplog entries read from anywhere (a
file, a queue, a backup) into the ops gtom would deliver, without a server. Shapes understood
(``tests/fixtures/oplog/`` and ``tests/fixtures/corpus/`` hold real examples and where they come
from):

* ``i`` insert, ``d`` delete, ``n`` no-op (no op, but it is still a position), and the internal
  ``xi``/``xd``/``ci``/``cu`` entries of newer servers (no op either);
* ``u`` update as ``$v:1`` (``$set``/``$unset``, also without ``$v`` before 3.6), as mongod's
  ``$v:2`` diff (``u``/``i``/``b``/``d``/``s<field>`` sections, array diffs with ``a``/``l``/
  ``u<n>``/``s<n>``), as the change-event shaped ``$v:2`` diff SecantusDB writes
  (``updatedFields``/``removedFields``/``truncatedArrays``), or as a whole replacement;
* ``c`` commands: DDL (create, drop, dropDatabase, renameCollection, collMod, indexes, ...)
  become ops; ``applyOps`` is unrolled into one op per inner write, including 4.2+
  ``partialTxn`` chains and prepared transactions (``prepare`` + ``commitTransaction``), which
  are held back until their commit and linked through ``prevOpTime``; 8.0's vectored inserts
  (``applyOps`` with ``multiOpType: 1``) each stand alone, whatever their ``prevOpTime`` says;
* writes to ``<db>.system.views`` become the view's ``create``/``collMod``/``drop`` (as in
  change streams), and inserts into ``<db>.system.indexes`` (index builds before 3.4) become
  ``createIndexes``.

Internal namespaces (`gtom._namespaces.is_internal`) give no op unless ``include_internal``.

**The transaction chain contract.** Feed entries in oplog order. The entries of a transaction
that come before its commit are held inside the decoder until the commit arrives, then come out
together. A commit whose earlier entries this decoder never saw (reading started in the middle
of a chain) raises `IncompleteChainError` naming the missing entry's timestamp: fetch that entry
(e.g. ``find_one({"ts": error.ts})`` on the oplog), give it to `OplogDecoder.remember`, and call
`OplogDecoder.decode` with the commit again; repeat until it returns. Nothing is lost or
repeated meanwhile: the failed call changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeGuard, cast

import bson
from bson import Timestamp
from bson.codec_options import DEFAULT_CODEC_OPTIONS, CodecOptions
from bson.raw_bson import RawBSONDocument

from gtom._errors import CallbackError, DecodeError, IncompleteChainError, call_user
from gtom._namespaces import is_internal
from gtom._op import Op, Source, Txn
from gtom._update_diff import update_description

__all__ = ["IncompleteChainError", "OplogDecoder"]

#: Operation letters newer servers use for internal bookkeeping (global index keys, containers):
#: no user document changes, so no op.
_INTERNAL_OPS = frozenset({"xi", "xd", "ci", "cu"})
#: Commands that are index-build bookkeeping, not changes: the build's completion
#: (``commitIndexBuild``, or ``createIndexes`` on an empty collection) is the change.
_SKIPPED_COMMANDS = frozenset({"startIndexBuild", "abortIndexBuild"})
#: ``multiOpType`` of an ``applyOps`` whose writes apply on their own (8.0's vectored inserts):
#: never part of a transaction chain, whatever its ``prevOpTime`` says.
_APPLIED_SEPARATELY = 1
#: Commands whose value is the name of the collection they act on.
_COLLECTION_COMMANDS = frozenset(
    {
        "create",
        "drop",
        "collMod",
        "createIndexes",
        "commitIndexBuild",
        "dropIndexes",
        "deleteIndexes",
        "emptycapped",
        "convertToCapped",
    }
)
_NULL_TS = Timestamp(0, 0)
_OPLOG = Source.OPLOG
#: Where a namespace is: user data, internal (skipped unless asked), a database's views or its
#: pre-3.4 index catalog (both read as DDL). Remembered per namespace, up to _PLACES_KEPT.
_USER, _INTERNAL, _VIEWS, _INDEXES = object(), object(), object(), object()
_PLACES_KEPT = 10_000
_LEGACY_INDEXES = ".system.indexes"
_SYSTEM_VIEWS = ".system.views"

NamespaceFilter = Callable[[Op], bool]
Unmarshal = Callable[[str, RawBSONDocument], Any]


class OplogDecoder:
    """Decodes oplog entries, given in oplog order, into the ops gtom delivers (pure, no I/O).

    ``decode(entry)`` returns the ops an entry makes visible (often one; none for no-ops, for
    internal namespaces, for filtered-out ops and for transaction entries held until their
    commit); see the module docstring for the transaction chain contract. Entries may be dicts
    or `bson.raw_bson.RawBSONDocument`s.

    ``namespace_filter`` sees each op before its document is decoded (only operation, namespace,
    id and timestamp are set); ``unmarshal`` fills ``op.doc`` for ops that carry a document;
    ``include_internal`` keeps the ops of internal namespaces; ``disambiguate`` adds
    ``disambiguatedPaths`` to the update descriptions of ``$v:2`` updates, as change streams do
    with ``showExpandedEvents``; ``codec_options`` decodes raw documents (e.g. a client's UUID
    representation and time zone).
    """

    __slots__ = (
        "_codec",
        "_disambiguate",
        "_flat_index",
        "_flat_key",
        "_held",
        "_internal",
        "_ns_filter",
        "_places",
        "_unmarshal",
    )

    def __init__(
        self,
        *,
        namespace_filter: NamespaceFilter | None = None,
        unmarshal: Unmarshal | None = None,
        include_internal: bool = False,
        disambiguate: bool = False,
        codec_options: CodecOptions[dict[str, Any]] = DEFAULT_CODEC_OPTIONS,
    ) -> None:
        """Create a decoder; see the class docstring for the arguments."""
        self._ns_filter = namespace_filter
        self._unmarshal = unmarshal
        self._internal = include_internal
        self._disambiguate = disambiguate
        self._codec = codec_options
        # partialTxn / prepare entries waiting for their commit, by their own ts.
        self._held: dict[Timestamp, Mapping[str, Any]] = {}
        # The transaction of the previous flat entry (SecantusDB's shape), to number its writes.
        self._flat_key: tuple[Timestamp, int] | None = None
        self._flat_index = 0
        self._places: dict[str, object] = {}  # namespace -> where it is (see _place)

    @property
    def held_entries(self) -> int:
        """How many transaction entries wait for their commit."""
        return len(self._held)

    def remember(self, entry: Mapping[str, Any]) -> None:
        """Hold a transaction chain entry fetched after an `IncompleteChainError`."""
        self._held[_timestamp(entry)] = entry

    def decode(self, entry: Mapping[str, Any]) -> list[Op]:
        """The ops an oplog entry makes visible now (often one, none for no-ops and held entries).

        Raises `DecodeError` for an entry of unknown shape, `IncompleteChainError` when a commit
        needs an entry the decoder has not seen, and `CallbackError` when a filter or
        ``unmarshal`` raised.
        """
        try:
            return self._decode(entry)
        except (DecodeError, IncompleteChainError, CallbackError):
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
            raise DecodeError(f"malformed oplog entry ({type(e).__name__}: {e})", entry) from e

    # -- entry level ---------------------------------------------------------------------------

    def _decode(self, entry: Mapping[str, Any]) -> list[Op]:
        if not _is_doc(entry):
            raise DecodeError(f"an oplog entry must be a document, got {type(entry).__name__}")
        kind = entry.get("op")
        ts = _timestamp(entry)
        if kind == "n" or kind in _INTERNAL_OPS:
            return []
        if entry.get("fromMigrate"):
            # Chunk migrations copy documents between shards: not a change of the data set.
            return []
        wall = entry.get("wall")
        wall = wall if isinstance(wall, datetime) else None
        if kind == "c":
            body = _document(entry, "o")
            if "applyOps" in body:
                return self._apply_ops(entry, body, ts, wall)
            if "commitTransaction" in body:
                return self._commit_prepared(entry, ts, wall)
            if "abortTransaction" in body:
                for _ in self._walk_chain(entry, fetch_missing=False):
                    pass
                return []
        ops: list[Op] = []
        self._write(entry, ts, wall, self._flat_txn(entry, ts), ops)
        return ops

    def _flat_txn(self, entry: Mapping[str, Any], ts: Timestamp) -> Txn | None:
        """The transaction of a write logged on its own (SecantusDB), not inside ``applyOps``.

        SecantusDB logs each write of a transaction as its own entry with the transaction's
        ``lsid`` and ``txnNumber``, all at the commit's ``ts``. mongod logs such fields on single
        entries only for retryable writes, which always carry a ``stmtId``: those are no
        transaction.
        """
        lsid = entry.get("lsid")
        if lsid is None:
            return None  # the common case: not a transaction's write
        number = entry.get("txnNumber")
        if not _is_doc(lsid) or not isinstance(number, int) or "stmtId" in entry:
            return None
        key = (ts, int(number))
        if key == self._flat_key:
            self._flat_index += 1
        else:
            self._flat_key, self._flat_index = key, 0
        return Txn(_plain(lsid, self._codec), key[1], self._flat_index)

    def _apply_ops(
        self, entry: Mapping[str, Any], body: Mapping[str, Any], ts: Timestamp, wall: Any
    ) -> list[Op]:
        inner = body["applyOps"]
        if not isinstance(inner, list):
            raise DecodeError("applyOps must be an array", entry)
        if entry.get("multiOpType") == _APPLIED_SEPARATELY:
            # Its prevOpTime links it to the previous entry of the same write, already
            # delivered: mongod applies each such entry on its own, and so does gtom.
            return self._unroll([entry], ts, wall)
        if body.get("partialTxn") or body.get("prepare"):
            self._held[ts] = entry  # delivered when the transaction commits
            return []
        chain = [*self._walk_chain(entry, fetch_missing=True)]
        chain.reverse()
        chain.append(entry)
        return self._unroll(chain, ts, wall)

    def _commit_prepared(self, entry: Mapping[str, Any], ts: Timestamp, wall: Any) -> list[Op]:
        chain = [*self._walk_chain(entry, fetch_missing=True)]
        if not chain:
            raise DecodeError("commitTransaction without a prepared transaction", entry)
        chain.reverse()
        return self._unroll(chain, ts, wall)

    def _walk_chain(
        self, entry: Mapping[str, Any], *, fetch_missing: bool
    ) -> Iterator[Mapping[str, Any]]:
        """The earlier entries of ``entry``'s transaction, newest first, taken from the held ones.

        The walk first checks that every link is held (raising `IncompleteChainError` for the
        first missing one when ``fetch_missing``), so a retry after fetching finds the chain
        intact.
        """
        links: list[Timestamp] = []
        prev = _prev_ts(entry)
        while prev is not None:
            held = self._held.get(prev)
            if held is None:
                if fetch_missing:
                    raise IncompleteChainError(prev)
                break
            links.append(prev)
            prev = _prev_ts(held)
        for link in links:
            yield self._held.pop(link)

    def _unroll(self, chain: list[Mapping[str, Any]], ts: Timestamp, wall: Any) -> list[Op]:
        first = chain[0]
        lsid = first.get("lsid")
        txn_number = first.get("txnNumber")
        # A multiOpType (8.0+) marks a retryable write's insertMany logged as applyOps: it has
        # a session but is no transaction.
        txn_key = (
            (_plain(lsid, self._codec), int(txn_number))
            if isinstance(lsid, Mapping)
            and isinstance(txn_number, int)
            and not first.get("multiOpType")
            else None
        )
        ops: list[Op] = []
        index = 0
        for link in chain:
            inner = _document(link, "o")["applyOps"]
            if not isinstance(inner, list):
                raise DecodeError("applyOps must be an array", link)
            for write in inner:
                if not isinstance(write, Mapping):
                    raise DecodeError("applyOps items must be documents", link)
                txn = None if txn_key is None else Txn(txn_key[0], txn_key[1], index)
                index += 1
                if write.get("op") == "c" and "applyOps" in _document(write, "o"):
                    raise DecodeError("nested applyOps is not supported", link)
                self._write(write, ts, wall, txn, ops)
        return ops

    # -- one write -----------------------------------------------------------------------------

    def _write(
        self, entry: Mapping[str, Any], ts: Timestamp, wall: Any, txn: Txn | None, out: list[Op]
    ) -> None:
        """Append the op for one write (a top-level entry or an applyOps item), if it is kept."""
        kind = entry.get("op")
        if kind == "n" or kind in _INTERNAL_OPS:
            return
        if kind not in ("i", "u", "d", "c"):
            raise DecodeError(f"unknown oplog operation {kind!r}", entry)
        ns = cast("str", entry.get("ns"))  # _place checks it
        where = self._places.get(ns) if ns.__class__ is str else None
        if where is None:
            where = self._place(ns, entry)
        o = entry.get("o")
        if o.__class__ is not dict:
            o = _document(entry, "o")
        if kind == "c":
            self._command(ns, o, ts, wall, txn, out)
            return
        if where is not _USER:
            if where is _VIEWS or (where is _INDEXES and kind == "i"):
                self._ddl_write(kind, ns, o, ts, wall, txn, out)
                return
            if where is _INTERNAL and not self._internal:
                return
        if kind == "u":
            key = _document(entry, "o2")
            if "_id" not in key:
                raise DecodeError("update entry has no _id in o2", entry)
            doc_id = key["_id"]
        elif "_id" in o:
            doc_id = o["_id"]
        else:
            o2 = entry.get("o2")
            if not isinstance(o2, Mapping) or "_id" not in o2:
                raise DecodeError(f"{'insert' if kind == 'i' else 'delete'} entry has no _id")
            doc_id = o2["_id"]
        if _is_raw(doc_id):
            doc_id = bson.decode(doc_id.raw, self._codec)
        # Positional (a third of the keyword call's cost): operation, namespace, id, data,
        # timestamp, source, update_description, doc, txn, resume_token, stream_id, wall;
        # tests/test_decode_oplog.py pins the order.
        op = Op(kind, ns, doc_id, None, ts, _OPLOG, None, None, txn, None, None, wall)
        if self._ns_filter is not None and not call_user("namespace_filter", self._ns_filter, op):
            return
        if kind == "i":
            self._set_document(op, o)
        elif kind == "u":
            version = o.get("$v")
            if version is None and not any(k.startswith("$") for k in o):
                if "_id" not in o:
                    raise DecodeError("an update is neither operators nor a replacement", entry)
                self._set_document(op, o)  # a whole replacement
            else:
                op.update_description = update_description(
                    o, version, self._codec, self._disambiguate
                )
        out.append(op)

    def _command(
        self,
        ns: str,
        o: Mapping[str, Any],
        ts: Timestamp,
        wall: Any,
        txn: Txn | None,
        out: list[Op],
    ) -> None:
        if not o:
            raise DecodeError("command entry has an empty o")
        name = next(iter(o))
        if name in _SKIPPED_COMMANDS:
            return
        db = ns.partition(".")[0]
        target = o[name]
        if name in _COLLECTION_COMMANDS and isinstance(target, str) and target:
            namespace = f"{db}.{target}"
        elif name == "renameCollection" and isinstance(target, str) and "." in target:
            namespace = target
        else:
            namespace = ns
        self._command_op(namespace, o, ts, wall, txn, out)

    def _command_op(
        self,
        namespace: str,
        o: Mapping[str, Any],
        ts: Timestamp,
        wall: Any,
        txn: Txn | None,
        out: list[Op],
    ) -> None:
        if not self._internal and is_internal(namespace):
            return
        op = Op("c", namespace, timestamp=ts, source=Source.OPLOG, txn=txn, wall=wall)
        if self._ns_filter is not None and not call_user("namespace_filter", self._ns_filter, op):
            return
        op.data = _to_dict(o, self._codec)
        out.append(op)

    def _ddl_write(
        self,
        kind: str,
        ns: str,
        o: Mapping[str, Any],
        ts: Timestamp,
        wall: Any,
        txn: Txn | None,
        out: list[Op],
    ) -> None:
        """A write to a system collection that is DDL on a user namespace, as that command.

        * ``<db>.system.views``: views are documents there (``_id`` is the view's namespace).
          As mongod's change streams do, an insert is a ``create``, a replacement a ``collMod``
          and a delete a ``drop`` of the view.
        * ``<db>.system.indexes``: servers before 3.4 logged an index build as an insert of
          its spec (``ns`` names the collection); later ones log ``createIndexes``.
        """
        database = ns.partition(".")[0]
        o = _to_dict(o, self._codec)  # plain values all the way down (o may be raw BSON)
        if ns.endswith(_SYSTEM_VIEWS):
            target, name = o.get("_id"), "create"
            if kind == "u":
                name = "collMod"
                if "_id" not in o or any(k.startswith("$") for k in o):
                    raise DecodeError("a view's definition was not replaced whole", o)
            elif kind == "d":
                name = "drop"
            skip = "_id"
        else:
            target, name, skip = o.get("ns"), "createIndexes", "ns"
        if not isinstance(target, str) or not target.startswith(database + "."):
            raise DecodeError(f"a write to {ns} names no collection of {database}", o)
        collection = target[len(database) + 1 :]
        if not collection:
            raise DecodeError(f"a write to {ns} names no collection of {database}", o)
        if name == "drop":
            command: dict[str, Any] = {"drop": collection}
        else:
            command = {name: collection, **{k: v for k, v in o.items() if k != skip}}
        self._command_op(target, command, ts, wall, txn, out)

    def _place(self, ns: Any, entry: Mapping[str, Any]) -> object:
        """Where ``ns`` is (`_USER`, `_INTERNAL`, `_VIEWS`, `_INDEXES`), remembered."""
        if not isinstance(ns, str) or "." not in ns:
            raise DecodeError(f"oplog entry has no valid namespace: {ns!r}", entry)
        if ns.endswith(_SYSTEM_VIEWS):
            where = _VIEWS
        elif ns.endswith(_LEGACY_INDEXES):
            where = _INDEXES
        elif is_internal(ns):
            where = _INTERNAL
        else:
            where = _USER
        if len(self._places) >= _PLACES_KEPT:
            self._places.clear()
        self._places[ns] = where
        return where

    def _set_document(self, op: Op, document: Mapping[str, Any]) -> None:
        op.data = document if document.__class__ is dict else _to_dict(document, self._codec)
        if self._unmarshal is not None:
            raw = document if isinstance(document, RawBSONDocument) else _to_raw(document)
            op.doc = call_user("unmarshal", self._unmarshal, op.namespace, raw)


# -- small helpers -----------------------------------------------------------------------------


def _timestamp(entry: Mapping[str, Any]) -> Timestamp:
    ts = entry.get("ts")
    if not isinstance(ts, Timestamp):
        raise DecodeError(f"oplog entry has no valid 'ts': {ts!r}", entry)
    return ts


def _prev_ts(entry: Mapping[str, Any]) -> Timestamp | None:
    prev = entry.get("prevOpTime")
    if not isinstance(prev, Mapping):
        return None
    ts = prev.get("ts")
    if not isinstance(ts, Timestamp) or ts == _NULL_TS:
        return None
    return ts


def _document(entry: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = entry.get(key)
    if not _is_doc(value):
        raise DecodeError(f"oplog entry field {key!r} must be a document", entry)
    return value


def _to_dict(value: Mapping[str, Any], codec: CodecOptions[dict[str, Any]]) -> dict[str, Any]:
    if _is_raw(value):
        return bson.decode(value.raw, codec)
    return dict(value)


# isinstance() against the Mapping ABC (RawBSONDocument is one) costs a Python-level call; these
# checks run several times per entry, so the answer is cached per class.
_DOC_CLASSES: dict[type, bool] = {dict: True}
_RAW_CLASSES: dict[type, bool] = {dict: False, int: False, str: False}


def _is_doc(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, fast for the classes seen before."""
    cls = value.__class__
    known = _DOC_CLASSES.get(cls)
    if known is None:
        known = _DOC_CLASSES[cls] = issubclass(cls, Mapping)
    return known


def _is_raw(value: Any) -> TypeGuard[RawBSONDocument]:
    """``isinstance(value, RawBSONDocument)``, fast for the classes seen before."""
    cls = value.__class__
    known = _RAW_CLASSES.get(cls)
    if known is None:
        known = _RAW_CLASSES[cls] = issubclass(cls, RawBSONDocument)
    return known


def _to_raw(value: Mapping[str, Any]) -> RawBSONDocument:
    return RawBSONDocument(bson.encode(value))


def _plain(value: Any, codec: CodecOptions[dict[str, Any]]) -> Any:
    """A value from a raw entry as the plain Python value users expect (ids, lsids)."""
    if _is_raw(value):
        return bson.decode(value.raw, codec)
    return value
