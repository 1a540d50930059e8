"""``gtom run`` into real brokers: effectively once into NATS JetStream across kill -9, and a
Redis outage reported as unhealthy, then recovered without loss."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

from tests.broker_fixtures import Broker, nats_json, stream_entries
from tests.conftest import TestServer
from tests.test_daemon import Daemon


async def jetstream_events(port: int, stream: str) -> list[dict[str, Any]]:
    import nats

    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        if not info.state.messages:
            return []
        return [
            nats_json(await js.get_msg(stream, seq))
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
        ]
    finally:
        await nc.close()


def test_kill_9_into_nats_jetstream_stores_every_event_exactly_once(
    tmp_path: Path, server: TestServer, client: Any, db_name: str, nats_server: Broker
) -> None:
    total = 6000
    stream = f"K{db_name}".replace("_", "")[:30]
    args = (
        *("--sink", "nats", "--sink-url", f"nats://127.0.0.1:{nats_server.port}"),
        *("--sink-stream", stream, "--sink-target", f"{stream}.{{namespace}}"),
    )
    d = Daemon(tmp_path, server, db_name, *args).start()
    try:
        coll = client[db_name].c
        writer = threading.Thread(
            target=lambda: [
                coll.insert_many([{"_id": i} for i in range(s, s + 200)])
                for s in range(0, total, 200)
            ]
        )
        writer.start()
        rng = random.Random(3)
        for _ in range(2):
            time.sleep(rng.uniform(0.3, 1.0))
            d.kill()
            d.start()
        writer.join()
        deadline = time.monotonic() + 60
        while True:
            stored = asyncio.run(jetstream_events(nats_server.port, stream))
            if len(stored) >= total or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert d.terminate() == 0
    finally:
        d.close()
    ids = [e["event_id"] for e in stored]
    assert len(ids) == len(set(ids)) == total  # the replays were dropped: exactly once
    assert sorted(e["id"] for e in stored) == list(range(total))


def test_a_redis_outage_is_reported_unhealthy_and_recovered_without_loss(
    tmp_path: Path, server: TestServer, client: Any, db_name: str, redis_server: Broker
) -> None:
    key = f"gtom-test:{db_name}"
    args = (
        *("--sink", "redis", "--sink-url", f"redis://127.0.0.1:{redis_server.port}/0"),
        *("--sink-target", key + ":{coll}", "--delivery-retry-max-wait", "0.5"),
    )
    d = Daemon(tmp_path, server, db_name, *args).start()
    try:
        redis_server.stop()
        client[db_name].c.insert_many([{"_id": i} for i in range(100)])
        deadline = time.monotonic() + 20
        while "gtom_sink_healthy 0" not in d.get("/metrics")[1]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert d.get("/readyz")[0] == 503
        redis_server.start()
        deadline = time.monotonic() + 30
        while d.get("/readyz")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert d.terminate() == 0
    finally:
        d.close()
        if redis_server.proc is None:
            redis_server.start()
    import redis

    r = redis.Redis(port=redis_server.port)
    try:
        entries = stream_entries(r.xrange(f"{key}:c"))
    finally:
        r.close()
    ids = [json.loads(fields[b"event"])["id"] for _, fields in entries]
    assert sorted(set(ids)) == list(range(100))


def test_into_kafka_keyed_by_document(
    tmp_path: Path, server: TestServer, client: Any, db_name: str, kafka_bootstrap: str
) -> None:
    from gtom.consistent import key_of
    from tests.test_sink_kafka import read_all

    topic = f"gtomtest.{db_name}"
    args = ("--sink", "kafka", "--sink-url", kafka_bootstrap, "--sink-target", topic)
    d = Daemon(tmp_path, server, db_name, *args).start()
    try:
        coll = client[db_name].c
        coll.insert_many([{"_id": i, "n": 0} for i in range(20)])
        for i in range(20):
            coll.update_one({"_id": i}, {"$inc": {"n": 1}})
        deadline = time.monotonic() + 30
        while True:
            try:
                records = asyncio.run(read_all(kafka_bootstrap, [topic]))
            except AssertionError:  # the topic is not there yet
                records = []
            if len(records) >= 40 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert d.terminate() == 0
    finally:
        d.close()
    by_key: dict[bytes, list[str]] = {}
    for record in records:
        assert record.value is not None and record.key is not None
        event = json.loads(record.value)
        assert record.key == key_of(event["id"])
        by_key.setdefault(record.key, []).append(event["operation"])
    assert len(by_key) == 20 and all(ops == ["i", "u"] for ops in by_key.values())
