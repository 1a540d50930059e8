"""pause / resume / since / stop: exact semantics, on a real server."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import monitoring

import gtom
from tests._async._tcompat import gtom_workers, sleep
from tests._async.helpers import Commands, assert_quiet, collect, in_db, wait_until
from tests.conftest import TestServer


def reads_the_oplog(event: monitoring.CommandStartedEvent) -> bool:
    name = event.command_name
    return (name == "find" and event.command.get(name) == "oplog.rs") or (
        name == "getMore" and event.command.get("collection") == "oplog.rs"
    )


async def test_pause_stops_reading_and_resume_delivers_everything_in_order(
    server: TestServer, db_name: str
) -> None:
    reads = Commands(reads_the_oplog)
    client: Any = server.async_client(event_listeners=[reads])
    coll = client[db_name].c
    try:
        ctx = await gtom.start_async(client, gtom.Options(namespace_filter=in_db(db_name)))
        await coll.insert_one({"_id": 0})
        assert [op.id for op in await collect(ctx, 1)] == [0]

        ctx.pause()
        await coll.insert_many([{"_id": i} for i in range(1, 6)])
        await assert_quiet(ctx, 0.3)  # nothing after pause() returned ...
        reads_while_paused = reads.count  # ... and once an in-flight read ended, no reads
        await assert_quiet(ctx, 1.2)
        assert reads.count == reads_while_paused

        ctx.resume()
        assert [op.id for op in await collect(ctx, 5)] == [1, 2, 3, 4, 5]
        await coll.insert_one({"_id": 6})
        assert [op.id for op in await collect(ctx, 1)] == [6]
        await ctx.stop()
    finally:
        await client.close()


async def test_since_replays_from_a_timestamp_and_discards_what_was_queued(
    async_client: Any, db_name: str
) -> None:
    coll = async_client[db_name].c
    options = gtom.Options(namespace_filter=in_db(db_name), channel_size=50)
    async with await gtom.start_async(async_client, options) as ctx:
        await coll.insert_many([{"_id": i} for i in range(5)])
        first = await collect(ctx, 5)
        await coll.insert_many([{"_id": i} for i in range(5, 8)])
        await wait_until(lambda: ctx.op_c.qsize() == 3)  # 5, 6, 7 wait, unread

        ctx.since(first[1].timestamp)  # type: ignore[arg-type]
        # The very next op comes from the new position: 2, not the queued 5.
        replay = await collect(ctx, 6)
        assert [op.id for op in replay] == [2, 3, 4, 5, 6, 7]
        await assert_quiet(ctx, 0.3)


async def test_since_on_an_idle_server_takes_effect_without_new_writes(
    async_client: Any, db_name: str
) -> None:
    coll = async_client[db_name].c
    async with await gtom.start_async(
        async_client, gtom.Options(namespace_filter=in_db(db_name))
    ) as ctx:
        await coll.insert_many([{"_id": i} for i in range(3)])
        ops = await collect(ctx, 3)
        await assert_quiet(ctx, 0.2)
        ctx.since(ops[0].timestamp)  # type: ignore[arg-type]
        assert [op.id for op in await collect(ctx, 2)] == [1, 2]


async def test_since_while_paused_applies_on_resume(async_client: Any, db_name: str) -> None:
    coll = async_client[db_name].c
    async with await gtom.start_async(
        async_client, gtom.Options(namespace_filter=in_db(db_name))
    ) as ctx:
        await coll.insert_many([{"_id": i} for i in range(3)])
        ops = await collect(ctx, 3)
        ctx.pause()
        ctx.since(ops[0].timestamp)  # type: ignore[arg-type]
        await assert_quiet(ctx, 0.5)
        ctx.resume()
        assert [op.id for op in await collect(ctx, 2)] == [1, 2]


async def test_stop_returns_without_a_reader_and_leaves_no_worker_behind(
    async_client: Any, db_name: str
) -> None:
    coll = async_client[db_name].c
    options = gtom.Options(namespace_filter=in_db(db_name), channel_size=2)
    ctx = await gtom.start_async(async_client, options)
    assert gtom_workers()
    await coll.insert_many([{"_id": i} for i in range(20)])
    await wait_until(lambda: ctx.op_c.qsize() == 2)  # the tailer is now blocked on a full queue

    await ctx.stop()
    # stop() waits less than a second for its workers: none may be left once it returns.
    assert gtom_workers() == []
    assert ctx.stopped
    # What was queued can still be taken; then iteration ends.
    assert [op.id async for op in ctx] == [0, 1]
    with pytest.raises(gtom.StoppedError):
        await ctx.op_c.get(timeout=0.1)
    await ctx.stop()  # idempotent
    now = await gtom.last_op_timestamp_async(async_client)
    with pytest.raises(gtom.StoppedError):
        ctx.since(now)


async def test_stop_on_an_idle_context_ends_its_workers(async_client: Any) -> None:
    ctx = await gtom.start_async(async_client)
    await sleep(0.2)  # let the tailer settle into its awaitData wait
    await ctx.stop()
    assert gtom_workers() == []


async def test_context_manager_stops_on_exit(async_client: Any) -> None:
    async with await gtom.start_async(async_client) as ctx:
        running = not ctx.stopped
    assert running and ctx.stopped
    assert gtom_workers() == []


async def test_oplog_disabled_starts_no_tailer(async_client: Any) -> None:
    async with await gtom.start_async(async_client, gtom.Options(oplog_disabled=True)) as ctx:
        assert gtom_workers() == []
        assert await ctx.wait_for_direct_reads(timeout=1)
    assert [op async for op in ctx] == []
