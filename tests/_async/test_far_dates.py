"""Dates beyond Python's range (after year 9999, before year 1), from every source gtom reads.

They are valid BSON, and a caller's client decodes them only with ``DATETIME_AUTO``; gtom reads
them as `bson.DatetimeMS` whatever the client's setting, so they never stop a tail. SecantusDB's
Python server refuses such dates, so these tests run on its Rust server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from bson import DatetimeMS, Timestamp

import gtom
from tests._async.helpers import collect
from tests.rust_server import RustServer

AFTER_9999 = DatetimeMS(253402300800000)  # 10000-01-01
BEFORE_1 = DatetimeMS(-62135596800001)  # one millisecond before 0001-01-01


@pytest_asyncio.fixture
async def plain_client(rust_server: RustServer) -> AsyncIterator[Any]:
    """A caller's client with the default date conversion (which raises on such dates)."""
    client = rust_server.async_client()
    yield client
    await client.close()


@pytest_asyncio.fixture
async def written(rust_server: RustServer, db_name: str) -> Timestamp:
    """Writes far dates into ``db_name.c``; the oplog position just before."""
    writer = rust_server.async_client(datetime_conversion="DATETIME_AUTO")
    start = await gtom.last_op_timestamp_async(writer)
    await writer[db_name].c.insert_one({"_id": 1, "late": AFTER_9999})
    await writer[db_name].c.update_one({"_id": 1}, {"$set": {"early": BEFORE_1}})
    await writer.close()
    return start


def since(ts: Timestamp) -> Any:
    async def after(client: Any, options: gtom.Options) -> Timestamp:
        return ts

    return after


async def test_the_oplog_and_fetched_updates_carry_far_dates(
    plain_client: Any, written: Timestamp, db_name: str
) -> None:
    keep = gtom.Options(namespace_filter=lambda op: op.namespace == f"{db_name}.c")
    async with await gtom.start_async(plain_client, keep.replace(after=since(written))) as ctx:
        create, insert, update = await collect(ctx, 3)
    assert create.is_command()
    assert insert.data == {"_id": 1, "late": AFTER_9999}
    assert update.update_description is not None
    assert update.update_description["updatedFields"] == {"early": BEFORE_1}
    assert update.data == {"_id": 1, "late": AFTER_9999, "early": BEFORE_1}  # fetched


async def test_direct_reads_and_change_streams_carry_far_dates(
    plain_client: Any, written: Timestamp, db_name: str
) -> None:
    options = gtom.Options(
        oplog_disabled=True,
        direct_read_ns=[f"{db_name}.c"],
        change_stream_ns=[db_name],
        after=since(written),
    )
    async with await gtom.start_async(plain_client, options) as ctx:
        copied, *streamed = await collect(ctx, 3)
    assert copied.source is gtom.Source.DIRECT_READ
    assert copied.data == {"_id": 1, "late": AFTER_9999, "early": BEFORE_1}
    inserted = [op for op in streamed if op.is_insert()]
    assert inserted and inserted[0].data == {"_id": 1, "late": AFTER_9999}
