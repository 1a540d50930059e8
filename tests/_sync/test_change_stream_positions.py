# Generated from tests/_async/test_change_stream_positions.py by tools/synchro.py. Edit that one.
"""Where change streams start and resume, and faults on a real server, counting events."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bson import json_util

import gtom
from tests._sync._tcompat import Background, in_thread
from tests._sync.helpers import assert_quiet, collect, insert_through_outages, streams
from tests.conftest import PYMONGO_ASYNC_SOCKET_LEAK, TestServer

ROOT = Path(__file__).resolve().parents[2]


def ids(ops: list[gtom.Op]) -> list[Any]:
    found = [op.id for op in ops]
    assert len(found) == len(set(found)), f"an op was delivered twice: {found}"
    return found


# -- positions ---------------------------------------------------------------------------------


def test_by_default_a_stream_starts_now(client: Any, db_name: str) -> None:
    coll = client[db_name].c
    coll.insert_one({"_id": 0})
    with gtom.start(client, streams(f"{db_name}.c")) as ctx:
        coll.insert_one({"_id": 1})
        assert ids(collect(ctx, 1)) == [1]
        assert_quiet(ctx, 0.2)


def test_a_saved_resume_token_continues_right_after_its_event(client: Any, db_name: str) -> None:
    coll = client[db_name].c
    ns = f"{db_name}.c"
    with gtom.start(client, streams(ns)) as ctx:
        coll.insert_many([{"_id": i} for i in range(5)])
        first = collect(ctx, 3)
    token = first[-1].resume_token
    assert token is not None
    coll.insert_many([{"_id": i} for i in range(5, 8)])
    with gtom.start(client, streams(ns, resume_tokens={ns: token})) as ctx:
        rest = collect(ctx, 5)
        assert_quiet(ctx, 0.2)
    assert ids(first + rest) == list(range(8))


def test_an_idle_streams_position_is_there_to_save_before_any_event(
    client: Any, db_name: str
) -> None:
    coll = client[db_name].c
    ns = f"{db_name}.c"
    with gtom.start(client, streams(ns)) as ctx:
        start = ctx.resume_tokens[ns]
        assert start is not None  # the post-batch token of the open
    coll.insert_one({"_id": 1})  # written while nobody follows
    with gtom.start(client, streams(ns, resume_tokens={ns: start})) as ctx:
        assert ids(collect(ctx, 1)) == [1]


def test_after_starts_the_streams_strictly_after_that_time(client: Any, db_name: str) -> None:
    coll = client[db_name].c
    coll.insert_one({"_id": 0})
    ts = (client.local["oplog.rs"].find_one(sort=[("$natural", -1)]))["ts"]
    coll.insert_one({"_id": 1})
    options = streams(f"{db_name}.c", after=lambda client, options: ts)
    with gtom.start(client, options) as ctx:
        ops = collect(ctx, 1)
        assert_quiet(ctx, 0.2)
    assert ids(ops) == [1] and ops[0].timestamp > ts


def test_a_resume_token_wins_over_after(client: Any, db_name: str) -> None:
    coll = client[db_name].c
    ns = f"{db_name}.c"
    with gtom.start(client, streams(ns)) as ctx:
        coll.insert_many([{"_id": i} for i in range(3)])
        first = collect(ctx, 3)
    ts = first[0].timestamp
    options = streams(ns, resume_tokens={ns: first[1].resume_token}, after=lambda c, o: ts)
    with gtom.start(client, options) as ctx:
        assert ids(collect(ctx, 1)) == [2]


def test_since_reopens_every_stream_at_that_time(client: Any, db_name: str) -> None:
    db = client[db_name]
    with gtom.start(client, streams(f"{db_name}.a", f"{db_name}.b")) as ctx:
        db.a.insert_one({"_id": 1})
        (a1,) = collect(ctx, 1)
        db.b.insert_one({"_id": 2})
        db.a.insert_one({"_id": 3})
        collect(ctx, 2)
        ctx.since(a1.timestamp)  # type: ignore[arg-type]
        again = collect(ctx, 2)
        assert_quiet(ctx, 0.3)
    assert sorted((op.stream_id, op.id) for op in again) == [
        (f"{db_name}.a", 3),
        (f"{db_name}.b", 2),
    ]


def test_pause_holds_streams_and_resume_misses_nothing(client: Any, db_name: str) -> None:
    coll = client[db_name].c
    with gtom.start(client, streams(f"{db_name}.c")) as ctx:
        coll.insert_one({"_id": 0})
        first = collect(ctx, 1)
        ctx.pause()
        coll.insert_many([{"_id": i} for i in range(1, 20)])
        assert_quiet(ctx, 0.5)
        ctx.resume()
        rest = collect(ctx, 19)
    assert ids(first + rest) == list(range(20))


def test_resuming_from_a_saved_token_in_a_new_process(server: TestServer, db_name: str) -> None:
    client: Any = server.client()
    ns = f"{db_name}.c"
    try:
        stream = client[db_name].c.watch()  # only for a starting token
        start = stream.resume_token
        stream.close()
        client[db_name].c.insert_many([{"_id": i} for i in range(10)])
        first = in_thread(lambda: run_child(server.uri, ns, 4, start))
        assert [line["id"] for line in first] == [0, 1, 2, 3]
        rest = in_thread(lambda: run_child(server.uri, ns, 6, first[-1]["token"]))
        assert [line["id"] for line in rest] == [4, 5, 6, 7, 8, 9]
    finally:
        client.close()


def run_child(uri: str, stream_id: str, count: int, token: Any) -> list[dict[str, Any]]:
    args = [sys.executable, "-m", "tests.follow_child", uri, stream_id, str(count)]
    args.append(json_util.dumps(token))
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return [json_util.loads(line) for line in done.stdout.splitlines()]


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.failpoints
@pytest.mark.parametrize(
    ("commands", "failure"),
    [
        (["getMore"], {"error_code": 91}),  # ShutdownInProgress: pymongo resumes
        (["getMore"], {"error_code": 43}),  # CursorNotFound: pymongo resumes
        (["getMore"], {"close_connection": True}),  # a network error: pymongo resumes
        (["getMore"], {"error_code": 6}),  # HostUnreachable, not resumable: gtom re-opens
        (["getMore"], {"error_code": 1, "error_labels": ["ResumableChangeStreamError"]}),
        (["getMore"], {"block_ms": 300}),  # slow, no error
        (["getMore", "aggregate"], {"error_code": 6}),  # the re-opens fail as well
        (["getMore", "aggregate"], {"close_connection": True}),
    ],
    ids=[
        "shutdown",
        "cursor-not-found",
        "connection-closed",
        "host-unreachable",
        "labelled-resumable",
        "blocked",
        "reopens-fail",
        "reopens-lose-connection",
    ],
)
def test_failing_stream_commands_lose_and_repeat_nothing(
    server: TestServer,
    client: Any,
    db_name: str,
    commands: list[str],
    failure: dict[str, Any],
) -> None:
    coll = client[db_name].c
    with gtom.start(client, streams(f"{db_name}.c")) as ctx:
        coll.insert_many([{"_id": i} for i in range(30)])
        first = collect(ctx, 30)
        with server.fail_command(commands, times=4, **failure):
            for i in range(30, 60):
                coll.insert_one({"_id": i})
            rest = collect(ctx, 30, timeout=30)
        assert_quiet(ctx, 0.2)
    assert ids(first + rest) == list(range(60))


@pytest.mark.failpoints
def test_a_non_transient_stream_error_ends_iteration_with_a_clear_error(
    server: TestServer, client: Any, db_name: str
) -> None:
    coll = client[db_name].c
    ctx = gtom.start(client, streams(f"{db_name}.c"))
    coll.insert_one({"_id": 0})
    delivered = collect(ctx, 1)
    with server.fail_command(["getMore"], error_code=2):  # BadValue: no retry can fix it
        coll.insert_one({"_id": 1})
        with pytest.raises(gtom.GtomError) as caught:
            for op in ctx:
                delivered.append(op)  # the list must survive the exception
    assert not isinstance(caught.value, gtom.HistoryLostError)
    assert "BadValue" in str(caught.value) and f"{db_name}.c" in str(caught.value)
    assert ids(delivered) in ([0], [0, 1])  # the getMore awaiting when the failpoint was set
    ctx.stop()


def test_a_token_the_server_cannot_read_is_history_lost(client: Any, db_name: str) -> None:
    ns = f"{db_name}.c"
    bad = {"_data": "00"}
    with pytest.raises(gtom.HistoryLostError) as caught:
        gtom.start(client, streams(ns, resume_tokens={ns: bad}))
    assert caught.value.stream_id == ns and caught.value.resume_token == bad
    assert "resume token" in str(caught.value)


@PYMONGO_ASYNC_SOCKET_LEAK
@pytest.mark.restarts_server
def test_server_restart_mid_stream_loses_and_repeats_nothing(
    server: TestServer, db_name: str
) -> None:
    if not server.embedded:
        pytest.skip("an external MongoDB cannot be restarted by the tests")
    client: Any = server.client(serverSelectionTimeoutMS=30_000)
    writer_client: Any = server.client()
    try:
        with gtom.start(client, streams(db_name)) as ctx:
            writer = Background(
                lambda: insert_through_outages(
                    writer_client[db_name].c, range(200), server, restart_at=80
                )
            )
            ops = collect(ctx, 200, timeout=60)
            writer.join()
        assert ids(ops) == list(range(200))
    finally:
        client.close()
        writer_client.close()
        gc.collect()


def test_a_token_pruned_from_the_oplog_is_history_lost_at_start(
    tiny_oplog_server: TestServer, db_name: str
) -> None:
    client: Any = tiny_oplog_server.client()
    ns = f"{db_name}.c"
    try:
        with gtom.start(client, streams(ns)) as ctx:
            client[db_name].c.insert_one({"_id": 0})
            (op,) = collect(ctx, 1)
        for i in range(1, 120):  # three times the oplog's size
            client[db_name].c.insert_one({"_id": i})
        tiny_oplog_server.prune_oplog()
        with pytest.raises(gtom.HistoryLostError) as caught:
            gtom.start(client, streams(ns, resume_tokens={ns: op.resume_token}))
        error = caught.value
        assert error.stream_id == ns and error.resume_token == op.resume_token
        assert "no longer has its resume point" in str(error)
    finally:
        client.close()


def test_a_paused_stream_overrun_while_paused_raises_history_lost(
    tiny_oplog_server: TestServer, db_name: str
) -> None:
    client: Any = tiny_oplog_server.client()
    ns = f"{db_name}.c"
    try:
        ctx = gtom.start(client, streams(ns))
        client[db_name].c.insert_one({"_id": 0})
        delivered = collect(ctx, 1)
        ctx.pause()
        for i in range(1, 120):
            client[db_name].c.insert_one({"_id": i})
        tiny_oplog_server.prune_oplog()
        ctx.resume()
        with pytest.raises(gtom.HistoryLostError) as caught:
            for later in ctx:
                delivered.append(later)  # the list must survive the exception
        # Whatever was read before the pause may still come; nothing is skipped.
        assert ids(delivered) == list(range(len(delivered)))
        assert caught.value.stream_id == ns
        ctx.stop()
    finally:
        client.close()
