"""Segments of a direct read: which ``_id``s each one covers, and where it has got to. Pure.

A collection is read in segments, each an ``_id`` range within one BSON type: MongoDB's range
operators only match values of their bound's type ("type bracketing"), so a range over ints
never sees a string ``_id``. gtom therefore finds which ``_id`` types a collection holds and
covers each type on its own: together the segments cover every document exactly once.

A segment reads in ``_id`` order and remembers the last ``_id`` it queued (``after``): after a
lost cursor, a network error or a restart it continues strictly after it (keyset paging), so no
document is lost or read twice. Segments convert to and from plain documents so a caller can
checkpoint a copy and finish it in another process.
"""

from __future__ import annotations

import datetime
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bson import Decimal128, Int64, ObjectId, Regex, Timestamp
from bson.binary import Binary
from bson.code import Code
from bson.dbref import DBRef
from bson.max_key import MaxKey
from bson.min_key import MinKey

from gtom._errors import ConfigurationError

__all__ = [
    "BRACKETS",
    "ID_TYPES",
    "DirectReadProgress",
    "Segment",
    "boundaries_from_sample",
    "id_type",
    "later_aliases",
    "pick_boundaries",
    "segments_for",
]

#: The BSON types an ``_id`` can have, grouped as MongoDB compares them ("brackets"), in its
#: sort order, each with the ``$type`` aliases it covers. Range operators match only values of
#: their bound's bracket: ``{$lt: 5}`` never matches a string.
BRACKETS: dict[str, tuple[str, ...]] = {
    "minKey": ("minKey",),
    "null": ("undefined", "null"),  # pymongo decodes both as None
    "number": ("number",),  # int, long, double, decimal
    "string": ("string", "symbol"),  # pymongo decodes both as str
    "object": ("object",),
    "binData": ("binData",),
    "objectId": ("objectId",),
    "bool": ("bool",),
    "date": ("date",),
    "timestamp": ("timestamp",),
    "regex": ("regex",),
    "dbPointer": ("dbPointer",),
    "javascript": ("javascript",),
    "javascriptWithScope": ("javascriptWithScope",),
    "maxKey": ("maxKey",),
}
ID_TYPES: tuple[str, ...] = tuple(BRACKETS)


def later_aliases(kind: str) -> list[str]:
    """The ``$type`` aliases of every bracket sorting after ``kind``'s."""
    names = list(BRACKETS)
    return [alias for name in names[names.index(kind) + 1 :] for alias in BRACKETS[name]]


#: Types whose values Python orders the way MongoDB does (used to place sampled boundaries).
_ORDERABLE = frozenset({"number", "string", "objectId", "date"})


def id_type(value: Any) -> str:
    """The bracket (see `BRACKETS`) of an ``_id`` value as pymongo decodes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float, Int64, Decimal128)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, ObjectId):
        return "objectId"
    if isinstance(value, datetime.datetime):
        return "date"
    if isinstance(value, Timestamp):
        return "timestamp"
    if isinstance(value, (bytes, Binary)):
        return "binData"
    if isinstance(value, Regex):
        return "regex"
    if isinstance(value, Code):
        return "javascriptWithScope" if value.scope is not None else "javascript"
    if isinstance(value, DBRef):
        return "object"  # a DBRef is stored as an embedded document
    if isinstance(value, MinKey):
        return "minKey"
    if isinstance(value, MaxKey):
        return "maxKey"
    if isinstance(value, Mapping):
        return "object"
    raise ConfigurationError(f"an _id of type {type(value).__name__} cannot be a range bound")


@dataclass
class Segment:
    """The ``_id``s of one type in ``[lower, upper)`` (None: unbounded) of one namespace.

    ``after`` is the last ``_id`` queued (reading continues strictly after it); ``done`` says
    the segment was read to its end; ``count`` how many documents it queued.
    """

    namespace: str
    id_type: str | None
    lower: Any = None
    upper: Any = None
    after: Any = None
    started: bool = False
    done: bool = False
    count: int = 0
    #: A view without usable ``_id`` order is read in one unpaged pass (id_type None).
    paged: bool = field(default=True)

    def query(self) -> dict[str, Any]:
        """The filter selecting what this segment still has to read.

        Bounds alone select their bracket (type bracketing), so ``$type`` is only needed for a
        type's unbounded segment; a segment of every type (``id_type`` None) resumes with
        "greater in its bracket, or of a later bracket".
        """
        if self.id_type is None:
            if not self.started:
                return {}
            later = later_aliases(id_type(self.after))
            after = {"_id": {"$gt": self.after}}
            return {"$or": [after, {"_id": {"$type": later}}]} if later else after
        condition: dict[str, Any] = {}
        if self.started:
            condition["$gt"] = self.after
        elif self.lower is not None:
            condition["$gte"] = self.lower
        if self.upper is not None:
            condition["$lt"] = self.upper
        if not condition:
            condition["$type"] = list(BRACKETS[self.id_type])
        return {"_id": condition}

    def advance(self, last_id: Any, count: int) -> None:
        """Record that ``count`` more documents were queued, the last with ``_id`` ``last_id``."""
        self.after, self.started = last_id, True
        self.count += count

    def to_document(self) -> dict[str, Any]:
        """A BSON-able document of this segment's state (see `from_document`)."""
        return {
            "namespace": self.namespace,
            "id_type": self.id_type,
            "lower": self.lower,
            "upper": self.upper,
            "after": self.after,
            "started": self.started,
            "done": self.done,
            "count": self.count,
            "paged": self.paged,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Segment:
        """The segment saved by `to_document`; `ConfigurationError` if it is not one."""
        try:
            segment = cls(
                namespace=str(document["namespace"]),
                id_type=document["id_type"],
                lower=document.get("lower"),
                upper=document.get("upper"),
                after=document.get("after"),
                started=bool(document.get("started", False)),
                done=bool(document.get("done", False)),
                count=int(document.get("count", 0)),
                paged=bool(document.get("paged", True)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigurationError(f"not a saved direct read segment: {document!r}") from e
        if segment.id_type is not None and segment.id_type not in ID_TYPES:
            raise ConfigurationError(f"unknown _id type in a saved segment: {segment.id_type!r}")
        return segment


@dataclass(frozen=True)
class DirectReadProgress:
    """How far the direct read of one namespace has got."""

    namespace: str
    """The ``direct_read_ns`` entry."""
    read: int
    """Documents queued so far (including those of a resumed checkpoint)."""
    estimated_total: int | None
    """The server's estimate of the documents in the collection (None for a view or unknown)."""
    segments: int
    """Segments planned (0 while planning)."""
    segments_done: int
    """Segments read to their end."""
    done: bool
    """Whether every document has been queued."""


def segments_for(namespace: str, kind: str, boundaries: Sequence[Any]) -> list[Segment]:
    """The segments covering every ``_id`` of type ``kind``, split at ``boundaries`` (sorted)."""
    edges = [None, *boundaries, None]
    return [Segment(namespace, kind, lower=lo, upper=hi) for lo, hi in itertools.pairwise(edges)]


def pick_boundaries(candidates: Sequence[Any], segments: int) -> list[Any]:
    """At most ``segments - 1`` of the sorted, distinct ``candidates``, evenly spread."""
    if segments <= 1 or not candidates:
        return []
    step = len(candidates) / segments
    indexes = sorted({min(len(candidates) - 1, math.floor(i * step)) for i in range(1, segments)})
    return [candidates[i] for i in indexes]


def boundaries_from_sample(kind: str, sample: Sequence[Any], segments: int) -> list[Any]:
    """Boundaries from a random sample of ``_id``s of one type (none if Python cannot order it)."""
    if kind not in _ORDERABLE:
        return []
    values = sorted((v for v in sample if id_type(v) == kind and v == v), key=_key)  # no NaN
    distinct = [v for i, v in enumerate(values) if i == 0 or _key(v) != _key(values[i - 1])]
    return pick_boundaries(distinct, segments)


def _key(value: Any) -> Any:
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, str):
        return value.encode()  # MongoDB compares strings by their UTF-8 bytes
    return value
