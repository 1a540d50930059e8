"""`gtom.consistent.partition`: parallel consumers, each document's changes in one, in order."""

from __future__ import annotations

import collections
import queue
import threading
from typing import Any

import pytest
from bson import ObjectId, Timestamp
from pymongo import MongoClient

import gtom
from gtom.consistent import partition
from tests._sync.helpers import in_db


def op(document_id: Any, operation: str = "u") -> gtom.Op:
    return gtom.Op(id=document_id, operation=operation, namespace="db.c", timestamp=Timestamp(1, 1))


def test_ops_spread_evenly_over_the_partitions() -> None:
    counts = collections.Counter(partition(op(ObjectId()), 4) for _ in range(8_000))
    assert set(counts) == {0, 1, 2, 3}
    assert all(abs(n - 2_000) < 300 for n in counts.values()), counts


def test_a_command_has_no_partition() -> None:
    drop = gtom.Op(id=None, operation="c", namespace="db.$cmd", timestamp=Timestamp(1, 1))
    assert partition(drop, 4) is None


def test_the_partition_is_a_fixed_value_of_the_id_not_of_the_process() -> None:
    # Pinned: Python's hash() would change with PYTHONHASHSEED; these must never change.
    ids = (1, "a", ObjectId("6777c3000000000000000001"))
    assert [partition(op(i), 7) for i in ids] == [3, 1, 4]
    assert partition(op(1), 1) == 0
    assert {partition(op(i), 7) for i in range(1_000)} == set(range(7))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "4"])
def test_a_bad_partition_count_is_a_clear_error(bad: Any) -> None:
    with pytest.raises(gtom.ConfigurationError, match="partitions must be a positive int"):
        partition(op(1), bad)


def test_four_threads_apply_a_real_oplog_in_parallel_and_end_in_the_final_state(
    client: MongoClient[Any], db_name: str
) -> None:
    coll = client[db_name].counters
    applied: dict[Any, list[int]] = collections.defaultdict(list)
    lanes: list[queue.Queue[gtom.Op | None]] = [queue.Queue() for _ in range(4)]

    def consume(lane: queue.Queue[gtom.Op | None]) -> None:
        while (item := lane.get()) is not None:
            assert item.data is not None
            n = item.data["n"] if item.is_insert() else item.data["$set"]["n"]
            applied[item.id].append(n)  # each document only ever in this one thread

    threads = [threading.Thread(target=consume, args=(lane,)) for lane in lanes]
    for thread in threads:
        thread.start()
    options = gtom.Options(namespace_filter=in_db(db_name), update_data_as_delta=True)
    with gtom.start(client, options) as ctx:
        for n in range(5):
            for i in range(20):
                if n == 0:
                    coll.insert_one({"_id": i, "n": 0})
                else:
                    coll.update_one({"_id": i}, {"$set": {"n": n}})
        for _ in range(100):
            item = next(iter(ctx))
            index = partition(item, 4)
            assert index is not None
            lanes[index].put(item)
    for lane in lanes:
        lane.put(None)
    for thread in threads:
        thread.join()
    assert applied == {i: [0, 1, 2, 3, 4] for i in range(20)}
