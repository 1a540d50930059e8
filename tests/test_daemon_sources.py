"""``gtom run`` with each source (change streams, copies), each store, and lost history."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS

from tests.conftest import TestServer
from tests.test_daemon import GTOM, Daemon, assert_fails


def checkpoint(d: Daemon) -> dict[str, Any]:
    return json_util.loads(d.checkpoint.read_text())  # type: ignore[no-any-return]


def test_change_streams_resume_from_the_saved_token(
    tmp_path: Path, server: TestServer, client: Any, db_name: str
) -> None:
    args = ("--source-change-streams",)
    first = Daemon(tmp_path, server, db_name, *args).start()
    try:
        client[db_name].c.insert_many([{"_id": i} for i in range(10)])
        first.wait_for(lambda events: len(events) >= 10)
        assert first.terminate() == 0
        assert checkpoint(first)["streams"][db_name]["token"] is not None
        client[db_name].c.insert_many([{"_id": i} for i in range(10, 15)])
        second = Daemon(tmp_path, server, db_name, *args).start()
        second.wait_for(lambda events: len(events) >= 15)
        time.sleep(0.3)
        events = second.events()
        assert [e["id"] for e in events] == list(range(15))
        assert {e["source"] for e in events} == {"change_stream"}
        assert len({e["event_id"] for e in events}) == 15
        assert second.terminate() == 0
    finally:
        first.close()


def test_an_idle_stream_keeps_its_saved_token_fresh(
    tmp_path: Path, server: TestServer, client: Any, db_name: str
) -> None:
    d = Daemon(tmp_path, server, db_name, "--source-change-streams").start()
    try:
        client[db_name].c.insert_one({"_id": 1})
        d.wait_for(lambda events: len(events) == 1)
        time.sleep(0.5)
        token = checkpoint(d)["streams"][db_name]["token"]
        deadline = time.monotonic() + 15
        while checkpoint(d)["streams"][db_name]["token"] == token:  # writes elsewhere only
            assert time.monotonic() < deadline, "the idle stream's token was never saved"
            client[f"{db_name}_other"].c.insert_one({})
            time.sleep(0.3)
        assert len(d.events()) == 1
        assert d.terminate() == 0
    finally:
        d.close()


def test_a_copy_then_tailing_and_a_restart_does_not_copy_again(
    tmp_path: Path, server: TestServer, client: Any, db_name: str
) -> None:
    coll = client[db_name].c
    coll.insert_many([{"_id": i} for i in range(50)])
    args = ("--source-direct-read", f"{db_name}.c")
    d = Daemon(tmp_path, server, db_name, *args).start()
    try:
        d.wait_for(lambda events: len(events) >= 50)
        deadline = time.monotonic() + 10
        while checkpoint(d)["copies_done"] != [f"{db_name}.c"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        coll.insert_one({"_id": 50})
        d.wait_for(lambda events: len(events) >= 51)
        assert d.terminate() == 0
        again = Daemon(tmp_path, server, db_name, *args).start()
        coll.insert_one({"_id": 51})
        events = again.wait_for(lambda events: len(events) >= 52)
        time.sleep(0.3)
        events = again.events()
        assert [e["source"] for e in events] == ["direct_read"] * 50 + ["oplog"] * 2
        assert sorted(e["id"] for e in events) == list(range(52))
        assert again.terminate() == 0
    finally:
        d.close()


def test_a_copy_only_run_exits_0_when_done_and_then_has_nothing_to_do(
    tmp_path: Path, server: TestServer, client: Any, db_name: str
) -> None:
    client[db_name].c.insert_many([{"_id": i} for i in range(30)])
    args = ("--source-direct-read", f"{db_name}.c", "--source-no-tail", "--metrics-listen", "off")
    for _ in range(2):
        d = Daemon(tmp_path, server, db_name, *args)
        result = d.run_to_end()
        assert result.returncode == 0, result.stderr
        assert sorted(e["id"] for e in d.events()) == list(range(30))  # once, not twice
    assert checkpoint(d)["copies_done"] == [f"{db_name}.c"]


def test_lost_history_fails_with_exit_17_and_says_how_to_recover(
    tmp_path: Path, tiny_oplog_server: TestServer, db_name: str
) -> None:
    client = tiny_oplog_server.client()
    try:
        d = Daemon(tmp_path, tiny_oplog_server, db_name).start()
        client[db_name].c.insert_one({"_id": 0})
        d.wait_for(lambda events: len(events) == 1)
        assert d.terminate() == 0
        for i in range(1, 120):  # three times the oplog's size, while stopped
            client[db_name].c.insert_one({"_id": i})
        tiny_oplog_server.prune_oplog()

        result = Daemon(tmp_path, tiny_oplog_server, db_name).run_to_end()
        assert_fails(result, 17, "no longer reaches back")
        assert "--reset-checkpoint" in result.stderr and "resnapshot" in result.stderr

        again = Daemon(
            tmp_path, tiny_oplog_server, db_name, "--delivery-on-history-lost", "resnapshot"
        ).start()
        events = again.wait_for(lambda events: len(events) >= 121)
        copied = [e["id"] for e in events[1:] if e["source"] == "direct_read"]
        assert sorted(copied) == list(range(120))  # the whole collection, again
        client[db_name].c.insert_one({"_id": 120})
        events = again.wait_for(lambda events: any(e["id"] == 120 for e in events))
        assert again.terminate() == 0
        saved = checkpoint(again)
        assert saved["recopy"] == [f"{db_name}.c"] and saved["copies_done"] == saved["recopy"]

        # A crash in the middle of that copy: the restarted daemon (original settings) finishes
        # it, it does not forget it.
        saved["copies_done"] = []
        again.checkpoint.write_text(json_util.dumps(saved, json_options=CANONICAL_JSON_OPTIONS))
        before = len(again.events())
        resumed = Daemon(tmp_path, tiny_oplog_server, db_name).start()
        events = resumed.wait_for(lambda events: len(events) >= before + 121)
        assert sorted(e["id"] for e in events[before:]) == list(range(121))
        assert resumed.terminate() == 0
    finally:
        client.close()


def test_the_mongodb_checkpoint_store(
    tmp_path: Path, server: TestServer, client: Any, db_name: str
) -> None:
    args = (
        "--checkpoint-store",
        "mongodb",
        "--checkpoint-collection",
        f"{db_name}_gtom.checkpoints",
        "--checkpoint-name",
        "daemon-1",
    )
    d = Daemon(tmp_path, server, db_name, *args).start()
    try:
        client[db_name].c.insert_many([{"_id": i} for i in range(5)])
        delivered = d.wait_for(lambda events: len(events) >= 5)
        assert d.terminate() == 0
        saved = client[f"{db_name}_gtom"].checkpoints.find_one({"_id": "daemon-1"})
        assert saved["version"] == 1
        assert saved["oplog"]["ts"] >= delivered[-1]["timestamp"]
        assert not d.checkpoint.exists()
        client[db_name].c.insert_one({"_id": 5})
        again = Daemon(tmp_path, server, db_name, *args).start()
        again.wait_for(lambda events: len(events) >= 6)
        time.sleep(0.3)
        assert [e["id"] for e in again.events()] == list(range(6))
        assert again.terminate() == 0
    finally:
        d.close()


def test_json_logs(tmp_path: Path, server: TestServer, db_name: str) -> None:
    d = Daemon(tmp_path, server, db_name, "--log-format", "json").start()
    assert d.terminate() == 0
    entries = [json.loads(line) for line in d.stderr[-1].splitlines() if line.strip()]
    assert entries and all({"time", "level", "message"} <= set(e) for e in entries)
    assert any("stopping" in e["message"] for e in entries)


def test_kill_9_during_a_copy_resumes_the_copy_where_it_was_confirmed(
    tmp_path: Path, server: TestServer, client: Any, db_name: str
) -> None:
    total = 20_000
    client[db_name].c.insert_many([{"_id": i, "pad": "x" * 200} for i in range(total)])
    args = ("--source-direct-read", f"{db_name}.c", "--source-no-tail", "--metrics-listen", "off")
    d = Daemon(tmp_path, server, db_name, *args)
    d.proc = subprocess.Popen(
        [*GTOM, *d.args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not (d.checkpoint.exists() and checkpoint(d)["copies"]):
        assert d.proc.poll() is None, d.finish()
        assert time.monotonic() < deadline, "no copy progress was ever checkpointed"
        time.sleep(0.01)
    d.kill()
    before = len(d.events())
    assert before < total, "the copy finished before the kill"

    result = Daemon(tmp_path, server, db_name, *args).run_to_end(timeout=60)
    assert result.returncode == 0, result.stderr
    ids = [e["id"] for e in d.events()]
    assert sorted(set(ids)) == list(range(total))  # none lost
    again = len(ids) - before
    assert again < total, "the copy started over instead of resuming"
    print(f"killed after {before} of {total}; the resumed run delivered {again}")
