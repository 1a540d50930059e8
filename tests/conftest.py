"""The test harness: real servers, started by fixtures, shared per module.

* ``server``: a SecantusDB replica-set member per test module (port 0, temp storage), or the
  real MongoDB replica set at ``GTOM_TEST_MONGODB_URI`` when that is set.
* ``tiny_oplog_server``: the same with an oplog of a few dozen entries, to push a position off it.
* ``server.restart()`` stops the server and starts it again on the same path and port.
* ``server.fail_command(...)`` sets a ``failCommand`` failpoint for the duration of a ``with``.
* ``client`` / ``async_client``: the caller's own client, one per test; ``db_name``: a database
  of the test's own, so tests sharing a server never see each other's data.

Tests needing what only an embedded server can do (restart, a tiny oplog) skip with the reason
when run against an external MongoDB; everything else runs against both.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient, MongoClient

#: Real targets for the sink tests, as fixtures: nats-server, redis-server, Kafka, a webhook.
pytest_plugins = [
    "tests.broker_fixtures",
    "tests.kafka_broker",
    "tests.rust_server",
    "tests.webhook_server",
]

EXTERNAL_URI = os.environ.get("GTOM_TEST_MONGODB_URI")
#: pymongo 4.20's AsyncMongoClient leaks a socket when a connection fails (refused, or the server
#: went away); reproduced without gtom. Tests that provoke that collect the garbage themselves and
#: carry this mark, so the leak is neither blamed on another test nor hidden elsewhere.
PYMONGO_ASYNC_SOCKET_LEAK = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)
FIXTURES = Path(__file__).parent / "fixtures"
#: Oplog size of ``tiny_oplog_server``: small enough to overrun with a few writes.
TINY_OPLOG_ENTRIES = 40
APP_NAME = "gtom-under-test"


class TestServer:
    """A MongoDB-compatible server the tests talk to."""

    __test__ = False  # not a test class

    def __init__(self, *, oplog_max_entries: int | None = None, embedded: bool = False) -> None:
        self.embedded = embedded or EXTERNAL_URI is None
        self._kwargs: dict[str, Any] = {}
        if oplog_max_entries is not None:
            self._kwargs["oplog_max_entries"] = oplog_max_entries
        self._server: Any = None
        self._admin: MongoClient[Any] | None = None
        self._path: str | None = None
        self.port = 0
        if self.embedded:
            self._path = tempfile.mkdtemp(prefix="gtom-secantus-")
            self.start()

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start (or start again) the embedded server on its path and port."""
        import secantus

        assert self.embedded
        if self.port:
            _wait_until_bindable(self.port)  # the old listener may linger a moment after a stop
        self._server = secantus.SecantusDBServer(
            storage_path=self._path, port=self.port, **self._kwargs
        )
        self._server.start()
        self.port = self._server.address[1]

    def stop(self) -> None:
        """Stop the embedded server (its data stays on disk)."""
        assert self.embedded
        if self._server is not None:
            self._server.stop()
            self._server = None
            # SecantusDB's accept thread holds the listening socket until accept() returns, so
            # the port stays taken after stop(); one connection lets it notice the stop and let go.
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()

    def restart(self, down_for: float = 0.0) -> None:
        """Stop the server and start it again on the same path and port."""
        if not self.embedded:
            pytest.skip("an external MongoDB cannot be restarted by the tests")
        self.stop()
        time.sleep(down_for)
        self.start()

    def prune_oplog(self) -> None:
        """Make the embedded server drop what exceeds its oplog size now.

        SecantusDB trims its oplog only every 1,000 writes (mongod trims as it goes); tests that
        overrun a tiny oplog call this to see the truncation a real server would have done.
        """
        if not self.embedded:
            pytest.skip("only an embedded SecantusDB can be told to prune its oplog")
        self.admin.admin.command({"secantusAdmin.pruneOplog": 1})

    @contextlib.contextmanager
    def writes_kept_from_tailers(self) -> Iterator[None]:
        """Writes made inside are committed and acknowledged, but shown to tailers only after.

        SecantusDB's Python server shows a tailable cursor's later batches only the entries up to
        its visible point, which passes a write a moment after the write is committed. This
        holds that moment open (the write's seqs stay registered as in flight until the block
        ends), so a test can open a cursor inside it deterministically.
        """
        if not self.embedded:
            pytest.skip("only an embedded SecantusDB can hold its writes back from tailers")
        storage = self._server.storage
        release = storage._deregister_minted
        held: list[tuple[int, int]] = []
        storage._deregister_minted = held.extend
        try:
            yield
        finally:
            del storage._deregister_minted  # the method again
            release(held)

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
        if self.embedded:
            self.stop()
            shutil.rmtree(self._path or "", ignore_errors=True)

    # -- clients -------------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        if not self.embedded:
            assert EXTERNAL_URI is not None
            return EXTERNAL_URI
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def client_kwargs(self, **kwargs: Any) -> dict[str, Any]:
        # Polling monitors: SecantusDB holds a streaming (awaitable) hello for its full 10 s, so
        # after a state-change error (e.g. ShutdownInProgress) a streaming monitor would keep the
        # client from selecting the server for 10 s. Polling re-checks within 0.5 s.
        return {
            "appName": APP_NAME,
            "serverSelectionTimeoutMS": 20_000,
            "serverMonitoringMode": "poll",
            **kwargs,
        }

    def client(self, **kwargs: Any) -> MongoClient[Any]:
        return MongoClient(self.uri, **self.client_kwargs(**kwargs))

    def async_client(self, **kwargs: Any) -> AsyncMongoClient[Any]:
        return AsyncMongoClient(self.uri, **self.client_kwargs(**kwargs))

    @property
    def admin(self) -> MongoClient[Any]:
        """The harness's own client (a different appName, so failpoints spare it)."""
        if self._admin is None:
            self._admin = MongoClient(self.uri, appName="gtom-test-harness")
        return self._admin

    # -- failpoints ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def fail_command(
        self,
        commands: Sequence[str],
        *,
        error_code: int | None = None,
        error_labels: Sequence[str] | None = None,
        close_connection: bool = False,
        block_ms: int = 0,
        times: int | None = None,
        skip: int = 0,
        app_name: str | None = APP_NAME,
    ) -> Iterator[None]:
        """Fail ``commands`` of the clients under test (``times`` times, or always) meanwhile."""
        data: dict[str, Any] = {"failCommands": list(commands)}
        if error_code is not None:
            data["errorCode"] = error_code
        if error_labels is not None:
            data["errorLabels"] = list(error_labels)
        if close_connection:
            data["closeConnection"] = True
        if block_ms:
            data.update(blockConnection=True, blockTimeMS=block_ms)
        if app_name is not None:
            data["appName"] = app_name
        mode: Any = "alwaysOn" if times is None else {"times": times, "skip": skip}
        try:
            self.admin.admin.command("configureFailPoint", "failCommand", mode=mode, data=data)
        except Exception as e:  # a real mongod without enableTestCommands
            pytest.skip(f"the server does not allow failpoints: {e}")
        try:
            yield
        finally:
            self.admin.admin.command("configureFailPoint", "failCommand", mode="off")


def _wait_until_bindable(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.05)


def _start_or_skip(**kwargs: Any) -> TestServer:
    if EXTERNAL_URI is not None and kwargs:
        pytest.skip("a real MongoDB's oplog cannot be made tiny (its minimum is 990 MB)")
    return TestServer(**kwargs)


@pytest.fixture(scope="module")
def server() -> Iterator[TestServer]:
    """A replica-set member shared by the tests of one module."""
    s = _start_or_skip()
    yield s
    s.close()


@pytest.fixture(scope="module")
def tiny_oplog_server() -> Iterator[TestServer]:
    """A replica-set member whose oplog keeps only a few dozen entries."""
    s = _start_or_skip(oplog_max_entries=TINY_OPLOG_ENTRIES)
    yield s
    s.close()


@pytest.fixture(scope="module")
def cluster(server: TestServer) -> Iterator[Cluster]:
    """A stand-in for a sharded cluster: three shards and a config server.

    The first shard is ``server`` (so with ``GTOM_TEST_MONGODB_URI`` a real MongoDB is one of
    the shards); the others and the config server are embedded SecantusDB servers, whose
    ``config.shards`` the tests write themselves.
    """
    extra = [TestServer(embedded=True) for _ in range(3)]
    yield Cluster(config=extra[0], shards=[server, *extra[1:]])
    stoppers = [threading.Thread(target=s.close) for s in extra]  # ~2 s each: all at once
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()


class Cluster:
    """A config server and the shards it may list."""

    __test__ = False

    def __init__(self, config: TestServer, shards: list[TestServer]) -> None:
        self.config = config
        self.shards = shards

    def host(self, shard: TestServer) -> str:
        """The shard's ``host`` as ``config.shards`` writes it: ``"setName/host:port"``."""
        hello = shard.admin.admin.command("hello")
        return f"{hello['setName']}/{hello['me']}"


AUTH_USERS = {"root": ["root"], "app": [{"role": "readWrite", "db": "shop"}]}
AUTH_PASSWORD = "s3cret-pw"


@pytest.fixture(scope="module")
def auth_server() -> Iterator[TestServer]:
    """A server requiring authentication: user "root" may do anything, "app" may not read the
    oplog; both have the password ``AUTH_PASSWORD``."""
    if EXTERNAL_URI is not None:
        pytest.skip("needs an embedded server whose users the tests define")
    s = TestServer()
    for user, roles in AUTH_USERS.items():
        s.admin.admin.command("createUser", user, pwd=AUTH_PASSWORD, roles=roles)
    s.admin.close()
    s._admin = None
    s.stop()
    s._kwargs["require_auth"] = True
    s.start()
    yield s
    s.close()


@pytest.fixture
def client(server: TestServer) -> Iterator[MongoClient[Any]]:
    c = server.client()
    yield c
    c.close()


@pytest_asyncio.fixture
async def async_client(server: TestServer) -> AsyncIterator[AsyncMongoClient[Any]]:
    c = server.async_client()
    yield c
    await c.close()


_counter = itertools.count()


@pytest.fixture
def db_name(request: pytest.FixtureRequest) -> str:
    """A database name of this test's own (valid, short, unique in the session)."""
    base = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:40]
    return f"t{next(_counter)}_{base}"


@pytest.fixture
def free_port() -> Iterator[int]:
    """A TCP port nothing listens on (held bound, so no other server can take it meanwhile)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say which tests were left out, and why: on purpose (``GTOM_TEST_SKIP_*``) or a tool."""
    from tests.broker_fixtures import opted_out  # plugins: imported once pytest registered them
    from tests.kafka_broker import EXTERNAL_BOOTSTRAP, missing_tools
    from tests.rust_server import rust_missing

    notes = [
        f"{name} tests left out on purpose: GTOM_TEST_SKIP_{name.upper()} is set"
        for name in ("nats", "redis", "kafka", "rust")
        if opted_out(name)
    ]
    rust = None if opted_out("rust") else rust_missing()
    if rust is not None:
        notes.append(f"tests on SecantusDB's Rust server skipped: {rust}")
    missing = [] if EXTERNAL_BOOTSTRAP or opted_out("kafka") else missing_tools()
    if missing:
        tools = " and ".join(missing)
        notes.append(f"Kafka tests skipped: {tools} not found (install Java 17+ and Maven)")
    if notes:
        terminalreporter.section("tests left out")
        for note in notes:
            terminalreporter.write_line(note)


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """Collect garbage after each test, so a leaked resource is reported by the test leaking it."""
    yield
    gc.collect()
