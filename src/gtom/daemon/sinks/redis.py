"""The ``redis`` sink: events appended to Redis Streams, one stream per namespace.

Each event is an ``XADD`` to its namespace's stream key (``sink.target``, default
``gtom:{namespace}``) with two fields: ``id`` (the event id) and ``event`` (the JSON). A batch is
one pipelined round trip; it counts as delivered once Redis answered every ``XADD``. With
``sink.maxlen`` each stream is trimmed to about that many entries (``MAXLEN ~``).

Redis Streams cannot drop a replayed entry by itself, so the batch a restarted daemon sends
again (the one in flight at a crash) can appear twice: consumers that must not apply it twice
skip an entry whose ``id`` field they have already seen (event ids are stable across runs, and a
replay is always the newest entries of a stream). Needs redis-py: ``pip install 'gtom[redis]'``.
"""

from __future__ import annotations

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


class RedisSink:
    """Appends events to one Redis stream per namespace (see the module)."""

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

    def _connect(self) -> Any:
        return redis.asyncio.from_url(
            self.url, socket_timeout=self.timeout, socket_connect_timeout=min(self.timeout, 5.0)
        )

    async def open(self) -> None:
        """Connect and check Redis answers."""
        client = self._client = self._connect()
        try:
            await client.ping()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
            raise SinkUnavailableError(f"cannot reach Redis at {redact(self.url)}: {e}") from e
        except redis.exceptions.ResponseError as e:  # e.g. authentication required
            raise SinkRejectedError(f"Redis at {redact(self.url)} refused gtom: {e}") from e

    async def send(self, batch: Sequence[Event]) -> None:
        """``XADD`` every event in one pipeline; return once Redis answered all of them."""
        if not batch:
            return
        if self._client is None:
            self._client = self._connect()
        pipe = self._client.pipeline(transaction=False)
        for event in batch:
            pipe.xadd(
                self.key_for(event.namespace),
                {"id": event.id, "event": event.payload},
                maxlen=self.maxlen or None,
                approximate=True,
            )
        try:
            await pipe.execute(raise_on_error=True)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
            raise SinkUnavailableError(
                f"Redis at {redact(self.url)} did not take the batch: {e}"
            ) from e
        except redis.exceptions.ResponseError as e:
            if str(e).startswith(_TRANSIENT):
                raise SinkError(f"Redis at {redact(self.url)} is busy: {e}") from e
            # WRONGTYPE, NOPERM, ...: sending again cannot help
            raise SinkRejectedError(f"Redis at {redact(self.url)} refused an event: {e}") from e

    async def close(self) -> None:
        """Disconnect (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
