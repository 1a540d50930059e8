"""The ``nats`` sink: events into a NATS JetStream stream, effectively once.

Each event is published to its namespace's subject (``sink.target``, default
``gtom.{namespace}``, the namespace escaped as `gtom.daemon.sinks.names` says: a collection name
with a space or an empty token still gets a subject of its own) with the header
``Nats-Msg-Id`` set to the event id. JetStream drops a
message whose id it has seen within the stream's duplicate window, so the batch a restarted
daemon sends again (the one in flight at a crash) is stored once: effectively-once delivery
into the stream, as long as the restart comes within the window (`DUPLICATE_WINDOW`, set when
gtom creates the stream). A batch counts as delivered only once JetStream acknowledged every
message of it (stored; duplicates acknowledged as such).

The stream (``sink.stream``, default ``GTOM``) is created if missing, capturing the subjects
the target template can produce (``gtom.>`` for the default); an existing stream is used as it
is. Needs nats-py: ``pip install 'gtom[nats]'``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from gtom._redact import redact
from gtom.daemon.sinks.base import Event, SinkError, SinkRejectedError, SinkUnavailableError

try:
    import nats
    import nats.errors
    import nats.js.api
    import nats.js.errors
except ImportError as e:  # pragma: no cover - depends on the extra
    raise ImportError("the nats sink needs nats-py: pip install 'gtom[nats]'") from e

__all__ = ["DUPLICATE_WINDOW", "NatsSink", "stream_subjects"]

log = logging.getLogger("gtom.daemon")

#: Seconds JetStream remembers message ids (for streams gtom creates): replays within it drop.
DUPLICATE_WINDOW = 3600.0


def stream_subjects(template: str) -> list[str]:
    """The subjects a stream needs to capture everything ``template`` can produce."""
    prefix = template.split("{", 1)[0]
    if "{" not in template:
        return [template]
    if not prefix.endswith(".") or prefix == ".":
        raise ValueError(
            f"a NATS subject template must start with fixed tokens, like 'gtom.{{namespace}}', "
            f"got {template!r}"
        )
    return [prefix + ">"]


async def _quiet(error: Exception) -> None:
    """nats-py's errors while (re)connecting: the daemon reports failed sends itself."""
    log.debug("nats: %s", error)


async def _disconnected() -> None:
    log.info("nats: disconnected; reconnecting")


class NatsSink:
    """Publishes events to NATS JetStream with ``Nats-Msg-Id`` = event id (see the module)."""

    name: str = "nats"

    def __init__(
        self,
        servers: str,
        *,
        subject_for: Callable[[str], str] = lambda ns: f"gtom.{ns}",
        template: str = "gtom.{namespace}",
        stream: str = "GTOM",
        timeout: float = 10.0,
    ) -> None:
        """Publish to ``servers`` (``nats://host:port``, comma-separated for a cluster)."""
        self.servers = [s.strip() for s in servers.split(",") if s.strip()]
        self.subject_for = subject_for
        self.template = template
        self.stream = stream
        self.timeout = timeout
        self._nc: Any = None
        self._js: Any = None
        self._subjects: dict[str, str] = {}

    def _subject(self, namespace: str) -> str:
        subject = self._subjects.get(namespace)
        if subject is None:
            subject = self._subjects[namespace] = self.subject_for(namespace)
        return subject

    def _where(self) -> str:
        return redact(",".join(self.servers))

    async def open(self) -> None:
        """Connect, and create the stream if it does not exist."""
        try:
            self._nc = await asyncio.wait_for(
                nats.connect(
                    servers=self.servers,
                    connect_timeout=min(self.timeout, 5.0),
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    reconnect_time_wait=0.5,
                    error_cb=_quiet,
                    disconnected_cb=_disconnected,
                ),
                self.timeout,
            )
        except (OSError, nats.errors.Error, asyncio.TimeoutError) as e:
            raise SinkUnavailableError(
                f"cannot reach NATS at {self._where()}: {e or type(e).__name__}"
            ) from e
        self._js = self._nc.jetstream(timeout=self.timeout)
        try:
            await self._js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            config = nats.js.api.StreamConfig(
                name=self.stream,
                subjects=stream_subjects(self.template),
                duplicate_window=DUPLICATE_WINDOW,
            )
            try:
                await self._js.add_stream(config)
            except nats.js.errors.APIError as e:
                raise SinkRejectedError(
                    f"cannot create the JetStream stream {self.stream}: {e}"
                ) from e
        except (nats.errors.Error, asyncio.TimeoutError) as e:
            raise SinkUnavailableError(
                f"JetStream does not answer at {self._where()} (is the server started with "
                f"-js?): {e or type(e).__name__}"
            ) from e

    async def send(self, batch: Sequence[Event]) -> None:
        """Publish every event in order, then wait until JetStream acknowledged all of them."""
        if not batch:
            return
        if self._js is None:
            await self.open()
        js = self._js
        subject = self._subject
        try:
            futures = [
                await js.publish_async(
                    subject(event.namespace),
                    event.payload,
                    wait_stall=self.timeout,
                    headers={"Nats-Msg-Id": event.id},
                )
                for event in batch
            ]
            acks = await asyncio.wait_for(asyncio.gather(*futures), self.timeout)
        except (nats.errors.BadSubjectError, nats.errors.MaxPayloadError) as e:
            raise SinkRejectedError(f"NATS refused an event, for good: {e!r}") from e
        except nats.js.errors.APIError as e:
            if getattr(e, "code", None) in (400, 413):  # bad request, message too large
                raise SinkRejectedError(f"JetStream refused an event: {e}") from e
            raise SinkError(f"JetStream did not store the batch: {e}") from e
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as e:
            raise SinkUnavailableError(
                f"NATS at {self._where()} did not acknowledge the batch: {e or type(e).__name__}"
            ) from e
        for ack in acks:
            if getattr(ack, "stream", None) is None:
                raise SinkError(f"JetStream gave no acknowledgement: {ack!r}")

    async def close(self) -> None:
        """Flush and disconnect (idempotent)."""
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            try:
                await asyncio.wait_for(nc.drain(), self.timeout)
            except (nats.errors.Error, asyncio.TimeoutError, OSError):
                await nc.close()
