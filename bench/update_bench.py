"""Oplog update throughput: gtom fetching full documents vs delta mode vs the raw oplog cursor.

One run, one server, one workload: --events ``$set`` updates spread over a collection of
--docs documents. Every figure is a median of --runs runs, with its spread and as a ratio to
gtom in delta mode (no fetch) measured in the same run:

    python bench/update_bench.py [--events 20000] [--docs 5000] [--runs 3]

Every contender reads the same oplog range, from before the first update to the last one, as
fast as it can (catch-up throughput). The server is SecantusDB in its own process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from bson import Timestamp
from pymongo import MongoClient, UpdateOne
from tail_bench import DB, Result, bench_server, print_rates, raw_ceiling

import gtom


def load(client: MongoClient[Any], events: int, docs: int) -> tuple[Timestamp, Timestamp]:
    coll = client[DB].items
    coll.drop()
    coll.insert_many([{"_id": i, "n": 0, "s": "x" * 150} for i in range(docs)])
    before = gtom.last_op_timestamp(client)
    for start in range(0, events, 1000):
        coll.bulk_write(
            [
                UpdateOne({"_id": i % docs}, {"$set": {"n": i + 1}})
                for i in range(start, start + 1000)
            ]
        )
    return before, gtom.last_op_timestamp(client)


def gtom_updates(client: MongoClient[Any], before: Timestamp, n: int, **options: Any) -> Result:
    opts = gtom.Options(
        after=lambda c, o: before,
        namespace_filter=lambda op: op.namespace == f"{DB}.items",
        **options,
    )
    count, first, done_at = 0, 0.0, 0.0
    with gtom.start(client, opts) as ctx:
        for op in ctx:
            if not count:
                first = time.perf_counter()
            assert op.data is not None
            count += 1
            if count == n:
                done_at = time.perf_counter()
                break
    return count, first, done_at


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--docs", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with bench_server(args.events + args.docs + 1000) as (_, client):
        t0 = time.perf_counter()
        before, last = load(client, args.events, args.docs)
        n = args.events
        print(
            f"workload: {n} updates over {args.docs} documents written in "
            f"{time.perf_counter() - t0:.1f}s (SecantusDB in its own process); "
            f"cpu count {os.cpu_count()}"
        )
        contenders: list[tuple[str, Callable[[], Result]]] = [
            (
                "gtom, delta mode (no fetch)",
                lambda: gtom_updates(client, before, n, update_data_as_delta=True),
            ),
            ("gtom, fetch, 1 worker", lambda: gtom_updates(client, before, n)),
            ("gtom, fetch, 4 workers", lambda: gtom_updates(client, before, n, worker_count=4)),
            ("gtom, fetch, buffer 500", lambda: gtom_updates(client, before, n, buffer_size=500)),
            ("raw oplog cursor (ceiling)", lambda: raw_ceiling(client, before, last, n)),
        ]
        results: dict[str, list[float]] = {name: [] for name, _ in contenders}
        for _ in range(args.runs):  # round-robin: a server slowing down favours nobody
            for name, fn in contenders:
                started = time.perf_counter()
                got, _, ended = fn()
                if got < n:
                    raise RuntimeError(f"{name} saw {got} events, expected {n}")
                results[name].append(n / (ended - started))
        print_rates(results, "events/s", "x delta")
    return 0


if __name__ == "__main__":
    sys.exit(main())
