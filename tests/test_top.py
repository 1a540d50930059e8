"""``gtom top``, used as a person would: in a real terminal, against a real ``gtom run``.

The daemon follows a SecantusDB server and delivers to a real webhook while a writer makes
changes; ``gtom top`` runs in a pseudo-terminal (pexpect) whose screen is rendered by a terminal
emulator (pyte), and the tests read that screen.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gtom._top import Daemon as Watched
from gtom._top import parse, sparkline
from tests.conftest import TestServer
from tests.pty_screen import TermScreen
from tests.test_daemon import Daemon, free_port
from tests.webhook_server import WebhookServer

GTOM = [sys.executable, "-m", "gtom"]
SEED = 300  # documents copied first (source.direct_read)


class Writer:
    """Inserts and updates in ``db.c`` (about 100 changes a second) until stopped."""

    def __init__(self, client: Any, db: str, limit: int = 6000) -> None:
        self.stop = threading.Event()
        self.written = 0
        self._thread = threading.Thread(target=self._run, args=(client[db].c, limit))
        self._thread.start()

    def _run(self, coll: Any, limit: int) -> None:
        while not self.stop.is_set() and self.written < limit:
            coll.insert_one({"_id": self.written, "n": 0})
            coll.update_one({"_id": self.written}, {"$inc": {"n": 1}})
            self.written += 1
            self.stop.wait(0.02)

    def close(self) -> None:
        self.stop.set()
        self._thread.join()


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    server = WebhookServer()
    yield server
    server.close()  # stopping it twice is fine


@pytest.fixture
def followed(
    tmp_path: Path, server: TestServer, client: Any, db_name: str, hook: WebhookServer
) -> Iterator[Daemon]:
    """A `gtom run` that copies ``db.seed``, then follows ``db`` into ``hook``."""
    client[db_name].seed.insert_many([{"_id": i} for i in range(SEED)])
    d = Daemon(
        tmp_path,
        server,
        db_name,
        *("--sink", "webhook", "--sink-url", hook.url, "--delivery-retry-max-wait", "0.5"),
        *("--source-direct-read", f"{db_name}.seed"),
    )
    try:
        yield d.start()
    finally:
        d.close()


def rates_of(screen: str, namespace: str, operation: str) -> tuple[float, float] | None:
    """The in/s and out/s of a row of the namespace table, if the screen has it."""
    row = re.search(rf"{re.escape(namespace)}\s+{operation}\s+([\d,.]+)\s+([\d,.]+)", screen)
    if row is None:
        return None
    return float(row[1].replace(",", "")), float(row[2].replace(",", ""))


def test_top_shows_a_live_daemon_its_rates_lag_and_sink_then_the_sink_going_down(
    followed: Daemon, client: Any, db_name: str, hook: WebhookServer
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"  # a daemon that is not there
    url = f"http://127.0.0.1:{followed.metrics_port}"
    writer = Writer(client, db_name)
    term = TermScreen([*GTOM, "top", "--url", url, "--url", nowhere], cols=120, rows=32)
    try:
        ns = f"{db_name}.c"

        def live(screen: str) -> bool:
            inserts, updates = rates_of(screen, ns, "insert"), rates_of(screen, ns, "update")
            return (
                inserts is not None
                and updates is not None
                and min(*inserts, *updates) > 0  # events in and out, per second
                and re.search(r"\bin\s+[\d,]+\.\d/s [▁▂▃▄▅▆▇█]+", screen) is not None
                and re.search(r"\bout\s+[\d,]+\.\d/s [▁▂▃▄▅▆▇█]+", screen) is not None
                and re.search(r"write→delivery \d+\.\d\d s avg", screen) is not None
            )

        screen = term.wait_for(live)
        print(f"\n--- gtom top, live ---\n{screen}")
        assert f"127.0.0.1:{followed.metrics_port}   running" in screen
        assert re.search(r"\blag \d+\.\d\d s\b", screen)
        assert re.search(r"checkpoint age \d+\.\d s", screen)
        assert re.search(r"\bqueue \d+", screen) and re.search(r"\bretries 0\b", screen)
        assert "sink ok" in screen
        assert f"copy {db_name}.seed" in screen and f"done, {SEED:,} docs" in screen
        assert f"{nowhere}   unreachable" in screen
        assert "unreachable: Connection refused" in screen

        hook.close()  # the sink goes away: deliveries fail and are retried
        screen = term.wait_for(lambda s: "sink DOWN" in s and "sink down" in s)
        print(f"\n--- gtom top, the sink stopped ---\n{screen}")
        assert re.search(r"\bretries [1-9]", term.wait_for(re.compile(r"\bretries [1-9]")))

        term.send("q")
        assert term.wait_exit(10) == 0
    finally:
        writer.close()
        term.close()


def metrics_of(port: int) -> dict[str, dict[tuple[str, ...], float]]:
    """The daemon's /metrics, parsed: sample name -> label values -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(s.labels.values())] = s.value
    return out


def test_once_prints_a_plain_snapshot_that_matches_the_metrics(
    followed: Daemon, client: Any, db_name: str, hook: WebhookServer
) -> None:
    coll = client[db_name].c
    coll.insert_many([{"_id": i} for i in range(120)])
    coll.update_many({"_id": {"$lt": 30}}, {"$set": {"x": 1}})
    coll.delete_many({"_id": {"$gte": 100}})
    deadline = time.monotonic() + 30
    while len(hook.accepted) < SEED + 170:
        assert time.monotonic() < deadline, len(hook.accepted)
        time.sleep(0.05)
    time.sleep(0.3)  # the checkpoint and counters settle: nothing else is written
    nowhere = f"127.0.0.1:{free_port()}"
    url = f"http://127.0.0.1:{followed.metrics_port}"
    once = subprocess.run(
        [*GTOM, "top", "--once", "--url", url, "--url", nowhere],
        capture_output=True,
        text=True,
        timeout=30,
    )
    piped = subprocess.run(  # stdout not a terminal: one snapshot too, without --once
        [*GTOM, "top", "--url", url], capture_output=True, text=True, timeout=30
    )
    metrics = metrics_of(followed.metrics_port)
    assert once.returncode == 0 and piped.returncode == 0, once.stderr + piped.stderr
    print(f"\n--- gtom top --once ---\n{once.stdout}")
    out = once.stdout
    assert "\x1b" not in out + piped.stdout  # plain text
    assert f"{url}/metrics  running\n" in out and f"{url}/metrics  running\n" in piped.stdout
    assert f"http://{nowhere}/metrics  unreachable\n" in out
    assert "  events in 0.0/s  out 0.0/s\n" in out  # idle: nothing moved between its readings
    assert "sink ok" in out and "retries 0" in out and "queue 0" in out
    assert "lag 0.00 s" in out
    operations = {"i": "insert", "u": "update", "d": "delete"}
    rows = 0
    for (ns, op), total_out in metrics["gtom_events_out_total"].items():
        total_in = metrics["gtom_events_in_total"][(ns, op)]
        idle = r"\s+0\.0\s+0\.0"  # in/s and out/s
        row = rf"\n  {re.escape(ns)}\s+{operations[op]}{idle}\s+{total_in:.0f}\s+{total_out:.0f}\n"
        assert re.search(row, out), (row, out)
        rows += 1
    assert rows == 4  # seed inserts (the copy), and c's inserts, updates and deletes
    copied = metrics["gtom_copy_documents"][(f"{db_name}.seed",)]
    assert copied == SEED and metrics["gtom_copy_done"][(f"{db_name}.seed",)] == 1
    assert f"  copy {db_name}.seed: done, {SEED:,} docs\n" in out


# -- the pieces, without a daemon -----------------------------------------------------------


def exposition(events_out: int, healthy: int = 1, extra: str = "") -> str:
    return (
        "# TYPE gtom_events_out_total counter\n"
        f'gtom_events_out_total{{namespace="db.c",operation="i"}} {events_out}.0\n'
        "# TYPE gtom_events_in_total counter\n"
        f'gtom_events_in_total{{namespace="db.c",operation="i"}} {events_out}.0\n'
        f"# TYPE gtom_sink_healthy gauge\ngtom_sink_healthy {healthy}.0\n"
        "# TYPE gtom_ready gauge\ngtom_ready 1.0\n" + extra
    )


def test_rates_survive_a_daemon_restart_and_states_follow_the_metrics() -> None:
    d = Watched("127.0.0.1:1")
    assert d.url == "http://127.0.0.1:1/metrics" and d.state == "unreachable"
    d.scrapes.append(parse(exposition(100), 0.0))
    assert d.rate("out") is None and d.state == "running"
    d.scrapes.append(parse(exposition(150), 1.0))
    assert d.rates("out") == {("db.c", "i"): 50.0}
    d.scrapes.append(parse(exposition(20, healthy=0), 2.0))  # restarted: counts from zero
    assert d.history("out") == [50.0, 20.0] and d.state == "sink down"
    standby = "# TYPE gtom_cluster_leader gauge\ngtom_cluster_leader 0.0\n"
    d.scrapes.append(parse(exposition(20, extra=standby), 3.0))
    assert d.latest is not None and d.latest.role == "standby" and d.state == "standby"
    copying = (
        "# TYPE gtom_copy_documents gauge\n"
        'gtom_copy_documents{namespace="db.big"} 10.0\n'
        "# TYPE gtom_copy_done gauge\n"
        'gtom_copy_done{namespace="db.big"} 0.0\n'
    )
    d.scrapes.append(parse(exposition(20, extra=copying), 4.0))
    assert d.state == "copying"


def test_sparkline_scales_to_its_maximum() -> None:
    assert sparkline([0, 0, 0]) == "▁▁▁"
    assert sparkline([0, 1, 7, 14]) == "▁▂▅█"
    assert len(sparkline([1.0] * 100)) == 60


def test_a_bad_interval_is_one_line_and_exit_2() -> None:
    result = subprocess.run(
        [*GTOM, "top", "--interval", "0"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "gtom: error: --interval must be between 0.1 and 3600 seconds, got 0.0"
    ]
