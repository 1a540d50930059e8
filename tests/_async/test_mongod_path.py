"""The tail path real users take on mongod, run against a real server with mongod's traits.

Every other test runs with the workarounds SecantusDB needs (a catch-up read after each open,
edges found by sorting on ``ts``). Here gtom is told the server is mongod, so it takes mongod's
path: a tailable await cursor and nothing else, ``$natural`` edges, and history verified at each
open. SecantusDB's Python server can miss entries written *while* a tailable cursor opens (its
open race), so these tests write only once a command monitor has seen the tailer's cursor send
its first ``getMore``: everything written after that is the server's to show. Against a real
MongoDB (``GTOM_TEST_MONGODB_URI``) they run unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from bson import Timestamp
from pymongo import monitoring

import gtom
from gtom._servers import MONGOD, ServerTraits
from tests._async._tcompat import in_thread
from tests._async.helpers import assert_quiet, collect, in_db, wait_until
from tests.conftest import PYMONGO_ASYNC_SOCKET_LEAK, TestServer


@pytest.fixture(autouse=True)
def mongod_traits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every server is taken for mongod: no workaround of SecantusDB's is switched on."""
    monkeypatch.setattr(ServerTraits, "from_build_info", classmethod(lambda cls, info: MONGOD))


class OplogCursors(monitoring.CommandListener):
    """Counts the ``getMore``s sent on oplog cursors, and the ones that failed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ours: set[int] = set()
        self.getmores = 0
        self.failures = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "getMore" and event.command.get("collection") == "oplog.rs":
            with self._lock:
                self._ours.add(event.request_id)
                self.getmores += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        with self._lock:
            self._ours.discard(event.request_id)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        with self._lock:
            if event.request_id in self._ours:
                self._ours.discard(event.request_id)
                self.failures += 1

    async def next_getmore(self, after: int | None = None) -> None:
        """Wait until a ``getMore`` is sent after the ``after``-th (default: the current one)."""
        seen = self.getmores if after is None else after
        await wait_until(lambda: self.getmores > seen, timeout=20)


@pytest_asyncio.fixture
async def watched(server: TestServer) -> AsyncIterator[tuple[Any, OplogCursors]]:
    """A client of the test server whose oplog getMores are counted."""
    cursors = OplogCursors()
    client = server.async_client(event_listeners=[cursors])
    yield client, cursors
    await client.close()


def ids(ops: list[gtom.Op]) -> list[Any]:
    return [op.id for op in ops]


async def test_the_edges_come_from_natural_order(async_client: Any, db_name: str) -> None:
    await async_client[db_name].c.insert_many([{"_id": i} for i in range(3)])
    oplog = async_client.local["oplog.rs"]
    newest = await oplog.find_one({}, sort=[("ts", -1)])
    oldest = await oplog.find_one({}, sort=[("ts", 1)])
    assert await gtom.last_op_timestamp_async(async_client) == newest["ts"]
    assert await gtom.first_op_timestamp_async(async_client) == oldest["ts"]


async def test_a_tailable_cursor_alone_delivers_every_write_in_order(
    watched: tuple[Any, OplogCursors], db_name: str
) -> None:
    client, cursors = watched
    coll = client[db_name].c
    async with await gtom.start_async(client, gtom.Options(namespace_filter=in_db(db_name))) as ctx:
        await cursors.next_getmore(after=0)
        await coll.insert_many([{"_id": i} for i in range(100)])
        await coll.update_one({"_id": 1}, {"$set": {"x": 1}})
        await coll.delete_one({"_id": 2})
        ops = await collect(ctx, 102)
        await assert_quiet(ctx, 0.3)
    assert ids(ops[:100]) == list(range(100))
    assert [(op.operation, op.id) for op in ops[100:]] == [("u", 1), ("d", 2)]
    assert ops[100].data == {"_id": 1, "x": 1}  # fetched, as on mongod


@pytest.mark.failpoints
@pytest.mark.parametrize(
    "failure",
    [{"error_code": 91}, {"error_code": 43}, {"close_connection": True}],
    ids=["shutdown-in-progress", "cursor-not-found", "connection-closed"],
)
async def test_a_failed_getmore_resumes_from_the_position_without_loss_or_repeat(
    server: TestServer,
    watched: tuple[Any, OplogCursors],
    db_name: str,
    failure: dict[str, Any],
) -> None:
    client, cursors = watched
    coll = client[db_name].c
    async with await gtom.start_async(client, gtom.Options(namespace_filter=in_db(db_name))) as ctx:
        await cursors.next_getmore(after=0)
        await coll.insert_many([{"_id": i} for i in range(20)])
        first = await collect(ctx, 20)
        # The next getMore is held for a second, then fails; what is written meanwhile is in the
        # oplog before the cursor is opened again, so the re-opened one must read it.
        with server.fail_command(["getMore"], times=1, block_ms=1000, **failure):
            await coll.insert_many([{"_id": i} for i in range(20, 40)])
            await wait_until(lambda: cursors.failures == 1, timeout=20)
            mark = cursors.getmores
        await cursors.next_getmore(after=mark)  # the re-opened cursor's first
        await coll.insert_many([{"_id": i} for i in range(40, 60)])
        rest = await collect(ctx, 40, timeout=30)
        await assert_quiet(ctx, 0.3)
        assert ctx.err_c.qsize() >= 1  # the retried error was reported
    assert ids(first + rest) == list(range(60))


@pytest.mark.restarts_server
@PYMONGO_ASYNC_SOCKET_LEAK
async def test_a_server_restart_resumes_from_the_position_without_loss_or_repeat(
    server: TestServer, watched: tuple[Any, OplogCursors], db_name: str
) -> None:
    if not server.embedded:
        pytest.skip("an external MongoDB cannot be restarted by the tests")
    client, cursors = watched
    coll = client[db_name].c
    async with await gtom.start_async(client, gtom.Options(namespace_filter=in_db(db_name))) as ctx:
        await cursors.next_getmore(after=0)
        await coll.insert_many([{"_id": i} for i in range(20)])
        first = await collect(ctx, 20)
        ctx.pause()  # no read starts now: what is written next is there before the re-open
        await coll.insert_many([{"_id": i} for i in range(20, 40)])
        await in_thread(lambda: server.restart(down_for=0.3))
        mark = cursors.getmores
        ctx.resume()
        await cursors.next_getmore(after=mark)
        await coll.insert_many([{"_id": i} for i in range(40, 60)])
        rest = await collect(ctx, 40, timeout=40)
        await assert_quiet(ctx, 0.3)
    assert ids(first + rest) == list(range(60))


async def test_resuming_after_a_saved_position_delivers_exactly_what_follows(
    watched: tuple[Any, OplogCursors], db_name: str
) -> None:
    client, cursors = watched
    coll = client[db_name].c
    await coll.insert_many([{"_id": i} for i in range(10)])
    saved = await gtom.last_op_timestamp_async(client)
    await coll.insert_many([{"_id": i} for i in range(10, 20)])

    async def after(client: Any, options: gtom.Options) -> Timestamp:
        return saved

    options = gtom.Options(namespace_filter=in_db(db_name), after=after)
    async with await gtom.start_async(client, options) as ctx:
        caught_up = await collect(ctx, 10)  # read by the tailable cursor's first batch
        await cursors.next_getmore(after=0)
        await coll.insert_one({"_id": 20})
        (live,) = await collect(ctx, 1)
    assert ids(caught_up) == list(range(10, 20))
    assert live.id == 20


async def test_a_position_off_the_oplog_is_history_lost_at_start(
    tiny_oplog_server: TestServer, db_name: str
) -> None:
    client: Any = tiny_oplog_server.async_client()
    try:
        before = await gtom.first_op_timestamp_async(client)
        for i in range(60):  # more than the tiny oplog keeps
            await client[db_name].c.insert_one({"_id": i})
        tiny_oplog_server.prune_oplog()
        oldest = await gtom.first_op_timestamp_async(client)
        assert oldest > before

        async def after(client: Any, options: gtom.Options) -> Timestamp:
            return before

        ctx = await gtom.start_async(client, gtom.Options(after=after))
        with pytest.raises(gtom.HistoryLostError) as lost:
            await collect(ctx, 1)
        await ctx.stop()
        assert lost.value.position == before
        assert lost.value.oldest == oldest
    finally:
        await client.close()
