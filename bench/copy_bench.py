"""Direct read (copy) throughput: gtom with 1 segment vs split copies, and raw pymongo find().

One run, one server, one collection; every figure is a median of --runs runs, printed with its
spread and as a ratio to gtom's single-segment copy measured in the same run:

    python bench/copy_bench.py [--docs 100000] [--runs 3]

The server is SecantusDB in its own process. Documents are ~200 bytes with integer ``_id``s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from tail_bench import DB, bench_server, print_rates

import gtom

NS = f"{DB}.copy"


def load(client: MongoClient[Any], docs: int) -> None:
    coll = client[DB].copy
    coll.drop()
    payload = "x" * 150
    for start in range(0, docs, 5000):
        coll.insert_many(
            [{"_id": i, "n": i, "s": payload} for i in range(start, min(start + 5000, docs))]
        )


def raw_find(client: MongoClient[Any], raw: bool) -> int:
    codec = client.codec_options.with_options(document_class=RawBSONDocument if raw else dict)
    coll = client[DB].get_collection("copy", codec_options=codec)
    return sum(1 for _ in coll.find({}, sort=[("_id", 1)]))


def gtom_copy(client: MongoClient[Any], split_max: int, concur: int) -> int:
    options = gtom.Options(
        oplog_disabled=True,
        direct_read_ns=[NS],
        direct_read_split_max=split_max,
        direct_read_concur=concur,
        channel_size=1000,
    )
    count = 0
    with gtom.start(client, options) as ctx:
        for _ in ctx:
            count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with bench_server(args.docs + 1000) as (_, client):
        t0 = time.perf_counter()
        load(client, args.docs)
        print(
            f"collection: {args.docs} documents loaded in {time.perf_counter() - t0:.1f}s "
            f"(SecantusDB Python server in its own process); cpu count {os.cpu_count()}"
        )
        contenders: list[tuple[str, Callable[[], int]]] = [
            ("gtom, 1 segment", lambda: gtom_copy(client, 0, 1)),
            ("gtom, 2 segments", lambda: gtom_copy(client, 1, 2)),
            ("gtom, 4 segments", lambda: gtom_copy(client, 3, 4)),
            ("gtom, 10 segments, 4 at once", lambda: gtom_copy(client, 9, 4)),
            ("raw find(), RawBSONDocument", lambda: raw_find(client, True)),
            ("raw find(), dicts", lambda: raw_find(client, False)),
        ]
        results: dict[str, list[float]] = {name: [] for name, _ in contenders}
        for _ in range(args.runs):  # round-robin: a server slowing down favours nobody
            for name, fn in contenders:
                started = time.perf_counter()
                got = fn()
                elapsed = time.perf_counter() - started
                if got != args.docs:
                    raise RuntimeError(f"{name} read {got} documents, expected {args.docs}")
                results[name].append(args.docs / elapsed)
        print_rates(results, "docs/s", "x 1 seg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
