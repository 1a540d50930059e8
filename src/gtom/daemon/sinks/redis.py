"""The ``redis`` sink: events appended to Redis Streams, one stream per namespace.

Each event is an ``XADD`` to its namespace's stream key (``sink.target``, default
``gtom:{namespace}``) with two fields: ``id`` (the event id) and ``event`` (the JSON). A batch is
one pipelined round trip; it counts as delivered once Redis answered every ``XADD``. With
``sink.maxlen`` each stream is trimmed to about that many entries (``MAXLEN ~``).

Redis Streams cannot drop a replayed entry by itself, so the batch a restarted daemon sends
again (the one in flight at a crash) can appear twice: consumers that must not apply it twice
skip an entry whose ``id`` field they have already seen (event ids are stable across runs, and a
replay is always the newest entries of a stream). Needs redis-py: ``pip install 'gtom[redis]'``
(which brings hiredis, redis-py's C parser of the answers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from gtom._redact import redact
from gtom.daemon.sinks.base import Event, SinkError, SinkRejectedError, SinkUnavailableError

try:
    import redis.asyncio
    import redis.exceptions
except ImportError as e:  # pragma: no cover - depends on the extra
    raise ImportError("the redis sink needs redis-py: pip install 'gtom[redis]'") from e

__all__ = ["RedisSink"]

#: Refusals that pass: memory freed, a failover done, a load finished.
_TRANSIENT = ("OOM", "TRYAGAIN", "MASTERDOWN", "READONLY", "LOADING", "BUSY")


def _bulk(data: bytes) -> bytes:
    """``data`` as a RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(data), data)


def xadd_head(key: str, maxlen: int = 0) -> bytes:
    """The RESP of ``XADD key [MAXLEN ~ maxlen] * id <id> event <json>`` up to the event id.

    `xadd_commands` appends each event's id and JSON to it: the bytes are those redis-py writes
    for ``xadd(key, {"id": id, "event": json}, maxlen=maxlen or None, approximate=True)``.
    """
    trim = [b"MAXLEN", b"~", str(maxlen).encode()] if maxlen else []
    parts = [b"XADD", key.encode(), *trim, b"*", b"id"]
    return b"*%d\r\n" % (len(parts) + 3) + b"".join(_bulk(part) for part in parts)


def xadd_commands(heads: Callable[[str], bytes], batch: Sequence[Event]) -> bytes:
    """One ``XADD`` per event of ``batch`` (to the stream ``heads`` gives its namespace), packed."""
    parts: list[bytes] = []
    append = parts.append
    for event in batch:
        ident = event.id.encode()
        payload = event.payload
        append(heads(event.namespace))
        append(b"$%d\r\n%b\r\n$5\r\nevent\r\n$%d\r\n" % (len(ident), ident, len(payload)))
        append(payload)
        append(b"\r\n")
    return b"".join(parts)


async def _connection(pool: Any) -> Any:
    """A connection of ``pool`` (redis-py 5 wants a command name, later ones want none)."""
    try:
        return await pool.get_connection()
    except TypeError:  # pragma: no cover - redis-py 5
        return await pool.get_connection("XADD")


class RedisSink:
    """Appends events to one Redis stream per namespace (see the module).

    A batch is written as redis-py's pipeline would write it (one ``XADD`` per event, in order,
    sent at once), but packed by the sink: redis-py packs each command argument by argument,
    in Python, which cost more than everything else the sink does. The answers are read with
    redis-py's own connection (its hiredis parser when hiredis is installed: ``gtom[redis]``
    brings it). Every answer is read before ``send`` returns or raises, the first error among
    them is raised, and the whole batch has one deadline, ``timeout`` seconds: past it the
    connection is dropped (redis-py drops a connection whose read was interrupted), and the
    batch fails as unavailable.
    """

    name: str = "redis"

    def __init__(
        self,
        url: str,
        *,
        key_for: Callable[[str], str] = lambda ns: f"gtom:{ns}",
        maxlen: int = 0,
        timeout: float = 10.0,
    ) -> None:
        """Write to the Redis at ``url`` (``redis://host:port/db``); ``maxlen`` 0 never trims."""
        self.url = url
        self.key_for = key_for
        self.maxlen = maxlen
        self.timeout = timeout
        self._client: Any = None
        self._heads: dict[str, bytes] = {}

    def _head(self, namespace: str) -> bytes:
        head = self._heads.get(namespace)
        if head is None:
            head = self._heads[namespace] = xadd_head(self.key_for(namespace), self.maxlen)
        return head

    def _connect(self) -> Any:
        # No socket_timeout: redis-py would arm a timer around every answer; the sink bounds
        # each batch as a whole instead.
        return redis.asyncio.from_url(
            self.url, socket_timeout=None, socket_connect_timeout=min(self.timeout, 5.0)
        )

    async def open(self) -> None:
        """Connect and check Redis answers."""
        client = self._client = self._connect()
        try:
            await asyncio.wait_for(client.ping(), self.timeout)
        except (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            asyncio.TimeoutError,
            OSError,
        ) as e:
            raise SinkUnavailableError(f"cannot reach Redis at {redact(self.url)}: {e}") from e
        except redis.exceptions.ResponseError as e:  # e.g. authentication required
            raise SinkRejectedError(f"Redis at {redact(self.url)} refused gtom: {e}") from e

    async def send(self, batch: Sequence[Event]) -> None:
        """``XADD`` every event in one round trip; return once Redis answered all of them."""
        if not batch:
            return
        if self._client is None:
            self._client = self._connect()
        commands = xadd_commands(self._head, batch)
        try:
            await asyncio.wait_for(self._execute(commands, len(batch)), self.timeout)
        except (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            asyncio.TimeoutError,
            OSError,
        ) as e:
            raise SinkUnavailableError(
                f"Redis at {redact(self.url)} did not take the batch: {e or type(e).__name__}"
            ) from e
        except redis.exceptions.ResponseError as e:
            if str(e).startswith(_TRANSIENT):
                raise SinkError(f"Redis at {redact(self.url)} is busy: {e}") from e
            # WRONGTYPE, NOPERM, ...: sending again cannot help
            raise SinkRejectedError(f"Redis at {redact(self.url)} refused an event: {e}") from e

    async def _execute(self, commands: bytes, count: int) -> None:
        """Send ``commands`` and read their ``count`` answers; raise the first error among them."""
        pool = self._client.connection_pool
        connection = await _connection(pool)
        try:
            await connection.send_packed_command(commands)
            first: redis.exceptions.ResponseError | None = None
            for _ in range(count):
                try:
                    await connection.read_response()
                except redis.exceptions.ResponseError as e:  # the next answers still come
                    first = first or e
            if first is not None:
                raise first
        finally:
            await pool.release(connection)

    async def close(self) -> None:
        """Disconnect (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
