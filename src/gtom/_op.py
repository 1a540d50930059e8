"""The event type gtom delivers (`Op`) and the small value types around it."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import Timestamp

__all__ = ["Op", "OpFilter", "Source", "Txn", "chain_op_filters"]


class Source(str, enum.Enum):
    """Where an `Op` came from."""

    OPLOG = "oplog"
    """Read from the replica set's oplog (``local.oplog.rs``)."""
    CHANGE_STREAM = "change_stream"
    """Read from a change stream (``watch()``)."""
    DIRECT_READ = "direct_read"
    """Read from a collection or view directly (a whole-collection copy)."""


@dataclass(frozen=True, slots=True)
class Txn:
    """Where an op sits in the multi-document transaction that wrote it."""

    lsid: Mapping[str, Any]
    """The logical session id of the transaction (``{"id": UUID, ...}``)."""
    txn_number: int
    """The transaction number within that session."""
    index: int
    """The 0-based index of this op among the transaction's writes."""


@dataclass(slots=True)
class Op:
    """One change: an insert, update, delete or command (drop, rename, ...), or a document read.

    ``operation`` is ``"i"``, ``"u"``, ``"d"`` or ``"c"``. ``namespace`` is ``"db.coll"``; for a
    collection-level command (drop, create, rename, ...) it is the collection the command acts on,
    and for ``dropDatabase`` it is ``"db.$cmd"``. ``data`` is the document as a dict (inserts,
    replacements, fetched updates, direct reads), the command document for commands, else None.
    """

    operation: str
    """``"i"`` insert, ``"u"`` update, ``"d"`` delete, ``"c"`` command."""
    namespace: str
    """``"db.coll"`` (``"db.$cmd"`` for database-level commands)."""
    id: Any = None
    """The document's ``_id`` (None for commands)."""
    data: dict[str, Any] | None = None
    """The full document, the delta, or the command document; see the class docstring."""
    timestamp: Timestamp | None = None
    """The server's timestamp of the change (the committing entry's for transactions)."""
    source: Source = Source.OPLOG
    """Where the op came from."""
    update_description: dict[str, Any] | None = None
    """``{"updatedFields", "removedFields", "truncatedArrays"}`` for updates that say what
    changed, else None (inserts, replacements, ...); from a change stream also
    ``"disambiguatedPaths"`` when the server sends it (6.1+ with ``show_expanded_events``)."""
    doc: Any = None
    """What ``Options.unmarshal`` returned for this op's document, if set."""
    txn: Txn | None = None
    """The transaction that wrote this op, or None."""
    resume_token: Mapping[str, Any] | None = None
    """Change streams only: the token to resume just after this op."""
    stream_id: str | None = None
    """Change streams only: the ``change_stream_ns`` entry this op came from."""
    wall: datetime | None = None
    """The server's wall-clock time of the change, when it says."""
    before: dict[str, Any] | None = None
    """Change streams only: the document before the change, when asked for
    (``Options.full_document_before_change``) and the server has it."""
    shard: str | None = None
    """Multi-shard contexts only: the shard whose oplog the op came from (its key in
    ``start_multi``'s clients, or its ``config.shards`` id when a shard listener added it)."""

    def is_insert(self) -> bool:
        """Whether the op inserted a document (or is a document from a direct read)."""
        return self.operation == "i"

    def is_update(self) -> bool:
        """Whether the op updated or replaced a document."""
        return self.operation == "u"

    def is_delete(self) -> bool:
        """Whether the op deleted a document."""
        return self.operation == "d"

    def is_command(self) -> bool:
        """Whether the op is a command (drop, dropDatabase, create, renameCollection, ...)."""
        return self.operation == "c"

    def is_drop(self) -> bool:
        """Whether the op dropped a collection or a whole database."""
        return (
            self.operation == "c"
            and self.data is not None
            and ("drop" in self.data or "dropDatabase" in self.data)
        )

    def is_drop_database(self) -> bool:
        """Whether the op dropped a whole database."""
        return self.operation == "c" and self.data is not None and "dropDatabase" in self.data

    def get_database(self) -> str:
        """The database name of the namespace."""
        return self.namespace.partition(".")[0]

    def get_collection(self) -> str:
        """The collection name of the namespace ("" for database-level commands)."""
        if self.is_drop_database():
            return ""
        coll = self.namespace.partition(".")[2]
        return "" if coll == "$cmd" else coll


OpFilter = Callable[[Op], bool]
"""A predicate on ops: True keeps the op."""


def chain_op_filters(*filters: OpFilter) -> OpFilter:
    """Combine filters into one that keeps an op only when every filter keeps it (in order)."""
    chain = tuple(filters)

    def chained(op: Op) -> bool:
        return all(f(op) for f in chain)

    return chained
