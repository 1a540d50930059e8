"""Fetching the documents of oplog updates: one ``$in`` query per namespace and batch.

An oplog update entry says what changed; the caller usually wants the whole document. The
`Fetcher` fills ``op.data`` of such ops with the document as it is when fetched (None when it was
deleted since: a delete follows in the stream). Queries carry at most ``buffer_size`` ids and
up to ``worker_count`` run at once. A transient failure is retried with a capped, jittered
backoff; an op is never handed on with its document silently missing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient

from gtom._async._compat import Gather, Signal
from gtom._async.queue import OpQueue
from gtom._async.retrying import retrying
from gtom._errors import call_user
from gtom._extjson import read_codec_options
from gtom._op import Op
from gtom._options import Options
from gtom._pending import needs_document

__all__ = ["Fetcher", "delta"]

Client = AsyncMongoClient[Any]


def delta(op: Op) -> dict[str, Any] | None:
    """An update's change as an update document (``update_data_as_delta``)."""
    description = op.update_description
    if description is None:
        return None
    change: dict[str, Any] = {"$set": dict(description.get("updatedFields") or {})}
    removed = description.get("removedFields") or []
    if removed:
        change["$unset"] = dict.fromkeys(removed, True)
    return change


def _key(value: Any, codec: CodecOptions[Any]) -> bytes:
    """A hashable key for an ``_id`` (BSON values such as documents are not hashable).

    Encoded with the client's codec options: its UUIDs must be encoded as they were decoded.
    """
    return bson.encode({"_": value}, codec_options=codec)


class Fetcher:
    """Fills in the documents of oplog updates, in batches."""

    def __init__(
        self, client: Client, options: Options, err_c: OpQueue[Exception], halt: Signal
    ) -> None:
        """Fetch through ``client``; report retried errors on ``err_c``; give up once ``halt``."""
        self._client = client
        self._options = options
        self._err_c = err_c
        self._halt = halt
        self._log = options.log
        self._gather = Gather(options.worker_count, "gtom-fetch")
        self._raw = options.unmarshal is not None
        self._codec: CodecOptions[dict[str, Any]] = read_codec_options(client.codec_options)

    def close(self) -> None:
        """Release the fetchers' resources."""
        self._gather.close()

    async def fill(self, ops: list[Op]) -> None:
        """Set ``data`` (and ``doc``) of every op of ``ops`` that needs its document."""
        wanted: dict[str, dict[bytes, Any]] = {}
        for op in ops:
            if needs_document(op):
                wanted.setdefault(op.namespace, {})[_key(op.id, self._codec)] = op.id
        if not wanted:
            return
        size = self._options.buffer_size
        jobs: list[Callable[[], Any]] = []
        for ns, ids in wanted.items():
            values = list(ids.values())
            jobs += [
                functools.partial(self._fetch, ns, values[start : start + size])
                for start in range(0, len(values), size)
            ]
        found: dict[tuple[str, bytes], Any] = {}
        for ns, documents in await self._gather.run(jobs):
            for document in documents:
                found[(ns, _key(document["_id"], self._codec))] = document
        unmarshal = self._options.unmarshal
        for op in ops:
            if not needs_document(op):
                continue
            document = found.get((op.namespace, _key(op.id, self._codec)))
            if document is None:
                continue  # deleted since: data stays None, and the delete comes later
            if unmarshal is not None:
                op.data = bson.decode(document.raw, self._codec)
                op.doc = call_user("unmarshal", unmarshal, op.namespace, document)
            else:
                op.data = document

    async def _fetch(self, ns: str, ids: list[Any]) -> tuple[str, list[Any]]:
        """The documents of ``ids`` in ``ns``, retried while the failure is transient."""
        db, _, coll_name = ns.partition(".")
        codec: CodecOptions[Any] = self._codec
        if self._raw:
            codec = codec.with_options(document_class=RawBSONDocument)
        coll = self._client[db].get_collection(coll_name, codec_options=codec)

        async def attempt() -> tuple[str, list[Any]]:
            return ns, await coll.find({"_id": {"$in": ids}}).to_list()

        return await retrying(
            f"fetching updated documents of {ns}",
            attempt,
            err_c=self._err_c,
            log=self._log,
            halt=self._halt,
        )
