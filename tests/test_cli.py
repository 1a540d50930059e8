"""The gtom command, run as a real process against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from bson import json_util
from pymongo import MongoClient

from tests.conftest import TestServer

GTOM = [sys.executable, "-m", "gtom"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GTOM, *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("gtom: error: ")
    assert message in lines[0]


class Tail:
    """A running `gtom tail` process."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*GTOM, "tail", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stderr is not None
        ready = self.proc.stderr.readline()
        assert "tailing" in ready, ready + self.proc.stderr.read()

    def lines(self, n: int, timeout: float = 20) -> list[dict[str, Any]]:
        assert self.proc.stdout is not None
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line:
                out.append(json_util.loads(line))
        return out

    def lines_until(self, last: Any, timeout: float = 20) -> list[dict[str, Any]]:
        """Lines up to and including the first one ``last(line)`` holds for."""
        assert self.proc.stdout is not None
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line:
                out.append(json_util.loads(line))
                if last(out[-1]):
                    return out
        raise AssertionError(f"no final line within {timeout}s: {out}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)  # reaps the process and closes its pipes


@pytest.fixture
def tail_process(server: TestServer, db_name: str) -> Iterator[Tail]:
    t = Tail("--uri", server.uri, "--ns", db_name)
    yield t
    t.close()


def test_tail_prints_each_change_as_a_json_line(
    tail_process: Tail, client: Any, db_name: str
) -> None:
    client[db_name].c.insert_one({"_id": 1, "name": "x"})
    client[db_name].c.update_one({"_id": 1}, {"$set": {"name": "y"}})
    client[db_name].c.delete_one({"_id": 1})
    insert, update, delete = tail_process.lines(3)
    assert insert["operation"] == "i" and insert["namespace"] == f"{db_name}.c"
    assert insert["data"] == {"_id": 1, "name": "x"} and insert["source"] == "oplog"
    assert update["update_description"]["updatedFields"] == {"name": "y"}
    assert delete["operation"] == "d" and delete["id"] == 1
    assert tail_process.stop() == 0


def test_tail_skips_internal_namespaces_unless_include_internal_is_given(
    server: TestServer, client: Any, db_name: str
) -> None:
    scope = ("--uri", server.uri, "--ns", "config", "--ns", db_name)
    default, everything = Tail(*scope), Tail(*scope, "--include-internal")
    try:
        client.config[db_name].insert_one({"_id": "bookkeeping"})
        client[db_name].c.insert_one({"_id": "user data"})
        (first,) = default.lines(1)
        assert (first["namespace"], first["id"]) == (f"{db_name}.c", "user data")
        internal, user = everything.lines(2)
        assert (internal["namespace"], internal["id"]) == (f"config.{db_name}", "bookkeeping")
        assert user["id"] == "user data"
        assert default.stop() == 0 and everything.stop() == 0
    finally:
        default.close()
        everything.close()


def test_tail_output_is_relaxed_extended_json(
    tail_process: Tail, client: Any, db_name: str
) -> None:
    from bson import ObjectId

    oid = ObjectId()
    client[db_name].c.insert_one({"_id": oid, "n": 1})
    assert tail_process.proc.stdout is not None
    line = tail_process.proc.stdout.readline()
    raw = json.loads(line)  # plain JSON, parseable by anything
    assert raw["id"] == {"$oid": str(oid)} and raw["data"]["n"] == 1
    assert tail_process.stop() == 0


def test_tail_change_streams_prints_events_with_their_stream_and_token(
    server: TestServer, client: Any, db_name: str
) -> None:
    client[db_name].before.insert_one({"_id": 0})  # before the start: only with --after oldest
    tail = Tail("--uri", server.uri, "--change-streams", "--ns", f"{db_name}.c", "--ns", db_name)
    try:
        client[db_name].c.insert_one({"_id": 1})
        lines = tail.lines(2)
        assert tail.stop() == 0
    finally:
        tail.close()
    assert sorted(line["stream_id"] for line in lines) == [db_name, f"{db_name}.c"]
    for line in lines:
        assert line["source"] == "change_stream" and line["id"] == 1
        assert "_data" in line["resume_token"]

    tail = Tail("--uri", server.uri, "--change-streams", "--ns", db_name, "--after", "oldest")
    try:
        (first,) = tail.lines(1)
        assert tail.stop() == 0
    finally:
        tail.close()
    assert first["namespace"] == f"{db_name}.before" and first["id"] == 0


def test_direct_read_alone_copies_and_exits(server: TestServer, client: Any, db_name: str) -> None:
    client[db_name].c.insert_many([{"_id": i} for i in range(250)])
    result = run("tail", "--uri", server.uri, "--direct-read", f"{db_name}.c", "--no-tail")
    assert result.returncode == 0, result.stderr
    lines = [json_util.loads(line) for line in result.stdout.splitlines()]
    assert sorted(line["id"] for line in lines) == list(range(250))
    assert {line["source"] for line in lines} == {"direct_read"}
    assert f"copy done: {db_name}.c 250/~250 (100%)" in result.stderr


def test_direct_read_then_tailing(server: TestServer, client: Any, db_name: str) -> None:
    client[db_name].c.insert_many([{"_id": i} for i in range(20)])
    tail = Tail("--uri", server.uri, "--direct-read", f"{db_name}.c", "--ns", f"{db_name}.c")
    try:
        copied = tail.lines(20)
        client[db_name].c.insert_one({"_id": "new"})
        client[db_name].other.insert_one({"_id": "not followed"})
        (new,) = tail.lines(1)
        assert tail.stop() == 0
    finally:
        tail.close()
    assert sorted(line["id"] for line in copied) == list(range(20))
    assert (new["id"], new["source"]) == ("new", "oplog")


def test_no_tail_without_direct_read_is_one_line_and_exit_2() -> None:
    assert_one_line_error(run("tail", "--no-tail"), "--no-tail needs --direct-read")


def test_bad_direct_read_namespace_is_one_line_and_exit_2(server: TestServer) -> None:
    result = run("tail", "--uri", server.uri, "--direct-read", "nodot")
    assert_one_line_error(result, "direct_read_ns entries must look like 'db.collection'")


def test_bad_change_stream_namespace_is_one_line_and_exit_2(server: TestServer) -> None:
    result = run("tail", "--uri", server.uri, "--change-streams", "--ns", "a..b")
    assert_one_line_error(result, "change_stream_ns entries must be")


def test_bad_uri_is_one_line_and_exit_2() -> None:
    assert_one_line_error(run("tail", "--uri", "bad://host"), "invalid MongoDB URI")


def test_unreachable_server_is_said_within_the_timeout(free_port: int) -> None:
    result = run("tail", "--uri", f"mongodb://127.0.0.1:{free_port}/", "--timeout", "0.5")
    assert_one_line_error(result, "cannot reach MongoDB")


def test_passwords_never_appear_in_messages(free_port: int) -> None:
    uri = f"mongodb://alice:s3cret@127.0.0.1:{free_port}/"
    result = run("tail", "--uri", uri, "--timeout", "0.3")
    assert "s3cret" not in result.stderr + result.stdout


def test_unknown_option_is_one_line_and_exit_2() -> None:
    assert_one_line_error(run("tail", "--bogus"), "unrecognized arguments: --bogus")


def test_bad_after_value_is_one_line_and_exit_2() -> None:
    assert_one_line_error(run("tail", "--after", "yesterday"), "--after must be")


def test_a_server_that_is_not_a_replica_set_member_is_refused() -> None:
    if os.environ.get("GTOM_TEST_MONGODB_URI"):
        pytest.skip("needs an embedded standalone server")
    import secantus

    with tempfile.TemporaryDirectory() as path:
        standalone = secantus.SecantusDBServer(storage_path=path, port=0, replica_set_name=None)
        standalone.start()
        try:
            result = run("tail", "--uri", standalone.uri, "--timeout", "5")
            streams = run("tail", "--uri", standalone.uri, "--timeout", "5", "--change-streams")
        finally:
            standalone.stop()
    assert_one_line_error(result, "not a replica set member")
    assert_one_line_error(streams, "change streams need a replica set")


def test_demo_prints_the_sample_changes_and_exits() -> None:
    result = run("demo", timeout=120)
    assert result.returncode == 0, result.stderr
    events = [json_util.loads(line) for line in result.stdout.splitlines()]
    kinds = {(e["operation"], e["namespace"].split(".")[1]) for e in events}
    assert {("i", "users"), ("u", "users"), ("d", "users"), ("c", "$cmd")} <= kinds
    assert any(e["txn"] for e in events)
    assert events[-1]["data"] == {"dropDatabase": 1}
    # The changes are made while gtom tails: each update carries its document as it was then.
    updates = [e["data"] for e in events if e["operation"] == "u"]
    assert updates == [
        {"_id": 1, "name": "Ada Lovelace", "langs": ["en", "it"]},
        {"_id": 2, "name": "Grace"},
        {"_id": 3, "name": "Linus T.", "langs": ["fi", "en"]},
        {"_id": 1, "name": "Ada Lovelace", "langs": ["en", "it"], "orders": 1},
    ]
    assert "`gtom run` and `gtom top`" in result.stderr.splitlines()[-1]
    assert "gtom demo --serve" in result.stderr.splitlines()[-1]


def test_demo_serve_keeps_the_server_up_with_changes_until_ctrl_c() -> None:
    proc = subprocess.Popen(
        [*GTOM, "demo", "--serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        said: list[str] = []
        deadline = time.monotonic() + 60
        while not said or "Ctrl-C stops the server" not in said[-1]:
            said.append(proc.stderr.readline())
            assert said[-1], "gtom demo --serve ended before serving:\n" + "".join(said)
            assert time.monotonic() < deadline
        (uri,) = [line.split()[-1] for line in said if line.startswith("gtom demo: serving ")]
        assert f"gtom run --uri '{uri}' --ns demo" in "".join(said)
        assert "gtom top" in "".join(said)
        client: MongoClient[Any] = MongoClient(uri)
        try:
            orders = client.demo.orders
            deadline = time.monotonic() + 30
            while orders.count_documents({"state": "shipped"}) < 3:  # the writer keeps going
                assert time.monotonic() < deadline
                time.sleep(0.1)
        finally:
            client.close()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "gtom demo: stopped" in err and "Traceback" not in err


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("gtom ")


def test_failed_authentication_is_one_line_without_the_password(auth_server: TestServer) -> None:
    host = auth_server.uri.split("//")[1].split("/")[0]
    uri = f"mongodb://root:wrong-pw@{host}/?directConnection=true"
    result = run("tail", "--uri", uri, "--timeout", "5")
    assert_one_line_error(result, "authentication failed")
    assert "wrong-pw" not in result.stderr


def test_json_lines_match_bson_relaxed_extended_json() -> None:
    import datetime
    import uuid

    import bson
    from bson import Binary, Code, Decimal128, Int64, ObjectId, Regex, Timestamp

    from gtom import Op
    from gtom._jsonl import op_document, op_line

    relaxed = json_util.RELAXED_JSON_OPTIONS.with_options(uuid_representation=4)
    values = {
        "oid": ObjectId(),
        "date": datetime.datetime(2024, 1, 2, 3, 4, 5, 678000),
        "old_date": datetime.datetime(1960, 1, 1),
        "ts": Timestamp(1, 2),
        "dec": Decimal128("1.5"),
        "bytes": b"\x00\x01",
        "bin": Binary(b"x", 5),
        "long": Int64(2**40),
        "uuid": uuid.uuid4(),
        "float": 1.5,
        "nan": float("nan"),
        "inf": float("-inf"),
        "none": None,
        "nested": [1, {"a": "é"}],
        "regex": Regex("a.*", "i"),
        "code": Code("f()"),
        "code_with_scope": Code("f(x)", {"x": 1.5}),
        "tiny": 1e-05,
    }
    # gtom tail's documents come from a client with gtom's output codec options.
    from bson.codec_options import CodecOptions

    from gtom._extjson import output_codec_options

    codec = CodecOptions(uuid_representation=4, **output_codec_options())
    for name, value in values.items():
        data = bson.decode(bson.encode({"_id": name, "v": value}, codec_options=codec), codec)
        op = Op("i", "db.c", id=name, data=data, timestamp=Timestamp(5, 1))
        expected = json_util.dumps(op_document(op), json_options=relaxed, separators=(",", ":"))
        assert op_line(op) == expected, name
