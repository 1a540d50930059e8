"""Every BSON value exact in what `gtom run` and `gtom tail` write, against real servers.

Each line is checked two ways: it reads back (``bson.json_util``) into the values the server
holds, and it is byte for byte what ``json_util`` itself writes for them (reading a line and
writing it again with ``json_util`` gives the same bytes).
"""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from bson import Binary, Code, DatetimeMS, Decimal128, Int64, Regex, json_util
from bson.binary import UuidRepresentation
from bson.codec_options import DatetimeConversion

from tests.conftest import TestServer
from tests.rust_server import RustServer
from tests.test_cli import Tail
from tests.test_daemon import Daemon

READ = {
    "relaxed": json_util.RELAXED_JSON_OPTIONS,
    "canonical": json_util.CANONICAL_JSON_OPTIONS,
}


def reading(mode: str, representation: int = UuidRepresentation.UNSPECIFIED) -> Any:
    return READ[mode].with_options(
        uuid_representation=representation, datetime_conversion=DatetimeConversion.DATETIME_AUTO
    )


def assert_written_as_json_util_writes(line: bytes, mode: str) -> dict[str, Any]:
    """The event ``line`` read back, after checking json_util writes the very same bytes."""
    options = reading(mode)
    event: dict[str, Any] = json_util.loads(line, json_options=options)
    writing = options.with_options(uuid_representation=UuidRepresentation.STANDARD)
    assert json_util.dumps(event, json_options=writing, separators=(",", ":")).encode() == line
    return event


def file_lines(daemon: Daemon, count: int, timeout: float = 30) -> list[bytes]:
    """The first ``count`` complete lines of the daemon's sink file, once it has them."""
    deadline = time.monotonic() + timeout
    while True:
        complete = daemon.out.read_bytes().split(b"\n")[:-1] if daemon.out.exists() else []
        if len(complete) >= count:
            return complete[:count]
        assert daemon.proc is None or daemon.proc.poll() is None, daemon.finish()
        assert time.monotonic() < deadline, f"only {len(complete)} of {count} events"
        time.sleep(0.05)


VALUES: dict[str, Any] = {
    "code": Code("function () { return 1; }"),
    "code_with_scope": Code("function () { return x; }", {"x": 1.5, "inner": Code("y")}),
    "int64": Int64(2**40),
    "small_int64": Int64(7),
    "nan": math.nan,
    "infinity": -math.inf,
    "minus_zero": -0.0,
    "tiny": 1e-05,
    "huge": 1e22,
    "decimal": Decimal128("-1.50E+10"),
    "regex": Regex("^a.*", "im"),
    "binary": Binary(b"\x00\xff", 0x80),
    "text": "é😀\x7f\n\t\x00",
}


@pytest.mark.parametrize("mode", ["relaxed", "canonical"])
def test_gtom_run_writes_every_value_exactly_in_inserts_and_updated_fields(
    tmp_path: Path, server: TestServer, client: Any, db_name: str, mode: str
) -> None:
    daemon = Daemon(tmp_path, server, db_name, "--delivery-format", mode).start()
    try:
        client[db_name].c.insert_one({"_id": 1, **VALUES})
        client[db_name].c.update_one({"_id": 1}, {"$set": {k + "_2": v for k, v in VALUES.items()}})
        client[db_name].c.insert_one({"_id": None, "null_id": True})
        lines = file_lines(daemon, 3)
    finally:
        daemon.close()
    insert, update, null_id = (assert_written_as_json_util_writes(line, mode) for line in lines)
    for key, value in VALUES.items():
        assert_same(insert["data"][key], value, mode)
        assert_same(update["update_description"]["updatedFields"][key + "_2"], value, mode)
        assert_same(update["data"][key + "_2"], value, mode)  # the fetched document
    assert null_id["document_key"] == {"_id": None} and null_id["id"] is None
    assert not null_id["event_id"].endswith(":-")  # a digest of its own, unlike a command's


def assert_same(read: Any, value: Any, mode: str) -> None:
    if isinstance(value, float) and math.isnan(value):
        assert isinstance(read, float) and math.isnan(read)
    elif isinstance(value, float):
        assert read == value and math.copysign(1, read) == math.copysign(1, value)
    elif isinstance(value, Int64) and mode == "relaxed":
        assert read == value  # relaxed JSON writes an Int64 as a plain number
    else:
        assert read == value and type(read) is type(value)


def test_gtom_tail_writes_code_as_code(tail_process: Tail, client: Any, db_name: str) -> None:
    client[db_name].c.insert_one({"_id": 1, "v": Code("f()"), "s": Code("g()", {"a": 1})})
    assert tail_process.proc.stdout is not None
    line = tail_process.proc.stdout.readline().rstrip("\n").encode()
    event = assert_written_as_json_util_writes(line, "relaxed")
    assert event["data"]["v"] == Code("f()") and event["data"]["s"] == Code("g()", {"a": 1})
    assert tail_process.stop() == 0


@pytest.fixture
def tail_process(server: TestServer, db_name: str) -> Any:
    t = Tail("--uri", server.uri, "--ns", db_name)
    yield t
    t.close()


STORED_UUID = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")


@pytest.mark.parametrize(
    "representation",
    ["unspecified", "standard", "pythonLegacy", "javaLegacy", "csharpLegacy"],
)
def test_every_uuid_representation_writes_uuids_back_as_the_binaries_they_were(
    tmp_path: Path, server: TestServer, client: Any, db_name: str, representation: str
) -> None:
    # Updates are fetched by _id: the ids must be encoded as the client decoded them.
    standard = Binary(STORED_UUID.bytes, 4)
    legacy = Binary(
        STORED_UUID.bytes[::-1], 3
    )  # other bytes: SecantusDB ignores the subtype in keys
    uri = server.uri + f"&uuidRepresentation={representation}"
    daemon = Daemon(tmp_path, server, db_name, "--source-uri", uri).start()
    try:
        coll = client[db_name].c
        coll.insert_many([{"_id": standard, "u": standard}, {"_id": legacy, "u": legacy}])
        coll.update_one({"_id": standard}, {"$set": {"x": 1}})
        coll.update_one({"_id": legacy}, {"$set": {"x": 1}})
        lines = file_lines(daemon, 4)
        assert daemon.proc is not None and daemon.proc.poll() is None
    finally:
        daemon.close()
    events = [assert_written_as_json_util_writes(line, "relaxed") for line in lines]
    for event, stored in zip(events, [standard, legacy, standard, legacy], strict=True):
        assert event["id"] == stored and event["document_key"] == {"_id": stored}
        assert event["data"]["_id"] == stored and event["data"]["u"] == stored


AFTER_9999 = DatetimeMS(253402300800000)
BEFORE_1 = DatetimeMS(-62135596800001)


@pytest.mark.parametrize("mode", ["relaxed", "canonical"])
def test_far_dates_are_written_exactly_by_gtom_run_and_survive_a_restart(
    tmp_path: Path, rust_server: RustServer, db_name: str, mode: str
) -> None:
    writer = rust_server.client(datetime_conversion="DATETIME_AUTO")
    writer[db_name].create_collection("c")
    daemon = Daemon(tmp_path, rust_server, db_name, "--delivery-format", mode)  # type: ignore[arg-type]
    try:
        daemon.start()
        writer[db_name].c.insert_one({"_id": 1, "late": AFTER_9999, "early": BEFORE_1})
        file_lines(daemon, 1)
        assert daemon.terminate() == 0
        writer[db_name].c.update_one({"_id": 1}, {"$set": {"later": DatetimeMS(2**62)}})
        daemon.start()  # the restart reads the same kind of entry again: it must not block
        lines = file_lines(daemon, 2)
    finally:
        daemon.close()
        writer.close()
    insert, update = (assert_written_as_json_util_writes(line, mode) for line in lines)
    assert insert["data"] == {"_id": 1, "late": AFTER_9999, "early": BEFORE_1}
    assert update["update_description"]["updatedFields"] == {"later": DatetimeMS(2**62)}
    assert b'{"$date":{"$numberLong":"253402300800000"}}' in lines[0]


def test_far_dates_are_written_exactly_by_gtom_tail(rust_server: RustServer, db_name: str) -> None:
    writer = rust_server.client(datetime_conversion="DATETIME_AUTO")
    writer[db_name].create_collection("c")
    tail = Tail("--uri", rust_server.uri, "--ns", db_name, "--canonical")
    try:
        writer[db_name].c.insert_one({"_id": 1, "late": AFTER_9999, "early": BEFORE_1})
        assert tail.proc.stdout is not None
        line = tail.proc.stdout.readline().rstrip("\n").encode()
        assert tail.stop() == 0
    finally:
        tail.close()
        writer.close()
    event = assert_written_as_json_util_writes(line, "canonical")
    assert event["data"] == {"_id": 1, "late": AFTER_9999, "early": BEFORE_1}
