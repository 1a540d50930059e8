"""Direct reads under faults, counting documents; resuming a copy in a new process."""

from __future__ import annotations

import gc
import math
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from bson import MaxKey, MinKey, ObjectId, json_util

import gtom
from tests._async._tcompat import in_thread
from tests._async.helpers import assert_each_once, collect, copy
from tests.conftest import PYMONGO_ASYNC_SOCKET_LEAK, TestServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.failpoints
@pytest.mark.parametrize(
    "failure",
    [
        {"error_code": 91},  # ShutdownInProgress
        {"error_code": 6},  # HostUnreachable
        {"close_connection": True},
    ],
    ids=["shutdown", "host-unreachable", "connection-closed"],
)
@pytest.mark.parametrize("commands", [["find"], ["getMore"], ["aggregate", "find"]])
async def test_failing_reads_lose_and_repeat_no_document(
    server: TestServer,
    async_client: Any,
    db_name: str,
    commands: list[str],
    failure: dict[str, Any],
) -> None:
    await async_client[db_name].c.insert_many([{"_id": i} for i in range(3000)])
    options = copy(f"{db_name}.c", direct_read_split_max=2, channel_size=50)
    with server.fail_command(commands, times=4, **failure):
        async with await gtom.start_async(async_client, options) as ctx:
            ops = [op async for op in ctx]
            errors = ctx.err_c.qsize()
    assert_each_once([op.id for op in ops], list(range(3000)))
    assert errors >= 1 or "getMore" in commands  # a getMore may come after the failures ran out


@pytest.mark.failpoints
async def test_an_unsplit_copy_of_mixed_ids_resumes_into_the_later_types(
    server: TestServer, async_client: Any, db_name: str
) -> None:
    ids: list[Any] = [
        *range(400),
        *(f"s{i}" for i in range(400)),
        *(ObjectId() for _ in range(400)),
    ]
    await async_client[db_name].c.insert_many([{"_id": i} for i in ids])
    options = copy(f"{db_name}.c", direct_read_split_max=0, channel_size=50)
    with server.fail_command(["getMore"], error_code=6, times=3):
        async with await gtom.start_async(async_client, options) as ctx:
            ops = [op async for op in ctx]
            errors = ctx.err_c.qsize()
    assert_each_once([op.id for op in ops], ids)
    assert errors >= 1


@PYMONGO_ASYNC_SOCKET_LEAK
@pytest.mark.restarts_server
async def test_a_server_restart_mid_copy_loses_and_repeats_nothing(
    server: TestServer, db_name: str
) -> None:
    if not server.embedded:
        pytest.skip("an external MongoDB cannot be restarted by the tests")
    client: Any = server.async_client(serverSelectionTimeoutMS=30_000)
    try:
        await client[db_name].c.insert_many([{"_id": i} for i in range(3000)])
        options = copy(f"{db_name}.c", direct_read_split_max=2, channel_size=20)
        async with await gtom.start_async(client, options) as ctx:
            first = await collect(ctx, 500)  # the readers wait on a full queue meanwhile
            await in_thread(lambda: server.restart(down_for=0.5))
            rest = [op async for op in ctx]
        assert_each_once([op.id for op in first + rest], list(range(3000)))
    finally:
        await client.close()
        gc.collect()


async def test_a_checkpointed_copy_is_finished_by_a_new_process(
    server: TestServer, async_client: Any, db_name: str
) -> None:
    ns = f"{db_name}.c"
    await async_client[db_name].c.insert_many([{"_id": i} for i in range(3000)])
    options = copy(ns, direct_read_split_max=2, channel_size=50)
    ctx = await gtom.start_async(async_client, options)
    first = await collect(ctx, 1000)
    await ctx.stop()
    first += [op async for op in ctx]  # what was queued when it stopped is handled too
    checkpoint = ctx.direct_read_checkpoint()
    assert not ctx.direct_read_progress()[ns].done
    args = [sys.executable, "-m", "tests.copy_child", server.uri, ns, json_util.dumps(checkpoint)]
    done = await in_thread(
        lambda: subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT)
    )
    assert done.returncode == 0, done.stderr
    rest = [json_util.loads(line)["id"] for line in done.stdout.splitlines()]
    assert_each_once([op.id for op in first] + rest, list(range(3000)))


async def test_a_checkpoint_of_another_shape_is_a_configuration_error(
    async_client: Any, db_name: str
) -> None:
    ns = f"{db_name}.c"
    bad = {ns: {"segments": [{"id_type": "number"}]}}
    with pytest.raises(gtom.ConfigurationError, match="not a saved direct read segment"):
        await gtom.start_async(async_client, copy(ns, direct_read_resume=bad))


@pytest.mark.parametrize("consumed", [1, 2, 3, 10, 53])
async def test_a_checkpoint_after_edge_values_resumes_exactly(
    async_client: Any, db_name: str, consumed: int
) -> None:
    # MinKey sorts first and `$gt: MinKey` matches everything; NaN sorts first among numbers
    # and matches no comparison: resuming right after either must neither repeat nor skip.
    ids: list[Any] = [MinKey(), None, math.nan, *range(50), "s", MaxKey()]
    await async_client[db_name].c.insert_many([{"_id": i} for i in ids])
    ns = f"{db_name}.c"
    ctx = await gtom.start_async(async_client, copy(ns, direct_read_split_max=0, channel_size=1))
    first = await collect(ctx, consumed)
    await ctx.stop()
    first += [op async for op in ctx]
    checkpoint = ctx.direct_read_checkpoint()
    options = copy(ns, direct_read_resume=checkpoint)
    async with await gtom.start_async(async_client, options) as again:
        rest = [op async for op in again]
    assert_each_once([op.id for op in first + rest], ids)


async def test_split_copies_keep_nan_and_uuid_ids(server: TestServer, db_name: str) -> None:
    client: Any = server.async_client(uuidRepresentation="standard")
    try:
        ids: list[Any] = [math.nan, *range(1500), *(uuid.uuid4() for _ in range(600))]
        await client[db_name].c.insert_many([{"_id": i} for i in ids])
        options = copy(f"{db_name}.c", direct_read_split_max=3)
        async with await gtom.start_async(client, options) as ctx:
            ops = [op async for op in ctx]
            progress = ctx.direct_read_progress()[f"{db_name}.c"]
        assert_each_once([op.id for op in ops], ids)
        assert progress.segments == 8  # numbers and UUIDs, 4 segments each
    finally:
        await client.close()
