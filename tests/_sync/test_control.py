# Generated from tests/_async/test_control.py by tools/synchro.py. Edit that one.
"""pause / resume / since / stop: exact semantics, on a real server."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import monitoring

import gtom
from tests._sync._tcompat import gtom_workers, sleep
from tests._sync.helpers import Commands, assert_quiet, collect, in_db, wait_until
from tests.conftest import TestServer


def reads_the_oplog(event: monitoring.CommandStartedEvent) -> bool:
    name = event.command_name
    return (name == "find" and event.command.get(name) == "oplog.rs") or (
        name == "getMore" and event.command.get("collection") == "oplog.rs"
    )


def test_pause_stops_reading_and_resume_delivers_everything_in_order(
    server: TestServer, db_name: str
) -> None:
    reads = Commands(reads_the_oplog)
    client: Any = server.client(event_listeners=[reads])
    coll = client[db_name].c
    try:
        ctx = gtom.start(client, gtom.Options(namespace_filter=in_db(db_name)))
        coll.insert_one({"_id": 0})
        assert [op.id for op in collect(ctx, 1)] == [0]

        ctx.pause()
        coll.insert_many([{"_id": i} for i in range(1, 6)])
        assert_quiet(ctx, 0.3)  # nothing after pause() returned ...
        reads_while_paused = reads.count  # ... and once an in-flight read ended, no reads
        assert_quiet(ctx, 1.2)
        assert reads.count == reads_while_paused

        ctx.resume()
        assert [op.id for op in collect(ctx, 5)] == [1, 2, 3, 4, 5]
        coll.insert_one({"_id": 6})
        assert [op.id for op in collect(ctx, 1)] == [6]
        ctx.stop()
    finally:
        client.close()


def test_since_replays_from_a_timestamp_and_discards_what_was_queued(
    client: Any, db_name: str
) -> None:
    coll = client[db_name].c
    options = gtom.Options(namespace_filter=in_db(db_name), channel_size=50)
    with gtom.start(client, options) as ctx:
        coll.insert_many([{"_id": i} for i in range(5)])
        first = collect(ctx, 5)
        coll.insert_many([{"_id": i} for i in range(5, 8)])
        wait_until(lambda: ctx.op_c.qsize() == 3)  # 5, 6, 7 wait, unread

        ctx.since(first[1].timestamp)  # type: ignore[arg-type]
        # The very next op comes from the new position: 2, not the queued 5.
        replay = collect(ctx, 6)
        assert [op.id for op in replay] == [2, 3, 4, 5, 6, 7]
        assert_quiet(ctx, 0.3)


def test_since_on_an_idle_server_takes_effect_without_new_writes(client: Any, db_name: str) -> None:
    coll = client[db_name].c
    with gtom.start(client, gtom.Options(namespace_filter=in_db(db_name))) as ctx:
        coll.insert_many([{"_id": i} for i in range(3)])
        ops = collect(ctx, 3)
        assert_quiet(ctx, 0.2)
        ctx.since(ops[0].timestamp)  # type: ignore[arg-type]
        assert [op.id for op in collect(ctx, 2)] == [1, 2]


def test_since_while_paused_applies_on_resume(client: Any, db_name: str) -> None:
    coll = client[db_name].c
    with gtom.start(client, gtom.Options(namespace_filter=in_db(db_name))) as ctx:
        coll.insert_many([{"_id": i} for i in range(3)])
        ops = collect(ctx, 3)
        ctx.pause()
        ctx.since(ops[0].timestamp)  # type: ignore[arg-type]
        assert_quiet(ctx, 0.5)
        ctx.resume()
        assert [op.id for op in collect(ctx, 2)] == [1, 2]


def test_stop_returns_without_a_reader_and_leaves_no_worker_behind(
    client: Any, db_name: str
) -> None:
    coll = client[db_name].c
    options = gtom.Options(namespace_filter=in_db(db_name), channel_size=2)
    ctx = gtom.start(client, options)
    assert gtom_workers()
    coll.insert_many([{"_id": i} for i in range(20)])
    wait_until(lambda: ctx.op_c.qsize() == 2)  # the tailer is now blocked on a full queue

    ctx.stop()
    # stop() waits less than a second for its workers: none may be left once it returns.
    assert gtom_workers() == []
    assert ctx.stopped
    # What was queued can still be taken; then iteration ends.
    assert [op.id for op in ctx] == [0, 1]
    with pytest.raises(gtom.StoppedError):
        ctx.op_c.get(timeout=0.1)
    ctx.stop()  # idempotent
    now = gtom.last_op_timestamp(client)
    with pytest.raises(gtom.StoppedError):
        ctx.since(now)


def test_stop_on_an_idle_context_ends_its_workers(client: Any) -> None:
    ctx = gtom.start(client)
    sleep(0.2)  # let the tailer settle into its awaitData wait
    ctx.stop()
    assert gtom_workers() == []


def test_context_manager_stops_on_exit(client: Any) -> None:
    with gtom.start(client) as ctx:
        running = not ctx.stopped
    assert running and ctx.stopped
    assert gtom_workers() == []


def test_oplog_disabled_starts_no_tailer(client: Any) -> None:
    with gtom.start(client, gtom.Options(oplog_disabled=True)) as ctx:
        assert gtom_workers() == []
        assert ctx.wait_for_direct_reads(timeout=1)
    assert [op for op in ctx] == []
