"""Oplog tail throughput: gtom (sync, asyncio, `gtom tail`) against the raw pymongo ceiling.

One run, one server, one workload; every figure is a median of --runs runs, printed with its
spread and as a ratio to the ceiling measured in the same run:

    python bench/tail_bench.py [--events 20000] [--runs 3]

The server is SecantusDB in its own process (so the client and the server do not share a GIL).
The workload is the demo's mix at scale: 60% inserts of ~200-byte documents, 30% $set updates,
10% deletes, in one namespace. Every contender reads the same oplog range, from before the
first write to the last one, as fast as it can (catch-up throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from bson import Timestamp
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient, CursorType, MongoClient

import gtom

DB = "bench"
#: A contender process that has not finished by then is killed (the run then fails loudly).
STALL_SECONDS = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(path: str, port: int, oplog_entries: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "secantus",
            "--port",
            str(port),
            "--storage-path",
            path,
            "--oplog-max-entries",
            str(oplog_entries),
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the benchmark server did not start")


@contextlib.contextmanager
def bench_server(oplog_entries: int) -> Iterator[tuple[str, MongoClient[Any]]]:
    """A SecantusDB server in its own process with room for ``oplog_entries``: (uri, client).

    Stopped, and its files removed, when the block ends.
    """
    path = tempfile.mkdtemp(prefix="gtom-bench-")
    port = free_port()
    server = start_server(path, port, oplog_entries=oplog_entries)
    uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    client: MongoClient[Any] = MongoClient(uri)
    try:
        yield uri, client
    finally:
        client.close()
        server.terminate()
        server.wait()
        shutil.rmtree(path, ignore_errors=True)


def load(client: MongoClient[Any], events: int) -> tuple[Timestamp, Timestamp, int]:
    """Write the workload; return (before, last, number of ops in the bench namespace)."""
    coll = client[DB].items
    coll.drop()
    before = gtom.last_op_timestamp(client)
    inserts, updates, deletes = events * 6 // 10, events * 3 // 10, events // 10
    payload = "x" * 150
    for start in range(0, inserts, 1000):
        coll.insert_many(
            [{"_id": i, "n": i, "s": payload} for i in range(start, min(start + 1000, inserts))]
        )
    for i in range(updates):
        coll.update_one({"_id": i}, {"$set": {"n": -i - 1}})
    for i in range(deletes):
        coll.delete_one({"_id": i})
    return before, gtom.last_op_timestamp(client), inserts + updates + deletes


Result = tuple[int, float, float]
"""(events seen, perf_counter() when the first one arrived, and when the last one did).

Stopping a contender is not timed: only how fast the events arrive."""


def raw_ceiling(client: MongoClient[Any], before: Timestamp, last: Timestamp, n: int) -> Result:
    """The raw pymongo tailable cursor, RawBSONDocument, counting only."""
    codec = client.codec_options.with_options(document_class=RawBSONDocument)
    oplog = client.local.get_collection("oplog.rs", codec_options=codec)
    cursor = oplog.find({"ts": {"$gt": before}}, cursor_type=CursorType.TAILABLE_AWAIT)
    count, first, done_at = 0, 0.0, 0.0
    for entry in cursor:
        if not count:
            first = time.perf_counter()
        count += 1
        if entry["ts"] >= last:
            done_at = time.perf_counter()
            break
    cursor.close()
    return count, first, done_at


def gtom_sync(client: MongoClient[Any], before: Timestamp, last: Timestamp, n: int) -> Result:
    options = gtom.Options(
        after=lambda c, o: before, namespace_filter=lambda op: op.namespace == f"{DB}.items"
    )
    count, first, done_at = 0, 0.0, 0.0
    with gtom.start(client, options) as ctx:
        for _ in ctx:
            if not count:
                first = time.perf_counter()
            count += 1
            if count == n:
                done_at = time.perf_counter()
                break
    return count, first, done_at


def gtom_async(uri: str, before: Timestamp, last: Timestamp, n: int) -> Result:
    async def run() -> Result:
        client: AsyncMongoClient[Any] = AsyncMongoClient(uri)
        options = gtom.Options(
            after=lambda c, o: before, namespace_filter=lambda op: op.namespace == f"{DB}.items"
        )
        count, first, done_at = 0, 0.0, 0.0
        try:
            async with await gtom.start_async(client, options) as ctx:
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


def gtom_cli(uri: str, before: Timestamp, last: Timestamp, n: int) -> Result:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gtom",
            "tail",
            "--uri",
            uri,
            "--ns",
            f"{DB}.items",
            "--after",
            f"{before.time}.{before.inc}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    count, first, done_at = 0, 0.0, 0.0
    stalled = threading.Timer(STALL_SECONDS, proc.kill)  # a stall ends the run with an error
    stalled.start()
    while count < n:
        chunk = proc.stdout.read1(1 << 16)
        if not chunk:
            break
        if not count:
            first = time.perf_counter()
        count += chunk.count(b"\n")
        done_at = time.perf_counter()
    stalled.cancel()
    proc.terminate()
    proc.wait()
    proc.stdout.close()
    return count, first, done_at


def print_arrivals(
    results: dict[str, list[tuple[float, float, float]]], groups: list[list[str]], label: str
) -> None:
    """One row per contender (medians of `measure`), as ratios to the first of its group."""
    width = max(len(name) for group in groups for name in group) + 2
    print(
        f"\n{'contender':{width}} {'events/s':>9} {'spread':>15} {label:>6}"
        f" {'1st event':>9} {'then ev/s':>9} {label:>6}"
    )
    for group in groups:
        base_rate = statistics.median(r[0] for r in results[group[0]])
        base_stream = statistics.median(r[2] for r in results[group[0]])
        for name in group:
            rows = results[name]
            rates = [r[0] for r in rows]
            med = statistics.median(rates)
            first = statistics.median(r[1] for r in rows)
            stream = statistics.median(r[2] for r in rows)
            spread = f"{min(rates):,.0f}-{max(rates):,.0f}"
            print(
                f"{name:{width}} {med:9,.0f} {spread:>15} {med / base_rate:6.2f}"
                f" {first:8.2f}s {stream:9,.0f} {stream / base_stream:6.2f}"
            )


def print_rates(results: dict[str, list[float]], unit: str, label: str) -> None:
    """One row per contender (median rate, spread), as a ratio to the first contender."""
    width = max(len(name) for name in results) + 2
    baseline = statistics.median(next(iter(results.values())))
    print(f"\n{'contender':{width}} {unit:>9} {'spread':>15} {label:>7}")
    for name, rates in results.items():
        med = statistics.median(rates)
        spread = f"{min(rates):,.0f}-{max(rates):,.0f}"
        print(f"{name:{width}} {med:9,.0f} {spread:>15} {med / baseline:7.2f}")


def measure(fn: Callable[[], Result], expected: int) -> tuple[float, float, float]:
    """(events/s overall, seconds to the first event, events/s after the first event)."""
    started = time.perf_counter()
    got, first, ended = fn()
    if got < expected:
        raise RuntimeError(f"{fn} saw {got} events, expected {expected}")
    return expected / (ended - started), first - started, (expected - 1) / (ended - first)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with bench_server(args.events * 2 + 1000) as (uri, client):
        t0 = time.perf_counter()
        before, last, n = load(client, args.events)
        print(
            f"workload: {n} ops written in {time.perf_counter() - t0:.1f}s "
            f"(SecantusDB Python server in its own process); "
            f"cpu count {os.cpu_count()}"
        )
        contenders: list[tuple[str, Callable[[], Result], int]] = [
            (
                "raw pymongo tailable cursor (ceiling)",
                lambda: raw_ceiling(client, before, last, n),
                n,
            ),
            ("gtom, sync face", lambda: gtom_sync(client, before, last, n), n),
            ("gtom, asyncio face", lambda: gtom_async(uri, before, last, n), n),
            ("gtom tail | reader", lambda: gtom_cli(uri, before, last, n), n),
        ]
        # Round-robin, so a server that slows down over time does not favour one contender.
        results: dict[str, list[tuple[float, float, float]]] = {c[0]: [] for c in contenders}
        for _ in range(args.runs):
            for name, fn, expected in contenders:
                results[name].append(measure(fn, expected))
        print_arrivals(results, [[c[0] for c in contenders]], "x ceil")
    return 0


if __name__ == "__main__":
    sys.exit(main())
