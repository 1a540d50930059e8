"""Tailing the oplog of a real server: every op kind, options, filters and errors at start."""

from __future__ import annotations

import gc
from typing import Any

import bson
import pytest
from bson import Timestamp
from bson.raw_bson import RawBSONDocument
from pymongo import monitoring
from pymongo.errors import OperationFailure

import gtom
from gtom._async.oplog_source import OplogCursor
from tests._async.helpers import Commands, assert_quiet, collect, in_db, wait_until
from tests.conftest import PYMONGO_ASYNC_SOCKET_LEAK, TestServer


async def test_insert_update_replace_delete_arrive_in_order_with_their_data(
    async_client: Any, db_name: str
) -> None:
    coll = async_client[db_name].people
    async with await gtom.start_async(
        async_client, gtom.Options(namespace_filter=in_db(db_name))
    ) as ctx:
        await coll.insert_one({"_id": 1, "name": "Ann", "tags": ["a", "b", "c"]})
        await coll.update_one({"_id": 1}, {"$set": {"name": "Anna"}, "$unset": {"tags": ""}})
        await coll.replace_one({"_id": 1}, {"name": "Bob"})
        await coll.delete_one({"_id": 1})
        ins, upd, rep, dele = await collect(ctx, 4)

    assert (ins.operation, ins.namespace, ins.id) == ("i", f"{db_name}.people", 1)
    assert ins.data == {"_id": 1, "name": "Ann", "tags": ["a", "b", "c"]}
    assert ins.is_insert() and ins.source is gtom.Source.OPLOG and ins.txn is None
    assert isinstance(ins.timestamp, Timestamp)
    assert ins.wall is not None

    assert upd.is_update() and upd.id == 1
    assert upd.update_description is not None
    assert upd.update_description["updatedFields"] == {"name": "Anna"}
    assert upd.update_description["removedFields"] == ["tags"]

    assert rep.is_update() and rep.data == {"_id": 1, "name": "Bob"}
    assert rep.update_description is None

    assert dele.is_delete() and dele.id == 1 and dele.data is None
    assert ins.timestamp < upd.timestamp < rep.timestamp < dele.timestamp  # type: ignore[operator]
    assert (ins.get_database(), ins.get_collection()) == (db_name, "people")


async def test_commands_become_ops_naming_the_collection_they_act_on(
    async_client: Any, db_name: str
) -> None:
    db = async_client[db_name]
    async with await gtom.start_async(
        async_client, gtom.Options(namespace_filter=in_db(db_name))
    ) as ctx:
        await db.create_collection("made")
        await db.made.rename("renamed")
        await db.renamed.drop()
        await db.other.insert_one({"_id": 1})
        await async_client.drop_database(db_name)
        ops = await collect(ctx, 6)

    # Like mongod, the server logs a drop of each remaining collection before dropDatabase.
    create, rename, drop, insert, drop_other, drop_db = ops
    assert drop_other.is_drop() and drop_other.namespace == f"{db_name}.other"
    assert create.is_command() and create.namespace == f"{db_name}.made"
    assert create.data is not None and create.data["create"] == "made"
    assert rename.namespace == f"{db_name}.made"
    assert rename.data is not None and rename.data["to"] == f"{db_name}.renamed"
    assert drop.is_drop() and not drop.is_drop_database()
    assert drop.namespace == f"{db_name}.renamed" and drop.get_collection() == "renamed"
    assert insert.is_insert()
    assert drop_db.is_drop() and drop_db.is_drop_database()
    assert drop_db.namespace == f"{db_name}.$cmd" and drop_db.get_collection() == ""
    assert drop_db.get_database() == db_name


async def test_transaction_writes_carry_their_transaction(async_client: Any, db_name: str) -> None:
    db = async_client[db_name]
    await db.create_collection("a")
    await db.create_collection("b")
    async with await gtom.start_async(
        async_client, gtom.Options(namespace_filter=in_db(db_name))
    ) as ctx:
        async with async_client.start_session() as session:
            await session.start_transaction()
            await db.a.insert_one({"_id": 1}, session=session)
            await db.b.insert_one({"_id": 2}, session=session)
            await db.a.update_one({"_id": 1}, {"$set": {"x": 1}}, session=session)
            await session.commit_transaction()
        await db.a.insert_one({"_id": 3})
        ops = await collect(ctx, 4)

    txn_ops, after = ops[:3], ops[3]
    assert [(op.operation, op.namespace) for op in txn_ops] == [
        ("i", f"{db_name}.a"),
        ("i", f"{db_name}.b"),
        ("u", f"{db_name}.a"),
    ]
    txns = [op.txn for op in txn_ops]
    assert all(t is not None for t in txns)
    assert [t.index for t in txns] == [0, 1, 2]  # type: ignore[union-attr]
    assert len({(t.txn_number, str(t.lsid)) for t in txns}) == 1  # type: ignore[union-attr]
    assert after.txn is None


async def test_namespace_filter_sees_no_document_and_filter_sees_it(
    async_client: Any, db_name: str
) -> None:
    seen_by_ns_filter: list[Any] = []

    def ns_filter(op: gtom.Op) -> bool:
        seen_by_ns_filter.append(op.data)
        return op.namespace == f"{db_name}.keep"

    def only_even(op: gtom.Op) -> bool:
        return op.data is not None and op.data["n"] % 2 == 0

    options = gtom.Options(namespace_filter=ns_filter, filter=only_even)
    async with await gtom.start_async(async_client, options) as ctx:
        await async_client[db_name].skip.insert_many([{"n": i} for i in range(4)])
        await async_client[db_name].keep.insert_many([{"n": i} for i in range(4)])
        ops = await collect(ctx, 2)
        await assert_quiet(ctx, 0.3)
    assert [op.data["n"] for op in ops] == [0, 2]  # type: ignore[index]
    assert seen_by_ns_filter and all(data is None for data in seen_by_ns_filter)


async def test_chained_filters_keep_an_op_only_if_all_keep_it(
    async_client: Any, db_name: str
) -> None:
    def small(op: gtom.Op) -> bool:
        return op.data is not None and op.data["n"] < 6

    def odd(op: gtom.Op) -> bool:
        return op.data is not None and op.data["n"] % 2 == 1

    options = gtom.Options(
        namespace_filter=in_db(db_name), filter=gtom.chain_op_filters(small, odd)
    )
    async with await gtom.start_async(async_client, options) as ctx:
        await async_client[db_name].c.insert_many([{"n": i} for i in range(10)])
        ops = await collect(ctx, 3)
        await assert_quiet(ctx, 0.3)
    assert [op.data["n"] for op in ops] == [1, 3, 5]  # type: ignore[index]


async def test_unmarshal_fills_doc_from_the_raw_document(async_client: Any, db_name: str) -> None:
    calls: list[tuple[str, Any]] = []

    def unmarshal(namespace: str, raw: RawBSONDocument) -> tuple[str, Any]:
        assert isinstance(raw, RawBSONDocument)
        calls.append((namespace, raw["v"]))
        return ("mine", raw["v"])

    options = gtom.Options(namespace_filter=in_db(db_name), unmarshal=unmarshal)
    async with await gtom.start_async(async_client, options) as ctx:
        await async_client[db_name].c.insert_one({"_id": 1, "v": 42})
        (op,) = await collect(ctx, 1)
    assert op.doc == ("mine", 42)
    assert op.data == {"_id": 1, "v": 42}
    assert calls == [(f"{db_name}.c", 42)]


async def test_after_starts_strictly_after_the_given_timestamp(
    async_client: Any, db_name: str
) -> None:
    coll = async_client[db_name].c
    await coll.insert_one({"_id": 1})
    mark = await gtom.last_op_timestamp_async(async_client)
    await coll.insert_many([{"_id": 2}, {"_id": 3}])

    def after(client: Any, options: gtom.Options) -> Timestamp:
        assert client is async_client
        return mark

    options = gtom.Options(namespace_filter=in_db(db_name), after=after)
    async with await gtom.start_async(async_client, options) as ctx:
        ops = await collect(ctx, 2)
        await assert_quiet(ctx, 0.3)
    assert [op.id for op in ops] == [2, 3]


async def test_after_timestamp_zero_starts_at_the_oldest_entry(
    async_client: Any, db_name: str
) -> None:
    await async_client[db_name].c.insert_one({"_id": "early"})
    first = await gtom.first_op_timestamp_async(async_client)
    last = await gtom.last_op_timestamp_async(async_client)
    assert first <= last

    options = gtom.Options(namespace_filter=in_db(db_name), after=lambda c, o: Timestamp(0, 0))
    async with await gtom.start_async(async_client, options) as ctx:
        (op,) = await collect(ctx, 1)
    assert op.id == "early"


async def test_by_default_tailing_starts_now(async_client: Any, db_name: str) -> None:
    await async_client[db_name].c.insert_one({"_id": "before"})
    async with await gtom.start_async(
        async_client, gtom.Options(namespace_filter=in_db(db_name))
    ) as ctx:
        await async_client[db_name].c.insert_one({"_id": "after"})
        (op,) = await collect(ctx, 1)
    assert op.id == "after"


async def test_op_c_get_times_out_with_queue_empty(async_client: Any) -> None:
    import queue

    async with await gtom.start_async(
        async_client, gtom.Options(namespace_filter=lambda op: False)
    ) as ctx:
        with pytest.raises(queue.Empty):
            await ctx.op_c.get(timeout=0.1)
        assert ctx.op_c.maxsize == gtom.Options().channel_size


async def test_a_raising_filter_ends_iteration_with_a_callback_error(
    async_client: Any, db_name: str
) -> None:
    def broken(op: gtom.Op) -> bool:
        raise ValueError("boom")

    options = gtom.Options(namespace_filter=in_db(db_name), filter=broken)
    async with await gtom.start_async(async_client, options) as ctx:
        await async_client[db_name].c.insert_one({"_id": 1})
        with pytest.raises(gtom.CallbackError, match=r"filter function raised ValueError: boom"):
            async for _ in ctx:
                pass


async def test_wrong_kind_of_client_is_a_configuration_error(server: TestServer) -> None:
    with pytest.raises(gtom.ConfigurationError, match="client must be"):
        await gtom.start_async(object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (gtom.Options(channel_size=0), "channel_size must be an integer >= 1"),
        (gtom.Options(update_data_as_delta=1), "update_data_as_delta must be True or False"),  # type: ignore[arg-type]
        (gtom.Options(filter=3), "filter must be a function"),  # type: ignore[arg-type]
        (gtom.Options(max_wait_secs=-1), "max_wait_secs must be a number of seconds"),
    ],
)
async def test_bad_options_are_configuration_errors_naming_the_option(
    async_client: Any, options: gtom.Options, message: str
) -> None:
    with pytest.raises(gtom.ConfigurationError, match=message):
        await gtom.start_async(async_client, options)


async def test_after_returning_a_non_timestamp_is_a_configuration_error(async_client: Any) -> None:
    options = gtom.Options(after=lambda c, o: 12)  # type: ignore[arg-type,return-value]
    with pytest.raises(gtom.ConfigurationError, match=r"after function must be a bson\.Timestamp"):
        await gtom.start_async(async_client, options)


@PYMONGO_ASYNC_SOCKET_LEAK
async def test_unreachable_server_is_reported_within_the_selection_timeout(
    free_port: int,
) -> None:
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(
        f"mongodb://127.0.0.1:{free_port}/", serverSelectionTimeoutMS=300
    )
    try:
        with pytest.raises(gtom.ServerUnavailableError, match="cannot reach MongoDB"):
            await gtom.start_async(client)
    finally:
        await client.close()
        gc.collect()


async def test_the_oplog_cursor_gives_each_server_batch_as_one_undecoded_array(
    async_client: Any, db_name: str
) -> None:
    # The tailer reads an OplogCursor (a pymongo cursor whose replies keep their batch as BSON)
    # with cursor._next_batch, what pymongo's to_list uses: private, so this pins what gtom
    # relies on: one server batch per call, as one bytes object, the BSON array of the batch.
    await async_client[db_name].c.insert_many([{"_id": i, "ui": i} for i in range(5)])
    cursor = OplogCursor(async_client[db_name].c, {}, {"ui": 0}, batch_size=2)
    batches: list[bytes] = []
    while True:
        batch: list[Any] = []
        if not await cursor._next_batch(batch):
            break
        assert len(batch) == 1 and isinstance(batch[0], bytes)
        batches.append(batch[0])
    await cursor.close()
    decoded = [list(bson.decode(raw).values()) for raw in batches]
    assert [len(b) for b in decoded] == [2, 2, 1]
    assert [d for b in decoded for d in b] == [{"_id": i} for i in range(5)]  # projected


async def test_the_oplog_cursor_raises_the_servers_errors_as_pymongo_does(
    async_client: Any, db_name: str
) -> None:
    cursor = OplogCursor(async_client[db_name].c, {"$bad": 1})
    with pytest.raises(OperationFailure):
        await cursor._next_batch([])
    await cursor.close()


async def test_batches_hold_every_op_waiting_in_order(async_client: Any, db_name: str) -> None:
    coll = async_client[db_name].c
    options = gtom.Options(namespace_filter=in_db(db_name), channel_size=500)
    async with await gtom.start_async(async_client, options) as ctx:
        await coll.insert_many([{"_id": i} for i in range(300)])
        taken: list[gtom.Op] = []
        sizes = []
        async for batch in ctx.batches():
            assert batch, "a batch is never empty"
            sizes.append(len(batch))
            taken += batch
            if len(taken) >= 300:
                break
        await coll.insert_many([{"_id": i} for i in range(300, 310)])
        async for batch in ctx.batches(max_items=4):
            assert 1 <= len(batch) <= 4
            taken += batch
            if len(taken) >= 310:
                break
    assert [op.id for op in taken] == list(range(310))
    assert max(sizes) > 1  # a server batch came out as one, not op by op


def oplog_getmore(event: monitoring.CommandStartedEvent) -> bool:
    return event.command_name == "getMore" and event.command.get("collection") == "oplog.rs"


async def test_an_entry_committed_while_the_cursor_opens_is_delivered_once(
    server: TestServer, db_name: str
) -> None:
    """SecantusDB's tailable cursor shows such an entry in its first batch and again later.

    Its first batch is a snapshot of what is committed; its later batches go on from the newest
    entry shown to tailers, which a write passes a moment after it commits. CI once caught the
    moment by chance (an ``insert_many``'s last document came twice); here it is held open.
    """
    getmores = Commands(oplog_getmore)
    client: Any = server.async_client(event_listeners=[getmores])
    coll = client[db_name].c
    try:
        async with await gtom.start_async(
            client, gtom.Options(namespace_filter=in_db(db_name))
        ) as ctx:
            await coll.insert_many([{"_id": 0}, {"_id": 1}])
            assert [op.id for op in await collect(ctx, 2)] == [0, 1]
            with server.writes_kept_from_tailers():
                await coll.insert_one({"_id": 2})
                ctx.pause()  # the tailer opens a new cursor on resume: its first batch holds 2
                ctx.resume()
                assert [op.id for op in await collect(ctx, 1)] == [2]
                seen = getmores.count
                await wait_until(lambda: getmores.count > seen)  # the new cursor is tailing
            # Now the cursor's next batch shows 2 again.
            await assert_quiet(ctx, 1.0)
            await coll.insert_one({"_id": 3})
            assert [op.id for op in await collect(ctx, 1)] == [3]
    finally:
        await client.close()


class WritesOnCatchUp(monitoring.CommandListener):
    """Once armed, writes ``count`` documents the moment a plain oplog read has answered.

    That is between the tailer's catch-up read and the opening of its tailable cursor, so the
    cursor's first snapshot holds them all.
    """

    def __init__(self, server: TestServer, namespace: tuple[str, str], count: int) -> None:
        self._server = server
        self._namespace = namespace
        self._count = count
        self._reads: set[int] = set()
        self.armed = False

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        if command.get("find") == "oplog.rs" and not command.get("tailable"):
            self._reads.add(event.request_id)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.request_id in self._reads and self.armed:
            self.armed = False
            db, coll = self._namespace
            docs = [{"_id": i} for i in range(1, self._count + 1)]
            self._server.admin[db][coll].insert_many(docs)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_a_first_batch_that_goes_on_in_the_next_ones_is_delivered_once(
    server: TestServer, db_name: str
) -> None:
    """More than a batch is committed while the cursor opens; SecantusDB's cursor shows it twice.

    Its next batches first finish its first snapshot, then show again the entries committed but
    not yet shown to tailers.
    """
    count = 1500  # more than one batch (1,000), less than a re-open's worth (2,000)
    writes = WritesOnCatchUp(server, (db_name, "c"), count)
    getmores = Commands(oplog_getmore)
    client: Any = server.async_client(event_listeners=[writes, getmores])
    coll = client[db_name].c
    try:
        async with await gtom.start_async(
            client, gtom.Options(namespace_filter=in_db(db_name))
        ) as ctx:
            await coll.insert_one({"_id": 0})
            assert [op.id for op in await collect(ctx, 1)] == [0]
            with server.writes_kept_from_tailers():
                writes.armed = True
                ctx.pause()  # the tailer reads and opens a new cursor on resume
                ctx.resume()
                assert [op.id for op in await collect(ctx, count)] == list(range(1, count + 1))
                seen = getmores.count
                await wait_until(lambda: getmores.count > seen + 1)  # past the first snapshot
            await assert_quiet(ctx, 1.0)
    finally:
        await client.close()
