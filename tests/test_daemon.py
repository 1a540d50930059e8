"""``gtom run``: the real daemon process against a real server, killed, stopped and restarted."""

from __future__ import annotations

import collections
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bson import json_util

from tests.conftest import TestServer
from tests.webhook_server import WebhookServer

GTOM = [sys.executable, "-m", "gtom"]
BATCH = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """A `gtom run` process delivering ``db``'s changes to a JSON Lines file."""

    def __init__(self, tmp: Path, server: TestServer, db: str, *extra: str) -> None:
        self.tmp = tmp
        self.out = tmp / "events.jsonl"
        self.checkpoint = tmp / "checkpoint.json"
        self.metrics_port = free_port()
        self.args = [
            "run",
            "--uri",
            server.uri,
            "--ns",
            db,
            "--sink",
            "file",
            "--sink-path",
            str(self.out),
            "--checkpoint-path",
            str(self.checkpoint),
            "--delivery-batch-size",
            str(BATCH),
            "--delivery-batch-wait",
            "0.05",
            "--metrics-listen",
            f"127.0.0.1:{self.metrics_port}",
            *extra,
        ]
        self.proc: subprocess.Popen[str] | None = None
        self.stderr: list[str] = []
        self.env: dict[str, str] = {}  # set before start: more of the daemon's environment

    def start(self) -> Daemon:
        self.proc = subprocess.Popen(
            [*GTOM, *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + 20
        while not self.ready():  # /readyz: following, so writes from now on are delivered
            assert self.proc.poll() is None, self.finish()
            assert time.monotonic() < deadline, "the daemon did not become ready"
            time.sleep(0.05)
        return self

    def run_to_end(self, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run until the daemon exits by itself (a copy-only run, or an error)."""
        self.proc = subprocess.Popen(
            [*GTOM, *self.args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.finish(timeout)
        return subprocess.CompletedProcess(self.args, self.proc.returncode, "", self.stderr[-1])

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics_when(self, predicate: Callable[[str], bool], timeout: float = 10) -> str:
        """The ``/metrics`` text once ``predicate`` holds for it (a sink confirms its events a
        moment after their lines are in the file, and the counters follow the confirmation)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.get("/metrics")[1]
            if predicate(text):
                return text
            assert time.monotonic() < deadline, text
            time.sleep(0.05)

    def ready(self) -> bool:
        try:
            return self.get("/readyz")[0] == 200
        except OSError:
            return False

    def finish(self, timeout: float = 15) -> str:
        assert self.proc is not None
        _, err = self.proc.communicate(timeout=timeout)
        self.stderr.append(err)
        return err

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.finish()

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        self.finish()
        assert time.monotonic() - started < 10
        return self.proc.returncode

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.finish()

    def events(self) -> list[dict[str, Any]]:
        """The complete lines of the sink file (a write in progress, or torn by kill -9, is not
        one yet; the daemon cuts a torn line when it opens the file again)."""
        if not self.out.exists():
            return []
        *complete, _partial = self.out.read_bytes().split(b"\n")
        return [json_util.loads(line) for line in complete if line]

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 30
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if predicate(events):
                return events
            assert self.proc is None or self.proc.poll() is None, self.finish()
            assert time.monotonic() < deadline, f"{len(events)} events: not there in time"
            time.sleep(0.05)


@pytest.fixture
def daemon(tmp_path: Path, server: TestServer, db_name: str) -> Iterator[Callable[..., Daemon]]:
    made: list[Daemon] = []

    def make(*extra: str) -> Daemon:
        made.append(Daemon(tmp_path, server, db_name, *extra))
        return made[-1]

    yield make
    for d in made:
        d.close()


def inserted_ids(events: list[dict[str, Any]]) -> list[Any]:
    return [e["id"] for e in events if e["operation"] == "i"]


def test_sigterm_saves_the_checkpoint_and_a_restart_continues_exactly_after_it(
    daemon: Callable[..., Daemon], client: Any, db_name: str
) -> None:
    first = daemon().start()
    coll = client[db_name].c
    coll.insert_many([{"_id": i} for i in range(100)])
    delivered = first.wait_for(lambda events: len(events) >= 100)
    assert first.terminate() == 0
    saved = json_util.loads(first.checkpoint.read_text())
    # At the last event delivered, or (idle) past the entries of other tests it read after it.
    assert saved["oplog"]["ts"] >= delivered[-1]["timestamp"]

    coll.insert_many([{"_id": i} for i in range(100, 150)])  # while stopped
    coll.update_one({"_id": 3}, {"$set": {"x": 1}})
    second = daemon().start()
    events = second.wait_for(lambda events: len(events) >= 151)
    time.sleep(0.3)
    events = second.events()
    assert inserted_ids(events) == list(range(150))  # in order, none twice, none lost
    assert len({e["event_id"] for e in events}) == len(events) == 151
    update = events[-1]
    assert update["operation"] == "u" and update["data"] == {"_id": 3, "x": 1}
    assert update["document_key"] == {"_id": 3}
    assert second.terminate() == 0


def test_kill_9_at_random_moments_loses_nothing(
    daemon: Callable[..., Daemon], client: Any, db_name: str
) -> None:
    total, kills = 30_000, 3
    coll = client[db_name].c
    d = daemon().start()
    done = threading.Event()

    def workload() -> None:
        for start in range(0, total, 500):
            coll.insert_many([{"_id": i, "pad": "x" * 20} for i in range(start, start + 500)])
        done.set()

    writer = threading.Thread(target=workload)
    writer.start()
    rng = random.Random(7)
    seen_at_kill = []
    for _ in range(kills):
        time.sleep(rng.uniform(0.3, 1.5))
        d.kill()
        seen_at_kill.append(len(d.events()))
        d.start()
    writer.join()
    events = d.wait_for(lambda events: len({e["event_id"] for e in events}) >= total, timeout=120)
    assert d.terminate() == 0

    counts = collections.Counter(e["event_id"] for e in events)
    assert len(counts) == total
    assert sorted(set(inserted_ids(events))) == list(range(total))
    duplicates = sum(n - 1 for n in counts.values())
    assert max(counts.values()) <= 2
    assert duplicates <= kills * BATCH, f"{duplicates} duplicates for {kills} kills"
    assert seen_at_kill[0] < total, "the first kill came after the whole workload"
    print(f"events seen at each kill: {seen_at_kill}; duplicates: {duplicates}")


def test_a_failing_webhook_holds_the_checkpoint_back_and_loses_nothing(
    daemon: Callable[..., Daemon], webhook: WebhookServer, client: Any, db_name: str
) -> None:
    hook = webhook
    d = daemon("--sink", "webhook", "--sink-url", hook.url, "--delivery-retry-max-wait", "0.5")
    d.start()
    before = json_util.loads(d.checkpoint.read_text())["oplog"]
    hook.status = 500
    client[db_name].c.insert_many([{"_id": i} for i in range(300)])
    deadline = time.monotonic() + 20
    while hook.refused < 5:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert json_util.loads(d.checkpoint.read_text())["oplog"] == before  # nothing confirmed
    status, metrics = d.get("/metrics")
    assert status == 200 and "gtom_retries_total" in metrics
    retries = next(line for line in metrics.splitlines() if line.startswith("gtom_retries_total"))
    assert float(retries.split()[1]) >= 1
    assert "gtom_sink_healthy 0" in metrics and d.get("/readyz")[0] == 503

    hook.status = 200
    deadline = time.monotonic() + 30
    while len({e["event_id"] for e in hook.accepted}) < 300:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert sorted({e["id"] for e in hook.accepted}) == list(range(300))
    assert d.get("/readyz")[0] == 200
    assert d.terminate() == 0
    assert json_util.loads(d.checkpoint.read_text())["oplog"]["ts"] > before["ts"]


def test_metrics_and_health_over_http(
    daemon: Callable[..., Daemon], client: Any, db_name: str
) -> None:
    d = daemon().start()
    client[db_name].c.insert_many([{"_id": i} for i in range(5)])
    d.wait_for(lambda events: len(events) >= 5)
    out = f'gtom_events_out_total{{namespace="{db_name}.c",operation="i"}} 5'
    d.metrics_when(lambda text: out in text)
    status, health = d.get("/healthz")  # JSON naming the cluster role: none here
    assert (status, json_util.loads(health)) == (200, {"status": "ok", "role": None})
    assert d.get("/readyz") == (200, "ready\n")
    status, text = d.get("/metrics")
    assert status == 200
    assert out in text
    assert f'gtom_events_in_total{{namespace="{db_name}.c",operation="i"}} 5' in text
    for name in ("lag_seconds", "queue_depth", "checkpoint_age_seconds", "retries_total"):
        assert f"# TYPE gtom_{name} " in text
    assert d.get("/nope")[0] == 404
    assert d.terminate() == 0


def test_the_lag_is_right_in_any_time_zone(
    daemon: Callable[..., Daemon], client: Any, db_name: str
) -> None:
    # The oplog's wall clock comes as a naive UTC datetime (the client's default codec); read
    # as local time it put the lag 9 hours out in Tokyo (and at 0 west of Greenwich).
    d = daemon()
    d.env = {"TZ": "Asia/Tokyo"}
    d.start()
    client[db_name].c.insert_many([{"_id": i} for i in range(5)])
    d.wait_for(lambda events: len(events) >= 5)
    text = d.metrics_when(lambda text: "gtom_delivery_lag_seconds_count 5" in text)
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("gtom_delivery_lag_seconds_")
    }
    assert values["gtom_delivery_lag_seconds_count"] == 5
    assert 0 < values["gtom_delivery_lag_seconds_sum"] / 5 < 60, values
    assert d.terminate() == 0


# -- bad input: one line, a distinct exit code, no traceback ---------------------------------


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GTOM, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def assert_fails(result: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("gtom: error:")]
    assert len(lines) == 1, result.stderr
    assert message in lines[0], lines[0]
    assert result.returncode == code, result


def daemon_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--checkpoint-path",
        str(tmp_path / "cp.json"),
        "--metrics-listen",
        "off",
        "--source-timeout",
        "1",
        *extra,
    ]


def test_bad_uri(tmp_path: Path) -> None:
    assert_fails(run(*daemon_args(tmp_path, "--uri", "bad://host")), 10, "invalid MongoDB URI")


def test_unreachable_server(tmp_path: Path) -> None:
    result = run(*daemon_args(tmp_path, "--uri", f"mongodb://127.0.0.1:{free_port()}/"))
    assert_fails(result, 11, "cannot reach MongoDB")


def test_not_a_replica_set_member(tmp_path: Path) -> None:
    if os.environ.get("GTOM_TEST_MONGODB_URI"):
        pytest.skip("needs an embedded standalone server")
    import secantus

    standalone = secantus.SecantusDBServer(
        storage_path=str(tmp_path / "db"), port=0, replica_set_name=None
    )
    standalone.start()
    try:
        result = run(*daemon_args(tmp_path, "--uri", standalone.uri))
    finally:
        standalone.stop()
    assert_fails(result, 12, "not a replica set member")


def test_authentication_failed(tmp_path: Path, auth_server: TestServer) -> None:
    host = auth_server.uri.split("//")[1].split("/")[0]
    uri = f"mongodb://root:wrong-pw@{host}/?directConnection=true"
    result = run(*daemon_args(tmp_path, "--uri", uri))
    assert_fails(result, 13, "authentication failed")
    assert "wrong-pw" not in result.stderr


def test_not_authorized_to_read_the_oplog(tmp_path: Path, auth_server: TestServer) -> None:
    from tests.conftest import AUTH_PASSWORD

    host = auth_server.uri.split("//")[1].split("/")[0]
    uri = f"mongodb://app:{AUTH_PASSWORD}@{host}/?directConnection=true&authSource=admin"
    result = run(*daemon_args(tmp_path, "--uri", uri))
    assert_fails(result, 14, "not authorized")
    assert AUTH_PASSWORD not in result.stderr


def test_unknown_namespace(tmp_path: Path, server: TestServer, db_name: str, client: Any) -> None:
    client[db_name].orders.insert_one({"_id": 1})
    result = run(
        *daemon_args(tmp_path, "--uri", server.uri, "--source-direct-read", f"{db_name}.ordrs")
    )
    assert_fails(
        result,
        15,
        f"unknown namespace {db_name}.ordrs (source.direct_read): database {db_name} has orders",
    )


def test_malformed_toml(tmp_path: Path) -> None:
    (tmp_path / "gtom.toml").write_text("[sink\n")
    assert_fails(
        run(*daemon_args(tmp_path, "--config", str(tmp_path / "gtom.toml"))), 3, "is not valid TOML"
    )


def test_unknown_key(tmp_path: Path) -> None:
    (tmp_path / "gtom.toml").write_text('[sink]\ntype = "file"\npth = "x"\n')
    result = run(*daemon_args(tmp_path, "--config", str(tmp_path / "gtom.toml")))
    assert_fails(result, 4, "unknown key sink.pth")


def test_bad_value(tmp_path: Path) -> None:
    result = run(*daemon_args(tmp_path), env={"GTOM_DELIVERY_BATCH_SIZE": "many"})
    assert_fails(
        result, 5, "bad value for delivery.batch_size: 'many' (from $GTOM_DELIVERY_BATCH_SIZE)"
    )


def test_unknown_sink(tmp_path: Path) -> None:
    assert_fails(
        run(*daemon_args(tmp_path, "--sink", "carrier-pigeon")), 6, "unknown sink 'carrier-pigeon'"
    )


def test_unreachable_webhook_at_start(tmp_path: Path, server: TestServer) -> None:
    url = f"http://user:hunter2@127.0.0.1:{free_port()}/hook"
    result = run(
        *daemon_args(tmp_path, "--uri", server.uri, "--sink", "webhook", "--sink-url", url)
    )
    assert_fails(result, 16, "cannot reach the webhook")
    assert "hunter2" not in result.stderr


def test_check_config_validates_without_connecting(tmp_path: Path) -> None:
    (tmp_path / "gtom.toml").write_text(
        '[source]\nuri = "mongodb://nowhere.invalid:1/"\n'
        '[sink]\ntype = "file"\npath = "out.jsonl"\n'
    )
    result = run("check-config", "--config", str(tmp_path / "gtom.toml"))
    assert result.returncode == 0 and "config OK" in result.stdout


def test_a_second_signal_exits_at_once(
    daemon: Callable[..., Daemon], webhook: WebhookServer, client: Any, db_name: str
) -> None:
    hook = webhook
    d = daemon("--sink", "webhook", "--sink-url", hook.url).start()
    hook.status = 500  # the first signal would wait up to 8 s for the sink
    client[db_name].c.insert_one({"_id": 1})
    deadline = time.monotonic() + 20
    while hook.refused < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert d.proc is not None
    d.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    started = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    d.finish()
    assert d.proc.returncode == 130
    assert time.monotonic() - started < 2


def test_sigterm_gives_up_on_a_hanging_sink_within_10_s(
    daemon: Callable[..., Daemon], webhook: WebhookServer, client: Any, db_name: str
) -> None:
    webhook.delay = 60  # answers after a minute; the sink would wait sink.timeout = 30 s
    d = daemon("--sink", "webhook", "--sink-url", webhook.url, "--sink-timeout", "30").start()
    before = json_util.loads(d.checkpoint.read_text())["oplog"]
    client[db_name].c.insert_one({"_id": 1})
    deadline = time.monotonic() + 20
    while webhook.received < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert d.terminate() == 0  # within 10 s (asserted by terminate)
    assert json_util.loads(d.checkpoint.read_text())["oplog"] == before


def test_a_quiet_namespace_s_position_keeps_up_with_the_oplog(
    daemon: Callable[..., Daemon], client: Any, db_name: str
) -> None:
    d = daemon().start()
    client[db_name].c.insert_one({"_id": 1})
    (event,) = d.wait_for(lambda events: len(events) == 1)
    delivered = event["timestamp"]
    client[f"{db_name}_busy"].c.insert_many([{"_id": i} for i in range(50)])  # not followed
    client[f"{db_name}_busy"].c.insert_one({"_id": "last"})
    deadline = time.monotonic() + 15
    while json_util.loads(d.checkpoint.read_text())["oplog"]["ts"] <= delivered:
        assert time.monotonic() < deadline, "the idle position never moved"
        time.sleep(0.1)
    assert len(d.events()) == 1
    assert d.terminate() == 0
