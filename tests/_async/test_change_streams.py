"""Following change streams on a real server: every scope, every event kind, every option."""

from __future__ import annotations

from typing import Any

import pytest
from bson import Timestamp
from bson.raw_bson import RawBSONDocument

import gtom
from tests._async.helpers import Commands, assert_quiet, collect, in_db, streams


async def test_a_collection_stream_delivers_each_kind_with_its_data(
    async_client: Any, db_name: str
) -> None:
    coll = async_client[db_name].people
    ns = f"{db_name}.people"
    async with await gtom.start_async(async_client, streams(ns)) as ctx:
        await coll.insert_one({"_id": 1, "name": "Ann", "tags": ["a", "b", "c"]})
        await coll.update_one({"_id": 1}, {"$set": {"name": "Anna"}, "$unset": {"tags": ""}})
        # The looked-up document is the current one: take the update before changing it again.
        ins, upd = await collect(ctx, 2)
        await coll.replace_one({"_id": 1}, {"name": "Bob"})
        await coll.delete_one({"_id": 1})
        await async_client[db_name].other.insert_one({"_id": 2})  # another collection: not seen
        rep, dele = await collect(ctx, 2)
        await assert_quiet(ctx, 0.3)

    for op in (ins, upd, rep, dele):
        assert op.source is gtom.Source.CHANGE_STREAM
        assert op.stream_id == ns and op.namespace == ns and op.id == 1
        assert isinstance(op.resume_token, dict) and "_data" in op.resume_token
        assert isinstance(op.timestamp, Timestamp) and op.txn is None
    assert ins.is_insert() and ins.data == {"_id": 1, "name": "Ann", "tags": ["a", "b", "c"]}
    assert upd.is_update() and upd.update_description is not None
    assert upd.update_description["updatedFields"] == {"name": "Anna"}
    assert upd.update_description["removedFields"] == ["tags"]
    assert upd.data == {"_id": 1, "name": "Anna"}  # full_document="updateLookup" by default
    assert rep.is_update() and rep.data == {"_id": 1, "name": "Bob"}
    assert rep.update_description is None
    assert dele.is_delete() and dele.data is None
    assert ins.timestamp < upd.timestamp < rep.timestamp < dele.timestamp  # type: ignore[operator]
    tokens = [op.resume_token["_data"] for op in (ins, upd, rep, dele)]  # type: ignore[index]
    assert len(set(tokens)) == 4


async def test_a_database_stream_sees_its_collections_and_ddl(
    async_client: Any, db_name: str
) -> None:
    db = async_client[db_name]
    async with await gtom.start_async(async_client, streams(db_name)) as ctx:
        await db.a.insert_one({"_id": 1})
        await db.b.insert_one({"_id": 2})
        await db.a.rename("c")
        await db.b.drop()
        await async_client[f"{db_name}_x"].a.insert_one({"_id": 3})  # another database
        ops = await collect(ctx, 4)
        await assert_quiet(ctx, 0.3)
        await async_client.drop_database(f"{db_name}_x")

    ins_a, ins_b, rename, drop = ops
    assert all(op.stream_id == db_name for op in ops)
    assert (ins_a.namespace, ins_b.namespace) == (f"{db_name}.a", f"{db_name}.b")
    assert rename.is_command() and rename.namespace == f"{db_name}.a"
    assert rename.data == {"renameCollection": f"{db_name}.a", "to": f"{db_name}.c"}
    assert drop.is_drop() and drop.namespace == f"{db_name}.b" and drop.data == {"drop": "b"}


async def test_drop_database_ends_with_a_drop_database_op_and_the_stream_goes_on(
    async_client: Any, db_name: str
) -> None:
    db = async_client[db_name]
    await db.a.insert_one({"_id": 0})
    async with await gtom.start_async(async_client, streams(db_name)) as ctx:
        await async_client.drop_database(db_name)
        # The database stream is invalidated; gtom opens it again after the invalidate.
        await db.a.insert_one({"_id": 1})
        ops = await collect(ctx, 3)

    drop, drop_db, again = ops
    assert drop.is_drop() and drop.namespace == f"{db_name}.a"
    assert drop_db.is_drop_database() and drop_db.namespace == f"{db_name}.$cmd"
    assert again.is_insert() and again.id == 1


async def test_a_deployment_stream_sees_every_database(async_client: Any, db_name: str) -> None:
    options = streams("", namespace_filter=in_db(db_name))
    async with await gtom.start_async(async_client, options) as ctx:
        await async_client[db_name].a.insert_one({"_id": 1})
        await async_client[db_name].b.insert_one({"_id": 2})
        ops = await collect(ctx, 2)
    assert [(op.namespace, op.id, op.stream_id) for op in ops] == [
        (f"{db_name}.a", 1, ""),
        (f"{db_name}.b", 2, ""),
    ]


async def test_several_streams_merge_each_in_its_own_order(async_client: Any, db_name: str) -> None:
    db = async_client[db_name]
    options = streams(f"{db_name}.a", f"{db_name}.b")
    async with await gtom.start_async(async_client, options) as ctx:
        for i in range(20):
            await db.a.insert_one({"_id": i})
            await db.b.insert_one({"_id": i})
        await db.c.insert_one({"_id": 0})  # not followed
        ops = await collect(ctx, 40)
        await assert_quiet(ctx, 0.3)
        tokens = ctx.resume_tokens
    for name in ("a", "b"):
        mine = [op for op in ops if op.stream_id == f"{db_name}.{name}"]
        assert [op.id for op in mine] == list(range(20))
        assert all(op.namespace == f"{db_name}.{name}" for op in mine)
        assert tokens[f"{db_name}.{name}"] == mine[-1].resume_token


async def test_a_dropped_collection_is_followed_when_it_is_created_again(
    async_client: Any, db_name: str
) -> None:
    coll = async_client[db_name].c
    await coll.insert_one({"_id": 0})
    async with await gtom.start_async(async_client, streams(f"{db_name}.c")) as ctx:
        await coll.drop()
        await coll.insert_one({"_id": 1})
        await coll.rename("d")
        await async_client[db_name].c.insert_one({"_id": 2})
        drop, ins, rename, ins_again = await collect(ctx, 4)
    assert drop.is_drop() and drop.data == {"drop": "c"}
    assert ins.is_insert() and ins.id == 1
    assert rename.data == {"renameCollection": f"{db_name}.c", "to": f"{db_name}.d"}
    assert ins_again.is_insert() and ins_again.id == 2


async def test_transaction_events_carry_their_transaction(async_client: Any, db_name: str) -> None:
    db = async_client[db_name]
    await db.create_collection("a")
    await db.create_collection("b")
    async with await gtom.start_async(async_client, streams(db_name)) as ctx:
        async with async_client.start_session() as session:
            await session.start_transaction()
            await db.a.insert_one({"_id": 1}, session=session)
            await db.b.insert_one({"_id": 2}, session=session)
            await db.a.update_one({"_id": 1}, {"$set": {"x": 1}}, session=session)
            await session.commit_transaction()
        await db.a.insert_one({"_id": 3})
        ops = await collect(ctx, 4)
    txns = [op.txn for op in ops[:3]]
    assert all(t is not None for t in txns)
    assert [t.index for t in txns] == [0, 1, 2]  # type: ignore[union-attr]
    assert len({(t.txn_number, str(t.lsid)) for t in txns}) == 1  # type: ignore[union-attr]
    assert ops[3].txn is None


async def test_pre_images_become_op_before(async_client: Any, db_name: str) -> None:
    db = async_client[db_name]
    await db.create_collection("c", changeStreamPreAndPostImages={"enabled": True})
    await db.c.insert_one({"_id": 1, "v": 1})
    options = streams(f"{db_name}.c", full_document_before_change="whenAvailable")
    async with await gtom.start_async(async_client, options) as ctx:
        await db.c.update_one({"_id": 1}, {"$set": {"v": 2}})
        (upd,) = await collect(ctx, 1)  # before the document changes again (updateLookup)
        await db.c.replace_one({"_id": 1}, {"v": 3})
        await db.c.delete_one({"_id": 1})
        rep, dele = await collect(ctx, 2)
    assert (upd.before, upd.data) == ({"_id": 1, "v": 1}, {"_id": 1, "v": 2})
    assert (rep.before, rep.data) == ({"_id": 1, "v": 2}, {"_id": 1, "v": 3})
    assert (dele.before, dele.data) == ({"_id": 1, "v": 3}, None)


async def test_full_document_default_gives_updates_without_their_document(
    async_client: Any, db_name: str
) -> None:
    coll = async_client[db_name].c
    await coll.insert_one({"_id": 1, "v": 1})
    options = streams(f"{db_name}.c", full_document="default")
    async with await gtom.start_async(async_client, options) as ctx:
        await coll.update_one({"_id": 1}, {"$set": {"v": 2}})
        (upd,) = await collect(ctx, 1)
    assert upd.is_update() and upd.data is None
    assert upd.update_description is not None
    assert upd.update_description["updatedFields"] == {"v": 2}


async def test_expanded_events_become_command_ops(async_client: Any, db_name: str) -> None:
    db = async_client[db_name]
    async with await gtom.start_async(
        async_client, streams(db_name, show_expanded_events=True)
    ) as ctx:
        await db.create_collection("c")
        await db.c.create_index("x", name="x_1")
        await db.c.drop_index("x_1")
        await db.command("collMod", "c", validator={"x": {"$exists": True}})
        ops = await collect(ctx, 4)
    create, create_index, drop_index, modify = ops
    assert create.is_command() and create.data is not None and create.data["create"] == "c"
    assert create_index.data is not None and create_index.data["createIndexes"] == "c"
    assert drop_index.data is not None and drop_index.data["dropIndexes"] == "c"
    assert modify.data is not None and modify.data["collMod"] == "c"
    assert all(op.namespace == f"{db_name}.c" for op in ops)


async def test_pipe_builds_each_streams_pipeline(async_client: Any, db_name: str) -> None:
    calls: list[tuple[str, bool]] = []

    def pipe(namespace: str, change_stream: bool) -> list[dict[str, Any]]:
        calls.append((namespace, change_stream))
        return [{"$match": {"operationType": "insert"}}]

    coll = async_client[db_name].c
    async with await gtom.start_async(async_client, streams(f"{db_name}.c", pipe=pipe)) as ctx:
        await coll.insert_one({"_id": 1})
        await coll.update_one({"_id": 1}, {"$set": {"v": 1}})
        await coll.insert_one({"_id": 2})
        ops = await collect(ctx, 2)
        await assert_quiet(ctx, 0.3)
    assert [(op.operation, op.id) for op in ops] == [("i", 1), ("i", 2)]
    assert calls == [(f"{db_name}.c", True)]


async def test_a_pipeline_that_drops_the_resume_token_is_a_configuration_error(
    async_client: Any, db_name: str
) -> None:
    def pipe(namespace: str, change_stream: bool) -> list[dict[str, Any]]:
        return [{"$project": {"_id": 0}}]

    ctx = await gtom.start_async(async_client, streams(f"{db_name}.c", pipe=pipe))
    await async_client[db_name].c.insert_one({"_id": 1})
    with pytest.raises(gtom.ConfigurationError, match="resume token; keep _id"):
        async for _ in ctx:
            pass
    await ctx.stop()


async def test_filters_and_unmarshal_apply_as_for_the_oplog(
    async_client: Any, db_name: str
) -> None:
    seen_by_ns_filter: list[Any] = []

    def namespace_filter(op: gtom.Op) -> bool:
        seen_by_ns_filter.append(op.data)
        return op.namespace != f"{db_name}.skipped"

    def keep_even(op: gtom.Op) -> bool:
        return op.data is None or op.data.get("v", 0) % 2 == 0

    def unmarshal(namespace: str, raw: RawBSONDocument) -> Any:
        assert isinstance(raw, RawBSONDocument)
        return (namespace, raw["v"])

    options = streams(
        db_name, namespace_filter=namespace_filter, filter=keep_even, unmarshal=unmarshal
    )
    db = async_client[db_name]
    async with await gtom.start_async(async_client, options) as ctx:
        await db.skipped.insert_one({"v": 0})
        for v in range(4):
            await db.c.insert_one({"v": v})
        ops = await collect(ctx, 2)
        await assert_quiet(ctx, 0.3)
    assert [op.doc for op in ops] == [(f"{db_name}.c", 0), (f"{db_name}.c", 2)]
    assert seen_by_ns_filter and all(data is None for data in seen_by_ns_filter)


async def test_max_wait_secs_sets_the_await_time_of_each_get_more(
    server: Any, db_name: str
) -> None:
    listener = Commands(lambda event: event.command_name == "getMore")
    client: Any = server.async_client(event_listeners=[listener])
    try:
        options = streams(f"{db_name}.c", max_wait_secs=0.25)
        async with await gtom.start_async(client, options) as ctx:
            await client[db_name].c.insert_one({"_id": 1})
            await collect(ctx, 1)
    finally:
        await client.close()
    await_times = {event.command.get("maxTimeMS") for event in listener.started_events}
    assert await_times == {250}


async def test_streams_and_the_oplog_together_deliver_both(async_client: Any, db_name: str) -> None:
    options = gtom.Options(change_stream_ns=[f"{db_name}.c"], namespace_filter=in_db(db_name))
    async with await gtom.start_async(async_client, options) as ctx:
        await async_client[db_name].c.insert_one({"_id": 1})
        ops = await collect(ctx, 2)
    assert sorted(op.source.name for op in ops) == ["CHANGE_STREAM", "OPLOG"]
    assert all(op.id == 1 for op in ops)


@pytest.mark.parametrize("bad", ["a..b", "db.", ".coll", "a$b.c"])
async def test_malformed_stream_namespaces_are_configuration_errors(
    async_client: Any, bad: str
) -> None:
    with pytest.raises(gtom.ConfigurationError, match="change_stream_ns"):
        await gtom.start_async(async_client, streams(bad))
