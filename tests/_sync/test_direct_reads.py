# Generated from tests/_async/test_direct_reads.py by tools/synchro.py. Edit that one.
"""Direct reads on a real server: exact counts for every split, views, mixed _ids, options."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import pytest
from bson import Decimal128, Int64, ObjectId
from bson.raw_bson import RawBSONDocument

import gtom
from tests._sync.helpers import assert_each_once, copy


def read_all(ctx: Any) -> list[gtom.Op]:
    """Every op of a copy-only context: its iteration ends once the copy is done."""
    return [op for op in ctx]


@pytest.mark.parametrize(("split_max", "segments"), [(0, 1), (1, 2), (9, 10)])
def test_a_collection_is_read_exactly_once_whatever_the_split(
    client: Any, db_name: str, split_max: int, segments: int
) -> None:
    coll = client[db_name].c
    coll.insert_many([{"_id": i, "v": i * 2} for i in range(5000)])
    options = copy(f"{db_name}.c", direct_read_split_max=split_max, direct_read_concur=3)
    with gtom.start(client, options) as ctx:
        ops = read_all(ctx)
        assert ctx.wait_for_direct_reads(timeout=5)
        progress = ctx.direct_read_progress()[f"{db_name}.c"]
    assert_each_once([op.id for op in ops], list(range(5000)))
    for op in ops:
        assert op.operation == "i" and op.namespace == f"{db_name}.c"
        assert op.source is gtom.Source.DIRECT_READ and op.data == {"_id": op.id, "v": op.id * 2}
    assert progress.segments == segments and progress.segments_done == segments
    assert progress.read == 5000 and progress.done and progress.estimated_total == 5000


def test_ids_of_every_type_are_all_read(client: Any, db_name: str) -> None:
    ids: list[Any] = list(range(1500))  # enough to split
    ids += [f"s{i}" for i in range(300)] + [ObjectId() for _ in range(300)]
    ids += [{"a": i, "b": "x"} for i in range(50)] + [2.5, Int64(2**40), Decimal128("7.25")]
    ids += [None, True, datetime.datetime(2024, 1, 1), b"\x01\x02"]
    client[db_name].c.insert_many([{"_id": i} for i in ids])
    options = copy(f"{db_name}.c", direct_read_split_max=4)
    with gtom.start(client, options) as ctx:
        ops = read_all(ctx)
        progress = ctx.direct_read_progress()[f"{db_name}.c"]
    assert_each_once([op.id for op in ops], ids)
    assert progress.segments >= 5 + 6  # the numbers split; each other type its own segment


def test_a_view_is_read(client: Any, db_name: str) -> None:
    db = client[db_name]
    db.c.insert_many([{"_id": i, "even": i % 2 == 0} for i in range(100)])
    db.command("create", "evens", viewOn="c", pipeline=[{"$match": {"even": True}}])
    with gtom.start(client, copy(f"{db_name}.evens")) as ctx:
        ops = read_all(ctx)
        progress = ctx.direct_read_progress()[f"{db_name}.evens"]
    assert_each_once([op.id for op in ops], list(range(0, 100, 2)))
    assert all(op.namespace == f"{db_name}.evens" for op in ops)
    assert progress.segments == 1 and progress.estimated_total is None


def test_several_namespaces_and_an_empty_or_missing_one(client: Any, db_name: str) -> None:
    db = client[db_name]
    db.a.insert_many([{"_id": i} for i in range(700)])
    db.b.insert_many([{"_id": i} for i in range(30)])
    db.create_collection("empty")
    names = [f"{db_name}.{n}" for n in ("a", "b", "empty", "missing")]
    with gtom.start(client, copy(*names)) as ctx:
        ops = read_all(ctx)
        progress = ctx.direct_read_progress()
    assert sorted(op.namespace for op in ops) == [names[0]] * 700 + [names[1]] * 30
    assert all(p.done for p in progress.values())
    assert progress[names[3]].read == 0


def test_pipe_filters_and_unmarshal_apply(client: Any, db_name: str) -> None:
    calls: list[tuple[str, bool]] = []

    def pipe(namespace: str, change_stream: bool) -> list[dict[str, Any]]:
        calls.append((namespace, change_stream))
        return [{"$match": {"v": {"$gte": 10}}}, {"$addFields": {"seen": True}}]

    def unmarshal(namespace: str, raw: RawBSONDocument) -> Any:
        assert isinstance(raw, RawBSONDocument)
        return raw["v"]

    options = copy(
        f"{db_name}.c",
        pipe=pipe,
        filter=lambda op: op.data is not None and op.data["v"] % 2 == 0,
        namespace_filter=lambda op: op.data is None,  # sees no document yet
        unmarshal=unmarshal,
        direct_read_split_max=1,
    )
    client[db_name].c.insert_many([{"_id": i, "v": i} for i in range(1200)])
    with gtom.start(client, options) as ctx:
        ops = read_all(ctx)
    assert sorted(op.doc for op in ops) == list(range(10, 1200, 2))
    assert all(op.data is not None and op.data["seen"] for op in ops)
    assert set(calls) == {(f"{db_name}.c", False)}


def test_a_pipeline_that_removes_the_id_is_a_configuration_error(client: Any, db_name: str) -> None:
    client[db_name].c.insert_many([{"_id": i} for i in range(10)])
    options = copy(f"{db_name}.c", pipe=lambda ns, cs: [{"$project": {"_id": 0}}])
    with gtom.start(client, options) as ctx:
        with pytest.raises(gtom.ConfigurationError, match="removed _id"):
            read_all(ctx)


def test_split_vector_falls_back_when_the_server_refuses_it(
    client: Any, db_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    client[db_name].c.insert_many([{"_id": i} for i in range(2000)])
    options = copy(f"{db_name}.c", split_vector=True, direct_read_split_max=3)
    with caplog.at_level(logging.INFO, logger="gtom"):
        with gtom.start(client, options) as ctx:
            ops = read_all(ctx)
            progress = ctx.direct_read_progress()[f"{db_name}.c"]
    assert_each_once([op.id for op in ops], list(range(2000)))
    assert progress.segments == 4
    if "splitVector unavailable" not in caplog.text:  # a real mongod may allow it
        assert "splitVector" not in caplog.text


def test_with_tailing_the_copy_comes_first_then_the_changes(client: Any, db_name: str) -> None:
    coll = client[db_name].c
    coll.insert_many([{"_id": i} for i in range(600)])
    options = gtom.Options(
        direct_read_ns=[f"{db_name}.c"],
        namespace_filter=lambda op: op.namespace == f"{db_name}.c",
        channel_size=10,
    )
    with gtom.start(client, options) as ctx:
        # Written while the copy runs: the copy may see it too; the tail surely does, after it.
        coll.insert_one({"_id": "after"})
        ops = []
        for op in ctx:
            ops.append(op)
            if op.source is gtom.Source.OPLOG:
                break
        assert ctx.wait_for_direct_reads(timeout=5)
    copied, tailed = ops[:-1], ops[-1]
    assert all(op.source is gtom.Source.DIRECT_READ for op in copied)
    assert set(range(600)) <= {op.id for op in copied} <= {*range(600), "after"}
    assert tailed.id == "after" and tailed.is_insert()


def test_wait_for_direct_reads_without_any_returns_at_once(client: Any) -> None:
    with gtom.start(client, gtom.Options(oplog_disabled=True)) as ctx:
        assert ctx.wait_for_direct_reads(timeout=0)
        assert ctx.direct_read_progress() == {} and ctx.direct_read_checkpoint() == {}
