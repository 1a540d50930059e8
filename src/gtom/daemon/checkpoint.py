"""Checkpoints: how far delivery got, saved only after the sink confirmed it.

A `Checkpoint` holds the time the first run started tailing, the oplog position (per shard when
following shards), each change stream's resume token (kept fresh while the stream is idle),
the direct reads already complete, and the segment positions of those under way. Every position
is a `gtom._position.Position`: a timestamp and how many events at that timestamp were delivered,
so a restart skips exactly those and numbers the rest as the first run would have (event ids stay
stable).

Two stores implement `CheckpointStore`: `FileStore` (write a temporary file, fsync, rename, fsync
the directory: a crash leaves the old or the new checkpoint, never half of one) and `MongoStore`
(one document in a collection, written with majority write concern).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bson import SON, Timestamp, json_util
from pymongo import AsyncMongoClient, WriteConcern
from pymongo.errors import DuplicateKeyError, PyMongoError

from gtom._errors import ConfigurationError, GtomError
from gtom._jsonl import CANONICAL
from gtom._position import Position
from gtom._retry import translate

__all__ = [
    "Checkpoint",
    "CheckpointFenced",
    "CheckpointStore",
    "FileStore",
    "MongoStore",
    "StreamMark",
]

VERSION = 1


@dataclass(slots=True)
class StreamMark:
    """A change stream's position: its resume token, and the newest event's time and index."""

    token: Mapping[str, Any] | None = None
    mark: Position | None = None

    def to_document(self) -> dict[str, Any]:
        """As a BSON-able document."""
        return {
            "token": None if self.token is None else dict(self.token),
            "mark": None if self.mark is None else self.mark.to_document(),
        }

    @classmethod
    def from_document(cls, document: Any) -> StreamMark:
        """Read back `to_document`'s output."""
        if not isinstance(document, Mapping):
            raise ValueError(f"not a stream position: {document!r}")
        mark = document.get("mark")
        return cls(document.get("token"), None if mark is None else Position.from_document(mark))


@dataclass(slots=True)
class Checkpoint:
    """Everything a restarted daemon needs to continue exactly where delivery stopped."""

    start: Timestamp | None = None
    """Where tailing began in the first run (taken before any copy started)."""
    oplog: Position | None = None
    """The newest delivered oplog position (one deployment)."""
    shards: dict[str, Position] = field(default_factory=dict)
    """Per shard (its ``config.shards`` id): the newest delivered oplog position."""
    streams: dict[str, StreamMark] = field(default_factory=dict)
    """Per ``change_stream_ns`` entry: where the stream is."""
    copies_done: list[str] = field(default_factory=list)
    """Direct reads whose every document was delivered."""
    copies: dict[str, Any] = field(default_factory=dict)
    """Unfinished direct reads: where each one's segments are (``direct_read_checkpoint()``)."""
    recopy: list[str] = field(default_factory=list)
    """Collections copied again after lost history (``resnapshot``), besides the configured
    ``direct_read``: a restart finishes that copy instead of forgetting it."""
    saved_at: _dt.datetime | None = None
    """When it was saved (set by the stores)."""

    def to_document(self) -> dict[str, Any]:
        """As a BSON-able document."""
        return {
            "version": VERSION,
            "start": self.start,
            "oplog": None if self.oplog is None else self.oplog.to_document(),
            "shards": {k: v.to_document() for k, v in self.shards.items()},
            "streams": {k: v.to_document() for k, v in self.streams.items()},
            "copies_done": list(self.copies_done),
            "copies": dict(self.copies),
            "recopy": list(self.recopy),
            "saved_at": self.saved_at,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any], where: str) -> Checkpoint:
        """Read back `to_document`'s output (`ConfigurationError` naming ``where`` if bad)."""
        try:
            if document.get("version") != VERSION:
                raise ValueError(f"unknown version {document.get('version')!r}")
            oplog = document.get("oplog")
            start = document.get("start")
            if start is not None and not isinstance(start, Timestamp):
                raise ValueError(f"bad start {start!r}")
            return cls(
                start=start,
                oplog=None if oplog is None else Position.from_document(oplog),
                shards={k: Position.from_document(v) for k, v in document["shards"].items()},
                streams={k: StreamMark.from_document(v) for k, v in document["streams"].items()},
                copies_done=[str(ns) for ns in document["copies_done"]],
                copies=dict(document.get("copies") or {}),
                recopy=[str(ns) for ns in document.get("recopy") or []],
                saved_at=document.get("saved_at"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigurationError(
                f"the checkpoint in {where} is not one gtom can read ({e}); start over with "
                f"--reset-checkpoint (events since the first run will be delivered again)"
            ) from e


class CheckpointStore(Protocol):
    """Where checkpoints are kept."""

    where: str
    """The place, for messages (a path, a namespace)."""

    async def load(self) -> Checkpoint | None:
        """The saved checkpoint, or None if there is none."""
        ...

    async def save(self, checkpoint: Checkpoint) -> None:
        """Save durably: once this returns, a crash keeps this checkpoint."""
        ...

    async def reset(self) -> None:
        """Forget the saved checkpoint."""
        ...

    async def close(self) -> None:
        """Release what the store holds."""
        ...


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


class FileStore:
    """A checkpoint in a JSON file (canonical Extended JSON), replaced atomically."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Keep the checkpoint at ``path`` (its directory is created if missing)."""
        self.path = Path(path)
        self.where = str(self.path)

    async def load(self) -> Checkpoint | None:
        """The saved checkpoint, or None if the file does not exist."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ConfigurationError(f"cannot read the checkpoint file {self.where}: {e}") from e
        try:
            document = json_util.loads(text, json_options=CANONICAL)
        except ValueError as e:
            raise ConfigurationError(
                f"the checkpoint file {self.where} is not valid JSON ({e}); start over with "
                f"--reset-checkpoint"
            ) from e
        return Checkpoint.from_document(document, self.where)

    async def save(self, checkpoint: Checkpoint) -> None:
        """Write a temporary file, fsync it, rename it over the old one, fsync the directory.

        The file work runs on a thread: the event loop reads and encodes on meanwhile.
        """
        checkpoint.saved_at = _now()
        text = json_util.dumps(checkpoint.to_document(), json_options=CANONICAL)
        await asyncio.to_thread(self._write, text)

    def _write(self, text: str) -> None:
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as e:
            raise GtomError(f"cannot save the checkpoint to {self.where}: {e}") from e

    async def reset(self) -> None:
        """Delete the file."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def close(self) -> None:
        """Nothing to release."""


class CheckpointFenced(GtomError):  # noqa: N818 - what happened to the writer
    """A checkpoint write of a cluster leader whose term is over (another process leads)."""


class MongoStore:
    """A checkpoint as one document (``_id`` = ``name``) of a MongoDB collection.

    In a cluster (`gtom.daemon.cluster`), set ``term`` to the lease's: every write then carries
    it and fails, with `CheckpointFenced`, if the document holds a newer one; `claim` raises the
    document's term when a process takes the lease.
    """

    def __init__(self, client: AsyncMongoClient[Any], namespace: str, name: str) -> None:
        """Keep the checkpoint in ``namespace`` (``"db.coll"``) under ``_id`` ``name``."""
        database, _, collection = namespace.partition(".")
        if not database or not collection:
            raise ConfigurationError(
                f"checkpoint.collection must be 'db.collection', got {namespace!r}"
            )
        self.client = client
        """The client of the store's server (a cluster's leases are kept there too)."""
        self._coll = client[database].get_collection(
            collection, write_concern=WriteConcern("majority")
        )
        self._name = name
        self.where = f"{namespace} (_id {name!r})"
        self.term: int | None = None
        """The writer's term in a cluster (None: no cluster, writes are unconditional)."""

    async def load(self) -> Checkpoint | None:
        """The saved checkpoint, or None if there is no document."""
        try:
            document = await self._coll.find_one({"_id": self._name})
        except PyMongoError as e:
            raise translate(e, f"reading the checkpoint from {self.where}") from e
        if document is None or "version" not in document:  # none, or only a claim's term
            return None
        return Checkpoint.from_document(document, self.where)

    async def save(self, checkpoint: Checkpoint) -> None:
        """Replace the document (majority write concern); in a cluster, only at our term."""
        checkpoint.saved_at = _now()
        document = SON([("_id", self._name), *checkpoint.to_document().items()])
        query: dict[str, Any] = {"_id": self._name}
        if self.term is not None:
            document["term"] = self.term
            query["$or"] = [{"term": {"$exists": False}}, {"term": {"$lte": self.term}}]
        try:
            await self._coll.replace_one(query, document, upsert=True)
        except DuplicateKeyError as e:  # the filter missed: a newer term holds the document
            raise CheckpointFenced(
                f"the checkpoint in {self.where} belongs to a newer term than this process's "
                f"({self.term}): another process leads the cluster now"
            ) from e
        except PyMongoError as e:
            raise translate(e, f"saving the checkpoint to {self.where}") from e

    async def seed(self, start: Timestamp) -> None:
        """Record ``start`` as where a first run starts, unless an earlier one is recorded.

        A cluster's members each seed where they came up, before they are ready: a leader that
        finds no checkpoint starts from the earliest, not from when it took the lease.
        """
        try:
            await self._coll.update_one({"_id": self._name}, {"$min": {"seed": start}}, upsert=True)
        except PyMongoError as e:
            raise translate(e, f"seeding the checkpoint in {self.where}") from e

    async def seeded(self) -> Timestamp | None:
        """The start `seed` recorded (None if none, or if a checkpoint was saved since)."""
        try:
            document = await self._coll.find_one({"_id": self._name})
        except PyMongoError as e:
            raise translate(e, f"reading the checkpoint from {self.where}") from e
        seed = None if document is None else document.get("seed")
        return seed if isinstance(seed, Timestamp) else None

    async def claim(self, term: int) -> None:
        """Raise the document's term to ``term`` (a new leader's first write), creating it."""
        try:
            await self._coll.update_one(
                {"_id": self._name, "$or": [{"term": {"$exists": False}}, {"term": {"$lt": term}}]},
                {"$set": {"term": term}},
                upsert=True,
            )
        except DuplicateKeyError as e:
            raise CheckpointFenced(
                f"the checkpoint in {self.where} already belongs to term {term} or newer"
            ) from e
        except PyMongoError as e:
            raise translate(e, f"claiming the checkpoint in {self.where}") from e
        self.term = term

    async def reset(self) -> None:
        """Delete the document."""
        try:
            await self._coll.delete_one({"_id": self._name})
        except PyMongoError as e:
            raise translate(e, f"resetting the checkpoint in {self.where}") from e

    async def close(self) -> None:
        """The client belongs to the caller: nothing to release."""
