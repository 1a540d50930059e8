# Generated from tests/_async/test_fetch.py by tools/synchro.py. Edit that one.
"""Oplog updates with their documents: batched fetches, delta mode, order, faults."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest
from pymongo import UpdateOne, monitoring

import gtom
from tests._sync._tcompat import Background, in_thread
from tests._sync.helpers import Commands, collect, in_db
from tests.conftest import TestServer


def fetches_of(collection: str) -> Any:
    """Matches the ``find`` commands on ``collection`` (the fetches)."""
    return lambda event: event.command_name == "find" and event.command["find"] == collection


def test_updates_carry_the_fetched_document_and_their_change(client: Any, db_name: str) -> None:
    coll = client[db_name].c
    coll.insert_many([{"_id": 1, "v": 0}, {"_id": 2, "v": 0}])
    options = gtom.Options(namespace_filter=in_db(db_name), unmarshal=lambda ns, raw: raw["v"])
    with gtom.start(client, options) as ctx:
        coll.update_one({"_id": 1}, {"$set": {"v": 1}})
        (upd,) = collect(ctx, 1)
        coll.update_one({"_id": 2}, {"$set": {"v": 2}})
        coll.delete_one({"_id": 2})  # deleted before its update's fetch, maybe
        upd2, dele = collect(ctx, 2)
    assert upd.data == {"_id": 1, "v": 1} and upd.doc == 1
    assert upd.update_description is not None
    assert upd.update_description["updatedFields"] == {"v": 1}
    assert upd2.data in ({"_id": 2, "v": 2}, None)  # None: the delete came first
    assert dele.is_delete()


def test_delta_mode_gives_the_change_and_fetches_nothing(server: TestServer, db_name: str) -> None:
    finds = Commands(fetches_of("c"))
    client: Any = server.client(event_listeners=[finds])
    try:
        coll = client[db_name].c
        coll.insert_one({"_id": 1, "a": 1, "b": 1})
        options = gtom.Options(namespace_filter=in_db(db_name), update_data_as_delta=True)
        with gtom.start(client, options) as ctx:
            coll.update_one({"_id": 1}, {"$set": {"a": 2}, "$unset": {"b": ""}})
            (upd,) = collect(ctx, 1)
    finally:
        client.close()
    assert upd.data == {"$set": {"a": 2}, "$unset": {"b": True}}
    assert upd.update_description is not None and upd.update_description["removedFields"] == ["b"]
    assert finds.count == 0


def test_ten_thousand_updates_cost_at_most_220_fetches(server: TestServer, db_name: str) -> None:
    finds = Commands(fetches_of("c"))
    client: Any = server.client(event_listeners=[finds])
    try:
        coll = client[db_name].c
        coll.insert_many([{"_id": i, "v": 0} for i in range(10_000)])
        options = gtom.Options(namespace_filter=in_db(db_name), buffer_size=50)
        with gtom.start(client, options) as ctx:
            writer = Background(
                lambda: coll.bulk_write(
                    [UpdateOne({"_id": i}, {"$set": {"v": 1}}) for i in range(10_000)],
                    ordered=True,
                )
            )
            ops = collect(ctx, 10_000, timeout=120)
            writer.join()
    finally:
        client.close()
    assert [op.id for op in ops] == list(range(10_000))
    assert all(op.data == {"_id": op.id, "v": 1} for op in ops)
    assert finds.count <= 220, finds.count


@pytest.mark.failpoints
def test_failed_fetches_are_retried_and_no_op_lacks_its_document(
    server: TestServer, client: Any, db_name: str
) -> None:
    coll = client[db_name].c
    coll.insert_many([{"_id": i, "v": 0} for i in range(100)])
    with gtom.start(client, gtom.Options(namespace_filter=in_db(db_name))) as ctx:
        with server.fail_command(["find"], error_code=6, times=3):  # HostUnreachable
            for i in range(100):
                coll.update_one({"_id": i}, {"$set": {"v": 1}})
            ops = collect(ctx, 100, timeout=30)
        assert ctx.err_c.qsize() >= 1
    assert [op.id for op in ops] == list(range(100))
    assert all(op.data == {"_id": op.id, "v": 1} for op in ops)


@pytest.mark.failpoints
def test_oplog_order_holds_with_many_fetchers_and_random_fetch_delays(
    server: TestServer, client: Any, db_name: str
) -> None:
    rng = random.Random(7)
    db = client[db_name]
    names = ["a", "b", "c"]
    for name in names:
        db[name].insert_many([{"_id": i, "v": 0} for i in range(50)])
    plan = [(rng.choice(names), rng.randrange(50), n) for n in range(1, 1001)]  # v: 0 -> n
    options = gtom.Options(namespace_filter=in_db(db_name), worker_count=8, buffer_size=20)
    stop = threading.Event()

    def delay_fetches() -> None:  # a real server, made slow at random moments
        while not stop.wait(rng.random() * 0.2):
            with server.fail_command(["find"], block_ms=rng.randrange(1, 30), times=2):
                stop.wait(rng.random() * 0.1)

    with gtom.start(client, options) as ctx:
        delays = threading.Thread(target=delay_fetches)
        delays.start()
        try:
            for name, doc_id, n in plan:
                db[name].update_one({"_id": doc_id}, {"$set": {"v": n}})
            ops = collect(ctx, len(plan), timeout=120)
        finally:
            stop.set()
            in_thread(delays.join)
    seen = [(op.namespace.split(".")[1], op.id, op.update_description or {}) for op in ops]
    expected = [(name, doc_id, {"v": n}) for name, doc_id, n in plan]
    assert [(n, i, d.get("updatedFields")) for n, i, d in seen] == expected  # oplog order kept
    for op in ops:  # each document as fetched is at least as new as its change
        assert op.data is not None and op.update_description is not None
        assert op.data["v"] >= op.update_description["updatedFields"]["v"]


def test_replacements_and_inserts_are_not_fetched(server: TestServer, db_name: str) -> None:
    finds = Commands(fetches_of("c"))
    client: Any = server.client(event_listeners=[finds])
    try:
        coll = client[db_name].c
        options = gtom.Options(namespace_filter=in_db(db_name))
        with gtom.start(client, options) as ctx:
            coll.insert_one({"_id": 1, "v": 0})
            coll.replace_one({"_id": 1}, {"v": 1})
            ins, rep = collect(ctx, 2)
    finally:
        client.close()
    assert ins.data == {"_id": 1, "v": 0} and rep.data == {"_id": 1, "v": 1}
    assert finds.count == 0


def test_updates_before_a_drop_come_before_it_without_their_documents(
    client: Any, db_name: str
) -> None:
    coll = client[db_name].c
    coll.insert_many([{"_id": i, "v": 0} for i in range(5)])
    with gtom.start(client, gtom.Options(namespace_filter=in_db(db_name))) as ctx:
        for i in range(5):
            coll.update_one({"_id": i}, {"$set": {"v": 1}})
        coll.drop()
        ops = collect(ctx, 6)
    *updates, drop = ops
    assert [op.id for op in updates] == list(range(5)) and drop.is_drop()
    # Fetched after the drop (None) or before it (the document): never anything else.
    assert all(op.data in (None, {"_id": op.id, "v": 1}) for op in updates)


class _InFlight(monitoring.CommandListener):
    """The most fetches (``find`` on one collection) a client had in flight at once."""

    def __init__(self, collection: str) -> None:
        self.collection = collection
        self.running: set[int] = set()
        self.most = 0
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command["find"] == self.collection:
            with self._lock:
                self.running.add(event.request_id)
                self.most = max(self.most, len(self.running))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        with self._lock:
            self.running.discard(event.request_id)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        with self._lock:
            self.running.discard(event.request_id)


@pytest.mark.failpoints
def test_the_tailer_reads_on_while_documents_are_fetched(server: TestServer, db_name: str) -> None:
    # With one fetch worker, fetches still overlap: while a slow fetch runs, the tailer reads
    # and decodes the next entries and starts their fetch, and order holds.
    in_flight = _InFlight("c")
    client: Any = server.client(event_listeners=[in_flight])
    try:
        coll = client[db_name].c
        coll.insert_many([{"_id": i, "v": 0} for i in range(200)])
        options = gtom.Options(namespace_filter=in_db(db_name), buffer_size=10, worker_count=1)
        with gtom.start(client, options) as ctx:
            with server.fail_command(["find"], block_ms=150):
                for i in range(200):
                    coll.update_one({"_id": i}, {"$set": {"v": 1}})
                ops = collect(ctx, 200, timeout=60)
    finally:
        client.close()
    assert [op.id for op in ops] == list(range(200))
    assert all(op.data == {"_id": op.id, "v": 1} for op in ops)
    assert in_flight.most >= 2, in_flight.most
