"""Faults on a real server, counting events: nothing lost, nothing repeated, history loss said."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from bson import Timestamp

import gtom
from tests._async._tcompat import Background
from tests._async.helpers import collect, in_db, insert_through_outages
from tests.conftest import PYMONGO_ASYNC_SOCKET_LEAK, TestServer


def assert_exactly_once_in_order(ops: list[gtom.Op], expected: list[Any]) -> None:
    ids = [op.id for op in ops]
    assert len(ids) == len(set(ids)), "an op was delivered twice"
    assert ids == expected


@pytest.mark.failpoints
@pytest.mark.parametrize(
    "failure",
    [
        {"error_code": 91},  # ShutdownInProgress
        {"error_code": 43},  # CursorNotFound: the server forgot the cursor
        {"close_connection": True},
        {"block_ms": 300},  # a slow server: no error, only delay
        {"error_code": 1, "error_labels": ["RetryableError"]},  # unknown code, labelled retryable
    ],
    ids=[
        "shutdown-in-progress",
        "cursor-not-found",
        "connection-closed",
        "blocked",
        "labelled-retryable",
    ],
)
async def test_failing_getmores_lose_and_repeat_nothing(
    server: TestServer, async_client: Any, db_name: str, failure: dict[str, Any]
) -> None:
    coll = async_client[db_name].c
    async with await gtom.start_async(
        async_client, gtom.Options(namespace_filter=in_db(db_name))
    ) as ctx:
        await coll.insert_many([{"_id": i} for i in range(50)])
        first = await collect(ctx, 50)
        with server.fail_command(["getMore"], times=3, **failure):
            for i in range(50, 100):
                await coll.insert_one({"_id": i})
            rest = await collect(ctx, 50, timeout=30)
        if "block_ms" not in failure:
            assert ctx.err_c.qsize() >= 1  # the retried errors were reported
    assert_exactly_once_in_order(first + rest, list(range(100)))


@pytest.mark.failpoints
async def test_failing_reopen_queries_are_retried_too(
    server: TestServer, async_client: Any, db_name: str
) -> None:
    coll = async_client[db_name].c
    async with await gtom.start_async(
        async_client, gtom.Options(namespace_filter=in_db(db_name))
    ) as ctx:
        await coll.insert_many([{"_id": i} for i in range(10)])
        first = await collect(ctx, 10)
        # The first getMore fails, then the re-open's queries fail a few times as well.
        with server.fail_command(["getMore", "find"], error_code=6, times=4):  # HostUnreachable
            await coll.insert_many([{"_id": i} for i in range(10, 30)])
            rest = await collect(ctx, 20, timeout=30)
    assert_exactly_once_in_order(first + rest, list(range(30)))


@pytest.mark.failpoints
async def test_a_non_transient_error_ends_iteration_with_a_clear_error(
    server: TestServer, async_client: Any, db_name: str
) -> None:
    async with await gtom.start_async(
        async_client, gtom.Options(namespace_filter=in_db(db_name))
    ) as ctx:
        with server.fail_command(["getMore"], error_code=2, times=1):  # BadValue
            await async_client[db_name].c.insert_one({"_id": 1})
            with pytest.raises(gtom.GtomError, match=r"MongoDB refused tailing local\.oplog\.rs"):
                async for _ in ctx:
                    pass


@PYMONGO_ASYNC_SOCKET_LEAK
@pytest.mark.restarts_server
async def test_server_restart_mid_stream_loses_and_repeats_nothing(
    server: TestServer, db_name: str
) -> None:
    if not server.embedded:
        pytest.skip("an external MongoDB cannot be restarted by the tests")
    client: Any = server.async_client(serverSelectionTimeoutMS=30_000)
    writer_client: Any = server.async_client()
    try:
        async with await gtom.start_async(
            client, gtom.Options(namespace_filter=in_db(db_name))
        ) as ctx:
            writer = Background(
                lambda: insert_through_outages(
                    writer_client[db_name].c, range(300), server, restart_at=120
                )
            )
            ops = await collect(ctx, 300, timeout=60)
            await writer.join()
            assert ctx.err_c.qsize() >= 1
        assert_exactly_once_in_order(ops, list(range(300)))
    finally:
        await client.close()
        await writer_client.close()
        gc.collect()


async def test_overrunning_a_tiny_oplog_while_paused_raises_history_lost(
    tiny_oplog_server: TestServer, db_name: str
) -> None:
    client: Any = tiny_oplog_server.async_client()
    try:
        coll = client[db_name].c
        ctx = await gtom.start_async(client, gtom.Options(namespace_filter=in_db(db_name)))
        await coll.insert_one({"_id": 0})
        (op,) = await collect(ctx, 1)
        ctx.pause()
        for i in range(1, 120):  # three times the oplog's size
            await coll.insert_one({"_id": i})
        tiny_oplog_server.prune_oplog()
        ctx.resume()
        # The read in flight when pause() was called may still deliver its entries (after
        # resume); nothing after them is delivered, nothing is skipped.
        delivered = [op]
        with pytest.raises(gtom.HistoryLostError) as caught:
            async for later in ctx:
                delivered.append(later)  # noqa: PERF401 - the list must survive the exception
        assert [o.id for o in delivered] == list(range(len(delivered)))
        error = caught.value
        # It names the last position delivered, and the oldest one the oplog still has.
        assert error.position == delivered[-1].timestamp
        assert error.oldest is not None and error.oldest > error.position
        assert "no longer reaches back" in str(error)
        await ctx.stop()
    finally:
        await client.close()


async def test_starting_before_the_oldest_entry_raises_history_lost(
    tiny_oplog_server: TestServer, db_name: str
) -> None:
    client: Any = tiny_oplog_server.async_client()
    try:
        for i in range(60):
            await client[db_name].c.insert_one({"_id": i})
        tiny_oplog_server.prune_oplog()
        oldest = await gtom.first_op_timestamp_async(client)
        too_old = Timestamp(oldest.time - 1, 0)
        options = gtom.Options(after=lambda c, o: too_old)
        async with await gtom.start_async(client, options) as ctx:
            with pytest.raises(gtom.HistoryLostError):
                async for _ in ctx:
                    pass
    finally:
        await client.close()
