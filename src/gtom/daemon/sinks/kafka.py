"""The ``kafka`` sink: events into Apache Kafka topics, in order per document, acknowledged by all.

Each event goes to its namespace's topic (``gtom.<namespace>`` by default; characters Kafka does
not allow in a topic name are escaped, injectively, as `gtom.daemon.sinks.names` says: so
``db.$cmd`` goes to ``gtom.db.-24cmd``), keyed by the
BSON encoding of its document's ``_id`` (`gtom.consistent.key_of`), so every change of a document
lands in the same partition, in order. Commands have no key (any partition). The value is the
event's JSON; the header ``gtom-event-id`` carries the event id, for consumers to drop replays.

The producer is idempotent with ``acks=all``: a batch counts as delivered only once every
in-sync replica has every event, and the producer's own retries neither duplicate nor reorder.
A batch the daemon sends again after a failure (or after a crash) may be stored twice: delivery
is at least once, and the event id tells the copies apart.

aiokafka is the client, not confluent-kafka: it is a pure-Python asyncio client, so it runs on
the daemon's event loop and has an idempotent producer, with no native librdkafka threads and
delivery callbacks to bridge into asyncio. Needs aiokafka: ``pip install 'gtom[kafka]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import random
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from gtom._redact import shown
from gtom.consistent import key_of
from gtom.daemon.sinks.base import Event, SinkError, SinkRejectedError, SinkUnavailableError
from gtom.daemon.sinks.names import KAFKA_TOPIC, kafka_part

__all__ = ["EVENT_ID_HEADER", "MAX_TOPIC_LENGTH", "KafkaSink", "default_topic"]

log = logging.getLogger("gtom.daemon")

#: The header carrying the event id (UTF-8) on every message.
EVENT_ID_HEADER = "gtom-event-id"
#: The longest topic name Kafka accepts.
MAX_TOPIC_LENGTH = 249
#: Errors saying the brokers could not be reached or did not answer in time.
_UNREACHABLE_ERRORS = (
    "KafkaConnectionError",
    "NoBrokersAvailable",
    "NodeNotReadyError",
    "KafkaTimeoutError",
    "RequestTimedOutError",
)
#: Errors of an idempotent producer's own state: a new producer (a new producer id) cures them.
_PRODUCER_STATE_ERRORS = (
    "OutOfOrderSequenceNumber",
    "DuplicateSequenceNumber",
    "InvalidProducerEpoch",
    "InvalidProducerIdMapping",
    "ProducerFenced",
    "UnknownProducerId",
)

_Message = tuple[str, "bytes | None", bytes, list[tuple[str, bytes]]]

#: The largest request the producer sends (aiokafka's default), so the largest record too.
MAX_REQUEST_SIZE = 1024 * 1024
#: Bytes a record may take beyond its key, value and headers (aiokafka's upper bound is ~100):
#: a smaller record needs no exact estimate of its size.
_RECORD_SLACK = 1024
#: Key hashes remembered across batches (then forgotten all at once): a document changed again
#: is not hashed again.
_HASHES_KEPT = 16_384


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` (as an unsigned 32-bit integer).

    The hash Kafka's default partitioner (Java's ``Utils.murmur2``, and aiokafka's) gives a key:
    a record keyed ``data`` goes to partition ``(murmur2(data) & 0x7fffffff) % partitions``. This
    one reads the key four bytes at a time with `struct`, about half the time of aiokafka's.
    """
    length = len(data)
    m = 0x5BD1E995
    h = 0x9747B28C ^ length
    for k in struct.unpack_from(f"<{length >> 2}I", data):
        k = (k * m) & 0xFFFFFFFF
        k = ((k ^ (k >> 24)) * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    extra = length & 3
    if extra:
        h = ((h ^ int.from_bytes(data[length - extra :], "little")) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a delivery's error as seen (the sink reads it when it cares; asyncio must not log)."""
    if not future.cancelled():
        future.exception()


def default_topic(namespace: str) -> str:
    """The default topic of a namespace: ``gtom.<db>.<coll>``, escaped for Kafka."""
    db, _, coll = namespace.partition(".")
    return f"gtom.{kafka_part(db)}.{kafka_part(coll)}"


def _aiokafka() -> ModuleType:
    """The aiokafka package (imported on first use), or an ImportError saying how to get it."""
    try:
        importlib.import_module("aiokafka.errors")
        return importlib.import_module("aiokafka")
    except ImportError as e:
        raise ImportError("the kafka sink needs aiokafka: pip install 'gtom[kafka]'") from e


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _first_error(futures: Iterable[asyncio.Future[Any]]) -> BaseException | None:
    """The error of the first failed future (in order); marks every error as retrieved."""
    first = None
    for future in futures:
        if future.done() and not future.cancelled():
            error = future.exception()
            if first is None:
                first = error
    return first


@dataclass
class _Unconfirmed:
    """What a send that timed out left with the producer, still on its way."""

    ids: tuple[str, ...]
    futures: list[asyncio.Future[Any]]
    """One per record batch handed to the producer (a topic partition's share of the batch)."""
    whole: bool
    """Whether every event of the batch was handed to the producer."""


class KafkaSink:
    """Produces events to Kafka with an idempotent, ``acks=all`` producer (see the module).

    ``send`` puts the events of the batch into one record batch per topic partition (more when
    one is full), in order, and hands those to the producer without waiting in between, then
    waits for all the acknowledgements, at most ``request_timeout`` seconds for the whole batch.
    A keyed event goes to the partition Kafka's default partitioner would choose (murmur2 of
    the key, as every Kafka client computes it: a document's records share a partition), the
    events without a key to one partition picked at random for the batch (as Kafka's sticky
    partitioner does). Record batches rather than records: aiokafka then makes no future per
    record, and partitioning ourselves skips its slower murmur2.
    Unreachable brokers and timeouts are `SinkUnavailableError` errors, other transient errors
    (no leader, not enough in-sync replicas, ...) retryable `SinkError` errors, and errors no retry
    can cure (a message too large, no permission, an invalid topic) `SinkRejectedError` errors.

    After a timeout the producer keeps what it could not deliver yet, retrying it itself (without
    duplicates, as it is idempotent): the next ``send`` first waits for that, and if it was the
    same batch and it got through meanwhile, it is not produced a second time. After any other
    error the producer is dropped, and the next ``send`` starts a new one.
    """

    name: str = "kafka"

    def __init__(
        self,
        bootstrap: str,
        *,
        topic_for: Callable[[str], str] = default_topic,
        client_id: str = "gtom",
        request_timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        """Produce to the cluster at ``bootstrap`` (``host:port``, comma-separated for several).

        ``topic_for`` maps a namespace to its topic (escaped: `gtom.daemon.sinks.names`);
        ``request_timeout`` bounds each request and each batch's delivery, ``connect_timeout``
        the wait for the brokers in `open`.
        """
        if request_timeout <= 0:
            raise ValueError(f"request_timeout must be > 0, got {request_timeout}")
        if connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be > 0, got {connect_timeout}")
        self._kafka = _aiokafka()
        self._errors: Any = self._kafka.errors
        self._kafka_error: type[Exception] = self._errors.KafkaError
        self._unreachable = self._error_classes(_UNREACHABLE_ERRORS)
        self._producer_state = self._error_classes(_PRODUCER_STATE_ERRORS)
        self.bootstrap = bootstrap
        self.topic_for = topic_for
        self._collisions: dict[str, str] = {}  # topic with '.' as '_' -> its namespace
        self.client_id = client_id
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self._topics: dict[str, str] = {}
        self._hashes: dict[bytes, int] = {}  # key -> murmur2(key) & 0x7fffffff
        self._producer: Any = None
        self._unconfirmed: _Unconfirmed | None = None
        self._too_large: type[Exception] = self._errors.MessageSizeTooLargeError
        from aiokafka.record.default_records import DefaultRecordBatchBuilder

        self._record_size: Callable[..., int] = DefaultRecordBatchBuilder.estimate_size_in_bytes

    @property
    def producer_options(self) -> Mapping[str, Any]:
        """The options the sink creates its ``AIOKafkaProducer`` with."""
        return {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "enable_idempotence": True,
            "acks": "all",
            "request_timeout_ms": int(self.request_timeout * 1000),
            # One request carries one batch per partition: let it hold a daemon batch's worth.
            "max_batch_size": 256 * 1024,
            "max_request_size": MAX_REQUEST_SIZE,
        }

    def topic(self, namespace: str) -> str:
        """The topic of ``namespace``; a `SinkRejectedError` if Kafka cannot accept the name."""
        topic = self._topics.get(namespace)
        if topic is None:
            topic = self.topic_for(namespace)
            problem = None
            if topic in ("", ".", ".."):
                problem = "empty, '.' or '..'"
            elif len(topic) > MAX_TOPIC_LENGTH:
                problem = f"longer than {MAX_TOPIC_LENGTH} characters"
            elif not KAFKA_TOPIC.fullmatch(topic):
                problem = "it holds characters Kafka does not allow"
            else:
                # Kafka refuses a topic whose name differs from another's only in '.' vs '_'
                # (their metrics names would collide): producing to it would wait forever.
                twin = self._collisions.setdefault(topic.replace(".", "_"), namespace)
                if twin != namespace:
                    problem = (
                        f"Kafka takes it for the same topic as that of namespace {shown(twin)} "
                        f"('.' and '_' collide in Kafka topic names)"
                    )
            if problem is not None:
                raise SinkRejectedError(
                    f"the topic for namespace {shown(namespace)} would be {shown(topic)}, which "
                    f"Kafka does not accept: {problem}; choose a shorter sink.target"
                )
            self._topics[namespace] = topic
        return topic

    def _error_classes(self, names: Sequence[str]) -> tuple[type[BaseException], ...]:
        """The aiokafka error classes of these ``names`` (those this version has)."""
        return tuple(getattr(self._errors, n) for n in names if hasattr(self._errors, n))

    def _sink_error(self, error: BaseException, doing: str) -> SinkError:
        """The `SinkError` for a Kafka ``error`` met while ``doing`` something."""
        message = f"{doing} (Kafka at {self.bootstrap}): {_reason(error)}"
        if isinstance(error, self._unreachable):
            return SinkUnavailableError(message)
        if getattr(error, "retriable", False) or isinstance(error, self._producer_state):
            return SinkError(message, retryable=True)
        if type(error) is self._kafka_error:  # nothing more specific: may well pass
            return SinkError(message, retryable=True)
        return SinkRejectedError(message)

    def _keeps_producer(self, error: BaseException) -> bool:
        """Whether the producer is still good after ``error``: a transient one, or a timeout."""
        transient = bool(getattr(error, "retriable", False)) or isinstance(error, self._unreachable)
        return transient and not isinstance(error, self._producer_state)

    async def open(self) -> None:
        """Start the producer: connect, and get a producer id from the brokers."""
        if self._producer is None:
            self._producer = await self._start()

    async def _start(self) -> Any:
        """A started producer, or a `SinkError` (closing what was started)."""
        producer = self._kafka.AIOKafkaProducer(**self.producer_options)
        try:
            await asyncio.wait_for(producer.start(), self.connect_timeout)
        except (asyncio.TimeoutError, self._kafka_error, OSError) as e:
            await self._stop(producer)
            if isinstance(e, asyncio.TimeoutError):
                raise SinkUnavailableError(
                    f"cannot reach the Kafka brokers at {self.bootstrap}: "
                    f"no producer id within {self.connect_timeout}s"
                ) from e
            if isinstance(e, (OSError, *self._unreachable)):
                raise SinkUnavailableError(
                    f"cannot reach the Kafka brokers at {self.bootstrap}: {_reason(e)}"
                ) from e
            raise self._sink_error(e, "cannot start a producer") from e
        except BaseException:
            await self._stop(producer)
            raise
        return producer

    async def send(self, batch: Sequence[Event]) -> None:
        """Produce ``batch`` and wait until the brokers acknowledged every event of it."""
        if not batch:
            return
        messages: list[_Message] = [
            (
                self.topic(event.namespace),
                None if event.document_id is None else key_of(event.document_id),
                event.payload,
                [(EVENT_ID_HEADER, event.id.encode())],
            )
            for event in batch
        ]
        self._check_sizes(messages)
        ids = tuple(event.id for event in batch)
        if self._unconfirmed is not None and await self._settle(ids):
            return
        if self._producer is None:
            self._producer = await self._start()
        futures: list[asyncio.Future[Any]] = []
        error: BaseException | None = None
        whole = False
        try:
            whole = await self._produce(self._producer, messages, futures)
        except self._kafka_error as e:  # refused before sending
            error = e
        error = _first_error(futures) or error
        if error is None and whole and all(f.done() for f in futures):
            return
        if error is not None and not self._keeps_producer(error):
            await self._discard()
            raise self._sink_error(error, "the brokers did not store the batch") from error
        # Transient: the producer retries what it holds; the next send waits for it first.
        self._unconfirmed = _Unconfirmed(ids, futures, whole=whole)
        if error is not None:
            raise self._sink_error(error, "the brokers did not store the batch") from error
        raise SinkUnavailableError(
            f"the Kafka brokers at {self.bootstrap} did not acknowledge the batch within "
            f"{self.request_timeout}s ({len(messages) if whole else 'not all'} events handed "
            f"over, {sum(f.done() for f in futures)} of {len(futures)} record batches "
            "acknowledged)"
        )

    def _check_sizes(self, messages: Sequence[_Message]) -> None:
        """Refuse the batch (for good) if a record is larger than a request may be."""
        for _, key, value, headers in messages:
            size = len(value) + len(headers[0][1]) + (0 if key is None else len(key))
            if size + _RECORD_SLACK > MAX_REQUEST_SIZE:
                size = self._record_size(key, value, headers)
                if size > MAX_REQUEST_SIZE:
                    error = self._too_large(
                        f"The message is {size} bytes when serialized which is larger than the "
                        "maximum request size you have configured with the max_request_size "
                        "configuration"
                    )
                    raise self._sink_error(error, "the brokers cannot store an event") from error

    def _partition(self, key: bytes | None, count: int, keyless: int) -> int:
        """The partition (of ``count``) of a record keyed ``key``: Kafka's default partitioner's.

        A record without a key goes to ``keyless``.
        """
        if key is None:
            return keyless
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= _HASHES_KEPT:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return hashed % count

    async def _produce(
        self, producer: Any, messages: Sequence[_Message], futures: list[asyncio.Future[Any]]
    ) -> bool:
        """Hand ``messages`` to ``producer`` in order, then wait for their acknowledgements.

        Appends each record batch's delivery future to ``futures``; returns whether every
        message was handed over, at the first failed delivery, or after ``request_timeout``
        seconds (with futures still pending, or not every message handed over).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout

        async def hand_over(builder: Any, topic: str, partition: int) -> None:
            future = await producer.send_batch(builder, topic, partition=partition)
            future.add_done_callback(_retrieve)
            futures.append(future)

        async def enqueue() -> None:
            counts: dict[str, int] = {}
            keyless: dict[str, int] = {}  # one random partition with a leader, for the batch
            for topic in dict.fromkeys(m[0] for m in messages):
                partitions = await producer.partitions_for(topic)  # waits for a new topic
                counts[topic] = len(partitions)
                cluster = getattr(producer.client, "cluster", None)
                available = cluster and cluster.available_partitions_for_topic(topic)
                keyless[topic] = random.choice(sorted(available or partitions))
            builders: dict[tuple[str, int], Any] = {}
            for topic, key, value, headers in messages:
                where = (topic, self._partition(key, counts[topic], keyless[topic]))
                builder = builders.get(where)
                if builder is None:
                    builder = builders[where] = producer.create_batch()
                if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    await hand_over(builder, *where)  # full: on to a new one
                    builder = builders[where] = producer.create_batch()
                    # The first record of a batch always fits, whatever its size.
                    builder.append(timestamp=None, key=key, value=value, headers=headers)
            for where, builder in builders.items():
                await hand_over(builder, *where)

        try:
            await asyncio.wait_for(enqueue(), self.request_timeout)
        except asyncio.TimeoutError:
            return False
        await asyncio.wait(
            futures,
            timeout=max(deadline - loop.time(), 0.001),
            return_when=asyncio.FIRST_EXCEPTION,
        )
        return True

    async def _settle(self, ids: tuple[str, ...]) -> bool:
        """Wait for what an earlier send left unconfirmed; True if that delivered ``ids``.

        Raises `SinkUnavailableError` if it is still not acknowledged after ``request_timeout``.
        """
        unconfirmed = self._unconfirmed
        assert unconfirmed is not None
        pending = [f for f in unconfirmed.futures if not f.done()]
        if pending:
            _, pending_set = await asyncio.wait(pending, timeout=self.request_timeout)
            if pending_set:
                raise SinkUnavailableError(
                    f"the Kafka brokers at {self.bootstrap} have not acknowledged the previous "
                    f"batch after another {self.request_timeout}s"
                )
        self._unconfirmed = None
        error = _first_error(unconfirmed.futures)
        if error is not None:
            if not self._keeps_producer(error):
                await self._discard()
            return False
        return unconfirmed.whole and unconfirmed.ids == ids

    async def _discard(self) -> None:
        """Stop the producer, dropping whatever it holds; the next send starts a new one."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._stop(producer)

    async def _stop(self, producer: Any) -> None:
        """Stop ``producer``, giving it ``request_timeout`` seconds to deliver what it holds.

        An idempotent aiokafka producer retries undelivered messages until they get through, and
        its ``stop`` waits for them: past the time, the messages it still holds are failed (which
        needs aiokafka's internals) so the stop cannot hang while the brokers are down.
        """
        try:
            await asyncio.wait_for(producer.flush(), self.request_timeout)
        except asyncio.TimeoutError:
            log.warning(
                "kafka: undelivered events dropped: the brokers at %s did not acknowledge them "
                "within %ss",
                self.bootstrap,
                self.request_timeout,
            )
            await self._abandon(producer)
        except self._kafka_error as e:
            log.debug("kafka: flushing the producer: %s", _reason(e))
        try:
            await asyncio.wait_for(producer.stop(), self.request_timeout)
        except asyncio.TimeoutError:  # pragma: no cover - only if abandoning was not possible
            log.warning("kafka: the producer did not stop within %ss", self.request_timeout)

    async def _abandon(self, producer: Any) -> None:
        """Stop ``producer``'s sender task and fail every message it still holds."""
        sender = getattr(producer, "_sender", None)
        accumulator = getattr(producer, "_message_accumulator", None)
        if sender is None or accumulator is None:  # pragma: no cover - another aiokafka
            return
        await sender.close()  # cancels the background sender: it stops retrying
        error = self._errors.KafkaError("the gtom kafka sink gave up on this message")
        batches: list[Any] = []
        with contextlib.suppress(AttributeError):  # pragma: no cover - if aiokafka changes
            queued = [b for queue in accumulator._batches.values() for b in queue]
            batches = [*queued, *accumulator._pending_batches]
            # A batch put back for a retry still has the callback that takes it out of the
            # pending ones once done: make it pending again, so the callback finds it there.
            accumulator._pending_batches.update(queued)
        accumulator.fail_all(error)
        for batch in batches:  # retrieve the errors, so asyncio does not log them
            with contextlib.suppress(AttributeError):  # pragma: no cover - as above
                _first_error(
                    [batch.future, batch._drain_waiter, *(f for f, _ in batch._msg_futures)]
                )

    async def close(self) -> None:
        """Deliver what the producer still holds (within ``request_timeout``), then stop it."""
        unconfirmed, self._unconfirmed = self._unconfirmed, None
        await self._discard()
        if unconfirmed is not None:
            _first_error(unconfirmed.futures)
