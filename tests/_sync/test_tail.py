# Generated from tests/_async/test_tail.py by tools/synchro.py. Edit that one.
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
from gtom._sync.oplog_source import OplogCursor
from tests._sync.helpers import Commands, assert_quiet, collect, in_db, wait_until
from tests.conftest import PYMONGO_ASYNC_SOCKET_LEAK, TestServer


def test_insert_update_replace_delete_arrive_in_order_with_their_data(
    client: Any, db_name: str
) -> None:
    coll = client[db_name].people
    with gtom.start(client, gtom.Options(namespace_filter=in_db(db_name))) as ctx:
        coll.insert_one({"_id": 1, "name": "Ann", "tags": ["a", "b", "c"]})
        coll.update_one({"_id": 1}, {"$set": {"name": "Anna"}, "$unset": {"tags": ""}})
        coll.replace_one({"_id": 1}, {"name": "Bob"})
        coll.delete_one({"_id": 1})
        ins, upd, rep, dele = collect(ctx, 4)

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


def test_commands_become_ops_naming_the_collection_they_act_on(client: Any, db_name: str) -> None:
    db = client[db_name]
    with gtom.start(client, gtom.Options(namespace_filter=in_db(db_name))) as ctx:
        db.create_collection("made")
        db.made.rename("renamed")
        db.renamed.drop()
        db.other.insert_one({"_id": 1})
        client.drop_database(db_name)
        ops = collect(ctx, 6)

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


def test_transaction_writes_carry_their_transaction(client: Any, db_name: str) -> None:
    db = client[db_name]
    db.create_collection("a")
    db.create_collection("b")
    with gtom.start(client, gtom.Options(namespace_filter=in_db(db_name))) as ctx:
        with client.start_session() as session:
            session.start_transaction()
            db.a.insert_one({"_id": 1}, session=session)
            db.b.insert_one({"_id": 2}, session=session)
            db.a.update_one({"_id": 1}, {"$set": {"x": 1}}, session=session)
            session.commit_transaction()
        db.a.insert_one({"_id": 3})
        ops = collect(ctx, 4)

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


def test_namespace_filter_sees_no_document_and_filter_sees_it(client: Any, db_name: str) -> None:
    seen_by_ns_filter: list[Any] = []

    def ns_filter(op: gtom.Op) -> bool:
        seen_by_ns_filter.append(op.data)
        return op.namespace == f"{db_name}.keep"

    def only_even(op: gtom.Op) -> bool:
        return op.data is not None and op.data["n"] % 2 == 0

    options = gtom.Options(namespace_filter=ns_filter, filter=only_even)
    with gtom.start(client, options) as ctx:
        client[db_name].skip.insert_many([{"n": i} for i in range(4)])
        client[db_name].keep.insert_many([{"n": i} for i in range(4)])
        ops = collect(ctx, 2)
        assert_quiet(ctx, 0.3)
    assert [op.data["n"] for op in ops] == [0, 2]  # type: ignore[index]
    assert seen_by_ns_filter and all(data is None for data in seen_by_ns_filter)


def test_chained_filters_keep_an_op_only_if_all_keep_it(client: Any, db_name: str) -> None:
    def small(op: gtom.Op) -> bool:
        return op.data is not None and op.data["n"] < 6

    def odd(op: gtom.Op) -> bool:
        return op.data is not None and op.data["n"] % 2 == 1

    options = gtom.Options(
        namespace_filter=in_db(db_name), filter=gtom.chain_op_filters(small, odd)
    )
    with gtom.start(client, options) as ctx:
        client[db_name].c.insert_many([{"n": i} for i in range(10)])
        ops = collect(ctx, 3)
        assert_quiet(ctx, 0.3)
    assert [op.data["n"] for op in ops] == [1, 3, 5]  # type: ignore[index]


def test_unmarshal_fills_doc_from_the_raw_document(client: Any, db_name: str) -> None:
    calls: list[tuple[str, Any]] = []

    def unmarshal(namespace: str, raw: RawBSONDocument) -> tuple[str, Any]:
        assert isinstance(raw, RawBSONDocument)
        calls.append((namespace, raw["v"]))
        return ("mine", raw["v"])

    options = gtom.Options(namespace_filter=in_db(db_name), unmarshal=unmarshal)
    with gtom.start(client, options) as ctx:
        client[db_name].c.insert_one({"_id": 1, "v": 42})
        (op,) = collect(ctx, 1)
    assert op.doc == ("mine", 42)
    assert op.data == {"_id": 1, "v": 42}
    assert calls == [(f"{db_name}.c", 42)]


def test_after_starts_strictly_after_the_given_timestamp(client: Any, db_name: str) -> None:
    coll = client[db_name].c
    coll.insert_one({"_id": 1})
    mark = gtom.last_op_timestamp(client)
    coll.insert_many([{"_id": 2}, {"_id": 3}])

    def after(client: Any, options: gtom.Options) -> Timestamp:
        assert client is client
        return mark

    options = gtom.Options(namespace_filter=in_db(db_name), after=after)
    with gtom.start(client, options) as ctx:
        ops = collect(ctx, 2)
        assert_quiet(ctx, 0.3)
    assert [op.id for op in ops] == [2, 3]


def test_after_timestamp_zero_starts_at_the_oldest_entry(client: Any, db_name: str) -> None:
    client[db_name].c.insert_one({"_id": "early"})
    first = gtom.first_op_timestamp(client)
    last = gtom.last_op_timestamp(client)
    assert first <= last

    options = gtom.Options(namespace_filter=in_db(db_name), after=lambda c, o: Timestamp(0, 0))
    with gtom.start(client, options) as ctx:
        (op,) = collect(ctx, 1)
    assert op.id == "early"


def test_by_default_tailing_starts_now(client: Any, db_name: str) -> None:
    client[db_name].c.insert_one({"_id": "before"})
    with gtom.start(client, gtom.Options(namespace_filter=in_db(db_name))) as ctx:
        client[db_name].c.insert_one({"_id": "after"})
        (op,) = collect(ctx, 1)
    assert op.id == "after"


def test_op_c_get_times_out_with_queue_empty(client: Any) -> None:
    import queue

    with gtom.start(client, gtom.Options(namespace_filter=lambda op: False)) as ctx:
        with pytest.raises(queue.Empty):
            ctx.op_c.get(timeout=0.1)
        assert ctx.op_c.maxsize == gtom.Options().channel_size


def test_a_raising_filter_ends_iteration_with_a_callback_error(client: Any, db_name: str) -> None:
    def broken(op: gtom.Op) -> bool:
        raise ValueError("boom")

    options = gtom.Options(namespace_filter=in_db(db_name), filter=broken)
    with gtom.start(client, options) as ctx:
        client[db_name].c.insert_one({"_id": 1})
        with pytest.raises(gtom.CallbackError, match=r"filter function raised ValueError: boom"):
            for _ in ctx:
                pass


def test_wrong_kind_of_client_is_a_configuration_error(server: TestServer) -> None:
    with pytest.raises(gtom.ConfigurationError, match="client must be"):
        gtom.start(object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (gtom.Options(channel_size=0), "channel_size must be an integer >= 1"),
        (gtom.Options(update_data_as_delta=1), "update_data_as_delta must be True or False"),  # type: ignore[arg-type]
        (gtom.Options(filter=3), "filter must be a function"),  # type: ignore[arg-type]
        (gtom.Options(max_wait_secs=-1), "max_wait_secs must be a number of seconds"),
    ],
)
def test_bad_options_are_configuration_errors_naming_the_option(
    client: Any, options: gtom.Options, message: str
) -> None:
    with pytest.raises(gtom.ConfigurationError, match=message):
        gtom.start(client, options)


def test_after_returning_a_non_timestamp_is_a_configuration_error(client: Any) -> None:
    options = gtom.Options(after=lambda c, o: 12)  # type: ignore[arg-type,return-value]
    with pytest.raises(gtom.ConfigurationError, match=r"after function must be a bson\.Timestamp"):
        gtom.start(client, options)


@PYMONGO_ASYNC_SOCKET_LEAK
def test_unreachable_server_is_reported_within_the_selection_timeout(
    free_port: int,
) -> None:
    from pymongo import MongoClient

    client: Any = MongoClient(f"mongodb://127.0.0.1:{free_port}/", serverSelectionTimeoutMS=300)
    try:
        with pytest.raises(gtom.ServerUnavailableError, match="cannot reach MongoDB"):
            gtom.start(client)
    finally:
        client.close()
        gc.collect()


def test_the_oplog_cursor_gives_each_server_batch_as_one_undecoded_array(
    client: Any, db_name: str
) -> None:
    # The tailer reads an OplogCursor (a pymongo cursor whose replies keep their batch as BSON)
    # with cursor._next_batch, what pymongo's to_list uses: private, so this pins what gtom
    # relies on: one server batch per call, as one bytes object, the BSON array of the batch.
    client[db_name].c.insert_many([{"_id": i, "ui": i} for i in range(5)])
    cursor = OplogCursor(client[db_name].c, {}, {"ui": 0}, batch_size=2)
    batches: list[bytes] = []
    while True:
        batch: list[Any] = []
        if not cursor._next_batch(batch):
            break
        assert len(batch) == 1 and isinstance(batch[0], bytes)
        batches.append(batch[0])
    cursor.close()
    decoded = [list(bson.decode(raw).values()) for raw in batches]
    assert [len(b) for b in decoded] == [2, 2, 1]
    assert [d for b in decoded for d in b] == [{"_id": i} for i in range(5)]  # projected


def test_the_oplog_cursor_raises_the_servers_errors_as_pymongo_does(
    client: Any, db_name: str
) -> None:
    cursor = OplogCursor(client[db_name].c, {"$bad": 1})
    with pytest.raises(OperationFailure):
        cursor._next_batch([])
    cursor.close()


def test_batches_hold_every_op_waiting_in_order(client: Any, db_name: str) -> None:
    coll = client[db_name].c
    options = gtom.Options(namespace_filter=in_db(db_name), channel_size=500)
    with gtom.start(client, options) as ctx:
        coll.insert_many([{"_id": i} for i in range(300)])
        taken: list[gtom.Op] = []
        sizes = []
        for batch in ctx.batches():
            assert batch, "a batch is never empty"
            sizes.append(len(batch))
            taken += batch
            if len(taken) >= 300:
                break
        coll.insert_many([{"_id": i} for i in range(300, 310)])
        for batch in ctx.batches(max_items=4):
            assert 1 <= len(batch) <= 4
            taken += batch
            if len(taken) >= 310:
                break
    assert [op.id for op in taken] == list(range(310))
    assert max(sizes) > 1  # a server batch came out as one, not op by op


def oplog_getmore(event: monitoring.CommandStartedEvent) -> bool:
    return event.command_name == "getMore" and event.command.get("collection") == "oplog.rs"


def test_an_entry_committed_while_the_cursor_opens_is_delivered_once(
    server: TestServer, db_name: str
) -> None:
    """SecantusDB's tailable cursor shows such an entry in its first batch and again later.

    Its first batch is a snapshot of what is committed; its later batches go on from the newest
    entry shown to tailers, which a write passes a moment after it commits. CI once caught the
    moment by chance (an ``insert_many``'s last document came twice); here it is held open.
    """
    getmores = Commands(oplog_getmore)
    client: Any = server.client(event_listeners=[getmores])
    coll = client[db_name].c
    try:
        with gtom.start(client, gtom.Options(namespace_filter=in_db(db_name))) as ctx:
            coll.insert_many([{"_id": 0}, {"_id": 1}])
            assert [op.id for op in collect(ctx, 2)] == [0, 1]
            with server.writes_kept_from_tailers():
                coll.insert_one({"_id": 2})
                ctx.pause()  # the tailer opens a new cursor on resume: its first batch holds 2
                ctx.resume()
                assert [op.id for op in collect(ctx, 1)] == [2]
                seen = getmores.count
                wait_until(lambda: getmores.count > seen)  # the new cursor is tailing
            # Now the cursor's next batch shows 2 again.
            assert_quiet(ctx, 1.0)
            coll.insert_one({"_id": 3})
            assert [op.id for op in collect(ctx, 1)] == [3]
    finally:
        client.close()


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


def test_a_first_batch_that_goes_on_in_the_next_ones_is_delivered_once(
    server: TestServer, db_name: str
) -> None:
    """More than a batch is committed while the cursor opens; SecantusDB's cursor shows it twice.

    Its next batches first finish its first snapshot, then show again the entries committed but
    not yet shown to tailers.
    """
    count = 1500  # more than one batch (1,000), less than a re-open's worth (2,000)
    writes = WritesOnCatchUp(server, (db_name, "c"), count)
    getmores = Commands(oplog_getmore)
    client: Any = server.client(event_listeners=[writes, getmores])
    coll = client[db_name].c
    try:
        with gtom.start(client, gtom.Options(namespace_filter=in_db(db_name))) as ctx:
            coll.insert_one({"_id": 0})
            assert [op.id for op in collect(ctx, 1)] == [0]
            with server.writes_kept_from_tailers():
                writes.armed = True
                ctx.pause()  # the tailer reads and opens a new cursor on resume
                ctx.resume()
                assert [op.id for op in collect(ctx, count)] == list(range(1, count + 1))
                seen = getmores.count
                wait_until(lambda: getmores.count > seen + 1)  # past the first snapshot
            assert_quiet(ctx, 1.0)
    finally:
        client.close()
