"""Real mongod oplog entries replayed through a real tail: what real servers write, end to end.

SecantusDB writes its own oplog shapes, not mongod's. To tail what mongod writes, these tests
copy entries that real servers wrote (``tests/fixtures/corpus``: 8.0 vectored inserts, a
compressed time-series bucket update, 4.x entries interleaved with ``config.system.sessions``)
into a capped collection and let gtom tail that collection as its oplog
(``oplog_database_name``/``oplog_collection_name``), through the caller's client as usual.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from bson import Timestamp, json_util
from pymongo import monitoring

import gtom
from tests._async.helpers import assert_quiet, collect
from tests.conftest import TestServer

CORPUS = Path(__file__).parent.parent / "fixtures" / "corpus" / "oplog"
REPLAY = "oplog"


def corpus(name: str) -> list[dict[str, Any]]:
    """The entries of a corpus file, as the server wrote them."""
    entries: list[dict[str, Any]] = json_util.loads((CORPUS / name).read_text())["entries"]
    return entries


class ChainQueries(monitoring.CommandListener):
    """Counts the queries of one oplog entry by its timestamp (a transaction chain walk's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        query = event.command.get("filter") if event.command_name == "find" else None
        chain_query = query is not None and set(query) == {"ts"}
        if (
            event.command.get("find") == REPLAY
            and query is not None
            and chain_query
            and isinstance(query["ts"], Timestamp)
        ):
            with self._lock:
                self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest_asyncio.fixture
async def watched(server: TestServer) -> AsyncIterator[tuple[Any, ChainQueries]]:
    """A client of the test server whose chain-entry queries are counted."""
    queries = ChainQueries()
    client = server.async_client(event_listeners=[queries])
    yield client, queries
    await client.close()


async def replay(client: Any, db_name: str, entries: list[dict[str, Any]]) -> None:
    """Write ``entries`` into a capped collection of ``db_name`` that gtom can tail."""
    db = client[db_name]
    await db.create_collection(REPLAY, capped=True, size=1 << 22)
    await db[REPLAY].insert_many(entries)


def tail_replay(db_name: str, **options: Any) -> gtom.Options:
    async def oldest(client: Any, options: gtom.Options) -> Timestamp:
        return Timestamp(0, 0)

    return gtom.Options(
        oplog_database_name=db_name,
        oplog_collection_name=REPLAY,
        after=oldest,
        update_data_as_delta=True,  # the replayed documents are not in this server's collections
        **options,
    )


async def test_8_0_linked_vectored_inserts_come_out_once_without_a_chain_walk(
    watched: tuple[Any, ChainQueries], db_name: str
) -> None:
    client, queries = watched
    # Two applyOps entries with multiOpType 1; the second's prevOpTime names the first.
    entries = corpus("mongo-tools-linked-vectored-inserts.json")
    await replay(client, db_name, entries)
    async with await gtom.start_async(client, tail_replay(db_name)) as ctx:
        ops = await collect(ctx, 5)
        await assert_quiet(ctx, 0.5)
    assert [op.id for op in ops] == [300, 400, 500, 600, 700]
    assert [op.timestamp for op in ops] == [entries[0]["ts"]] * 3 + [entries[1]["ts"]] * 2
    assert all(op.is_insert() and op.txn is None for op in ops)  # a retryable write, no txn
    assert ops[0].data == {"_id": 300, "a": 3}
    assert queries.count == 0  # no entry was fetched to complete a chain


async def test_only_the_second_of_two_linked_vectored_inserts_needs_nothing_earlier(
    watched: tuple[Any, ChainQueries], db_name: str
) -> None:
    client, queries = watched
    entries = corpus("mongo-tools-linked-vectored-inserts.json")
    await replay(client, db_name, entries)

    async def after_first(client: Any, options: gtom.Options) -> Timestamp:
        ts: Timestamp = entries[0]["ts"]
        return ts

    options = tail_replay(db_name).replace(after=after_first)
    async with await gtom.start_async(client, options) as ctx:
        ops = await collect(ctx, 2)
        await assert_quiet(ctx, 0.5)
    assert [op.id for op in ops] == [600, 700]
    assert queries.count == 0


async def test_a_compressed_bucket_update_neither_stops_tailing_nor_shows_by_default(
    async_client: Any, db_name: str
) -> None:
    bucket = bucket_update()
    after = user_insert(bucket["ts"])
    await replay(async_client, db_name, [bucket, after])
    async with await gtom.start_async(async_client, tail_replay(db_name)) as ctx:
        (op,) = await collect(ctx, 1)
        await assert_quiet(ctx, 0.3)
    assert (op.operation, op.namespace, op.id) == ("i", "shop.orders", 1)


async def test_a_compressed_bucket_update_reports_its_binary_columns_when_internals_are_asked(
    async_client: Any, db_name: str
) -> None:
    bucket = bucket_update()
    await replay(async_client, db_name, [bucket, user_insert(bucket["ts"])])
    options = tail_replay(db_name, include_internal=True)
    async with await gtom.start_async(async_client, options) as ctx:
        update, insert = await collect(ctx, 2)
    assert (update.operation, update.namespace) == ("u", "weather.system.buckets.readings")
    assert update.update_description is not None
    updated = update.update_description["updatedFields"]
    # As mongod's change streams report a "b" section: the {o: offset, d: bytes} object as the
    # new value of each data column, beside the control fields of the "u" sections.
    sdata = bucket["o"]["diff"]["sdata"]["b"]
    for column in ("time", "a", "b"):
        assert updated[f"data.{column}"] == sdata[column]
    assert updated["control.count"] == bucket["o"]["diff"]["scontrol"]["u"]["count"]
    assert insert.id == 1


def bucket_update() -> dict[str, Any]:
    """An update of a compressed time-series bucket, with the diff mongod 8.0 computed.

    The diff is real server output (mongod's own unit test of the compressed-bucket update it
    logs, ``tests/fixtures/corpus/oplog/mongod-timeseries-compressed-diff-tests.json``); the
    oplog entry around it (ns, ts, o2) is this test's, shaped as mongod logs updates.
    """
    (diff,) = json_util.loads(
        (CORPUS / "mongod-timeseries-compressed-diff-tests.json").read_text()
    )["entries"]
    return {
        "op": "u",
        "ns": "weather.system.buckets.readings",
        "o": {"$v": 2, "diff": diff["diff"]},
        "o2": {"_id": 1},
        "ts": Timestamp(1719861048, 1),
        "t": 1,
        "v": 2,
    }


def user_insert(after: Timestamp) -> dict[str, Any]:
    return {
        "op": "i",
        "ns": "shop.orders",
        "o": {"_id": 1, "item": "tea"},
        "ts": Timestamp(after.time, after.inc + 1),
        "t": 1,
        "v": 2,
    }


async def test_4_0_session_bookkeeping_is_skipped_and_user_writes_arrive(
    async_client: Any, db_name: str
) -> None:
    # 4.0.2 output: test.foo inserts with two config.system.sessions inserts among them.
    entries = corpus("mongo-tools-archive-oplog-4.0.json")
    await replay(async_client, db_name, entries)
    user = [e["o"]["_id"] for e in entries if e["ns"] == "test.foo"]
    async with await gtom.start_async(async_client, tail_replay(db_name)) as ctx:
        ops = await collect(ctx, len(user))
        await assert_quiet(ctx, 0.3)
    assert [op.id for op in ops] == user
    assert {op.namespace for op in ops} == {"test.foo"}


async def test_include_internal_delivers_the_session_bookkeeping_too(
    async_client: Any, db_name: str
) -> None:
    entries = corpus("mongo-tools-archive-oplog-4.0.json")
    await replay(async_client, db_name, entries)
    options = tail_replay(db_name, include_internal=True)
    async with await gtom.start_async(async_client, options) as ctx:
        ops = await collect(ctx, len(entries))
    assert [op.namespace for op in ops] == [e["ns"] for e in entries]
