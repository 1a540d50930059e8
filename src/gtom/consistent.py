"""Split the ops between several named workers, each op to exactly one, by its document ``_id``.

Every worker process runs the same gtom context with its own name and the same list of names::

    # workers.toml:  Workers = ["Tom", "Dick", "Harry"]
    keep = gtom.consistent.consistent_hash_filter_from_file("Dick", "workers.toml")
    ctx = gtom.start(client, gtom.Options(filter=keep))

Each op goes to the one worker that owns its ``_id`` on a consistent-hash ring, so every change
of one document reaches the same worker, in order. Ops without an ``_id`` (drops, renames, other
commands) go to every worker, since each holds part of the affected data. Adding or removing a
worker moves only the keys that worker gains or loses (about 1/n of them), not a reshuffle.

The hash is a BLAKE2b digest of the ``_id`` encoded as BSON, so it is the same in every process,
machine and Python version (Python's ``hash()`` is randomised per process). Workers must decode
documents the same way (the same ``uuidRepresentation`` in their connection strings).

Within one process, `partition` spreads ops over ``n`` parallel consumers the same way: gtom
delivers in strict oplog order, and the changes of one document stay in one partition, in order.
"""

from __future__ import annotations

import bisect
import hashlib
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import bson
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions

from gtom._errors import ConfigurationError
from gtom._op import Op, OpFilter

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "VIRTUAL_NODES",
    "ConsistentHashRing",
    "check_workers",
    "consistent_hash_filter",
    "consistent_hash_filter_from_document",
    "consistent_hash_filter_from_file",
    "key_of",
    "partition",
]

#: Points each worker has on the ring: more points, more even shares (about ±1/sqrt(n)).
VIRTUAL_NODES = 512
_KEY = "Workers"
_ENCODE: CodecOptions[dict[str, Any]] = CodecOptions(
    uuid_representation=UuidRepresentation.STANDARD
)


def _digest(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def key_of(document_id: Any) -> bytes:
    """The bytes an ``_id`` hashes as: its BSON encoding (the same in every process)."""
    if isinstance(document_id, uuid.UUID):
        document_id = bson.Binary.from_uuid(document_id)
    try:
        return bson.encode({"_id": document_id}, codec_options=_ENCODE)
    except (bson.InvalidDocument, TypeError, ValueError, OverflowError):
        return repr(document_id).encode()  # not BSON (an unmarshalled value): its repr


def partition(op: Op, partitions: int) -> int | None:
    """The partition (``0 <= p < partitions``) of ``op``'s document, or None for a command.

    gtom delivers ops in strict oplog order. To process them in parallel, give each partition
    its own consumer (a thread, a task, a queue) and hand every op to the one ``partition(op, n)``
    names: every change of one document goes to the same partition, so per-document order holds.
    None means the op has no ``_id`` (a drop, a rename, another command): it concerns whole
    collections, so wait until every partition has drained, apply it, then go on. The result
    depends only on the ``_id`` and ``partitions``, in every process.
    """
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ConfigurationError(f"partitions must be a positive int, got {partitions!r}")
    if op.id is None:
        return None
    return _digest(key_of(op.id)) % partitions


class ConsistentHashRing:
    """A consistent-hash ring over worker names, with `VIRTUAL_NODES` points per worker."""

    def __init__(self, workers: Sequence[str], virtual_nodes: int = VIRTUAL_NODES) -> None:
        """Place every worker's points on the ring (``workers`` as `check_workers` accepts)."""
        self.workers = check_workers(workers)
        points = sorted(
            (_digest(f"{worker}\x00{i}".encode()), worker)
            for worker in self.workers
            for i in range(virtual_nodes)
        )
        self._points = [point for point, _ in points]
        self._owners = [worker for _, worker in points]

    def owner(self, key: bytes) -> str:
        """The worker owning ``key``: the first point at or after the key's hash, clockwise."""
        at = bisect.bisect_left(self._points, _digest(key))
        return self._owners[at % len(self._owners)]

    def owner_of(self, document_id: Any) -> str:
        """The worker owning the document with this ``_id``."""
        return self.owner(key_of(document_id))


def check_workers(workers: Any, where: str = "Workers") -> list[str]:
    """The worker names, or a `ConfigurationError` saying what is wrong with the list."""
    if isinstance(workers, (str, bytes)) or not isinstance(workers, Sequence):
        raise ConfigurationError(
            f'{where} must be a list of worker names, like ["Tom", "Dick", "Harry"], '
            f"got {workers!r}"
        )
    if not workers:
        raise ConfigurationError(f"{where} is empty: name at least one worker")
    names: list[str] = []
    for name in workers:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(
                f"{where} must hold non-empty strings (worker names), got {name!r}"
            )
        if name in names:
            raise ConfigurationError(f"{where} names worker {name!r} twice")
        names.append(name)
    return names


def consistent_hash_filter(name: str, workers: Sequence[str]) -> OpFilter:
    """An op filter keeping the ops worker ``name`` owns among ``workers`` (see the module)."""
    ring = ConsistentHashRing(workers)
    if name not in ring.workers:
        raise ConfigurationError(
            f"worker {name!r} is not one of the workers {ring.workers}: "
            f"give this process one of those names, or add it to the list"
        )

    def keep(op: Op) -> bool:
        if op.id is None:
            return True  # a command: every worker sees it
        return ring.owner_of(op.id) == name

    keep.__qualname__ = f"consistent_hash_filter({name!r})"
    return keep


def consistent_hash_filter_from_document(name: str, document: Mapping[str, Any]) -> OpFilter:
    """The filter for worker ``name``, with the names from ``document["Workers"]``.

    Other keys are ignored, so a document read back from MongoDB (with its ``_id``) works.
    """
    if not isinstance(document, Mapping):
        raise ConfigurationError(
            f'the workers document must be a mapping like {{"Workers": [...]}}, got {document!r}'
        )
    if _KEY not in document:
        keys = ", ".join(repr(k) for k in document) or "none"
        raise ConfigurationError(
            f'the workers document has no "{_KEY}" list of worker names (its keys: {keys})'
        )
    return consistent_hash_filter(name, check_workers(document[_KEY]))


def consistent_hash_filter_from_file(name: str, path: str | Path) -> OpFilter:
    """The filter for worker ``name``, with the names from a TOML file's ``Workers`` list."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigurationError(f"cannot read the workers file {str(path)!r}: {e}") from e
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigurationError(f"the workers file {str(path)!r} is not valid TOML: {e}") from e
    try:
        return consistent_hash_filter_from_document(name, document)
    except ConfigurationError as e:
        raise ConfigurationError(f"the workers file {str(path)!r}: {e}") from e
