"""Where change streams start and resume, and faults on a real server, counting events."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bson import json_util

import gtom
from tests._async._tcompat import Background, in_thread
from tests._async.helpers import assert_quiet, collect, insert_through_outages, streams
from tests.conftest import PYMONGO_ASYNC_SOCKET_LEAK, TestServer

ROOT = Path(__file__).resolve().parents[2]


def ids(ops: list[gtom.Op]) -> list[Any]:
    found = [op.id for op in ops]
    assert len(found) == len(set(found)), f"an op was delivered twice: {found}"
    return found


# -- positions ---------------------------------------------------------------------------------


async def test_by_default_a_stream_starts_now(async_client: Any, db_name: str) -> None:
    coll = async_client[db_name].c
    await coll.insert_one({"_id": 0})
    async with await gtom.start_async(async_client, streams(f"{db_name}.c")) as ctx:
        await coll.insert_one({"_id": 1})
        assert ids(await collect(ctx, 1)) == [1]
        await assert_quiet(ctx, 0.2)


async def test_a_saved_resume_token_continues_right_after_its_event(
    async_client: Any, db_name: str
) -> None:
    coll = async_client[db_name].c
    ns = f"{db_name}.c"
    async with await gtom.start_async(async_client, streams(ns)) as ctx:
        await coll.insert_many([{"_id": i} for i in range(5)])
        first = await collect(ctx, 3)
    token = first[-1].resume_token
    assert token is not None
    await coll.insert_many([{"_id": i} for i in range(5, 8)])
    async with await gtom.start_async(async_client, streams(ns, resume_tokens={ns: token})) as ctx:
        rest = await collect(ctx, 5)
        await assert_quiet(ctx, 0.2)
    assert ids(first + rest) == list(range(8))


async def test_an_idle_streams_position_is_there_to_save_before_any_event(
    async_client: Any, db_name: str
) -> None:
    coll = async_client[db_name].c
    ns = f"{db_name}.c"
    async with await gtom.start_async(async_client, streams(ns)) as ctx:
        start = ctx.resume_tokens[ns]
        assert start is not None  # the post-batch token of the open
    await coll.insert_one({"_id": 1})  # written while nobody follows
    async with await gtom.start_async(async_client, streams(ns, resume_tokens={ns: start})) as ctx:
        assert ids(await collect(ctx, 1)) == [1]


async def test_after_starts_the_streams_strictly_after_that_time(
    async_client: Any, db_name: str
) -> None:
    coll = async_client[db_name].c
    await coll.insert_one({"_id": 0})
    ts = (await async_client.local["oplog.rs"].find_one(sort=[("$natural", -1)]))["ts"]
    await coll.insert_one({"_id": 1})
    options = streams(f"{db_name}.c", after=lambda client, options: ts)
    async with await gtom.start_async(async_client, options) as ctx:
        ops = await collect(ctx, 1)
        await assert_quiet(ctx, 0.2)
    assert ids(ops) == [1] and ops[0].timestamp > ts


async def test_a_resume_token_wins_over_after(async_client: Any, db_name: str) -> None:
    coll = async_client[db_name].c
    ns = f"{db_name}.c"
    async with await gtom.start_async(async_client, streams(ns)) as ctx:
        await coll.insert_many([{"_id": i} for i in range(3)])
        first = await collect(ctx, 3)
    ts = first[0].timestamp
    options = streams(ns, resume_tokens={ns: first[1].resume_token}, after=lambda c, o: ts)
    async with await gtom.start_async(async_client, options) as ctx:
        assert ids(await collect(ctx, 1)) == [2]


async def test_since_reopens_every_stream_at_that_time(async_client: Any, db_name: str) -> None:
    db = async_client[db_name]
    async with await gtom.start_async(async_client, streams(f"{db_name}.a", f"{db_name}.b")) as ctx:
        await db.a.insert_one({"_id": 1})
        (a1,) = await collect(ctx, 1)
        await db.b.insert_one({"_id": 2})
        await db.a.insert_one({"_id": 3})
        await collect(ctx, 2)
        ctx.since(a1.timestamp)  # type: ignore[arg-type]
        again = await collect(ctx, 2)
        await assert_quiet(ctx, 0.3)
    assert sorted((op.stream_id, op.id) for op in again) == [
        (f"{db_name}.a", 3),
        (f"{db_name}.b", 2),
    ]


async def test_pause_holds_streams_and_resume_misses_nothing(
    async_client: Any, db_name: str
) -> None:
    coll = async_client[db_name].c
    async with await gtom.start_async(async_client, streams(f"{db_name}.c")) as ctx:
        await coll.insert_one({"_id": 0})
        first = await collect(ctx, 1)
        ctx.pause()
        await coll.insert_many([{"_id": i} for i in range(1, 20)])
        await assert_quiet(ctx, 0.5)
        ctx.resume()
        rest = await collect(ctx, 19)
    assert ids(first + rest) == list(range(20))


async def test_resuming_from_a_saved_token_in_a_new_process(
    server: TestServer, db_name: str
) -> None:
    client: Any = server.async_client()
    ns = f"{db_name}.c"
    try:
        stream = await client[db_name].c.watch()  # only for a starting token
        start = stream.resume_token
        await stream.close()
        await client[db_name].c.insert_many([{"_id": i} for i in range(10)])
        first = await in_thread(lambda: run_child(server.uri, ns, 4, start))
        assert [line["id"] for line in first] == [0, 1, 2, 3]
        rest = await in_thread(lambda: run_child(server.uri, ns, 6, first[-1]["token"]))
        assert [line["id"] for line in rest] == [4, 5, 6, 7, 8, 9]
    finally:
        await client.close()


def run_child(uri: str, stream_id: str, count: int, token: Any) -> list[dict[str, Any]]:
    args = [sys.executable, "-m", "tests.follow_child", uri, stream_id, str(count)]
    args.append(json_util.dumps(token))
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return [json_util.loads(line) for line in done.stdout.splitlines()]


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.failpoints
@pytest.mark.parametrize(
    ("commands", "failure"),
    [
        (["getMore"], {"error_code": 91}),  # ShutdownInProgress: pymongo resumes
        (["getMore"], {"error_code": 43}),  # CursorNotFound: pymongo resumes
        (["getMore"], {"close_connection": True}),  # a network error: pymongo resumes
        (["getMore"], {"error_code": 6}),  # HostUnreachable, not resumable: gtom re-opens
        (["getMore"], {"error_code": 1, "error_labels": ["ResumableChangeStreamError"]}),
        (["getMore"], {"block_ms": 300}),  # slow, no error
        (["getMore", "aggregate"], {"error_code": 6}),  # the re-opens fail as well
        (["getMore", "aggregate"], {"close_connection": True}),
    ],
    ids=[
        "shutdown",
        "cursor-not-found",
        "connection-closed",
        "host-unreachable",
        "labelled-resumable",
        "blocked",
        "reopens-fail",
        "reopens-lose-connection",
    ],
)
async def test_failing_stream_commands_lose_and_repeat_nothing(
    server: TestServer,
    async_client: Any,
    db_name: str,
    commands: list[str],
    failure: dict[str, Any],
) -> None:
    coll = async_client[db_name].c
    async with await gtom.start_async(async_client, streams(f"{db_name}.c")) as ctx:
        await coll.insert_many([{"_id": i} for i in range(30)])
        first = await collect(ctx, 30)
        with server.fail_command(commands, times=4, **failure):
            for i in range(30, 60):
                await coll.insert_one({"_id": i})
            rest = await collect(ctx, 30, timeout=30)
        await assert_quiet(ctx, 0.2)
    assert ids(first + rest) == list(range(60))


@pytest.mark.failpoints
async def test_a_non_transient_stream_error_ends_iteration_with_a_clear_error(
    server: TestServer, async_client: Any, db_name: str
) -> None:
    coll = async_client[db_name].c
    ctx = await gtom.start_async(async_client, streams(f"{db_name}.c"))
    await coll.insert_one({"_id": 0})
    delivered = await collect(ctx, 1)
    with server.fail_command(["getMore"], error_code=2):  # BadValue: no retry can fix it
        await coll.insert_one({"_id": 1})
        with pytest.raises(gtom.GtomError) as caught:
            async for op in ctx:
                delivered.append(op)  # the list must survive the exception
    assert not isinstance(caught.value, gtom.HistoryLostError)
    assert "BadValue" in str(caught.value) and f"{db_name}.c" in str(caught.value)
    assert ids(delivered) in ([0], [0, 1])  # the getMore awaiting when the failpoint was set
    await ctx.stop()


async def test_a_token_the_server_cannot_read_is_history_lost(
    async_client: Any, db_name: str
) -> None:
    ns = f"{db_name}.c"
    bad = {"_data": "00"}
    with pytest.raises(gtom.HistoryLostError) as caught:
        await gtom.start_async(async_client, streams(ns, resume_tokens={ns: bad}))
    assert caught.value.stream_id == ns and caught.value.resume_token == bad
    assert "resume token" in str(caught.value)


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
        async with await gtom.start_async(client, streams(db_name)) as ctx:
            writer = Background(
                lambda: insert_through_outages(
                    writer_client[db_name].c, range(200), server, restart_at=80
                )
            )
            ops = await collect(ctx, 200, timeout=60)
            await writer.join()
        assert ids(ops) == list(range(200))
    finally:
        await client.close()
        await writer_client.close()
        gc.collect()


async def test_a_token_pruned_from_the_oplog_is_history_lost_at_start(
    tiny_oplog_server: TestServer, db_name: str
) -> None:
    client: Any = tiny_oplog_server.async_client()
    ns = f"{db_name}.c"
    try:
        async with await gtom.start_async(client, streams(ns)) as ctx:
            await client[db_name].c.insert_one({"_id": 0})
            (op,) = await collect(ctx, 1)
        for i in range(1, 120):  # three times the oplog's size
            await client[db_name].c.insert_one({"_id": i})
        tiny_oplog_server.prune_oplog()
        with pytest.raises(gtom.HistoryLostError) as caught:
            await gtom.start_async(client, streams(ns, resume_tokens={ns: op.resume_token}))
        error = caught.value
        assert error.stream_id == ns and error.resume_token == op.resume_token
        assert "no longer has its resume point" in str(error)
    finally:
        await client.close()


async def test_a_paused_stream_overrun_while_paused_raises_history_lost(
    tiny_oplog_server: TestServer, db_name: str
) -> None:
    client: Any = tiny_oplog_server.async_client()
    ns = f"{db_name}.c"
    try:
        ctx = await gtom.start_async(client, streams(ns))
        await client[db_name].c.insert_one({"_id": 0})
        delivered = await collect(ctx, 1)
        ctx.pause()
        for i in range(1, 120):
            await client[db_name].c.insert_one({"_id": i})
        tiny_oplog_server.prune_oplog()
        ctx.resume()
        with pytest.raises(gtom.HistoryLostError) as caught:
            async for later in ctx:
                delivered.append(later)  # the list must survive the exception
        # Whatever was read before the pause may still come; nothing is skipped.
        assert ids(delivered) == list(range(len(delivered)))
        assert caught.value.stream_id == ns
        await ctx.stop()
    finally:
        await client.close()
