# Generated from tests/_async/test_change_streams.py by tools/synchro.py. Edit that one.
"""Following change streams on a real server: every scope, every event kind, every option."""

from __future__ import annotations

from typing import Any

import pytest
from bson import Timestamp
from bson.raw_bson import RawBSONDocument

import gtom
from tests._sync.helpers import Commands, assert_quiet, collect, in_db, streams


def test_a_collection_stream_delivers_each_kind_with_its_data(client: Any, db_name: str) -> None:
    coll = client[db_name].people
    ns = f"{db_name}.people"
    with gtom.start(client, streams(ns)) as ctx:
        coll.insert_one({"_id": 1, "name": "Ann", "tags": ["a", "b", "c"]})
        coll.update_one({"_id": 1}, {"$set": {"name": "Anna"}, "$unset": {"tags": ""}})
        # The looked-up document is the current one: take the update before changing it again.
        ins, upd = collect(ctx, 2)
        coll.replace_one({"_id": 1}, {"name": "Bob"})
        coll.delete_one({"_id": 1})
        client[db_name].other.insert_one({"_id": 2})  # another collection: not seen
        rep, dele = collect(ctx, 2)
        assert_quiet(ctx, 0.3)

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


def test_a_database_stream_sees_its_collections_and_ddl(client: Any, db_name: str) -> None:
    db = client[db_name]
    with gtom.start(client, streams(db_name)) as ctx:
        db.a.insert_one({"_id": 1})
        db.b.insert_one({"_id": 2})
        db.a.rename("c")
        db.b.drop()
        client[f"{db_name}_x"].a.insert_one({"_id": 3})  # another database
        ops = collect(ctx, 4)
        assert_quiet(ctx, 0.3)
        client.drop_database(f"{db_name}_x")

    ins_a, ins_b, rename, drop = ops
    assert all(op.stream_id == db_name for op in ops)
    assert (ins_a.namespace, ins_b.namespace) == (f"{db_name}.a", f"{db_name}.b")
    assert rename.is_command() and rename.namespace == f"{db_name}.a"
    assert rename.data == {"renameCollection": f"{db_name}.a", "to": f"{db_name}.c"}
    assert drop.is_drop() and drop.namespace == f"{db_name}.b" and drop.data == {"drop": "b"}


def test_drop_database_ends_with_a_drop_database_op_and_the_stream_goes_on(
    client: Any, db_name: str
) -> None:
    db = client[db_name]
    db.a.insert_one({"_id": 0})
    with gtom.start(client, streams(db_name)) as ctx:
        client.drop_database(db_name)
        # The database stream is invalidated; gtom opens it again after the invalidate.
        db.a.insert_one({"_id": 1})
        ops = collect(ctx, 3)

    drop, drop_db, again = ops
    assert drop.is_drop() and drop.namespace == f"{db_name}.a"
    assert drop_db.is_drop_database() and drop_db.namespace == f"{db_name}.$cmd"
    assert again.is_insert() and again.id == 1


def test_a_deployment_stream_sees_every_database(client: Any, db_name: str) -> None:
    options = streams("", namespace_filter=in_db(db_name))
    with gtom.start(client, options) as ctx:
        client[db_name].a.insert_one({"_id": 1})
        client[db_name].b.insert_one({"_id": 2})
        ops = collect(ctx, 2)
    assert [(op.namespace, op.id, op.stream_id) for op in ops] == [
        (f"{db_name}.a", 1, ""),
        (f"{db_name}.b", 2, ""),
    ]


def test_several_streams_merge_each_in_its_own_order(client: Any, db_name: str) -> None:
    db = client[db_name]
    options = streams(f"{db_name}.a", f"{db_name}.b")
    with gtom.start(client, options) as ctx:
        for i in range(20):
            db.a.insert_one({"_id": i})
            db.b.insert_one({"_id": i})
        db.c.insert_one({"_id": 0})  # not followed
        ops = collect(ctx, 40)
        assert_quiet(ctx, 0.3)
        tokens = ctx.resume_tokens
    for name in ("a", "b"):
        mine = [op for op in ops if op.stream_id == f"{db_name}.{name}"]
        assert [op.id for op in mine] == list(range(20))
        assert all(op.namespace == f"{db_name}.{name}" for op in mine)
        assert tokens[f"{db_name}.{name}"] == mine[-1].resume_token


def test_a_dropped_collection_is_followed_when_it_is_created_again(
    client: Any, db_name: str
) -> None:
    coll = client[db_name].c
    coll.insert_one({"_id": 0})
    with gtom.start(client, streams(f"{db_name}.c")) as ctx:
        coll.drop()
        coll.insert_one({"_id": 1})
        coll.rename("d")
        client[db_name].c.insert_one({"_id": 2})
        drop, ins, rename, ins_again = collect(ctx, 4)
    assert drop.is_drop() and drop.data == {"drop": "c"}
    assert ins.is_insert() and ins.id == 1
    assert rename.data == {"renameCollection": f"{db_name}.c", "to": f"{db_name}.d"}
    assert ins_again.is_insert() and ins_again.id == 2


def test_transaction_events_carry_their_transaction(client: Any, db_name: str) -> None:
    db = client[db_name]
    db.create_collection("a")
    db.create_collection("b")
    with gtom.start(client, streams(db_name)) as ctx:
        with client.start_session() as session:
            session.start_transaction()
            db.a.insert_one({"_id": 1}, session=session)
            db.b.insert_one({"_id": 2}, session=session)
            db.a.update_one({"_id": 1}, {"$set": {"x": 1}}, session=session)
            session.commit_transaction()
        db.a.insert_one({"_id": 3})
        ops = collect(ctx, 4)
    txns = [op.txn for op in ops[:3]]
    assert all(t is not None for t in txns)
    assert [t.index for t in txns] == [0, 1, 2]  # type: ignore[union-attr]
    assert len({(t.txn_number, str(t.lsid)) for t in txns}) == 1  # type: ignore[union-attr]
    assert ops[3].txn is None


def test_pre_images_become_op_before(client: Any, db_name: str) -> None:
    db = client[db_name]
    db.create_collection("c", changeStreamPreAndPostImages={"enabled": True})
    db.c.insert_one({"_id": 1, "v": 1})
    options = streams(f"{db_name}.c", full_document_before_change="whenAvailable")
    with gtom.start(client, options) as ctx:
        db.c.update_one({"_id": 1}, {"$set": {"v": 2}})
        (upd,) = collect(ctx, 1)  # before the document changes again (updateLookup)
        db.c.replace_one({"_id": 1}, {"v": 3})
        db.c.delete_one({"_id": 1})
        rep, dele = collect(ctx, 2)
    assert (upd.before, upd.data) == ({"_id": 1, "v": 1}, {"_id": 1, "v": 2})
    assert (rep.before, rep.data) == ({"_id": 1, "v": 2}, {"_id": 1, "v": 3})
    assert (dele.before, dele.data) == ({"_id": 1, "v": 3}, None)


def test_full_document_default_gives_updates_without_their_document(
    client: Any, db_name: str
) -> None:
    coll = client[db_name].c
    coll.insert_one({"_id": 1, "v": 1})
    options = streams(f"{db_name}.c", full_document="default")
    with gtom.start(client, options) as ctx:
        coll.update_one({"_id": 1}, {"$set": {"v": 2}})
        (upd,) = collect(ctx, 1)
    assert upd.is_update() and upd.data is None
    assert upd.update_description is not None
    assert upd.update_description["updatedFields"] == {"v": 2}


def test_expanded_events_become_command_ops(client: Any, db_name: str) -> None:
    db = client[db_name]
    with gtom.start(client, streams(db_name, show_expanded_events=True)) as ctx:
        db.create_collection("c")
        db.c.create_index("x", name="x_1")
        db.c.drop_index("x_1")
        db.command("collMod", "c", validator={"x": {"$exists": True}})
        ops = collect(ctx, 4)
    create, create_index, drop_index, modify = ops
    assert create.is_command() and create.data is not None and create.data["create"] == "c"
    assert create_index.data is not None and create_index.data["createIndexes"] == "c"
    assert drop_index.data is not None and drop_index.data["dropIndexes"] == "c"
    assert modify.data is not None and modify.data["collMod"] == "c"
    assert all(op.namespace == f"{db_name}.c" for op in ops)


def test_pipe_builds_each_streams_pipeline(client: Any, db_name: str) -> None:
    calls: list[tuple[str, bool]] = []

    def pipe(namespace: str, change_stream: bool) -> list[dict[str, Any]]:
        calls.append((namespace, change_stream))
        return [{"$match": {"operationType": "insert"}}]

    coll = client[db_name].c
    with gtom.start(client, streams(f"{db_name}.c", pipe=pipe)) as ctx:
        coll.insert_one({"_id": 1})
        coll.update_one({"_id": 1}, {"$set": {"v": 1}})
        coll.insert_one({"_id": 2})
        ops = collect(ctx, 2)
        assert_quiet(ctx, 0.3)
    assert [(op.operation, op.id) for op in ops] == [("i", 1), ("i", 2)]
    assert calls == [(f"{db_name}.c", True)]


def test_a_pipeline_that_drops_the_resume_token_is_a_configuration_error(
    client: Any, db_name: str
) -> None:
    def pipe(namespace: str, change_stream: bool) -> list[dict[str, Any]]:
        return [{"$project": {"_id": 0}}]

    ctx = gtom.start(client, streams(f"{db_name}.c", pipe=pipe))
    client[db_name].c.insert_one({"_id": 1})
    with pytest.raises(gtom.ConfigurationError, match="resume token; keep _id"):
        for _ in ctx:
            pass
    ctx.stop()


def test_filters_and_unmarshal_apply_as_for_the_oplog(client: Any, db_name: str) -> None:
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
    db = client[db_name]
    with gtom.start(client, options) as ctx:
        db.skipped.insert_one({"v": 0})
        for v in range(4):
            db.c.insert_one({"v": v})
        ops = collect(ctx, 2)
        assert_quiet(ctx, 0.3)
    assert [op.doc for op in ops] == [(f"{db_name}.c", 0), (f"{db_name}.c", 2)]
    assert seen_by_ns_filter and all(data is None for data in seen_by_ns_filter)


def test_max_wait_secs_sets_the_await_time_of_each_get_more(server: Any, db_name: str) -> None:
    listener = Commands(lambda event: event.command_name == "getMore")
    client: Any = server.client(event_listeners=[listener])
    try:
        options = streams(f"{db_name}.c", max_wait_secs=0.25)
        with gtom.start(client, options) as ctx:
            client[db_name].c.insert_one({"_id": 1})
            collect(ctx, 1)
    finally:
        client.close()
    await_times = {event.command.get("maxTimeMS") for event in listener.started_events}
    assert await_times == {250}


def test_streams_and_the_oplog_together_deliver_both(client: Any, db_name: str) -> None:
    options = gtom.Options(change_stream_ns=[f"{db_name}.c"], namespace_filter=in_db(db_name))
    with gtom.start(client, options) as ctx:
        client[db_name].c.insert_one({"_id": 1})
        ops = collect(ctx, 2)
    assert sorted(op.source.name for op in ops) == ["CHANGE_STREAM", "OPLOG"]
    assert all(op.id == 1 for op in ops)


@pytest.mark.parametrize("bad", ["a..b", "db.", ".coll", "a$b.c"])
def test_malformed_stream_namespaces_are_configuration_errors(client: Any, bad: str) -> None:
    with pytest.raises(gtom.ConfigurationError, match="change_stream_ns"):
        gtom.start(client, streams(bad))
