"""The daemon's figures of `make bench`: `gtom run` to stdout against `gtom tail`, and its memory.

Both read a workload from the oplog position just before it:

* ``gtom tail | reader`` and ``gtom run --sink stdout | reader``: this process counts the lines;
* ``gtom run --sink stdout > /dev/null``: timed until its checkpoint holds the last event, so
  the time includes writing, confirming and saving every batch;
* the replay: ``gtom run > /dev/null`` over a long workload, its resident memory sampled as it
  goes (peak = the kernel's high-water mark, VmHWM);
* the library: the asyncio face's contender on the same workload, in the same rounds, so that
  the daemon's cost over the library is a ratio per round.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from bson import Timestamp
from report import Run
from server import log

STALL_SECONDS = 300


class Workload(Protocol):
    db: str
    events: int
    after: str
    until: str


def _ts(text: str) -> Timestamp:
    secs, _, inc = text.partition(".")
    return Timestamp(int(secs), int(inc))


def _daemon(uri: str, w: Workload, checkpoint: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gtom",
        "run",
        "--uri",
        uri,
        "--ns",
        f"{w.db}.items",
        "--source-after",
        w.after,
        "--checkpoint-path",
        str(checkpoint),
        "--metrics-listen",
        "off",
        "--log-level",
        "warning",
        "--sink",
        "stdout",
    ]


def _tail(uri: str, w: Workload) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gtom",
        "tail",
        "--uri",
        uri,
        "--ns",
        f"{w.db}.items",
        "--after",
        w.after,
    ]


def piped(command: list[str], expect: int) -> Run:
    """Start ``command`` and count its stdout lines until ``expect``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    count, first, last = 0, 0.0, 0.0
    stalled = threading.Timer(STALL_SECONDS, proc.kill)
    stalled.start()
    while count < expect:
        chunk = proc.stdout.read1(1 << 16)
        if not chunk:
            break
        if not count:
            first = time.perf_counter() - t0
        count += chunk.count(b"\n")
        last = time.perf_counter() - t0
    stalled.cancel()
    proc.terminate()
    proc.wait()
    proc.stdout.close()
    ok = count >= expect
    return Run(ok, count, first, last, last, error="" if ok else f"{count} of {expect} lines")


def _saved(path: Path) -> Timestamp | None:
    try:
        oplog = json.loads(path.read_text())["oplog"]
        t = oplog["ts"]["$timestamp"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Timestamp(t["t"], t["i"])


def _rss(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    values = {"VmRSS:": 0.0, "VmHWM:": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0] + ":"
            if key in values:
                values[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return values["VmRSS:"], values["VmHWM:"]


def to_devnull(uri: str, w: Workload, *, sample: bool = False) -> Run:
    """`gtom run > /dev/null`, done once its checkpoint reaches the workload's last entry."""
    until = _ts(w.until)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "cp.json"
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            _daemon(uri, w, checkpoint), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        first = last = 0.0
        samples: list[tuple[float, float]] = []
        peak = 0.0
        deadline = time.monotonic() + STALL_SECONDS
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                now = time.perf_counter() - t0
                if sample:
                    rss, peak = _rss(proc.pid)
                    samples.append((now, rss))
                ts = _saved(checkpoint)
                if ts is not None and ts > _ts(w.after) and not first:
                    first = now
                if ts is not None and ts >= until:
                    last = now
                    break
                time.sleep(0.02 if not sample else 0.1)
            if sample:
                peak = max(peak, _rss(proc.pid)[1])
        finally:
            proc.terminate()
            _, err = proc.communicate()
        if not last:
            return Run(False, error=f"did not reach the end: {err.decode()[-300:]}")
        extra: dict[str, Any] = {}
        if samples:
            marks = []
            for q in (0.25, 0.5, 0.75, 1.0):
                at = [rss for when, rss in samples if when <= q * last]
                marks.append(at[-1] if at else 0.0)
            extra = {"rss_marks": marks, "samples": len(samples)}
        return Run(True, w.events, first, last, last, peak, extra=extra)


def daemon_figure(
    uri: str, w: Workload, runs: int, library: Callable[[], Run] | None = None
) -> dict[str, list[Run]]:
    """`gtom tail` and `gtom run` round-robin, with ``library`` (the asyncio face's own run of
    the workload) in each round, so that the daemon's ratio to the library is per round."""
    log(f"daemon: {w.events:,} events")
    jobs: dict[str, Callable[[], Run]] = {
        "tail": lambda: piped(_tail(uri, w), w.events),
        "run-devnull": lambda: to_devnull(uri, w),
    }
    if library is not None:
        jobs["library"] = library
    out: dict[str, list[Run]] = {k: [] for k in jobs}
    for _ in range(runs):
        for key, job in jobs.items():
            result = job()
            log(f"  {key:12s} {result.rate:>10,.0f}/s {result.error[:200]}")
            out[key].append(result)
    return out


def replay_figure(uri: str, w: Workload, runs: int) -> list[Run]:
    log(f"memory: gtom run over {w.events:,} events")
    out = []
    for _ in range(runs):
        result = to_devnull(uri, w, sample=True)
        log(
            f"  replay {result.rate:>10,.0f}/s peak {result.rss_mb:.0f} MB "
            f"marks {result.extra.get('rss_marks')} {result.error[:200]}"
        )
        out.append(result)
    return out
