"""Change stream throughput: gtom (sync, asyncio) against raw pymongo ``watch()``.

One run, one server, one workload (the same as bench/tail_bench.py: 60% inserts, 30% $set
updates, 10% deletes in one collection); every figure is a median of --runs runs, printed with
its spread and as a ratio to raw ``watch()`` with the same ``fullDocument`` setting (events as
RawBSONDocument, untouched: the ceiling; "dicts" decodes them, as any consumer must):

    python bench/stream_bench.py [--events 20000] [--runs 3]

Every contender follows the collection's change stream from just before the first write to the
last event, as fast as it can (catch-up throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from bson import Timestamp
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient, MongoClient
from tail_bench import (
    DB,
    Result,
    bench_server,
    load,
    measure,
    print_arrivals,
)

import gtom
from gtom._position import next_timestamp

NS = f"{DB}.items"


def raw_watch(
    client: MongoClient[Any], before: Timestamp, n: int, full_document: str, raw: bool = True
) -> Result:
    """pymongo's change stream, counting only; RawBSONDocument events (or dicts: ``raw=False``)."""
    codec = client.codec_options.with_options(document_class=RawBSONDocument if raw else dict)
    coll = client[DB].get_collection("items", codec_options=codec)
    kwargs: dict[str, Any] = {"start_at_operation_time": next_timestamp(before)}
    if full_document != "default":
        kwargs["full_document"] = full_document
    count, first, done_at = 0, 0.0, 0.0
    with coll.watch(**kwargs) as stream:
        for _ in stream:
            if not count:
                first = time.perf_counter()
            count += 1
            if count == n:
                done_at = time.perf_counter()
                break
    return count, first, done_at


def options(before: Timestamp, full_document: str) -> gtom.Options:
    return gtom.Options(
        oplog_disabled=True,
        change_stream_ns=[NS],
        after=lambda c, o: before,
        full_document=full_document,
    )


def gtom_sync(client: MongoClient[Any], before: Timestamp, n: int, full_document: str) -> Result:
    count, first, done_at = 0, 0.0, 0.0
    with gtom.start(client, options(before, full_document)) as ctx:
        for _ in ctx:
            if not count:
                first = time.perf_counter()
            count += 1
            if count == n:
                done_at = time.perf_counter()
                break
    return count, first, done_at


def gtom_async(uri: str, before: Timestamp, n: int, full_document: str) -> Result:
    async def run() -> Result:
        client: AsyncMongoClient[Any] = AsyncMongoClient(uri)
        count, first, done_at = 0, 0.0, 0.0
        try:
            async with await gtom.start_async(client, options(before, full_document)) as ctx:
                async for _ in ctx:
                    if not count:
                        first = time.perf_counter()
                    count += 1
                    if count == n:
                        done_at = time.perf_counter()
                        break
        finally:
            await client.close()
        return count, first, done_at

    return asyncio.run(run())


def contenders_for(
    full: str, client: MongoClient[Any], uri: str, before: Timestamp, n: int
) -> list[tuple[str, Callable[[], Result]]]:
    return [
        (f"raw watch(), {full}", lambda: raw_watch(client, before, n, full)),
        (f"raw watch() dicts, {full}", lambda: raw_watch(client, before, n, full, raw=False)),
        (f"gtom sync, {full}", lambda: gtom_sync(client, before, n, full)),
        (f"gtom asyncio, {full}", lambda: gtom_async(uri, before, n, full)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with bench_server(args.events * 2 + 1000) as (uri, client):
        t0 = time.perf_counter()
        before, _, n = load(client, args.events)
        print(
            f"workload: {n} ops written in {time.perf_counter() - t0:.1f}s "
            f"(SecantusDB Python server in its own process); cpu count {os.cpu_count()}"
        )
        groups: list[tuple[str, list[tuple[str, Callable[[], Result]]]]] = [
            (full, contenders_for(full, client, uri, before, n))
            for full in ("updateLookup", "default")
        ]
        results: dict[str, list[tuple[float, float, float]]] = {
            name: [] for _, contenders in groups for name, _ in contenders
        }
        for _ in range(args.runs):  # round-robin: a server slowing down favours nobody
            for _, contenders in groups:
                for name, fn in contenders:
                    results[name].append(measure(fn, n))
        print_arrivals(results, [[name for name, _ in c] for _, c in groups], "x raw")
    return 0


if __name__ == "__main__":
    sys.exit(main())
