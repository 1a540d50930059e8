"""`gtom run` in a cluster: real processes, a real lease in SecantusDB, a real NATS JetStream.

Failover after kill -9 with nothing lost and nothing stored twice, a frozen leader that sends and
checkpoints nothing once woken, a lease server restart with never two leaders, a worker split
over two pairs of replicas; and the lease itself, step by step, against a real server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from gtom.daemon.cluster import Lease, LeaseLost, lease_key
from tests.broker_fixtures import Broker
from tests.conftest import TestServer, _start_or_skip
from tests.test_daemon import free_port

GTOM = [sys.executable, "-m", "gtom"]
TTL = 2.0
#: A takeover must come within the lease's time and this much.
TAKEOVER_SLACK = 2.0


@pytest.fixture(scope="module")
def lease_server() -> Iterator[TestServer]:
    """The server of the checkpoints and leases, apart from the source (so it can restart)."""
    s = _start_or_skip()
    yield s
    s.close()


def poll_uri(server: TestServer) -> str:
    # SecantusDB holds a streaming hello for 10 s: polling monitors find it again at once.
    return f"{server.uri}&serverMonitoringMode=poll"


class Member:
    """One `gtom run` of a cluster, delivering ``db``'s changes into a NATS JetStream stream."""

    def __init__(
        self,
        tmp: Path,
        source: TestServer,
        store: TestServer,
        db: str,
        nats: Broker,
        stream: str,
        name: str,
        *extra: str,
    ) -> None:
        self.metrics_port = free_port()
        self.log = tmp / f"member-{self.metrics_port}.log"
        self.args = [
            *("run", "--uri", poll_uri(source), "--ns", db),
            *("--sink", "nats", "--sink-url", f"nats://127.0.0.1:{nats.port}"),
            *("--sink-stream", stream, "--sink-target", f"{stream}.{{namespace}}"),
            *("--checkpoint-store", "mongodb", "--checkpoint-uri", poll_uri(store)),
            *("--cluster-name", name, "--cluster-lease-ttl", str(TTL)),
            *("--delivery-batch-size", "200", "--delivery-batch-wait", "0.05"),
            *("--metrics-listen", f"127.0.0.1:{self.metrics_port}", "--log-level", "info"),
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Member:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*GTOM, *self.args], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while self.role() is None:  # standing by or leading: the lease is in play
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the member did not come up"
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def metric(self, name: str) -> float | None:
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except (OSError, urllib.error.URLError):
            return None
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def role(self) -> str | None:
        leader = self.metric("gtom_cluster_leader")
        if leader is None:
            return None
        return "leader" if leader == 1 else "standby"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def leader_of(members: list[Member], timeout: float = 20) -> Member:
    """The one member that leads (waiting for one), checking there is never a second."""
    deadline = time.monotonic() + timeout
    while True:
        leading = [m for m in members if m.alive() and m.role() == "leader"]
        assert len(leading) <= 1, f"two leaders: {[m.pid for m in leading]}"
        if leading:
            return leading[0]
        assert time.monotonic() < deadline, "no member took the lease"
        time.sleep(0.05)


async def _stream(port: int, stream: str) -> list[tuple[int, dict[str, str], bytes]]:
    import nats

    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream)
        except Exception:  # not created yet
            return []
        out = []
        if info.state.messages:
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, seq)
                out.append((seq, dict(msg.headers or {}), msg.data or b""))
        return out
    finally:
        await nc.close()


def stored(nats: Broker, stream: str) -> list[tuple[int, dict[str, str], bytes]]:
    """Every message of the stream: (sequence, headers, body)."""
    return asyncio.run(_stream(nats.port, stream))


def wait_for_ids(nats: Broker, stream: str, count: int, timeout: float = 90) -> list[Any]:
    """The stored messages once ``count`` distinct event ids are there."""
    deadline = time.monotonic() + timeout
    while True:
        messages = stored(nats, stream)
        ids = {headers.get("Nats-Msg-Id") for _, headers, _ in messages}
        if len(ids) >= count:
            return messages
        assert time.monotonic() < deadline, f"only {len(ids)} of {count} events arrived"
        time.sleep(0.3)


def writer(client: MongoClient[Any], db: str, total: int, pause: float = 0.02) -> threading.Thread:
    coll = client[db].c

    def write() -> None:
        for start in range(0, total, 200):
            coll.insert_many([{"_id": i} for i in range(start, min(total, start + 200))])
            time.sleep(pause)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def term_of(checkpoints: Any, name: str) -> int:
    """The term of the checkpoint's writer."""
    document = checkpoints.find_one({"_id": name})
    assert document is not None
    term: int = document["term"]
    return term


def inserted_ids(messages: list[tuple[int, dict[str, str], bytes]]) -> list[int]:
    import json

    out = []
    for _, _, body in messages:
        event = json.loads(body)
        if event["operation"] == "i":
            out.append(event["id"])
    return out


@pytest.fixture
def members() -> Iterator[list[Member]]:
    """The members a test starts; stopped at its end (their logs stay in its tmp_path)."""
    made: list[Member] = []
    yield made
    for member in made:
        member.stop()


# -- failover --------------------------------------------------------------------------------


def test_three_members_survive_three_kill_9s_of_the_leader_with_every_event_stored_once(
    tmp_path: Path,
    server: TestServer,
    lease_server: TestServer,
    client: MongoClient[Any],
    db_name: str,
    nats_server: Broker,
    members: list[Member],
) -> None:
    total, stream = 20_000, f"F{db_name}".replace("_", "")[:30]
    members.extend(
        Member(tmp_path, server, lease_server, db_name, nats_server, stream, db_name)
        for _ in range(3)
    )
    for member in members:
        member.start()
    write = writer(client, db_name, total)
    failovers = []
    for _ in range(3):
        leader = leader_of(members)
        time.sleep(0.8)  # let it deliver a while
        leader.kill()
        killed = time.monotonic()
        new = leader_of([m for m in members if m is not leader])
        failovers.append(time.monotonic() - killed)
        assert new is not leader
        leader.start()  # back, as a standby
    write.join()
    messages = wait_for_ids(nats_server, stream, total)
    ids = [headers["Nats-Msg-Id"] for _, headers, _ in messages]
    assert len(ids) == len(set(ids)), "an event id stored twice"
    assert sorted(inserted_ids(messages)) == list(range(total))
    assert all(t <= TTL + TAKEOVER_SLACK for t in failovers), failovers
    print(f"failover times (s): {[round(t, 2) for t in failovers]}")


def test_a_frozen_leader_woken_up_sends_and_checkpoints_nothing(
    tmp_path: Path,
    server: TestServer,
    lease_server: TestServer,
    client: MongoClient[Any],
    db_name: str,
    nats_server: Broker,
    members: list[Member],
) -> None:
    total, stream = 6_000, f"Z{db_name}".replace("_", "")[:30]
    members.extend(
        Member(tmp_path, server, lease_server, db_name, nats_server, stream, db_name)
        for _ in range(2)
    )
    for member in members:
        member.start()
    store = lease_server.client()
    checkpoints = store.gtom.checkpoints
    write = writer(client, db_name, total, pause=0.05)
    old = leader_of(members)
    marker = f":{old.pid}:"
    deadline = time.monotonic() + 30
    while not any(marker in h.get("Gtom-Sender", "") for _, h, _ in stored(nats_server, stream)):
        assert time.monotonic() < deadline, "the leader delivered nothing"
        time.sleep(0.1)  # freeze it while it delivers
    old_term = term_of(checkpoints, db_name)
    os.kill(old.pid, signal.SIGSTOP)
    try:
        new = leader_of([m for m in members if m is not old])
        time.sleep(TTL + 1)  # the new leader delivers a while
    finally:
        before_wake = stored(nats_server, stream)[-1][0]
        os.kill(old.pid, signal.SIGCONT)
    assert old.proc is not None
    assert old.proc.wait(10) == 20  # it stopped at once: code 20 (fenced)
    terms = []
    for _ in range(10):  # the checkpoint stays the new leader's
        terms.append(term_of(checkpoints, db_name))
        time.sleep(0.1)
    write.join()
    messages = wait_for_ids(nats_server, stream, total)
    late = [seq for seq, headers, _ in messages if marker in headers.get("Gtom-Sender", "")]
    assert late and max(late) <= before_wake, "the woken leader sent after waking up"
    assert all(term > old_term for term in terms), terms
    assert new.role() == "leader"
    ids = [headers["Nats-Msg-Id"] for _, headers, _ in messages]
    assert len(ids) == len(set(ids))
    assert sorted(inserted_ids(messages)) == list(range(total))
    store.close()


def test_a_restart_of_the_lease_server_makes_no_second_leader_and_loses_nothing(
    tmp_path: Path,
    server: TestServer,
    lease_server: TestServer,
    client: MongoClient[Any],
    db_name: str,
    nats_server: Broker,
    members: list[Member],
) -> None:
    total, stream = 6_000, f"R{db_name}".replace("_", "")[:30]
    members.extend(
        Member(tmp_path, server, lease_server, db_name, nats_server, stream, db_name)
        for _ in range(2)
    )
    for member in members:
        member.start()
    watching = True
    seen_two: list[str] = []

    def watch() -> None:  # never two leaders, sampled all along
        while watching:
            leading = [m.pid for m in members if m.alive() and m.role() == "leader"]
            if len(leading) > 1:
                seen_two.append(str(leading))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        write = writer(client, db_name, total, pause=0.05)
        leader_of(members)
        time.sleep(0.8)
        lease_server.restart(down_for=1.5)
        write.join()
        messages = wait_for_ids(nats_server, stream, total)
        leader_of(members)  # delivery goes on after the restart, under one leader
    finally:
        watching = False
        watcher.join()
    assert not seen_two, seen_two
    ids = [headers["Nats-Msg-Id"] for _, headers, _ in messages]
    assert len(ids) == len(set(ids))
    assert sorted(inserted_ids(messages)) == list(range(total))


def test_two_workers_with_two_replicas_each_deliver_everything_once(
    tmp_path: Path,
    server: TestServer,
    lease_server: TestServer,
    client: MongoClient[Any],
    db_name: str,
    nats_server: Broker,
    members: list[Member],
) -> None:
    total, stream = 4_000, f"W{db_name}".replace("_", "")[:30]
    workers = tmp_path / "workers.toml"
    workers.write_text('Workers = ["w1", "w2"]\n')
    for name in ("w1", "w2", "w1", "w2"):
        extra = ("--source-worker", name, "--source-workers-file", str(workers))
        members.append(
            Member(tmp_path, server, lease_server, db_name, nats_server, stream, db_name, *extra)
        )
    for member in members:
        member.start()
    write = writer(client, db_name, total)
    # One leader per worker: each worker is a lease of its own.
    leaders = [leader_of(members[0::2]), leader_of(members[1::2])]
    leaders[0].kill()  # a failover inside one worker's pair
    leader_of(members[0::2])
    write.join()
    messages = wait_for_ids(nats_server, stream, total)
    ids = [headers["Nats-Msg-Id"] for _, headers, _ in messages]
    assert len(ids) == len(set(ids))
    assert sorted(inserted_ids(messages)) == list(range(total))
    with lease_server.client() as store:
        leases = {d["_id"] for d in store.gtom.leases.find()}
    assert {f"{db_name}/worker:w1", f"{db_name}/worker:w2"} <= leases


# -- the lease, step by step -------------------------------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_lease_passes_only_after_it_was_seen_unchanged_for_its_ttl(
    lease_server: TestServer, db_name: str
) -> None:
    async def scenario() -> None:
        client = lease_server.async_client()
        clock = Clock()
        key = lease_key(db_name, None, None)
        a = Lease(client, "gtom.leases", key, 10.0, holder="a", clock=clock)
        b = Lease(client, "gtom.leases", key, 10.0, holder="b", clock=clock)
        stop = asyncio.Event()
        try:
            assert await a.acquire(stop) and a.term == 1 and not a.took_over
            assert a.valid() and a.remaining() == pytest.approx(8.0)  # ttl - margin (ttl/5)
            clock.now += 7.9
            assert a.valid()
            clock.now += 0.2
            assert not a.valid()  # past ttl - margin: it may not send any more
            await a.renew()
            assert a.valid()
            # b sees a renewing: it never takes the lease.
            waiting = asyncio.create_task(b.acquire(stop))
            for _ in range(3):
                await asyncio.sleep(0.05)
                clock.now += 4.0
                await a.renew()
                await asyncio.sleep(0.4)
            assert not waiting.done()
            # a stops renewing: after ttl unchanged (on b's clock), b takes it with term 2. The
            # clock goes on moving: b may see a's last renewal only after a first jump.
            deadline = time.monotonic() + 10
            while not waiting.done() and time.monotonic() < deadline:
                clock.now += 11.0
                await asyncio.wait({waiting}, timeout=0.5)
            assert waiting.done() and waiting.result()
            assert b.term == 2 and b.took_over
            with pytest.raises(LeaseLost):
                await a.renew()  # a learns it was deposed
            assert not a.held and not a.valid()
            await b.release()
            # A released lease is taken at once, without waiting for its ttl.
            assert await asyncio.wait_for(a.acquire(stop), 5) and a.term == 3
        finally:
            await client.close()

    asyncio.run(scenario())


def test_a_cluster_with_a_file_checkpoint_is_refused_with_its_own_exit_code(
    tmp_path: Path, server: TestServer
) -> None:
    done = subprocess.run(
        [*GTOM, "check-config", "--uri", server.uri, "--cluster-name", "c1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 19
    assert done.stderr.count("\n") == 1
    assert 'checkpoint.store = "mongodb"' in done.stderr


def test_a_leader_without_a_saved_checkpoint_starts_from_the_clusters_first_start(
    lease_server: TestServer, db_name: str
) -> None:
    from bson import Timestamp

    from gtom.daemon.checkpoint import Checkpoint, CheckpointFenced, MongoStore

    async def scenario() -> None:
        client = lease_server.async_client()
        try:
            store = MongoStore(client, "gtom.checkpoints", db_name)
            await store.seed(Timestamp(200, 1))  # the first member up
            await store.seed(Timestamp(300, 1))  # a later one: the earlier start stays
            await store.claim(1)  # the first leader, killed before it saved anything
            assert await store.load() is None
            assert await store.seeded() == Timestamp(200, 1)
            await store.claim(2)
            await store.save(Checkpoint(start=Timestamp(200, 1)))
            assert (await store.load()) is not None and await store.seeded() is None
            old = MongoStore(client, "gtom.checkpoints", db_name)
            old.term = 1
            with pytest.raises(CheckpointFenced):
                await old.save(Checkpoint(start=Timestamp(250, 1)))  # a deposed leader's write
            with pytest.raises(CheckpointFenced):
                await old.claim(2)
        finally:
            await client.close()

    asyncio.run(scenario())
