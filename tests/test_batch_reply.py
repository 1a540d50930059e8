"""`gtom._batch_reply.split_batch`: a cursor reply's batch found without being decoded (pure)."""

from __future__ import annotations

import datetime
import re
from typing import Any

import bson
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from hypothesis import given
from hypothesis import strategies as st

from gtom._batch_reply import split_batch

#: One value of every BSON type the walker must size to step over it.
VALUES: list[Any] = [
    1.5, "text", {"a": {"b": 1}}, [1, [2, "x"]], Binary(b"\x00\x01", 4), ObjectId(), True,
    datetime.datetime(2020, 1, 2), None, Regex("^a.*", "i"), Code("x = 1"),
    Code("y", {"s": 1}), 7, Timestamp(5, 6), Int64(2**40), Decimal128("1.5"), MinKey(), MaxKey(),
    re.compile("b+"),
]  # fmt: skip

documents = st.lists(
    st.fixed_dictionaries({"_id": st.integers(-(2**63), 2**63 - 1), "v": st.sampled_from(VALUES)}),
    max_size=20,
)
extras = st.dictionaries(st.sampled_from(["pbrt", "atClusterTime", "x"]), st.sampled_from(VALUES))


def reply(batch_key: str, batch: list[Any], before: dict[str, Any], after: dict[str, Any]) -> bytes:
    cursor = {**before, batch_key: batch, "id": Int64(42), "ns": "local.oplog.rs", **after}
    return bson.encode(
        {"cursor": cursor, "ok": 1.0, "$clusterTime": {"clusterTime": Timestamp(9, 9)}}
    )


@given(
    key=st.sampled_from(["firstBatch", "nextBatch"]),
    batch=documents,
    before=extras,
    after=extras,
)
def test_the_batch_comes_out_as_its_array_and_the_rest_as_decoded(
    key: str, batch: list[Any], before: dict[str, Any], after: dict[str, Any]
) -> None:
    data = reply(key, batch, before, after)
    split = split_batch(memoryview(data))
    assert split is not None
    whole = bson.decode(data)
    arrays = split["cursor"].pop(key)
    assert [d for array in arrays for d in bson.decode(array).values()] == whole["cursor"][key]
    assert len(arrays) == (1 if batch else 0)
    del whole["cursor"][key]
    assert split == whole


def test_errors_and_other_replies_are_left_to_pymongo() -> None:
    error = bson.encode({"ok": 0.0, "errmsg": "CappedPositionLost", "code": 136})
    assert split_batch(error) is None
    assert split_batch(bson.encode({"ok": 1.0, "n": 3})) is None  # not a cursor reply
    assert split_batch(bson.encode({"cursor": {"id": Int64(0)}, "ok": 1.0})) is None
    not_an_array = bson.encode({"cursor": {"nextBatch": {"0": {}}, "id": Int64(0)}, "ok": 1.0})
    assert split_batch(not_an_array) is None
    assert split_batch(b"\x05\x00\x00") is None  # truncated


def test_an_unknown_type_before_the_batch_is_left_to_pymongo() -> None:
    data = bytearray(reply("nextBatch", [{"_id": 1}], {"z": 1}, {}))
    at = data.index(b"\x10z\x00")  # the int32 "z" placed before the batch
    data[at] = 0x20  # a type BSON does not have
    assert split_batch(bytes(data)) is None
