"""Direct reads: whole collections and views copied as ``"i"`` ops, split, parallel, resumable.

For each namespace of ``direct_read_ns`` gtom *plans* segments (see `gtom._segments`): it finds
which BSON types the ``_id``s have, and splits each type's range into at most
``direct_read_split_max + 1`` segments with ``splitVector`` (``split_vector=True``), else
``$bucketAuto``, else ``$sample``, else not at all. Views are read as one segment per ``_id``
type. At most ``direct_read_concur`` plans and segment reads run at once.

Each segment is read in ``_id`` order and remembers the last ``_id`` queued, so a lost cursor,
a network error or a restart continues strictly after it, after a capped, jittered backoff:
nothing lost, nothing read twice.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from gtom._async._compat import Lock, Signal, Worker, sleep_until_set
from gtom._async.queue import Lane, OpQueue, QueueClosed
from gtom._async.retrying import retrying
from gtom._errors import ConfigurationError, GtomError, call_user
from gtom._extjson import read_codec_options
from gtom._op import Op, Source
from gtom._options import Options
from gtom._retry import describe, is_transient
from gtom._segments import (
    BRACKETS,
    DirectReadProgress,
    Segment,
    boundaries_from_sample,
    id_type,
    later_aliases,
    pick_boundaries,
    segments_for,
)

__all__ = ["DirectReads"]

Client = AsyncMongoClient[Any]
T = TypeVar("T")
#: A collection is split only into segments of at least this many documents (estimated).
MIN_SEGMENT_DOCS = 500
#: Ops queued in one put (at most).
MAX_PUT = 500
#: ``$sample`` size per wanted segment when sampling boundaries.
SAMPLES_PER_SEGMENT = 20


class _Namespace:
    """The plan and progress of one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.segments: list[Segment] = []
        self.planned = False
        self.estimated: int | None = None

    def progress(self) -> DirectReadProgress:
        return DirectReadProgress(
            namespace=self.namespace,
            read=sum(s.count for s in self.segments),
            estimated_total=self.estimated,
            segments=len(self.segments),
            segments_done=sum(s.done for s in self.segments),
            done=self.planned and all(s.done for s in self.segments),
        )


class DirectReads:
    """Plans and reads every ``direct_read_ns`` namespace into an `OpQueue`; `done` when all are."""

    def __init__(
        self,
        client: Client,
        options: Options,
        op_c: OpQueue[Op],
        err_c: OpQueue[Exception],
        resume: Mapping[str, Any] | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        """Prepare the reads; ``resume`` is a `checkpoint` of an earlier, unfinished copy.

        ``on_done`` is called (maybe more than once) when every document has been queued.
        """
        self.lane = Lane(gated=False)  # pause() does not hold direct reads back
        self.done = Signal()
        self._client = client
        self._options = options
        self._log = options.log
        self._op_c = op_c
        self._err_c = err_c
        self._halt = Signal()
        self._lock = Lock()
        self._namespaces = {ns: _Namespace(ns) for ns in options.direct_read_ns}
        self._units: deque[_Namespace | Segment] = deque()
        self._busy = 0
        self._failed = False
        for ns, state in self._namespaces.items():
            saved = (resume or {}).get(ns)
            if saved is None:
                self._units.append(state)
                continue
            state.segments = [Segment.from_document(s) for s in saved.get("segments", [])]
            state.estimated = saved.get("estimated_total")
            state.planned = True
            self._units.extend(s for s in state.segments if not s.done)
        self._workers: list[Worker] = []
        self._on_done = on_done
        self._ids_codec = client.codec_options

    # -- the context's view --------------------------------------------------------------------

    def start(self) -> list[Worker]:
        """Start the readers; return them (the context stops them)."""
        if not self._units:
            self._finish()
            return []
        count = self._options.direct_read_concur
        self._workers = [Worker(self._work, name=f"gtom-direct-read-{i}") for i in range(count)]
        return self._workers

    def _finish(self) -> None:
        with self._lock:
            if self.done.is_set():
                return
            self.done.set()
        if self._on_done is not None:
            self._on_done()

    def halt(self) -> None:
        """Make every reader end soon."""
        self._halt.set()

    def progress(self) -> dict[str, DirectReadProgress]:
        """Each namespace's progress."""
        with self._lock:
            return {ns: state.progress() for ns, state in self._namespaces.items()}

    def checkpoint(self) -> dict[str, Any]:
        """A BSON-able document of where each namespace is (``Options(direct_read_resume=...)``).

        A segment's position is the last ``_id`` *queued*: save it once ``op_c`` is drained.
        """
        with self._lock:
            return {
                ns: {
                    "segments": [s.to_document() for s in state.segments],
                    "estimated_total": state.estimated,
                }
                for ns, state in self._namespaces.items()
                if state.planned
            }

    # -- the readers ---------------------------------------------------------------------------

    async def _work(self) -> None:
        try:
            while not self._halt.is_set():
                with self._lock:
                    unit = self._units.popleft() if self._units else None
                    if unit is not None:
                        self._busy += 1
                    elif not self._busy:
                        break
                if unit is None:  # another reader is planning: its segments may come
                    await sleep_until_set(0.05, self._halt)
                    continue
                try:
                    if isinstance(unit, Segment):
                        await self._read(unit)
                    else:
                        await self._plan(unit)
                finally:
                    with self._lock:
                        self._busy -= 1
        except QueueClosed:
            self._halt.set()
        except GtomError as e:
            self._fail(e)
        except Exception as e:  # a bug: say so rather than hang
            self._log.exception("gtom: internal error in a direct read")
            self._fail(GtomError(f"internal error in a direct read: {e!r}"))
        with self._lock:
            finished = not self._units and not self._busy and not self._failed
        if finished and not self._halt.is_set():
            self._finish()

    def _fail(self, error: GtomError) -> None:
        self._failed = True
        self._halt.set()
        if not self.lane.cancelled:
            self._log.error("gtom: direct reads stopped: %s", error)
            self._op_c.close(error)

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        return await retrying(what, attempt, err_c=self._err_c, log=self._log, halt=self._halt)

    # -- planning ------------------------------------------------------------------------------

    async def _plan(self, state: _Namespace) -> None:
        ns = state.namespace
        segments = await self._retrying(
            f"planning the direct read of {ns}", lambda: self._split(state)
        )
        with self._lock:
            state.segments = segments
            state.planned = True
            self._units.extend(segments)
        self._log.info("gtom: direct read of %s in %d segment(s)", ns, len(segments))

    async def _split(self, state: _Namespace) -> list[Segment]:
        db_name, _, coll_name = state.namespace.partition(".")
        db = self._client[db_name]
        infos = await (await db.list_collections(filter={"name": coll_name})).to_list()
        view = bool(infos) and infos[0].get("type") == "view"
        coll = db[coll_name]
        if view:
            state.estimated = None
            return [Segment(state.namespace, None)]  # every _id type, in _id order
        state.estimated = await coll.estimated_document_count()
        wanted = min(
            self._options.direct_read_split_max + 1,
            max(1, math.ceil(state.estimated / MIN_SEGMENT_DOCS)),
        )
        if wanted == 1:
            return [Segment(state.namespace, None)]
        types = await self._id_types(coll)
        vector = await self._split_vector(state.namespace, wanted)
        segments: list[Segment] = []
        for kind in types:
            if vector is not None:
                points = [p for p in vector if id_type(p, self._ids_codec) == kind]
                boundaries = pick_boundaries(points, wanted)
            else:
                boundaries = await self._boundaries(coll, kind, wanted)
            segments += segments_for(state.namespace, kind, boundaries)
        return segments

    async def _id_types(self, coll: Any) -> list[str]:
        """The brackets of the collection's ``_id``s, in sort order.

        The smallest and the largest ``_id`` say it when they share a bracket (the usual case);
        otherwise one more query per bracket in between walks the ``_id`` index.
        """
        ends = []
        for direction in (1, -1):
            found = await coll.find({}, {"_id": 1}).sort("_id", direction).limit(1).to_list()
            if not found:
                return []
            ends.append(id_type(found[0]["_id"], self._ids_codec))
        kinds = [ends[0]]
        while kinds[-1] != ends[1]:
            query = {"_id": {"$type": later_aliases(kinds[-1])}}
            found = await coll.find(query, {"_id": 1}).sort("_id", 1).limit(1).to_list()
            if not found:
                break
            kinds.append(id_type(found[0]["_id"], self._ids_codec))
        return kinds

    async def _split_vector(self, namespace: str, wanted: int) -> list[Any] | None:
        """``splitVector``'s split points, or None when not asked for or not allowed."""
        if not self._options.split_vector:
            return None
        state = self._namespaces[namespace]
        per_segment = max(1, math.ceil((state.estimated or 0) / wanted))
        try:
            # mongod wants a size limit too; a huge one lets the object count decide.
            result = await self._client.admin.command(
                "splitVector",
                namespace,
                keyPattern={"_id": 1},
                maxChunkObjects=per_segment,
                maxChunkSizeBytes=1 << 50,
            )
        except OperationFailure as e:
            if is_transient(e):
                raise
            self._log.warning(
                "gtom: splitVector unavailable for %s (%s); splitting with $bucketAuto",
                namespace,
                describe(e),
            )
            return None
        return [key["_id"] for key in result.get("splitKeys", [])]

    async def _boundaries(self, coll: Any, kind: str, wanted: int) -> list[Any]:
        """Split points of one ``_id`` type: ``$bucketAuto``, else ``$sample``, else none."""
        match = {"$match": {"_id": {"$type": list(BRACKETS[kind])}}}
        try:
            buckets = await (
                await coll.aggregate(
                    [match, {"$bucketAuto": {"groupBy": "$_id", "buckets": wanted}}],
                    allowDiskUse=True,
                )
            ).to_list()
            return [bucket["_id"]["min"] for bucket in buckets[1:]]
        except OperationFailure as e:
            if is_transient(e):
                raise
            self._log.info("gtom: $bucketAuto failed on %s (%s)", coll.full_name, describe(e))
        try:
            sample = await (
                await coll.aggregate(
                    [
                        match,
                        {"$sample": {"size": wanted * SAMPLES_PER_SEGMENT}},
                        {"$project": {"_id": 1}},
                    ]
                )
            ).to_list()
            ids = [d["_id"] for d in sample]
            return boundaries_from_sample(kind, ids, wanted, self._ids_codec)
        except OperationFailure as e:
            if is_transient(e):
                raise
            self._log.info(
                "gtom: $sample failed on %s (%s); one segment", coll.full_name, describe(e)
            )
        return []

    # -- reading -------------------------------------------------------------------------------

    async def _read(self, segment: Segment) -> None:
        what = f"the direct read of {segment.namespace}"
        await self._retrying(what, lambda: self._read_rest(segment))

    async def _read_rest(self, segment: Segment) -> None:
        """Read what ``segment`` still lacks; the position moves after each put."""
        options = self._options
        ns = segment.namespace
        db_name, _, coll_name = ns.partition(".")
        raw = options.unmarshal is not None
        decode = read_codec_options(self._client.codec_options)
        read: CodecOptions[Any] = decode
        if raw:
            read = decode.with_options(document_class=RawBSONDocument)
        coll = self._client[db_name].get_collection(coll_name, codec_options=read)
        stages = call_user("pipe", options.pipe, ns, False) if options.pipe is not None else None
        cursor: Any
        if stages:
            pipeline = [{"$match": segment.query()}, {"$sort": {"_id": 1}}, *stages]
            cursor = await coll.aggregate(pipeline, allowDiskUse=options.pipe_allow_disk)
        else:
            cursor = coll.find(segment.query(), sort=[("_id", 1)])
        chunk = max(1, min(MAX_PUT, self._op_c.maxsize))
        try:
            while not self._halt.is_set():
                documents = await cursor.to_list(chunk)
                if not documents:
                    with self._lock:
                        segment.done = True
                    return
                if "_id" not in documents[-1]:
                    raise ConfigurationError(
                        f"the pipeline for direct reads of {ns} (from pipe) removed _id: "
                        f"gtom needs it to resume a read; keep _id"
                    )
                # Each chunk (at most the queue's size) enters the queue whole, then the
                # position moves past it: a checkpoint taken once the queue drains is exact.
                ops = self._ops(ns, documents, decode if raw else None)
                if ops and not await self._op_c.put_many(ops, self.lane, atomic=True):
                    raise QueueClosed
                last = documents[-1]["_id"]
                with self._lock:
                    segment.advance(last, len(ops), id_type(last, self._ids_codec))
        finally:
            await cursor.close()

    def _ops(self, ns: str, documents: list[Any], decode: CodecOptions[Any] | None) -> list[Op]:
        """The ops of ``documents``; ``decode`` is set when they are raw (for ``unmarshal``)."""
        options = self._options
        ns_filter, keep, unmarshal = options.namespace_filter, options.filter, options.unmarshal
        ops = []
        for document in documents:
            op = Op("i", ns, id=document.get("_id"), source=Source.DIRECT_READ)
            if ns_filter is not None and not call_user("namespace_filter", ns_filter, op):
                continue
            if decode is not None and unmarshal is not None:  # set together (both named for mypy)
                op.data = bson.decode(document.raw, decode)
                op.id = op.data.get("_id")
                op.doc = call_user("unmarshal", unmarshal, ns, document)
            else:
                op.data = document
            if keep is None or call_user("filter", keep, op):
                ops.append(op)
        return ops
