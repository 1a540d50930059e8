"""The Python contenders of `make bench`: the raw pymongo ceiling and gtom's two faces.

    python bench/peers/py_contender.py --impl raw|gtom-sync|gtom-async --uri URI --mode MODE \
        --db DB --expect N [--after SECS.INC] [--segments K]

Speaks bench/peers/PROTOCOL.md. One more mode, ``latency``: tail from now, print ``READY`` on
stderr, and for each of the N documents the harness then inserts (each carries ``t``, its
``time.time()`` just before the insert) record how long after that it arrived.

The raw ceiling does the least a reader can: a tailable cursor, ``watch()`` or ``find()`` with
`RawBSONDocument` (no decoding beyond the one field it needs to count), counting only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import bson
import protocol  # bench/peers/protocol.py, beside this file
from bson import Timestamp
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient, CursorType, MongoClient

import gtom

COUNTED_OPS = {"i", "u", "d"}
#: Ids per fetch query: gtom's buffer_size and gtm's BufferSize.
FETCH_IDS = 50
COUNTED_EVENTS = {"insert", "update", "replace", "delete"}


class Clock:
    """start / first / last on one monotonic clock, and per-event latencies."""

    def __init__(self, expect: int, latency: bool) -> None:
        self.expect = expect
        self.count = 0
        self.start = time.perf_counter()
        self.first = 0.0
        self.last = 0.0
        self.latency = latency
        self.latencies: list[float] = []

    def event(self, doc: Any = None) -> bool:
        """Count one event; True once the expected number arrived."""
        now = time.perf_counter()
        if self.latency and doc is not None:
            self.latencies.append(time.time() - doc["t"])
        self.count += 1
        if self.count == 1:
            self.first = now
        if self.count >= self.expect:
            self.last = now
            return True
        return False

    def result(self, note: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "count": self.count,
            "start": 0.0,
            "first": self.first - self.start,
            "last": self.last - self.start,
            "note": note,
        }
        if self.latencies:
            ms = sorted(x * 1000 for x in self.latencies)
            out["latency_ms"] = {
                "p50": statistics.median(ms),
                "p99": ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))],
                "max": ms[-1],
            }
        return out


def parse_ts(text: str) -> Timestamp:
    return Timestamp(*protocol.parse_after(text))


def ready() -> None:
    print("READY", file=sys.stderr, flush=True)


# -- the raw ceiling ---------------------------------------------------------------------------


def raw(args: argparse.Namespace) -> dict[str, Any]:
    client: MongoClient[RawBSONDocument] = MongoClient(args.uri, document_class=RawBSONDocument)
    latency = args.mode == "latency"
    clock = Clock(args.expect, latency)
    prefix = f"{args.db}."
    if args.mode == "latency":
        # SecantusDB's Rust server: a tailable cursor never sees newer entries, so poll with
        # plain reads, at the pace gtom polls there (gtom._async.oplog.POLL_SECONDS).
        last = gtom.last_op_timestamp(MongoClient(args.uri))
        ready()
        done = False
        while not done:
            for entry in client.local.oplog.rs.find({"ts": {"$gt": last}}):
                last = entry["ts"]
                if entry["op"] == "i" and entry["ns"].startswith(prefix):
                    done = clock.event(entry["o"])
                    if done:
                        break
            time.sleep(0.02)
        note = "plain oplog reads every 20 ms (tailable cursors go stale on this server)"
    elif args.mode == "oplog":
        cursor = client.local.oplog.rs.find(
            {"ts": {"$gt": parse_ts(args.after)}}, cursor_type=CursorType.TAILABLE_AWAIT
        )
        for entry in cursor:
            if entry["op"] in COUNTED_OPS and entry["ns"].startswith(prefix) and clock.event():
                break
        note = "tailable cursor on local.oplog.rs, RawBSONDocument, default batch sizes"
    elif args.mode == "changes":
        after = parse_ts(args.after)
        with client[args.db].watch(
            start_at_operation_time=Timestamp(after.time, after.inc + 1)
        ) as stream:
            for event in stream:
                if event["operationType"] in COUNTED_EVENTS and clock.event():
                    break
        note = "db.watch(), RawBSONDocument, no fullDocument lookup"
    else:
        for name in client[args.db].list_collection_names():
            for _ in client[args.db][name].find():
                if clock.event():
                    break
        note = "find() per collection, one cursor, RawBSONDocument (no splitting)"
    return clock.result(note)


def raw_fetch(args: argparse.Namespace) -> dict[str, Any]:
    """The ceiling of fetching updated documents: tail raw, fetch 50 ids per ``$in`` query."""
    if args.mode != "oplog":
        return {"unsupported": "raw-fetch is the ceiling of oplog tailing with fetches only"}
    client: MongoClient[RawBSONDocument] = MongoClient(args.uri, document_class=RawBSONDocument)
    clock = Clock(args.expect, False)
    prefix = f"{args.db}."
    batches = client.local.oplog.rs.find_raw_batches(
        {"ts": {"$gt": parse_ts(args.after)}}, cursor_type=CursorType.TAILABLE_AWAIT
    )
    raw_codec: CodecOptions[RawBSONDocument] = CodecOptions(document_class=RawBSONDocument)
    done = False
    for batch in batches:
        updated: dict[str, list[Any]] = {}
        for entry in bson.decode_all(batch, raw_codec):
            op, ns = entry["op"], entry["ns"]
            if op not in COUNTED_OPS or not ns.startswith(prefix):
                continue
            if op == "u":
                updated.setdefault(ns, []).append(entry["o2"]["_id"])
            elif clock.event():
                done = True
                break
        # The batch's updates: their documents, 50 ids per query, one query at a time.
        for ns, ids in updated.items():
            db, _, name = ns.partition(".")
            for start in range(0, len(ids), FETCH_IDS):
                group = ids[start : start + FETCH_IDS]
                for _ in client[db][name].find({"_id": {"$in": group}}):
                    pass
                for _ in group:
                    done = done or clock.event()
                if done:
                    break
            if done:
                break
        if done:
            break
    note = f"find_raw_batches on local.oplog.rs; per batch, $in of {FETCH_IDS} ids, one at a time"
    return clock.result(note)


# -- gtom --------------------------------------------------------------------------------------


#: Configured as the gtm contender is (bench/peers/gtm/main.go): ChannelSize 2048, BufferSize 50,
#: BufferDuration 75 ms.
LIKE_GTM = {"channel_size": 2048, "buffer_size": 50, "buffer_duration": 0.075}


def gtom_options(args: argparse.Namespace, client: Any) -> tuple[gtom.Options, str]:
    options, note = _gtom_options(args, client)
    return options.replace(**LIKE_GTM), note + "; channel_size=2048, buffer_duration=75 ms (as gtm)"


def _gtom_options(args: argparse.Namespace, client: Any) -> tuple[gtom.Options, str]:
    prefix = f"{args.db}."
    if args.mode in ("oplog", "latency"):
        after = parse_ts(args.after) if args.after else None

        def keep(op: gtom.Op) -> bool:
            return op.namespace.startswith(prefix)

        options = gtom.Options(
            after=(lambda c, o: after) if after is not None else None,
            namespace_filter=keep,
            update_data_as_delta=args.deltas,
        )
        note = "oplog tail, namespace_filter on the db, " + (
            "update_data_as_delta=True (no query per update)"
            if args.deltas
            else "default options (updated documents fetched, 50 per query)"
        )
    elif args.mode == "changes":
        after = parse_ts(args.after)
        options = gtom.Options(
            oplog_disabled=True, change_stream_ns=[args.db], after=lambda c, o: after
        )
        note = "change stream on the db, default options (fullDocument=updateLookup)"
    else:
        names = MongoClient(args.uri)[args.db].list_collection_names()
        segments = max(1, args.segments)
        options = gtom.Options(
            oplog_disabled=True,
            direct_read_ns=[f"{args.db}.{name}" for name in names],
            direct_read_split_max=segments - 1,
            direct_read_concur=segments,
        )
        note = f"direct reads, split_max={segments - 1}, concur={segments}"
    return options, note


def gtom_sync(args: argparse.Namespace) -> dict[str, Any]:
    client: MongoClient[dict[str, Any]] = MongoClient(args.uri)
    latency = args.mode == "latency"
    options, note = gtom_options(args, client)
    clock = Clock(args.expect, latency)
    with gtom.start(client, options) as ctx:
        if latency:
            ready()
        for op in ctx:
            if op.operation in COUNTED_OPS and clock.event(op.data if latency else None):
                break
    return clock.result("sync face: " + note)


def gtom_async(args: argparse.Namespace) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(args.uri)
        latency = args.mode == "latency"
        options, note = gtom_options(args, client)
        clock = Clock(args.expect, latency)
        try:
            async with await gtom.start_async(client, options) as ctx:
                if latency:
                    ready()
                async for op in ctx:
                    if op.operation in COUNTED_OPS and clock.event(op.data if latency else None):
                        break
        finally:
            await client.close()
        return clock.result("asyncio face: " + note)

    return asyncio.run(run())


IMPLS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "raw": raw,
    "raw-fetch": raw_fetch,
    "gtom-sync": gtom_sync,
    "gtom-async": gtom_async,
}


def main() -> int:
    parser = protocol.parser(
        __doc__.splitlines()[0],
        "SECS.INC: start strictly after this oplog timestamp",
        (*protocol.MODES, "latency"),
    )
    parser.add_argument("--impl", choices=sorted(IMPLS), required=True)
    parser.add_argument("--deltas", action="store_true", help="gtom: update_data_as_delta")
    args = parser.parse_args()
    print(json.dumps(IMPLS[args.impl](args)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
