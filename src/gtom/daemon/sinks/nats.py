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
import json
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

_loads: Callable[[bytes], Any]
try:
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson comes with the daemon extra
    _loads = json.loads

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


#: The status header of a reply the server sent because no stream captures the subject.
_NO_RESPONDERS = "503"


def _ack_error(msg: Any) -> Exception | None:
    """Why JetStream's answer ``msg`` to a publish is not an acknowledgement (None: it is).

    The errors are nats-py's own, as its ``publish_async`` would raise them.
    """
    headers = msg.headers
    if headers and headers.get(nats.js.api.Header.STATUS) == _NO_RESPONDERS:
        return nats.js.errors.NoStreamResponseError()
    try:
        reply = _loads(msg.data)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        return SinkError(f"JetStream gave no acknowledgement: {bytes(msg.data[:200])!r}")
    error = reply.get("error")
    if error is not None:
        try:
            nats.js.errors.APIError.from_error(error)  # raises the error's own class
        except nats.js.errors.APIError as e:
            return e
        except (KeyError, TypeError):
            pass
        return nats.js.errors.APIError(description=str(error))
    if reply.get("stream") is None:
        return SinkError(f"JetStream gave no acknowledgement: {reply!r}")
    return None


class _Acks:
    """The acknowledgements of the batch in flight: its reply prefix, and what came back."""

    __slots__ = ("done", "pending", "prefix", "seen")

    def __init__(self, prefix: str, size: int) -> None:
        self.prefix = prefix
        """Replies to this batch go to ``prefix`` + the event's index in the batch."""
        self.pending = size
        self.seen = bytearray(size)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Resolved once every event was acknowledged; failed at the first refusal."""

    def answer(self, index: int, msg: Any) -> None:
        """JetStream answered the publish of event ``index`` with ``msg``."""
        if self.done.done() or not 0 <= index < len(self.seen) or self.seen[index]:
            return
        error = _ack_error(msg)
        if error is not None:
            self.done.set_exception(error)
            return
        self.seen[index] = 1
        self.pending -= 1
        if not self.pending:
            self.done.set_result(None)

    def forget(self) -> None:
        """The batch is over: drop a result nobody waits for (so asyncio does not log it)."""
        if not self.done.done():
            self.done.cancel()
        elif not self.done.cancelled():
            self.done.exception()


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
        self._inbox = ""  # where JetStream's acknowledgements come: <inbox>.<batch>.<index>
        self._batches = 0
        self._acks: _Acks | None = None
        self.sender: str | None = None
        """In a cluster: the leader that sends (``host:pid:nonce term N``), as header
        ``Gtom-Sender`` of every message."""

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
            nc = await asyncio.wait_for(
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
            inbox = nc.new_inbox()
            try:
                await nc.subscribe(f"{inbox}.>", cb=self._on_ack)
            except BaseException:
                await nc.close()
                raise
        except (OSError, nats.errors.Error, asyncio.TimeoutError) as e:
            raise SinkUnavailableError(
                f"cannot reach NATS at {self._where()}: {e or type(e).__name__}"
            ) from e
        self._nc, self._inbox = nc, inbox
        self._js = nc.jetstream(timeout=self.timeout)
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
        """Publish every event in order, then wait until JetStream acknowledged all of them.

        The whole batch has one deadline, ``timeout`` seconds: the publishes are buffered and
        written together, and each one's acknowledgement comes to the sink's own reply inbox
        (``<inbox>.<batch>.<index>``), so a late answer to an earlier batch cannot count for
        this one.
        """
        if not batch:
            return
        if self._nc is None:
            await self.open()
        self._batches += 1
        acks = self._acks = _Acks(f"{self._inbox}.{self._batches}.", len(batch))
        try:
            await asyncio.wait_for(self._publish(batch, acks), self.timeout)
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
        finally:
            self._acks = None
            acks.forget()

    async def _publish(self, batch: Sequence[Event], acks: _Acks) -> None:
        """Publish ``batch`` with replies to ``acks``, then wait for every acknowledgement."""
        publish = self._nc.publish
        subject = self._subject
        reply = acks.prefix
        sender = self.sender
        for index, event in enumerate(batch):
            headers = {"Nats-Msg-Id": event.id}
            if sender is not None:
                headers["Gtom-Sender"] = sender
            await publish(
                subject(event.namespace), event.payload, reply=f"{reply}{index}", headers=headers
            )
        await acks.done

    async def _on_ack(self, msg: Any) -> None:
        """A JetStream answer to one publish: count it for the batch in flight (if it is one)."""
        acks = self._acks
        if acks is None or not msg.subject.startswith(acks.prefix):
            return  # an answer to a batch given up on: that batch is sent again anyway
        try:
            index = int(msg.subject[len(acks.prefix) :])
        except ValueError:
            return
        acks.answer(index, msg)

    async def close(self) -> None:
        """Flush and disconnect (idempotent)."""
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            try:
                await asyncio.wait_for(nc.drain(), self.timeout)
            except (nats.errors.Error, asyncio.TimeoutError, OSError):
                await nc.close()
