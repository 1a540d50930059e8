"""Oplog entries -> `Op`s. Pure: no I/O, no clock; every shape is tested on fixtures.

Shapes understood (see ``tests/fixtures/oplog/`` for real examples and where they come from):

* ``i`` insert, ``d`` delete, ``n`` no-op (no op, but it is still a position), and the internal
  ``xi``/``xd``/``ci``/``cu`` entries of newer servers (no op either);
* ``u`` update as ``$v:1`` (``$set``/``$unset``, also without ``$v`` before 3.6), as mongod's
  ``$v:2`` diff (``u``/``i``/``d``/``s<field>`` sections, array diffs with ``a``/``l``/``u<n>``/
  ``s<n>``), as the change-event shaped ``$v:2`` diff SecantusDB writes
  (``updatedFields``/``removedFields``/``truncatedArrays``), or as a whole replacement;
* ``c`` commands: DDL (create, drop, dropDatabase, renameCollection, collMod, indexes, ...)
  become ops; ``applyOps`` is unrolled into one op per inner write, including 4.2+
  ``partialTxn`` chains and prepared transactions (``prepare`` + ``commitTransaction``), which
  are held back until their commit and linked through ``prevOpTime``.

A commit whose earlier chain entries this decoder never saw (tailing started mid-chain) raises
`ChainIncomplete` naming the missing entry; the I/O layer fetches it, hands it to `remember`,
and decodes the commit again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeGuard

import bson
from bson import Timestamp
from bson.codec_options import DEFAULT_CODEC_OPTIONS, CodecOptions
from bson.raw_bson import RawBSONDocument

from gtom._errors import CallbackError, DecodeError
from gtom._op import Op, Source, Txn

__all__ = ["ChainIncomplete", "OplogDecoder", "call_user", "diff_to_update_description"]

#: Operation letters newer servers use for internal bookkeeping (global index keys, containers):
#: no user document changes, so no op.
_INTERNAL_OPS = frozenset({"xi", "xd", "ci", "cu"})
#: Commands that are index-build bookkeeping, not changes: the build's completion
#: (``commitIndexBuild``, or ``createIndexes`` on an empty collection) is the change.
_SKIPPED_COMMANDS = frozenset({"startIndexBuild", "abortIndexBuild"})
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

NamespaceFilter = Callable[[Op], bool]
Unmarshal = Callable[[str, RawBSONDocument], Any]


class ChainIncomplete(Exception):  # noqa: N818 - a signal to the I/O layer, not an error
    """A transaction commit needs an earlier oplog entry (at ``ts``) the decoder has not seen."""

    def __init__(self, ts: Timestamp) -> None:
        """Name the missing entry by its timestamp."""
        super().__init__(f"transaction chain entry at {ts} is needed")
        self.ts = ts


class OplogDecoder:
    """Decodes oplog entries in oplog order into ops, holding transaction chains until commit.

    ``namespace_filter`` sees each op before its document is decoded (only operation, namespace,
    id and timestamp are set); ``unmarshal`` fills ``op.doc`` for ops that carry a document.
    """

    __slots__ = ("_codec", "_flat_index", "_flat_key", "_held", "_ns_filter", "_unmarshal")

    def __init__(
        self,
        *,
        namespace_filter: NamespaceFilter | None = None,
        unmarshal: Unmarshal | None = None,
        codec_options: CodecOptions[dict[str, Any]] = DEFAULT_CODEC_OPTIONS,
    ) -> None:
        """Create a decoder; see the class docstring for the arguments."""
        self._ns_filter = namespace_filter
        self._unmarshal = unmarshal
        self._codec = codec_options
        # partialTxn / prepare entries waiting for their commit, by their own ts.
        self._held: dict[Timestamp, Mapping[str, Any]] = {}
        # The transaction of the previous flat entry (SecantusDB's shape), to number its writes.
        self._flat_key: tuple[Timestamp, int] | None = None
        self._flat_index = 0

    @property
    def held_entries(self) -> int:
        """How many transaction entries wait for their commit."""
        return len(self._held)

    def remember(self, entry: Mapping[str, Any]) -> None:
        """Hold a transaction chain entry fetched after a `ChainIncomplete`."""
        self._held[_timestamp(entry)] = entry

    def decode(self, entry: Mapping[str, Any]) -> list[Op]:
        """The ops an oplog entry makes visible now (often one, none for no-ops and held entries).

        Raises `DecodeError` for an entry of unknown shape and `ChainIncomplete` when a commit
        needs an entry the decoder has not seen.
        """
        try:
            return self._decode(entry)
        except (DecodeError, ChainIncomplete, CallbackError):
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, bson.InvalidBSON) as e:
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

        The walk first checks that every link is held (raising `ChainIncomplete` for the first
        missing one when ``fetch_missing``), so a retry after fetching finds the chain intact.
        """
        links: list[Timestamp] = []
        prev = _prev_ts(entry)
        while prev is not None:
            held = self._held.get(prev)
            if held is None:
                if fetch_missing:
                    raise ChainIncomplete(prev)
                break
            links.append(prev)
            prev = _prev_ts(held)
        for link in links:
            yield self._held.pop(link)

    def _unroll(self, chain: list[Mapping[str, Any]], ts: Timestamp, wall: Any) -> list[Op]:
        first = chain[0]
        lsid = first.get("lsid")
        txn_number = first.get("txnNumber")
        # multiOpType 1 (8.0+): a retryable multi-document insert logged as one applyOps, whose
        # writes apply separately; it has a session but is not a transaction.
        txn_key = (
            (_plain(lsid, self._codec), int(txn_number))
            if isinstance(lsid, Mapping)
            and isinstance(txn_number, int)
            and first.get("multiOpType") != 1
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
        ns = entry.get("ns")
        if not isinstance(ns, str) or "." not in ns:
            raise DecodeError(f"oplog entry has no valid namespace: {ns!r}", entry)
        o = _document(entry, "o")
        if kind == "c":
            self._command(ns, o, ts, wall, txn, out)
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
        op = Op(
            kind,
            ns,
            id=_plain(doc_id, self._codec),
            timestamp=ts,
            source=Source.OPLOG,
            txn=txn,
            wall=wall,
        )
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
                op.update_description = _update_description(o, version, self._codec)
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
        op = Op("c", namespace, timestamp=ts, source=Source.OPLOG, txn=txn, wall=wall)
        if self._ns_filter is not None and not call_user("namespace_filter", self._ns_filter, op):
            return
        op.data = _to_dict(o, self._codec)
        out.append(op)

    def _set_document(self, op: Op, document: Mapping[str, Any]) -> None:
        op.data = _to_dict(document, self._codec)
        if self._unmarshal is not None:
            raw = document if isinstance(document, RawBSONDocument) else _to_raw(document)
            op.doc = call_user("unmarshal", self._unmarshal, op.namespace, raw)


# -- updates ---------------------------------------------------------------------------------


def _update_description(
    o: Mapping[str, Any], version: Any, codec: CodecOptions[dict[str, Any]]
) -> dict[str, Any]:
    if version is None or version == 1:
        updated = o.get("$set", {})
        removed = o.get("$unset", {})
        if not isinstance(updated, Mapping) or not isinstance(removed, Mapping):
            raise DecodeError("$set and $unset of an update must be documents", o)
        unknown = [k for k in o if k.startswith("$") and k not in ("$v", "$set", "$unset")]
        if unknown:
            raise DecodeError(f"unknown update operators in oplog entry: {unknown}", o)
        return {
            "updatedFields": _to_dict(updated, codec),
            "removedFields": list(removed),
            "truncatedArrays": [],
        }
    if version == 2:
        diff = o.get("diff")
        if not isinstance(diff, Mapping):
            raise DecodeError("a $v:2 update must have a 'diff' document", o)
        return diff_to_update_description(_to_dict(diff, codec))
    raise DecodeError(f"unknown update version $v={version!r}", o)


_CHANGE_EVENT_KEYS = ("updatedFields", "removedFields", "truncatedArrays")


def diff_to_update_description(diff: Mapping[str, Any]) -> dict[str, Any]:
    """A change stream's ``updateDescription`` for a ``$v:2`` oplog diff.

    Understands mongod's diff format (``u``/``i``/``d``/``s<field>``, arrays with ``a``, ``l``,
    ``u<index>``, ``s<index>``) and the change-event shaped diff SecantusDB writes.
    """
    if any(k in diff for k in _CHANGE_EVENT_KEYS):
        updated = diff.get("updatedFields", {})
        removed = diff.get("removedFields", [])
        truncated = diff.get("truncatedArrays", [])
        if (
            not isinstance(updated, Mapping)
            or not isinstance(removed, list)
            or not isinstance(truncated, list)
        ):
            raise DecodeError("malformed change-event shaped diff", diff)
        return {
            "updatedFields": dict(updated),
            "removedFields": list(removed),
            "truncatedArrays": list(truncated),
        }
    out: dict[str, Any] = {"updatedFields": {}, "removedFields": [], "truncatedArrays": []}
    _walk_object_diff(diff, "", out)
    return out


def _walk_object_diff(diff: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in diff.items():
        if key in ("u", "i"):
            section = _section(value, key)
            for field, new in section.items():
                out["updatedFields"][prefix + field] = new
        elif key == "d":
            out["removedFields"].extend(prefix + field for field in _section(value, key))
        elif key.startswith("s") and len(key) > 1:
            _walk_sub_diff(_section(value, key), prefix + key[1:], out)
        else:
            raise DecodeError(f"unknown section {key!r} in an update diff", diff)


def _walk_sub_diff(diff: Mapping[str, Any], path: str, out: dict[str, Any]) -> None:
    if diff.get("a") is True:
        _walk_array_diff(diff, path, out)
    else:
        _walk_object_diff(diff, path + ".", out)


def _walk_array_diff(diff: Mapping[str, Any], path: str, out: dict[str, Any]) -> None:
    for key, value in diff.items():
        if key == "a":
            continue
        if key == "l":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise DecodeError(f"array diff has a bad new length {value!r}", diff)
            out["truncatedArrays"].append({"field": path, "newSize": value})
        elif len(key) > 1 and key[0] in "us" and key[1:].isdigit():
            element = f"{path}.{int(key[1:])}"
            if key[0] == "u":
                out["updatedFields"][element] = value
            else:
                _walk_sub_diff(_section(value, key), element, out)
        else:
            raise DecodeError(f"unknown section {key!r} in an array diff", diff)


def _section(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DecodeError(f"update diff section {key!r} must be a document")
    return value


# -- small helpers -----------------------------------------------------------------------------


def call_user(option: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call a function the user passed as ``option``; its exception becomes a `CallbackError`."""
    try:
        return fn(*args)
    except Exception as e:
        raise CallbackError(option, e) from e


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
