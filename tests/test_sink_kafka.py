"""The kafka sink against a real Apache Kafka broker (KRaft), started by tests/kafka_broker.py."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords
from bson import ObjectId

from gtom.consistent import key_of
from gtom.daemon.sinks import Event, Sink, SinkError, SinkRejectedError, SinkUnavailableError
from gtom.daemon.sinks.kafka import EVENT_ID_HEADER, KafkaSink, default_topic
from gtom.daemon.sinks.names import kafka_part

if TYPE_CHECKING:
    from tests.kafka_broker import KafkaBroker

DOCUMENTS: list[Any] = [ObjectId("65a000000000000000000001"), "sku-7", 42, 3.5, {"a": 1}]


def prefix() -> str:
    """A topic prefix of the test's own, so tests (and runs on one cluster) never meet."""
    return f"t{uuid.uuid4().hex[:10]}."


def event(tag: str, n: int, namespace: str, document_id: Any) -> Event:
    payload = json.dumps({"tag": tag, "n": n, "ns": namespace}, separators=(",", ":")).encode()
    return Event(
        id=f"{tag}:{n}:{namespace}",
        namespace=namespace,
        operation="c" if document_id is None else "u",
        document_id=document_id,
        payload=payload,
    )


def batches(tag: str, count: int, size: int) -> list[list[Event]]:
    """``count`` batches of ``size`` events: documents of shop.orders in turn, and commands."""
    made: list[list[Event]] = []
    n = 0
    for _ in range(count):
        batch = []
        for i in range(size):
            if i % 7 == 6:
                batch.append(event(tag, n, "shop.$cmd", None))
            else:
                batch.append(event(tag, n, "shop.orders", DOCUMENTS[n % len(DOCUMENTS)]))
            n += 1
        made.append(batch)
    return made


def sink_for(bootstrap: str, topics: str, **kwargs: Any) -> KafkaSink:
    return KafkaSink(bootstrap, topic_for=lambda ns: topics + topic_name(ns), **kwargs)


def topic_name(namespace: str) -> str:
    """``db.coll`` with both parts escaped for Kafka, as the daemon's settings do."""
    db, _, coll = namespace.partition(".")
    return f"{kafka_part(db)}.{kafka_part(coll)}"


async def partitions_of(bootstrap: str, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of ``topics`` (which must exist)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        for topic in topics:
            await client.add_topic(topic)
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(client.cluster.partitions_for_topic(topic) or ())
        ]
    finally:
        await client.close()
    assert {tp.topic for tp in partitions} == set(topics)
    return partitions


async def read_all(bootstrap: str, topics: Sequence[str]) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topics`` from the beginning to their end now, in order per partition."""
    partitions = await partitions_of(bootstrap, topics)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            fetched = await consumer.getmany(*partitions, timeout_ms=1000)
            for tp in partitions:
                records.extend(fetched.get(tp, []))
        return records
    finally:
        await consumer.stop()


async def record_batches(bootstrap: str, topic: str) -> list[tuple[int, int]]:
    """``(producer id, base sequence)`` of every record batch the broker stores for ``topic``."""
    partitions = await partitions_of(bootstrap, [topic])
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client.add_topic(topic)
        found = []
        for tp in partitions:
            partition = tp.partition
            leader = client.cluster.leader_for_partition(tp)
            request = FetchRequest(100, 1, 1 << 20, 0, [(topic, [(partition, 0, 1 << 20)])])
            response = await client.send(leader, request)
            for _, answers in response.topics:
                for _, error_code, _, *rest in answers:
                    assert error_code == 0
                    records = MemoryRecords(rest[-1])
                    while (batch := records.next_batch()) is not None:
                        found.append((batch.producer_id, batch.base_sequence))
        return found
    finally:
        await client.close()


def event_id(record: ConsumerRecord[bytes, bytes]) -> str:
    headers = dict(record.headers)
    return str(headers[EVENT_ID_HEADER].decode())


# -- without a broker --------------------------------------------------------------------------


def test_topic_names_are_escaped_injectively() -> None:
    sink = KafkaSink("127.0.0.1:1")
    assert isinstance(sink, Sink) and sink.name == "kafka"
    assert sink.topic("shop.orders") == default_topic("shop.orders") == "gtom.shop.orders"
    assert sink.topic("shop.$cmd") == "gtom.shop.-24cmd"
    assert topic_name("a b/c:d.é-_9") == "a-20b-2Fc-3Ad.-C3-A9--_9"
    with pytest.raises(SinkRejectedError, match="longer than 249"):
        sink.topic("db." + "c" * 250)
    with pytest.raises(SinkRejectedError, match="does not accept"):
        KafkaSink("127.0.0.1:1", topic_for=lambda ns: "..").topic("db.c")


def test_without_aiokafka_the_sink_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "aiokafka" or m.startswith("aiokafka.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"needs aiokafka: pip install 'gtom\[kafka\]'"):
        KafkaSink("127.0.0.1:9092")


async def test_no_broker_is_unavailable_at_open_and_send() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = KafkaSink(f"127.0.0.1:{port}")
    with pytest.raises(
        SinkUnavailableError, match=f"cannot reach the Kafka brokers at 127.0.0.1:{port}"
    ):
        await sink.open()
    with pytest.raises(SinkUnavailableError) as caught:
        await sink.send(batches("none", 1, 2)[0])
    assert caught.value.retryable
    await sink.close()
    await sink.close()


# -- against the broker ------------------------------------------------------------------------


async def test_batches_land_in_their_topics_keyed_by_id_in_order(kafka_bootstrap: str) -> None:
    topics = prefix()
    sent = batches("order", 4, 40)
    sink = sink_for(kafka_bootstrap, topics)
    await sink.open()
    try:
        for batch in sent:
            await sink.send(batch)
        await sink.send([])
    finally:
        await sink.close()
        await sink.close()

    records = await read_all(kafka_bootstrap, [topics + "shop.orders", topics + "shop.-24cmd"])
    by_id = {e.id: e for batch in sent for e in batch}
    assert sorted(event_id(r) for r in records) == sorted(by_id)  # each once, none lost
    per_key: dict[bytes | None, list[int]] = defaultdict(list)
    for record in records:
        sent_event = by_id[event_id(record)]
        assert record.topic == topics + topic_name(sent_event.namespace)
        assert record.value == sent_event.payload
        if sent_event.document_id is None:
            assert record.key is None
        else:
            assert record.key == key_of(sent_event.document_id)
            per_key[record.key].append(json.loads(record.value)["n"])
    assert len(per_key) == len(DOCUMENTS)
    for numbers in per_key.values():
        assert numbers == sorted(numbers)  # every document's changes in the order sent


async def test_the_producer_is_idempotent_with_acks_all(kafka_bootstrap: str) -> None:
    topics = prefix()
    sink = sink_for(kafka_bootstrap, topics)
    assert sink.producer_options["acks"] == "all"
    assert sink.producer_options["enable_idempotence"] is True
    try:
        for batch in batches("idem", 3, 20):
            await sink.send(batch)
    finally:
        await sink.close()
    stored = await record_batches(kafka_bootstrap, topics + "shop.orders")
    assert stored
    # An idempotent producer's batches carry its producer id and sequence numbers (else -1).
    assert all(producer_id >= 0 and sequence >= 0 for producer_id, sequence in stored)
    assert len({producer_id for producer_id, _ in stored}) == 1


async def test_a_rejected_event_is_final_and_the_next_batch_goes_through(
    kafka_bootstrap: str,
) -> None:
    topics = prefix()
    sink = sink_for(kafka_bootstrap, topics)
    await sink.open()
    try:
        huge = Event("huge", "shop.orders", "i", 1, b'"' + b"x" * (2 << 20) + b'"')
        with pytest.raises(SinkRejectedError, match="MessageSizeTooLarge") as caught:
            await sink.send([huge])
        assert not caught.value.retryable
        batch = batches("after", 1, 5)[0]
        await sink.send(batch)
    finally:
        await sink.close()
    records = await read_all(kafka_bootstrap, [topics + "shop.orders"])
    assert {event_id(r) for r in records} >= {e.id for e in batch if e.document_id is not None}


async def send_until_confirmed(sink: KafkaSink, batch: list[Event]) -> list[SinkError]:
    """Send ``batch`` again until it is confirmed, as the daemon does; the errors met."""
    errors: list[SinkError] = []
    for _ in range(20):
        try:
            await sink.send(batch)
            return errors
        except SinkError as e:
            errors.append(e)
            await asyncio.sleep(0.5)
    pytest.fail(f"the batch was never delivered after the broker came back: {errors[-1]}")


async def test_a_broker_outage_is_retryable_and_nothing_is_lost(
    kafka_broker: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    topics = prefix()
    first, second, third, fourth = batches("outage", 4, 30)
    options: dict[str, Any] = {"request_timeout": 3.0, "connect_timeout": 3.0}
    sink = sink_for(kafka_broker.bootstrap, topics, **options)
    quitter = sink_for(kafka_broker.bootstrap, topics, **options)  # closed during the outage
    try:
        await sink.send(first)
        await quitter.send(third)
        await asyncio.to_thread(kafka_broker.stop, kill=True)
        failures = await asyncio.gather(
            sink.send(second), quitter.send(fourth), return_exceptions=True
        )
        assert all(isinstance(e, SinkError) and e.retryable for e in failures), failures
        await quitter.close()  # gives up on what it holds, without waiting for the broker
        gc.collect()
        await asyncio.to_thread(kafka_broker.start)
        errors = await send_until_confirmed(sink, second)  # same sink: the same batch again
        errors += await send_until_confirmed(quitter, fourth)  # closed sink: a new producer
        assert all(e.retryable for e in errors)
    finally:
        await sink.close()
        await quitter.close()
        if not kafka_broker.running:
            await asyncio.to_thread(kafka_broker.start)

    records = await read_all(
        kafka_broker.bootstrap, [topics + "shop.orders", topics + "shop.-24cmd"]
    )
    delivered = Counter(event_id(r) for r in records)
    assert set(delivered) == {e.id for e in first + second + third + fourth}  # none lost
    assert any("undelivered events dropped" in r.getMessage() for r in caplog.records)  # quitter
    del failures, errors  # their tracebacks hold the producers' frames
    gc.collect()  # an error set on a future nobody looked at is logged when it is collected
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


# -- partitions: as Kafka's default partitioner chooses them -----------------------------------


def test_murmur2_is_kafkas() -> None:
    from aiokafka.partitioner import murmur2 as aiokafka_murmur2

    from gtom.daemon.sinks.kafka import murmur2

    # Kafka's own test vectors (Java's signed ints), then whatever else.
    for text, java in [
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ]:
        assert murmur2(text.encode()) == java & 0xFFFFFFFF
    keys = [b"", *(key_of(d) for d in DOCUMENTS), *(bytes(range(n)) for n in range(1, 40))]
    keys += [uuid.uuid4().bytes * n for n in range(1, 5)]
    for key in keys:
        assert murmur2(key) == aiokafka_murmur2(key)


async def test_records_go_to_the_partition_kafkas_partitioner_picks(kafka_bootstrap: str) -> None:
    from aiokafka.partitioner import DefaultPartitioner

    topics = prefix()
    documents = [*DOCUMENTS, *range(100), *(ObjectId() for _ in range(50))]
    sent = [event("part", n, "shop.orders", d) for n, d in enumerate(documents)]
    sink = sink_for(kafka_bootstrap, topics)
    try:
        await sink.send(sent)
    finally:
        await sink.close()
    records = await read_all(kafka_bootstrap, [topics + "shop.orders"])
    partitions = sorted({r.partition for r in records})
    assert len(partitions) == 3  # the test broker's topics have 3
    for record in records:
        assert record.key is not None
        assert record.partition == DefaultPartitioner()(record.key, partitions, partitions)
    assert sorted(event_id(r) for r in records) == sorted(e.id for e in sent)


async def test_a_batch_larger_than_a_record_batch_keeps_its_order(kafka_bootstrap: str) -> None:
    topics = prefix()
    payload = b'"' + b"x" * 2000 + b'"'
    sent = [Event(f"big:{n}", "shop.orders", "u", "one-doc", payload) for n in range(400)]
    sent += [Event(f"cmd:{n}", "shop.$cmd", "c", None, payload) for n in range(3)]
    sink = sink_for(kafka_bootstrap, topics)
    try:
        await sink.send(sent)  # 800 KB for one partition: several record batches
    finally:
        await sink.close()
    records = await read_all(kafka_bootstrap, [topics + "shop.orders", topics + "shop.-24cmd"])
    orders = [event_id(r) for r in records if r.topic.endswith("orders")]
    assert orders == [e.id for e in sent[:400]]  # one key: one partition, in order
    commands = [r for r in records if r.topic.endswith("cmd")]
    assert [event_id(r) for r in commands] == ["cmd:0", "cmd:1", "cmd:2"]
    stored = await record_batches(kafka_bootstrap, topics + "shop.orders")
    assert len(stored) > 1
