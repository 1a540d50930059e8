"""Hostile collection names, into every broker: each gets a valid name of its own, and no stall.

A collection may be called ``a b``, ``a\\nb``, ``a..b``, ``x.``, ``a*b``, ``50%``... NATS
subjects and Kafka topics cannot hold many of those characters. `gtom.daemon.sinks.names`
escapes them injectively (tested here by decoding back), and the sinks are driven through the
daemon's own settings against real brokers: every event is stored under its own subject, stream
key or topic, and nothing waits forever on a name a broker refuses.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bson import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from gtom import Op
from gtom.daemon.config import load
from gtom.daemon.events import EventMaker
from gtom.daemon.sinks import Event, Sink
from gtom.daemon.sinks.factory import make_sink
from gtom.daemon.sinks.names import KAFKA_TOPIC, kafka_part, nats_part, nats_subject_problem
from tests.broker_fixtures import Broker, nats_json, stream_entries
from tests.conftest import TestServer

HOSTILE = [
    "a b",
    "a\tb",
    "a\nb",
    "a\r\nb",
    "a..b",
    "x.",
    ".x",
    "a*b",
    "a>b",
    "50%",
    "50%25",
    "é",
    "a-b",
    "a--b",
    "a_b",
    "$cmd",
    "a.b",
    "plain",
]


# -- the escaping itself ---------------------------------------------------------------------


def nats_decode(token: str) -> str:
    return re.sub(
        r"(?:%[0-9A-F]{2})+",
        lambda m: bytes.fromhex(m.group().replace("%", "")).decode(),
        token,
    )


def kafka_decode(text: str) -> str:
    out, i, pending = [], 0, b""
    while i < len(text):
        if text[i] == "-" and text[i + 1] == "-":
            out.append(pending.decode() + "-")
            pending, i = b"", i + 2
        elif text[i] == "-":
            pending += bytes.fromhex(text[i + 1 : i + 3])
            i += 3
        else:
            out.append(pending.decode() + text[i])
            pending, i = b"", i + 1
    return "".join(out) + pending.decode()


names = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=30
)  # a collection name is never empty, nor holds a NUL


@given(names)
def test_the_escapings_are_injective_and_give_names_the_brokers_take(name: str) -> None:
    assert nats_decode(nats_part(name)) == name
    assert kafka_decode(kafka_part(name)) == name
    assert nats_subject_problem(f"gtom.db.{nats_part(name)}") is None
    assert KAFKA_TOPIC.fullmatch(f"gtom.db.{kafka_part(name)}") or len(kafka_part(name)) > 240


def test_ordinary_names_are_kept_as_they_are() -> None:
    for name in ("orders", "order_items", "v2.events", "A9"):
        assert nats_part(name) == name
        assert kafka_part(name) == name
    assert (nats_part("a..b"), nats_part("x."), nats_part("a b")) == ("a.%2Eb", "x%2E", "a%20b")
    assert (kafka_part("$cmd"), kafka_part("a-b"), kafka_part("a b")) == ("-24cmd", "a--b", "a-20b")


def test_a_template_that_gives_no_valid_name_is_refused_at_start() -> None:
    for sink, target in (("nats", "gtom {namespace}"), ("nats", "a..{coll}"), ("kafka", "t/{db}")):
        flags = {
            ("sink", "type"): [sink],
            ("sink", "url"): ["nats://x:1" if sink == "nats" else "h:1"],
        }
        flags[("sink", "target")] = [target]
        with pytest.raises(Exception, match="gives no valid name") as refused:
            load(None, flags, {})
        assert getattr(refused.value, "exit_code", None) == 5


# -- real brokers ----------------------------------------------------------------------------


def hostile_events() -> list[Event]:
    maker = EventMaker()
    return [
        maker.make(
            Op("i", f"db.{name}", id=i, data={"_id": i}, timestamp=Timestamp(1_700_000_000, i + 1)),
            "oplog",
        )
        for i, name in enumerate(HOSTILE)
    ]


def sink_for(kind: str, url: str, target: str) -> Sink:
    config = load(
        None, {("sink", "type"): [kind], ("sink", "url"): [url], ("sink", "target"): [target]}, {}
    )
    return make_sink(config)


async def send_all(sink: Sink, batch: list[Event]) -> None:
    await sink.open()
    try:
        await asyncio.wait_for(sink.send(batch), 30)  # never a stall
    finally:
        await sink.close()


async def test_nats_gives_every_hostile_name_a_subject_of_its_own(nats_server: Broker) -> None:
    import nats

    batch = hostile_events()
    sink = sink_for("nats", f"nats://127.0.0.1:{nats_server.port}", "hostile.{namespace}")
    await send_all(sink, batch)
    nc = await nats.connect(f"nats://127.0.0.1:{nats_server.port}")
    try:
        js = nc.jetstream()
        info = await js.stream_info("GTOM")
        subjects: dict[str, str] = {}
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg("GTOM", seq)
            if msg.subject and msg.subject.startswith("hostile."):
                subjects[msg.subject] = nats_json(msg)["namespace"]
    finally:
        await nc.close()
    assert sorted(subjects.values()) == sorted(f"db.{name}" for name in HOSTILE)  # each once
    for subject, namespace in subjects.items():
        db, coll = subject.removeprefix("hostile.").split(".", 1)
        assert f"{nats_decode(db)}.{nats_decode(coll)}" == namespace


async def test_redis_keeps_every_hostile_name_as_it_is(redis_server: Broker) -> None:
    import redis.asyncio

    batch = hostile_events()
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    await send_all(sink_for("redis", url, "hostile:{namespace}"), batch)
    client = redis.asyncio.from_url(url)
    try:
        for name in HOSTILE:
            entries = stream_entries(await client.xrange(f"hostile:db.{name}"))
            assert len(entries) == 1, name
            assert json.loads(entries[0][1][b"event"])["namespace"] == f"db.{name}"
    finally:
        await client.aclose()


async def test_kafka_gives_every_hostile_name_a_topic_of_its_own(kafka_bootstrap: str) -> None:
    from tests.test_sink_kafka import read_all

    kept = [name for name in HOSTILE if name != "a.b"]  # "a.b" and "a_b" collide in Kafka
    batch = [e for e in hostile_events() if e.namespace != "db.a.b"]
    await send_all(sink_for("kafka", kafka_bootstrap, "hostile.{namespace}"), batch)
    topics = {f"hostile.db.{kafka_part(name)}": f"db.{name}" for name in kept}
    assert len(topics) == len(kept)
    records = await read_all(kafka_bootstrap, list(topics))
    assert sorted(json.loads(r.value)["namespace"] for r in records) == sorted(topics.values())
    for record in records:
        assert topics[record.topic] == json.loads(record.value)["namespace"]


async def test_kafka_names_that_kafka_would_take_for_one_topic_stop_delivery_clearly(
    kafka_bootstrap: str,
) -> None:
    from gtom.daemon.sinks import SinkRejectedError

    maker = EventMaker()
    batch = [
        maker.make(Op("i", f"db.{name}", id=1, data={"_id": 1}, timestamp=Timestamp(5, i)), "x")
        for i, name in enumerate(["a_b", "a.b"], start=1)
    ]
    sink = sink_for("kafka", kafka_bootstrap, "clash.{namespace}")
    await sink.open()
    try:
        with pytest.raises(SinkRejectedError, match="collide"):
            await asyncio.wait_for(sink.send(batch), 30)
    finally:
        await sink.close()


def test_the_daemon_delivers_hostile_names_to_nats_without_stalling(
    tmp_path: Path, server: TestServer, client: Any, db_name: str, nats_server: Broker
) -> None:
    names = ["a b", "a\tb", "a\nb", "a\r\nb", "a*b", "50%"]
    for name in names:
        client[db_name].create_collection(name)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gtom",
            "run",
            "--uri",
            server.uri,
            "--ns",
            db_name,
            "--sink",
            "nats",
            "--sink-url",
            f"nats://127.0.0.1:{nats_server.port}",
            "--sink-target",
            f"{db_name}.{{coll}}",
            "--sink-stream",
            f"S{db_name}",
            "--checkpoint-path",
            str(tmp_path / "cp.json"),
            "--metrics-listen",
            "off",
            "--delivery-batch-wait",
            "0.05",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # let it start following
        for i, name in enumerate(names):
            client[db_name][name].insert_one({"_id": i})
        stored = asyncio.run(wait_for_stream(nats_server.port, f"S{db_name}", len(names)))
        assert proc.poll() is None, proc.communicate()[1]
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert sorted(stored) == sorted(f"{db_name}.{name}" for name in names)


async def wait_for_stream(port: int, stream: str, count: int, timeout: float = 30) -> list[str]:
    import nats
    import nats.js.errors

    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = await js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                info = None
            if info is not None and info.state.messages >= count:
                break
            assert time.monotonic() < deadline, "the events did not arrive"
            await asyncio.sleep(0.1)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            out.append(nats_json(msg)["namespace"])
        return out
    finally:
        await nc.close()
