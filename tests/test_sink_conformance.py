"""One conformance suite for every sink, each against its real target.

What every sink must do: deliver a batch whole and in order per document, have it stored when
``send`` returns (the daemon checkpoints right after), fail *retryably* while the target is down
and deliver the same batch once it is back (nothing lost), and say clearly at ``open`` that the
target is not there.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from bson import Timestamp

from gtom import Op
from gtom.daemon.events import EventMaker
from gtom.daemon.sinks import Event, FileSink, Sink, SinkError, SinkUnavailableError, StdoutSink
from tests.broker_fixtures import Broker, nats_json, stream_entries
from tests.webhook_server import WebhookServer

SINKS = ["stdout", "file", "webhook", "nats", "redis", "kafka"]
#: Sinks with a remote target that can be down or absent (a local stream or file cannot).
REMOTE = ["webhook", "nats", "redis", "kafka"]


def events(n: int, start: int = 0) -> list[Event]:
    """``n`` events over two namespaces and a few documents, each changed several times."""
    maker = EventMaker()
    out = []
    for i in range(start, start + n):
        op = Op(
            operation="u",
            namespace="db.a" if i % 7 % 2 else "db.b",  # a document lives in one namespace
            id=i % 7,
            data={"_id": i % 7, "seq": i},
            timestamp=Timestamp(1_700_000_000 + i, 1),
        )
        out.append(maker.make(op, "oplog"))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Harness:
    """A sink under test, how to read back what it stored, and how to take its target down."""

    async def make(self) -> Sink:
        raise NotImplementedError

    def unreachable(self) -> Sink | None:
        """A sink whose target is not there (None: no such thing for this sink)."""
        return None

    async def stored(self) -> list[dict[str, Any]]:
        """Every stored event's JSON, in the order stored (per namespace)."""
        raise NotImplementedError

    def down(self) -> None:
        raise NotImplementedError

    def up(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class StdoutHarness(Harness):
    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    async def make(self) -> Sink:
        return StdoutSink(self.buffer)

    async def stored(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.buffer.getvalue().splitlines()]


class FileHarness(Harness):
    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "events.jsonl"

    async def make(self) -> Sink:
        return FileSink(self.path)

    async def stored(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_bytes().splitlines()]


class WebhookHarness(Harness):
    def __init__(self) -> None:
        self.server = WebhookServer()

    async def make(self) -> Sink:
        from gtom.daemon.sinks.webhook import WebhookSink

        return WebhookSink(self.server.url, timeout=5)

    def unreachable(self) -> Sink | None:
        from gtom.daemon.sinks.webhook import WebhookSink

        return WebhookSink(f"http://127.0.0.1:{free_port()}/", timeout=2)

    async def stored(self) -> list[dict[str, Any]]:
        return list(self.server.accepted)

    def down(self) -> None:
        self.server.status = 503

    def up(self) -> None:
        self.server.status = 200

    async def close(self) -> None:
        self.server.close()


class NatsHarness(Harness):
    def __init__(self, broker: Broker, name: str) -> None:
        self.broker = broker
        self.stream = f"T{name}"
        self.prefix = f"t{name}"

    def _sink(self, port: int, timeout: float = 3) -> Sink:
        from gtom.daemon.sinks.nats import NatsSink

        return NatsSink(
            f"nats://127.0.0.1:{port}",
            subject_for=lambda ns: f"{self.prefix}.{ns}",
            template=self.prefix + ".{namespace}",
            stream=self.stream,
            timeout=timeout,
        )

    async def make(self) -> Sink:
        return self._sink(self.broker.port)

    def unreachable(self) -> Sink | None:
        return self._sink(free_port())

    async def stored(self) -> list[dict[str, Any]]:
        import nats

        nc = await nats.connect(f"nats://127.0.0.1:{self.broker.port}")
        try:
            js = nc.jetstream()
            info = await js.stream_info(self.stream)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                if info.state.messages == 0:
                    break
                msg = await js.get_msg(self.stream, seq)
                out.append(nats_json(msg))
            return out
        finally:
            await nc.close()

    def down(self) -> None:
        self.broker.stop()

    def up(self) -> None:
        self.broker.start()


class RedisHarness(Harness):
    def __init__(self, broker: Broker, name: str) -> None:
        self.broker = broker
        self.prefix = f"t{name}"

    def _sink(self, port: int) -> Sink:
        from gtom.daemon.sinks.redis import RedisSink

        return RedisSink(
            f"redis://127.0.0.1:{port}/0", key_for=lambda ns: f"{self.prefix}:{ns}", timeout=3
        )

    async def make(self) -> Sink:
        return self._sink(self.broker.port)

    def unreachable(self) -> Sink | None:
        return self._sink(free_port())

    async def stored(self) -> list[dict[str, Any]]:
        import redis.asyncio

        client = redis.asyncio.from_url(f"redis://127.0.0.1:{self.broker.port}/0")
        try:
            out = []
            for ns in ("db.a", "db.b"):
                for _, fields in stream_entries(await client.xrange(f"{self.prefix}:{ns}")):
                    document = json.loads(fields[b"event"])
                    assert document["event_id"] == fields[b"id"].decode()
                    out.append(document)
            return out
        finally:
            await client.aclose()

    def down(self) -> None:
        self.broker.stop()

    def up(self) -> None:
        self.broker.start()


class KafkaHarness(Harness):
    def __init__(self, broker: Any, name: str) -> None:
        self.broker = broker
        self.prefix = f"t{name}-{id(self)}."

    def _sink(self, bootstrap: str, timeout: float = 5) -> Sink:
        from gtom.daemon.sinks.kafka import KafkaSink

        return KafkaSink(
            bootstrap,
            topic_for=lambda ns: self.prefix + ns,
            request_timeout=timeout,
            connect_timeout=timeout,
        )

    async def make(self) -> Sink:
        return self._sink(self.broker.bootstrap)

    def unreachable(self) -> Sink | None:
        return self._sink(f"127.0.0.1:{free_port()}")

    async def stored(self) -> list[dict[str, Any]]:
        from tests.test_sink_kafka import read_all

        records = []
        for ns in ("db.a", "db.b"):
            with contextlib.suppress(AssertionError):  # no such topic (yet): nothing stored
                records += await read_all(self.broker.bootstrap, [self.prefix + ns])
        out = []
        for record in records:
            assert record.value is not None
            document = json.loads(record.value)
            headers = dict(record.headers)
            assert document["event_id"] == headers["gtom-event-id"].decode()
            out.append(document)
        return out

    def down(self) -> None:
        self.broker.stop()

    def up(self) -> None:
        self.broker.start()


_names = iter(range(1_000_000))


@pytest.fixture(params=SINKS)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    kind = request.param
    name = str(next(_names))
    made: Callable[[], Harness] = {
        "stdout": StdoutHarness,
        "file": lambda: FileHarness(tmp_path),
        "webhook": WebhookHarness,
        "nats": lambda: NatsHarness(request.getfixturevalue("nats_server"), name),
        "redis": lambda: RedisHarness(request.getfixturevalue("redis_server"), name),
        "kafka": lambda: KafkaHarness(request.getfixturevalue("kafka_broker"), name),
    }[kind]
    h = made()
    yield h
    await h.close()


def by_document(stored: list[dict[str, Any]]) -> dict[Any, list[int]]:
    seqs: dict[Any, list[int]] = {}
    for document in stored:
        seqs.setdefault(document["id"], []).append(document["data"]["seq"])
    return seqs


async def test_batches_are_stored_whole_and_in_order_per_document_when_send_returns(
    harness: Harness,
) -> None:
    sink = await harness.make()
    await sink.open()
    sent: list[Event] = []
    try:
        for size in (1, 250, 37):
            batch = events(size, start=len(sent))
            await sink.send(batch)
            sent += batch
            stored = await harness.stored()  # confirmed means stored: no waiting
            assert sorted(d["event_id"] for d in stored) == sorted(e.id for e in sent)
        await sink.send([])
    finally:
        await sink.close()
        await sink.close()
    for seqs in by_document(await harness.stored()).values():
        assert seqs == sorted(seqs)


class _ImportSpy:
    """A meta-path finder that only notes the modules Python had to look for."""

    def __init__(self) -> None:
        self.looked_for: list[str] = []

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        self.looked_for.append(name)


async def test_a_warm_send_looks_for_no_module(harness: Harness) -> None:
    # Python caches no failed import: a client that tries an optional import per request pays a
    # search of sys.path every time. httpcore does so for sniffio, which anyio 4.11 stopped
    # installing (encode/httpcore#1103): a quarter of the webhook sink's CPU per request, until
    # the daemon extra installed sniffio. No sink may look for a module once it has sent.
    sink = await harness.make()
    await sink.open()
    spy = _ImportSpy()
    try:
        await sink.send(events(3))
        sys.meta_path.insert(0, spy)
        await sink.send(events(3, start=3))
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(spy)
        await sink.close()
    assert spy.looked_for == []


@pytest.mark.parametrize("harness", REMOTE, indirect=True)
async def test_while_the_target_is_down_send_fails_retryably_and_nothing_is_lost(
    harness: Harness,
) -> None:
    sink = await harness.make()
    await sink.open()
    try:
        await sink.send(events(10))
        harness.down()
        batch = events(20, start=10)
        with pytest.raises(SinkError) as failed:
            await asyncio.wait_for(sink.send(batch), 30)
        assert failed.value.retryable
        harness.up()
        for _ in range(50):  # the daemon's retry loop, shortened
            try:
                await sink.send(batch)
                break
            except SinkError as e:
                if not e.retryable:
                    raise
                await asyncio.sleep(0.2)
        else:
            raise AssertionError("the sink never recovered")
    finally:
        await sink.close()
    stored = [d["event_id"] for d in await harness.stored()]
    assert set(stored) == {e.id for e in events(30)}  # none lost
    if isinstance(harness, NatsHarness):
        assert len(stored) == 30  # JetStream dropped the replay: effectively once


@pytest.mark.parametrize("harness", REMOTE, indirect=True)
async def test_open_says_clearly_that_the_target_is_not_there(harness: Harness) -> None:
    sink = harness.unreachable()
    assert sink is not None
    with pytest.raises(SinkUnavailableError, match="cannot reach"):
        await asyncio.wait_for(sink.open(), 20)
    await sink.close()
