"""The daemon's built-in sinks, against real pipes, files and a real local HTTP server."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from gtom.daemon.sinks import (
    Event,
    FileSink,
    Sink,
    SinkError,
    SinkRejectedError,
    SinkUnavailableError,
    StdoutSink,
    WebhookSink,
)
from tests.broker_fixtures import Broker, stream_entries

SECRET = "s3cret-key-0123"
PASSWORD = "hunter2"


def event(n: int, namespace: str = "db.c") -> Event:
    payload = json.dumps({"n": f"{n:03d}"}, separators=(",", ":")).encode()
    return Event(
        id=f"1700000000.{n}:0:{namespace}:{n:016x}",
        namespace=namespace,
        operation="i",
        document_id=n,
        payload=payload,
    )


LINE = len(event(0).payload) + 1  # every test event is one line of this many bytes


def batch(*numbers: int) -> list[Event]:
    return [event(n) for n in numbers]


def lines(path: Path) -> list[int]:
    return [int(json.loads(line)["n"]) for line in path.read_bytes().splitlines()]


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def pipe(buffering: int = -1) -> tuple[BinaryIO, BinaryIO]:
    """A pipe's ends: an unbuffered, non-blocking reader and a buffered writer."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    return open(r, "rb", buffering=0), open(w, "wb", buffering=buffering)


def test_every_sink_is_a_sink(tmp_path: Path) -> None:
    sinks: list[Sink] = [
        StdoutSink(io.BytesIO()),
        FileSink(tmp_path / "x"),
        WebhookSink("http://x.invalid/"),
    ]
    assert all(isinstance(s, Sink) for s in sinks)
    assert [s.name for s in sinks] == ["stdout", "file", "webhook"]


def test_the_package_imports_without_httpx() -> None:
    code = (
        "import sys\n"
        "sys.modules['httpx'] = None\n"
        "import gtom.daemon.sinks as sinks\n"
        "assert sinks.StdoutSink.name == 'stdout' and sinks.FileSink.name == 'file'\n"
        "try:\n"
        "    sinks.WebhookSink\n"
        "except ImportError as e:\n"
        "    print('ImportError:', e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "ImportError: the webhook sink needs httpx" in result.stdout


# -- stdout ------------------------------------------------------------------------------------


async def test_stdout_writes_lines() -> None:
    stream = io.BytesIO()
    sink = StdoutSink(stream)
    await sink.open()
    await sink.send(batch(1, 2))
    await sink.send([])
    await sink.send(batch(3))
    await sink.close()
    await sink.close()
    assert stream.getvalue() == b"".join(e.payload + b"\n" for e in batch(1, 2, 3))
    assert not stream.closed  # the sink does not own the stream


async def test_stdout_flushes_each_batch_into_a_pipe() -> None:
    reader, writer = pipe(buffering=1 << 16)
    with reader, writer:
        sink = StdoutSink(writer)
        await sink.open()
        await sink.send(batch(1, 2, 3))
        # buffered, so readable now only because send flushed
        assert reader.read(1 << 16) == b"".join(e.payload + b"\n" for e in batch(1, 2, 3))
        await sink.close()


async def test_stdout_reader_gone_is_rejected() -> None:
    reader, writer = pipe()
    reader.close()
    try:
        sink = StdoutSink(writer)
        with pytest.raises(SinkRejectedError, match="the reader of stdout went away") as info:
            await sink.send(batch(1))
        assert info.value.retryable is False
        await sink.close()  # does not raise
    finally:
        with contextlib.suppress(BrokenPipeError):
            writer.close()
    assert writer.closed


# -- file --------------------------------------------------------------------------------------


async def test_file_appends_and_creates_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "events.jsonl"
    sink = FileSink(path, fsync=True)
    await sink.open()
    await sink.send(batch(1, 2))
    await sink.send(batch(3))
    await sink.close()
    await sink.close()
    again = FileSink(str(path))
    await again.open()
    await again.send(batch(4))
    await again.close()
    assert lines(path) == [1, 2, 3, 4]
    assert path.read_bytes().endswith(b"\n")


def tear(path: Path) -> None:
    with open(path, "ab") as f:
        f.write(b'{"half of an eve')  # what kill -9 in the middle of a write leaves


async def test_file_cuts_a_torn_last_line_left_by_a_killed_process(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = FileSink(path)
    await sink.send(batch(1, 2))
    await sink.close()
    tear(path)
    again = FileSink(path)
    await again.open()
    await again.send(batch(3))
    await again.close()
    assert lines(path) == [1, 2, 3]


async def test_file_rotation_keeps_batches_whole_and_at_most_backups(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = FileSink(path, max_bytes=3 * LINE + LINE // 2, backups=2)
    await sink.open()
    await sink.send(batch(1, 2))  # 2 lines
    await sink.send(batch(3))  # 3 lines: still fits
    await sink.send(batch(4, 5, 6))  # would make 6: rotates
    await sink.send(batch(7, 8, 9, 10, 11))  # would not fit even alone: a fresh file, whole
    await sink.send(batch(12))  # the file is over the limit: rotates
    await sink.close()
    assert lines(path) == [12]
    assert lines(tmp_path / "events.jsonl.1") == [7, 8, 9, 10, 11]
    assert lines(tmp_path / "events.jsonl.2") == [4, 5, 6]
    assert names(tmp_path) == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]


async def test_file_rotation_at_the_exact_limit_and_across_reopens(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = FileSink(path, max_bytes=2 * LINE, backups=5)
    await sink.open()
    await sink.send(batch(1))
    await sink.send(batch(2))  # exactly max_bytes: no rotation
    await sink.close()
    assert lines(path) == [1, 2] and not (tmp_path / "events.jsonl.1").exists()
    reopened = FileSink(path, max_bytes=2 * LINE, backups=5)
    await reopened.open()  # knows the file is already full
    await reopened.send(batch(3))
    await reopened.send(batch(4))
    await reopened.send(batch(5))
    await reopened.close()
    assert lines(path) == [5]
    assert lines(tmp_path / "events.jsonl.1") == [3, 4]
    assert lines(tmp_path / "events.jsonl.2") == [1, 2]


async def test_file_rotation_without_backups_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = FileSink(path, max_bytes=LINE, backups=0)
    await sink.open()
    for n in range(3):
        await sink.send(batch(n))
    await sink.close()
    assert lines(path) == [2]
    assert names(tmp_path) == ["events.jsonl"]


async def test_file_never_rotates_without_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = FileSink(path)
    await sink.open()
    for n in range(50):
        await sink.send(batch(n))
    await sink.close()
    assert lines(path) == list(range(50))
    assert names(tmp_path) == ["events.jsonl"]


async def test_file_that_cannot_be_opened(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    sink = FileSink(blocker / "events.jsonl")
    with pytest.raises(SinkUnavailableError, match="cannot open the sink file") as info:
        await sink.open()
    assert str(blocker / "events.jsonl") in str(info.value)
    assert info.value.retryable
    directory = FileSink(tmp_path)
    with pytest.raises(SinkUnavailableError, match="cannot open the sink file"):
        await directory.open()
    await sink.close()
    await directory.close()


# -- webhook -----------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Hook:
    """A real HTTP server whose answers the test scripts."""

    url: str
    answers: list[tuple[int, bytes]] = field(default_factory=list)  # for the next POSTs
    requests: list[Request] = field(default_factory=list)

    def posts(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST"]


def make_handler(hook: list[Hook]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            hook[0].requests.append(Request(self.command, self.path, headers, body))

        def do_POST(self) -> None:
            self.record()
            status, body = hook[0].answers.pop(0) if hook[0].answers else (200, b"ok")
            self.send_response(status)
            if status in (301, 302, 307, 308):
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_OPTIONS(self) -> None:
            self.record()
            self.send_response(405)  # reachable all the same
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def hook() -> Iterator[Hook]:
    holder: list[Hook] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(holder))
    holder.append(Hook(f"http://127.0.0.1:{httpd.server_address[1]}/events"))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield holder[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound but not listening: every connection to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (in the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def with_password(url: str) -> str:
    return url.replace("http://", f"http://gtom:{PASSWORD}@")


def assert_no_secrets(error: BaseException) -> None:
    text = str(error)
    assert SECRET not in text and PASSWORD not in text and "gtom:" not in text, text


async def test_webhook_posts_signed_batches_in_order(hook: Hook) -> None:
    sink = WebhookSink(hook.url, secret=SECRET, headers={"Authorization": "Bearer token-1"})
    await sink.open()  # the server answers OPTIONS with 405: reachable all the same
    first, second = batch(5, 3, 9, 1), batch(2)
    await sink.send(first)
    await sink.send(second)
    await sink.send([])  # nothing to deliver, no request
    await sink.close()
    await sink.close()

    assert [r.method for r in hook.requests] == ["OPTIONS", "POST", "POST"]
    posts = hook.posts()
    for request, events in zip(posts, (first, second), strict=True):
        assert request.path == "/events"
        assert request.body == b"[" + b",".join(e.payload for e in events) + b"]"
        assert [int(d["n"]) for d in json.loads(request.body)] == [e.document_id for e in events]
        expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["x-gtom-signature"] == f"sha256={expected}"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-gtom-batch-size"] == str(len(events))
        assert request.headers["x-gtom-first-event-id"] == events[0].id
        assert request.headers["x-gtom-last-event-id"] == events[-1].id
        assert request.headers["authorization"] == "Bearer token-1"
    assert [int(d["n"]) for d in json.loads(posts[0].body)] == [5, 3, 9, 1]


async def test_webhook_without_secret_sends_no_signature(hook: Hook) -> None:
    sink = WebhookSink(hook.url)
    await sink.send([event(1, namespace="db.caf\u00e9")])  # send without open() works too
    await sink.close()
    (request,) = hook.posts()
    assert "x-gtom-signature" not in request.headers
    assert request.headers["x-gtom-first-event-id"] == event(1, "db.caf%C3%A9").id


async def test_webhook_server_errors_are_retryable(hook: Hook) -> None:
    hook.answers = [(500, b"boom"), (503, b""), (429, b"slow down"), (408, b"")]
    sink = WebhookSink(with_password(hook.url), secret=SECRET)
    await sink.open()
    for status in (500, 503, 429, 408):
        with pytest.raises(SinkError) as info:
            await sink.send(batch(1, 2))
        assert type(info.value) is SinkError and info.value.retryable
        assert str(status) in str(info.value) and hook.url in str(info.value)
        assert_no_secrets(info.value)
    await sink.send(batch(1, 2))  # the same batch again, now accepted
    await sink.close()
    bodies = [r.body for r in hook.posts()]
    assert len(bodies) == 5 and len(set(bodies)) == 1


async def test_webhook_client_errors_are_rejected_with_the_answer(hook: Hook) -> None:
    answer = f"invalid event; your key was {SECRET} and your password {PASSWORD}".encode()
    hook.answers = [(400, answer + b"x" * 500), (404, b"no such hook"), (302, b"")]
    sink = WebhookSink(with_password(hook.url), secret=SECRET)
    await sink.open()
    with pytest.raises(SinkRejectedError) as info:
        await sink.send(batch(1))
    message = str(info.value)
    assert not info.value.retryable
    assert "400" in message and hook.url in message and "invalid event; your key was" in message
    x_count = 200 - len(answer)  # the first 200 characters of the answer
    assert "x" * x_count in message and "x" * (x_count + 1) not in message
    assert_no_secrets(info.value)
    with pytest.raises(SinkRejectedError, match=r"404 .*no such hook"):
        await sink.send(batch(1))
    with pytest.raises(SinkRejectedError, match="302"):  # redirects are not followed
        await sink.send(batch(1))
    await sink.close()
    assert len(hook.posts()) == 3


async def test_webhook_unreachable_at_open(refusing_port: int) -> None:
    url = f"http://gtom:{PASSWORD}@127.0.0.1:{refusing_port}/hook"
    sink = WebhookSink(url, secret=SECRET)
    with pytest.raises(SinkUnavailableError) as info:
        await sink.open()
    assert info.value.retryable
    message = str(info.value)
    assert f"cannot reach the webhook at http://127.0.0.1:{refusing_port}/hook: " in message
    assert_no_secrets(info.value)
    with pytest.raises(SinkUnavailableError) as info:  # and the same while sending
        await sink.send(batch(1))
    assert_no_secrets(info.value)
    await sink.close()


async def test_webhook_timeouts_are_unavailable(silent_port: int) -> None:
    url = f"http://gtom:{PASSWORD}@127.0.0.1:{silent_port}/hook"
    sink = WebhookSink(url, secret=SECRET, timeout=0.2)
    with pytest.raises(SinkUnavailableError, match="cannot reach the webhook at") as info:
        await sink.open()
    assert_no_secrets(info.value)
    with pytest.raises(SinkUnavailableError, match=r"did not answer within 0\.2s") as info:
        await sink.send(batch(1))
    assert info.value.retryable
    assert_no_secrets(info.value)
    await sink.close()


def test_webhook_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http:// or https://") as info:
        WebhookSink(f"ftp://gtom:{PASSWORD}@example.com/")
    assert_no_secrets(info.value)


def test_lines_and_webhook_bodies_hold_every_payload_once_in_order() -> None:
    from gtom.daemon.sinks.stdout import json_lines

    events = batch(1, 2, 3)
    assert json_lines(events) == b"".join(e.payload + b"\n" for e in events)
    assert json_lines(events[:1]) == events[0].payload + b"\n"
    assert json_lines([]) == b""
    sink = WebhookSink("http://127.0.0.1:1/")
    for some in (events, events[:1], []):
        assert sink.body(some) == b"[" + b",".join(e.payload for e in some) + b"]"
        assert json.loads(sink.body(some)) == [json.loads(e.payload) for e in some]
    assert [e.payload for e in events] == [event(n).payload for n in (1, 2, 3)]  # untouched


# -- the broker sinks' own paths, against the real brokers -------------------------------------


def odd_event(n: int, namespace: str) -> Event:
    """An event whose id holds characters beyond ASCII (namespaces may hold anything)."""
    return Event(f"1700000000.{n}:0:{namespace}:é€{n}", namespace, "u", n, b'{"x":"\\u00e9"}')


@pytest.mark.parametrize("maxlen", [0, 1000])
def test_redis_commands_are_the_bytes_redis_py_writes(maxlen: int) -> None:
    import redis.asyncio
    import redis.asyncio.connection

    from gtom.daemon.sinks.redis import xadd_commands, xadd_head

    events = [event(1), event(2, "db.d"), odd_event(3, "db.é e"), event(4)]
    pipe = redis.asyncio.Redis().pipeline(transaction=False)
    for e in events:
        fields: dict[str, str | bytes] = {"id": e.id, "event": e.payload}
        pipe.xadd(f"k:{e.namespace}", fields, maxlen=maxlen or None, approximate=True)  # type: ignore[arg-type]
    connection = redis.asyncio.connection.Connection()
    expected = b"".join(connection.pack_commands([args for args, _ in pipe.command_stack]))
    assert xadd_commands(lambda ns: xadd_head(f"k:{ns}", maxlen), events) == expected


def redis_url(broker: Broker) -> str:
    return f"redis://127.0.0.1:{broker.port}/0"


async def test_redis_refused_event_is_final_and_the_next_batch_goes_through(
    redis_server: Broker,
) -> None:
    import redis.asyncio

    from gtom.daemon.sinks.redis import RedisSink

    prefix = f"t{uuid.uuid4().hex[:8]}"
    client = redis.asyncio.from_url(redis_url(redis_server))
    await client.set(f"{prefix}:db.bad", "a string, not a stream")
    sink = RedisSink(redis_url(redis_server), key_for=lambda ns: f"{prefix}:{ns}")
    await sink.open()
    try:
        with pytest.raises(SinkRejectedError, match="WRONGTYPE") as info:
            await sink.send([event(1, "db.ok"), event(2, "db.bad"), event(3, "db.ok")])
        assert not info.value.retryable
        await sink.send([event(4, "db.ok"), odd_event(5, "db.ok")])  # every answer was read
        entries = stream_entries(await client.xrange(f"{prefix}:db.ok"))
        ids = [fields[b"id"].decode() for _, fields in entries]
        expected = [event(n, "db.ok").id for n in (1, 3, 4)]
        assert ids == [*expected, odd_event(5, "db.ok").id]
        assert entries[-1][1][b"event"] == odd_event(5, "db.ok").payload
    finally:
        await sink.close()
        await client.aclose()


async def test_redis_maxlen_trims_every_stream(redis_server: Broker) -> None:
    import redis.asyncio

    from gtom.daemon.sinks.redis import RedisSink

    prefix = f"t{uuid.uuid4().hex[:8]}"
    client = redis.asyncio.from_url(redis_url(redis_server))
    sink = RedisSink(redis_url(redis_server), key_for=lambda ns: f"{prefix}:{ns}", maxlen=10)
    try:
        for start in range(0, 1500, 500):
            await sink.send([event(n, ns) for n in range(start, start + 500) for ns in ("a", "b")])
        for ns in ("a", "b"):
            assert 10 <= await client.xlen(f"{prefix}:{ns}") < 500  # about maxlen (MAXLEN ~)
    finally:
        await sink.close()
        await client.aclose()


def nats_sink(broker: Broker, prefix: str, **kwargs: Any) -> Any:
    from gtom.daemon.sinks.nats import NatsSink

    options: dict[str, Any] = {
        "subject_for": lambda ns: f"{prefix}.{ns}",
        "template": prefix + ".{namespace}",
        "stream": prefix.upper(),
        "timeout": 5.0,
        **kwargs,
    }
    return NatsSink(f"nats://127.0.0.1:{broker.port}", **options)


async def stream_ids(broker: Broker, stream: str) -> list[str]:
    import nats

    nc = await nats.connect(f"nats://127.0.0.1:{broker.port}")
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            assert msg.headers is not None
            out.append(msg.headers["Nats-Msg-Id"])
        return out
    finally:
        await nc.close()


async def test_nats_stores_a_batch_sent_again_once(nats_server: Broker) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    sink = nats_sink(nats_server, prefix)
    first = [event(n, "db.a" if n % 2 else "db.b") for n in range(300)]
    try:
        await sink.send(first)
        await sink.send(first)  # acknowledged again, as duplicates
        await sink.send(first[:10] + batch(900))
    finally:
        await sink.close()
    assert await stream_ids(nats_server, prefix.upper()) == [e.id for e in first] + [event(900).id]


async def test_nats_refusal_by_the_stream_is_final(nats_server: Broker) -> None:
    import nats

    prefix = f"t{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(f"nats://127.0.0.1:{nats_server.port}")
    await nc.jetstream().add_stream(name=prefix.upper(), subjects=[f"{prefix}.>"], max_msg_size=200)
    await nc.close()
    sink = nats_sink(nats_server, prefix)
    big = Event("big", "db.c", "i", 1, b'"' + b"x" * 500 + b'"')
    await sink.open()
    try:
        with pytest.raises(SinkRejectedError, match="JetStream refused an event") as info:
            await sink.send([event(1), big, event(2)])
        assert not info.value.retryable
        await sink.send(batch(3))
    finally:
        await sink.close()
    assert event(3).id in await stream_ids(nats_server, prefix.upper())


async def test_nats_subject_no_stream_takes_is_retryable(nats_server: Broker) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    # the stream captures prefix.>, the events go elsewhere: nobody answers for JetStream
    sink = nats_sink(nats_server, prefix, subject_for=lambda ns: f"{prefix}x.{ns}", timeout=3.0)
    await sink.open()
    try:
        with pytest.raises(SinkUnavailableError, match="did not acknowledge") as info:
            await sink.send(batch(1, 2))
        assert info.value.retryable
    finally:
        await sink.close()
