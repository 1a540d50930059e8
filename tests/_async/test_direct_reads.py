"""Direct reads on a real server: exact counts for every split, views, mixed _ids, options."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import pytest
from bson import Decimal128, Int64, ObjectId
from bson.raw_bson import RawBSONDocument

import gtom
from tests._async.helpers import assert_each_once, copy


async def read_all(ctx: Any) -> list[gtom.Op]:
    """Every op of a copy-only context: its iteration ends once the copy is done."""
    return [op async for op in ctx]


@pytest.mark.parametrize(("split_max", "segments"), [(0, 1), (1, 2), (9, 10)])
async def test_a_collection_is_read_exactly_once_whatever_the_split(
    async_client: Any, db_name: str, split_max: int, segments: int
) -> None:
    coll = async_client[db_name].c
    await coll.insert_many([{"_id": i, "v": i * 2} for i in range(5000)])
    options = copy(f"{db_name}.c", direct_read_split_max=split_max, direct_read_concur=3)
    async with await gtom.start_async(async_client, options) as ctx:
        ops = await read_all(ctx)
        assert await ctx.wait_for_direct_reads(timeout=5)
        progress = ctx.direct_read_progress()[f"{db_name}.c"]
    assert_each_once([op.id for op in ops], list(range(5000)))
    for op in ops:
        assert op.operation == "i" and op.namespace == f"{db_name}.c"
        assert op.source is gtom.Source.DIRECT_READ and op.data == {"_id": op.id, "v": op.id * 2}
    assert progress.segments == segments and progress.segments_done == segments
    assert progress.read == 5000 and progress.done and progress.estimated_total == 5000


async def test_ids_of_every_type_are_all_read(async_client: Any, db_name: str) -> None:
    ids: list[Any] = list(range(1500))  # enough to split
    ids += [f"s{i}" for i in range(300)] + [ObjectId() for _ in range(300)]
    ids += [{"a": i, "b": "x"} for i in range(50)] + [2.5, Int64(2**40), Decimal128("7.25")]
    ids += [None, True, datetime.datetime(2024, 1, 1), b"\x01\x02"]
    await async_client[db_name].c.insert_many([{"_id": i} for i in ids])
    options = copy(f"{db_name}.c", direct_read_split_max=4)
    async with await gtom.start_async(async_client, options) as ctx:
        ops = await read_all(ctx)
        progress = ctx.direct_read_progress()[f"{db_name}.c"]
    assert_each_once([op.id for op in ops], ids)
    assert progress.segments >= 5 + 6  # the numbers split; each other type its own segment


async def test_a_view_is_read(async_client: Any, db_name: str) -> None:
    db = async_client[db_name]
    await db.c.insert_many([{"_id": i, "even": i % 2 == 0} for i in range(100)])
    await db.command("create", "evens", viewOn="c", pipeline=[{"$match": {"even": True}}])
    async with await gtom.start_async(async_client, copy(f"{db_name}.evens")) as ctx:
        ops = await read_all(ctx)
        progress = ctx.direct_read_progress()[f"{db_name}.evens"]
    assert_each_once([op.id for op in ops], list(range(0, 100, 2)))
    assert all(op.namespace == f"{db_name}.evens" for op in ops)
    assert progress.segments == 1 and progress.estimated_total is None


async def test_several_namespaces_and_an_empty_or_missing_one(
    async_client: Any, db_name: str
) -> None:
    db = async_client[db_name]
    await db.a.insert_many([{"_id": i} for i in range(700)])
    await db.b.insert_many([{"_id": i} for i in range(30)])
    await db.create_collection("empty")
    names = [f"{db_name}.{n}" for n in ("a", "b", "empty", "missing")]
    async with await gtom.start_async(async_client, copy(*names)) as ctx:
        ops = await read_all(ctx)
        progress = ctx.direct_read_progress()
    assert sorted(op.namespace for op in ops) == [names[0]] * 700 + [names[1]] * 30
    assert all(p.done for p in progress.values())
    assert progress[names[3]].read == 0


async def test_pipe_filters_and_unmarshal_apply(async_client: Any, db_name: str) -> None:
    calls: list[tuple[str, bool]] = []

    def pipe(namespace: str, change_stream: bool) -> list[dict[str, Any]]:
        calls.append((namespace, change_stream))
        return [{"$match": {"v": {"$gte": 10}}}, {"$addFields": {"seen": True}}]

    def unmarshal(namespace: str, raw: RawBSONDocument) -> Any:
        assert isinstance(raw, RawBSONDocument)
        return raw["v"]

    options = copy(
        f"{db_name}.c",
        pipe=pipe,
        filter=lambda op: op.data is not None and op.data["v"] % 2 == 0,
        namespace_filter=lambda op: op.data is None,  # sees no document yet
        unmarshal=unmarshal,
        direct_read_split_max=1,
    )
    await async_client[db_name].c.insert_many([{"_id": i, "v": i} for i in range(1200)])
    async with await gtom.start_async(async_client, options) as ctx:
        ops = await read_all(ctx)
    assert sorted(op.doc for op in ops) == list(range(10, 1200, 2))
    assert all(op.data is not None and op.data["seen"] for op in ops)
    assert set(calls) == {(f"{db_name}.c", False)}


async def test_a_pipeline_that_removes_the_id_is_a_configuration_error(
    async_client: Any, db_name: str
) -> None:
    await async_client[db_name].c.insert_many([{"_id": i} for i in range(10)])
    options = copy(f"{db_name}.c", pipe=lambda ns, cs: [{"$project": {"_id": 0}}])
    async with await gtom.start_async(async_client, options) as ctx:
        with pytest.raises(gtom.ConfigurationError, match="removed _id"):
            await read_all(ctx)


async def test_split_vector_falls_back_when_the_server_refuses_it(
    async_client: Any, db_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    await async_client[db_name].c.insert_many([{"_id": i} for i in range(2000)])
    options = copy(f"{db_name}.c", split_vector=True, direct_read_split_max=3)
    with caplog.at_level(logging.INFO, logger="gtom"):
        async with await gtom.start_async(async_client, options) as ctx:
            ops = await read_all(ctx)
            progress = ctx.direct_read_progress()[f"{db_name}.c"]
    assert_each_once([op.id for op in ops], list(range(2000)))
    assert progress.segments == 4
    if "splitVector unavailable" not in caplog.text:  # a real mongod may allow it
        assert "splitVector" not in caplog.text


async def test_with_tailing_the_copy_comes_first_then_the_changes(
    async_client: Any, db_name: str
) -> None:
    coll = async_client[db_name].c
    await coll.insert_many([{"_id": i} for i in range(600)])
    options = gtom.Options(
        direct_read_ns=[f"{db_name}.c"],
        namespace_filter=lambda op: op.namespace == f"{db_name}.c",
        channel_size=10,
    )
    async with await gtom.start_async(async_client, options) as ctx:
        # Written while the copy runs: the copy may see it too; the tail surely does, after it.
        await coll.insert_one({"_id": "after"})
        ops = []
        async for op in ctx:
            ops.append(op)
            if op.source is gtom.Source.OPLOG:
                break
        assert await ctx.wait_for_direct_reads(timeout=5)
    copied, tailed = ops[:-1], ops[-1]
    assert all(op.source is gtom.Source.DIRECT_READ for op in copied)
    assert set(range(600)) <= {op.id for op in copied} <= {*range(600), "after"}
    assert tailed.id == "after" and tailed.is_insert()


async def test_wait_for_direct_reads_without_any_returns_at_once(async_client: Any) -> None:
    async with await gtom.start_async(async_client, gtom.Options(oplog_disabled=True)) as ctx:
        assert await ctx.wait_for_direct_reads(timeout=0)
        assert ctx.direct_read_progress() == {} and ctx.direct_read_checkpoint() == {}
