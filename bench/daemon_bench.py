"""Daemon throughput: `gtom run` (stdout sink) against `gtom tail` and the raw ceiling.

Same server, workload and medians as bench/tail_bench.py:

    python bench/daemon_bench.py [--events 20000] [--runs 3]

Contenders read the same oplog range from before the first write:

* the raw pymongo tailable cursor (the ceiling);
* ``gtom tail | reader``: the CLI, its lines counted by this process;
* ``gtom run --sink stdout | reader``: the daemon, each batch written, confirmed and
  checkpointed (an fsynced file) before the next;
* ``gtom run --sink stdout > /dev/null``: the same, timed until its checkpoint reaches the last
  event (so the time includes the final checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bson import Timestamp
from tail_bench import (
    DB,
    STALL_SECONDS,
    Result,
    bench_server,
    gtom_cli,
    load,
    measure,
    print_arrivals,
    raw_ceiling,
)


def daemon_args(uri: str, before: Timestamp, checkpoint: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gtom",
        "run",
        "--uri",
        uri,
        "--ns",
        f"{DB}.items",
        "--source-after",
        f"{before.time}.{before.inc}",
        "--checkpoint-path",
        checkpoint,
        "--metrics-listen",
        "off",
        "--log-level",
        "warning",
    ]


def daemon_piped(uri: str, before: Timestamp, last: Timestamp, n: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            daemon_args(uri, before, f"{tmp}/cp.json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        count, first, done_at = 0, 0.0, 0.0
        stalled = threading.Timer(STALL_SECONDS, proc.kill)
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


def daemon_devnull(uri: str, before: Timestamp, last: Timestamp, n: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "cp.json"
        proc = subprocess.Popen(
            daemon_args(uri, before, str(checkpoint)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        first, done_at = 0.0, 0.0
        deadline = time.monotonic() + STALL_SECONDS
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                ts = _saved_ts(checkpoint)
                if ts is not None and ts > before and not first:
                    first = time.perf_counter()
                if ts is not None and ts >= last:
                    done_at = time.perf_counter()
                    return n, first, done_at
                time.sleep(0.005)
        finally:
            proc.terminate()
            proc.wait()
        return 0, first, done_at


def _saved_ts(path: Path) -> Timestamp | None:
    try:
        oplog = json.loads(path.read_text())["oplog"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not oplog:
        return None
    t = oplog["ts"]["$timestamp"]
    return Timestamp(t["t"], t["i"])


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
            f"(SecantusDB in its own process); cpu count {os.cpu_count()}"
        )
        contenders = {
            "raw pymongo tailable cursor (ceiling)": lambda: raw_ceiling(client, before, last, n),
            "gtom tail | reader": lambda: gtom_cli(uri, before, last, n),
            "gtom run --sink stdout | reader": lambda: daemon_piped(uri, before, last, n),
            "gtom run --sink stdout > /dev/null": lambda: daemon_devnull(uri, before, last, n),
        }
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in contenders}
        for run in range(args.runs):
            for name, fn in contenders.items():  # round-robin: drift hits every contender
                results[name].append(measure(fn, n))
            print(f"run {run + 1}/{args.runs} done", flush=True)
        names = list(contenders)
        print_arrivals(results, [names, names[1:]], "ratio")
        print("\n(the second group is relative to `gtom tail`)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
