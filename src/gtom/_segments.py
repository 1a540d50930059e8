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

import bson
from bson import Decimal128, ObjectId
from bson.codec_options import DEFAULT_CODEC_OPTIONS, CodecOptions

from gtom._errors import ConfigurationError

__all__ = [
    "BRACKETS",
    "ID_TYPES",
    "DirectReadProgress",
    "Segment",
    "boundaries_from_sample",
    "id_type",
    "is_nan",
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


#: BSON element type byte -> bracket.
_TYPE_BYTES = {
    0x01: "number",
    0x02: "string",
    0x03: "object",
    0x05: "binData",
    0x06: "null",  # undefined
    0x07: "objectId",
    0x08: "bool",
    0x09: "date",
    0x0A: "null",
    0x0B: "regex",
    0x0C: "dbPointer",
    0x0D: "javascript",
    0x0E: "string",  # symbol
    0x0F: "javascriptWithScope",
    0x10: "number",
    0x11: "timestamp",
    0x12: "number",
    0x13: "number",
    0xFF: "minKey",
    0x7F: "maxKey",
}


def id_type(value: Any, codec_options: CodecOptions[Any] = DEFAULT_CODEC_OPTIONS) -> str:
    """The bracket (see `BRACKETS`) of an ``_id`` value, from the BSON type it encodes to.

    Pass the client's ``codec_options`` for values it decodes specially (UUIDs, custom types).
    """
    try:
        encoded = bson.encode({"": value}, codec_options=codec_options)
    except (bson.InvalidDocument, ValueError, TypeError, OverflowError) as e:
        raise ConfigurationError(
            f"an _id of type {type(value).__name__} cannot be encoded with the client's codec "
            f"options: {e}"
        ) from e
    kind = _TYPE_BYTES.get(encoded[4])
    if kind is None:
        raise ConfigurationError(f"an _id cannot be of BSON type {encoded[4]:#x}")
    return kind


def is_nan(value: Any) -> bool:
    """Whether a number is NaN (it sorts first but matches no comparison in MongoDB)."""
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, Decimal128) and value.to_decimal().is_nan()


#: A filter matching nothing.
_NOTHING: dict[str, Any] = {"_id": {"$in": []}}


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
    #: The bracket of ``after``.
    after_type: str = "minKey"
    #: Kept for checkpoints written by earlier versions.
    paged: bool = field(default=True)

    def query(self) -> dict[str, Any]:
        """The filter selecting what this segment still has to read.

        A typed segment is ``{$type: its bracket}`` within its bounds; once started, strictly
        after ``after``. A segment of every type (``id_type`` None) resumes with "after it in its
        bracket, or of a later bracket". NaN sorts first in the number bracket but matches no
        comparison, so the first number segment asks for it by name and reading past it uses
        ``$gte: -Infinity``; ``$gt`` of MinKey would match everything, so it is never used.
        """
        if self.id_type is None:
            if not self.started:
                return {}
            clauses = []
            rest = self._after()
            if rest is not None:
                clauses.append({"_id": {**rest, "$type": list(BRACKETS[self.after_type])}})
            later = later_aliases(self.after_type)
            if later:
                clauses.append({"_id": {"$type": later}})
            if not clauses:
                return dict(_NOTHING)
            return clauses[0] if len(clauses) == 1 else {"$or": clauses}
        condition: dict[str, Any] = {"$type": list(BRACKETS[self.id_type])}
        if self.started:
            rest = self._after()
            if rest is None:
                return dict(_NOTHING)
            condition.update(rest)
        elif self.lower is not None:
            condition["$gte"] = self.lower
        if self.upper is not None:
            condition["$lt"] = self.upper
        if (
            self.id_type == "number"
            and self.lower is None
            and not self.started
            and self.upper is not None
        ):
            return {"$or": [{"_id": condition}, {"_id": math.nan}]}
        return {"_id": condition}

    def _after(self) -> dict[str, Any] | None:
        """After ``after`` within its bracket; None when its bracket holds nothing more."""
        if self.after_type in ("minKey", "maxKey", "null"):
            return None  # one value each (null and undefined compare equal)
        if is_nan(self.after):
            return {"$gte": -math.inf}
        return {"$gt": self.after}

    def advance(self, last_id: Any, count: int, kind: str) -> None:
        """Record ``count`` more documents queued, the last with ``_id`` ``last_id`` of ``kind``."""
        self.after, self.after_type, self.started = last_id, kind, True
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
            "after_type": self.after_type,
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
                after_type=str(document.get("after_type", "minKey")),
                paged=bool(document.get("paged", True)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigurationError(f"not a saved direct read segment: {document!r}") from e
        for kind in (segment.id_type, segment.after_type):
            if kind is not None and kind not in ID_TYPES:
                raise ConfigurationError(f"unknown _id type in a saved segment: {kind!r}")
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

    def combined(self, other: DirectReadProgress) -> DirectReadProgress:
        """The progress of the same namespace read in two places (two shards), summed."""
        totals = (self.estimated_total, other.estimated_total)
        return DirectReadProgress(
            namespace=self.namespace,
            read=self.read + other.read,
            estimated_total=None if None in totals else sum(t or 0 for t in totals),
            segments=self.segments + other.segments,
            segments_done=self.segments_done + other.segments_done,
            done=self.done and other.done,
        )


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


def boundaries_from_sample(
    kind: str,
    sample: Sequence[Any],
    segments: int,
    codec_options: CodecOptions[Any] = DEFAULT_CODEC_OPTIONS,
) -> list[Any]:
    """Boundaries from a random sample of ``_id``s of one type (none if Python cannot order it)."""
    if kind not in _ORDERABLE:
        return []
    of_kind = [v for v in sample if id_type(v, codec_options) == kind and not is_nan(v)]
    if not all(
        isinstance(v, (int, float, Decimal128, str, ObjectId, datetime.datetime)) for v in of_kind
    ):
        return []  # e.g. UUIDs decoded as such: not ordered like MongoDB orders them
    values = sorted(of_kind, key=_key)
    distinct = [v for i, v in enumerate(values) if i == 0 or _key(v) != _key(values[i - 1])]
    return pick_boundaries(distinct, segments)


def _key(value: Any) -> Any:
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, str):
        return value.encode()  # MongoDB compares strings by their UTF-8 bytes
    return value
