"""`Options`: every setting of a gtom context, keyword-only, validated up front."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bson import Timestamp
from bson.raw_bson import RawBSONDocument

from gtom._errors import ConfigurationError
from gtom._op import Op

__all__ = ["DEFAULT_CHANNEL_SIZE", "AfterFunc", "Options", "PipeFunc", "UnmarshalFunc"]

DEFAULT_CHANNEL_SIZE = 20
DEFAULT_BUFFER_SIZE = 50
DEFAULT_BUFFER_DURATION = 0.75
DEFAULT_DIRECT_READ_SPLIT_MAX = 9
DEFAULT_OPLOG_DATABASE = "local"
DEFAULT_OPLOG_COLLECTION = "oplog.rs"
DEFAULT_FULL_DOCUMENT = "updateLookup"
_FULL_DOCUMENT_CHOICES = ("updateLookup", "required", "whenAvailable", "default")
_BEFORE_CHANGE_CHOICES = (None, "off", "whenAvailable", "required")

AfterFunc = Callable[[Any, "Options"], "Timestamp | Awaitable[Timestamp]"]
"""``after(client, options) -> Timestamp``: tailing delivers ops strictly after it (may be async
for ``start_async``)."""
PipeFunc = Callable[[str, bool], "Sequence[Mapping[str, Any]] | None"]
"""``pipe(namespace, change_stream) -> pipeline | None``."""
UnmarshalFunc = Callable[[str, RawBSONDocument], Any]
"""``unmarshal(namespace, raw_document) -> anything``; the result is ``op.doc``."""


def _default_concurrency() -> int:
    return 2 * (os.cpu_count() or 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """How a gtom context tails, filters and delivers ops. Every field is optional."""

    namespace_filter: Callable[[Op], bool] | None = None
    """Keep an op or not, seeing only its operation and namespace (runs before any decoding of
    the document, so it is the cheap way to select namespaces)."""
    filter: Callable[[Op], bool] | None = None
    """Keep an op or not, seeing its document too (runs after the namespace filter)."""
    after: AfterFunc | None = None
    """``fn(client, options) -> Timestamp``: tail ops strictly after it. Default: the newest
    oplog entry when the context starts, so any write made after ``start`` returns is seen.
    ``Timestamp(0, 0)`` means the oldest entry the oplog still has."""
    oplog_disabled: bool = False
    """Do not tail the oplog (use change streams and/or direct reads only)."""
    oplog_database_name: str = DEFAULT_OPLOG_DATABASE
    """Database holding the oplog."""
    oplog_collection_name: str = DEFAULT_OPLOG_COLLECTION
    """Collection holding the oplog."""
    channel_size: int = DEFAULT_CHANNEL_SIZE
    """Capacity of ``op_c``, the queue ops wait in until the caller takes them."""
    buffer_size: int = DEFAULT_BUFFER_SIZE
    """Updates whose full documents are fetched together in one query."""
    buffer_duration: float = DEFAULT_BUFFER_DURATION
    """Seconds to wait for a fetch batch to fill before fetching anyway."""
    worker_count: int = 1
    """Concurrent document fetchers."""
    include_internal: bool = False
    """Also deliver the oplog ops of internal namespaces (the server's own bookkeeping: the
    ``local`` and ``config`` databases and ``system.*`` collections; see docs/oplog.md). Change
    streams never show them."""
    update_data_as_delta: bool = False
    """For oplog updates, ``op.data`` is the change itself instead of the fetched document."""
    direct_read_ns: Sequence[str] = ()
    """Collections or views (``"db.coll"``) to read whole, as ``"i"`` ops. With tailing, the
    tailing position is taken before the copy starts and tailed ops follow once it is done."""
    direct_read_resume: Mapping[str, Any] = field(default_factory=dict)
    """A ``ctx.direct_read_checkpoint()`` of an unfinished copy: continue it instead of
    starting over (namespaces not in it are read from the start)."""
    direct_read_split_max: int = DEFAULT_DIRECT_READ_SPLIT_MAX
    """Split each direct read into at most this many + 1 segments."""
    direct_read_concur: int = field(default_factory=_default_concurrency)
    """Segments read at the same time (default: twice the CPU count)."""
    pipe: PipeFunc | None = None
    """``fn(namespace, change_stream) -> pipeline``: aggregation stages per namespace."""
    pipe_allow_disk: bool = False
    """Let pipelines of direct reads spill to disk."""
    split_vector: bool = False
    """Use the ``splitVector`` command to split direct reads, where allowed."""
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("gtom"))
    """Where gtom logs (retries, recoveries, decisions)."""
    change_stream_ns: Sequence[str] = ()
    """Change streams to follow: ``"db.coll"``, ``"db"`` (a database) or ``""`` (everything)."""
    max_wait_secs: float = 0
    """``maxAwaitTimeMS`` of change streams, in seconds (0: gtom's default, 0.5 s)."""
    unmarshal: UnmarshalFunc | None = None
    """``fn(namespace, raw) -> object`` stored in ``op.doc``."""
    resume_tokens: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Change-stream entry -> resume token to resume after (wins over ``after``)."""
    full_document: str = DEFAULT_FULL_DOCUMENT
    """Change streams' ``fullDocument``: ``"updateLookup"`` (updates carry the document as it is
    when the event is read), ``"whenAvailable"``/``"required"`` (post-images, where the
    collection records them), or ``"default"`` (updates carry no document)."""
    full_document_before_change: str | None = None
    """Change streams' ``fullDocumentBeforeChange`` (``"whenAvailable"``, ``"required"``): the
    pre-image, as ``op.before``, where the collection records pre-images."""
    show_expanded_events: bool = False
    """Change streams also report create, createIndexes, dropIndexes, modify and sharding
    events (MongoDB 6.0+), and update descriptions carry ``disambiguatedPaths`` (6.1+); oplog
    updates then carry ``disambiguatedPaths`` too."""

    def validate(self) -> Options:
        """Check every field and return self; raise `ConfigurationError` naming the bad one."""
        _check_positive_int("channel_size", self.channel_size)
        _check_positive_int("buffer_size", self.buffer_size)
        _check_positive_int("worker_count", self.worker_count)
        _check_positive_int("direct_read_concur", self.direct_read_concur)
        if not isinstance(self.direct_read_split_max, int) or self.direct_read_split_max < 0:
            raise ConfigurationError(
                f"direct_read_split_max must be an integer >= 0, got {self.direct_read_split_max!r}"
            )
        for name in ("buffer_duration", "max_wait_secs"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(f"{name} must be a number of seconds >= 0, got {value!r}")
        for name in ("oplog_disabled", "include_internal", "update_data_as_delta", "split_vector"):
            flag = getattr(self, name)
            if not isinstance(flag, bool):
                raise ConfigurationError(f"{name} must be True or False, got {flag!r}")
        for name in ("namespace_filter", "filter", "after", "pipe", "unmarshal"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigurationError(f"{name} must be a function or None, got {value!r}")
        for name in ("oplog_database_name", "oplog_collection_name"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
        for name in ("direct_read_ns", "change_stream_ns"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigurationError(f"{name} must be a list of strings, got {value!r}")
        for ns in self.direct_read_ns:
            _check_collection_namespace("direct_read_ns", ns)
        if len(set(self.direct_read_ns)) != len(self.direct_read_ns):
            raise ConfigurationError(f"direct_read_ns has duplicates: {self.direct_read_ns!r}")
        if not isinstance(self.direct_read_resume, Mapping):
            raise ConfigurationError(
                f"direct_read_resume must be a checkpoint document, got {self.direct_read_resume!r}"
            )
        unknown_reads = set(self.direct_read_resume) - set(self.direct_read_ns)
        if unknown_reads:
            raise ConfigurationError(
                f"direct_read_resume names namespaces that are not in direct_read_ns: "
                f"{sorted(unknown_reads)}"
            )
        if self.full_document not in _FULL_DOCUMENT_CHOICES:
            raise ConfigurationError(
                f"full_document must be one of {', '.join(_FULL_DOCUMENT_CHOICES)},"
                f" got {self.full_document!r}"
            )
        if self.full_document_before_change not in _BEFORE_CHANGE_CHOICES:
            raise ConfigurationError(
                "full_document_before_change must be None, 'off', 'whenAvailable' or 'required',"
                f" got {self.full_document_before_change!r}"
            )
        for stream_id in self.change_stream_ns:
            db, dot, coll = stream_id.partition(".")
            bad_db = not db or any(c in _BAD_DATABASE_CHARS for c in db)
            bad_coll = dot and (not coll or coll.startswith(".") or "$" in coll)
            if stream_id and (bad_db or bad_coll):
                raise ConfigurationError(
                    "change_stream_ns entries must be 'db.collection', 'db' or '' (everything),"
                    f" got {stream_id!r}"
                )
        if len(set(self.change_stream_ns)) != len(self.change_stream_ns):
            raise ConfigurationError(f"change_stream_ns has duplicates: {self.change_stream_ns!r}")
        unknown_tokens = set(self.resume_tokens) - set(self.change_stream_ns)
        if unknown_tokens:
            raise ConfigurationError(
                f"resume_tokens names streams that are not in change_stream_ns: "
                f"{sorted(unknown_tokens)}"
            )
        if not isinstance(self.log, logging.Logger):
            raise ConfigurationError(f"log must be a logging.Logger, got {self.log!r}")
        return self

    def replace(self, **changes: Any) -> Options:
        """A copy of these options with some fields changed."""
        return dataclasses.replace(self, **changes)


#: Characters a MongoDB database name may not contain.
_BAD_DATABASE_CHARS = frozenset('/\\. "$*<>:|?\0')


def _check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")


def _check_collection_namespace(option: str, ns: str) -> None:
    db, dot, coll = ns.partition(".")
    if not db or not dot or not coll:
        raise ConfigurationError(f"{option} entries must look like 'db.collection', got {ns!r}")


def resolve(options: Options | None) -> Options:
    """The validated options to use when the caller passed ``options`` (None = defaults)."""
    if options is None:
        return Options()
    if not isinstance(options, Options):
        raise ConfigurationError(f"options must be a gtom.Options or None, got {options!r}")
    return options.validate()
